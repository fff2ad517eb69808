package focus

import (
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-ledger/tally/money"
)

// isNull reports whether a raw field means null. Exports write null as an
// empty field or a literal NULL (the FOCUS sample data); the spec's own
// appendix examples write "null".
func isNull(v string) bool {
	return v == "" || (len(v) == 4 && strings.EqualFold(v, "null"))
}

// parseDecimal parses a FOCUS numeric value exactly. It accepts what the
// FOCUS numeric format allows (optional sign, digits, one decimal point,
// E-notation) with surrounding spaces, and refuses thousand separators,
// currency symbols, NaN and Inf, which decimal.NewFromString would partly
// accept or which a float parser would accept silently.
func parseDecimal(v string) (decimal.Decimal, string, bool) {
	d, err := money.Parse(strings.TrimSpace(v))
	if err != nil {
		return decimal.Decimal{}, err.Error(), false
	}
	return d, "", true
}

// parseTimestamp reads the date/time spellings found in real FOCUS files and
// returns UTC:
//
//	2024-09-01T00:00:00Z          (the FOCUS format)
//	2024-09-01 00:00:00           (FOCUS sample data; no zone means UTC)
//	2024-09-01T00:00:00.123+02:00 (fractional seconds, offsets)
//	2024-09-01                    (date only: midnight UTC)
//	4/1/25, 4/1/2025              (US month/day/year, FOCUS 1.2 appendix examples)
//
// Two-digit years are 20yy: no cloud bill predates 2000. Years outside
// 1970-9999 are refused: they are typos, and year 1 would be Go's zero time,
// which the period checks read as "missing". Out-of-range parts (hour 30,
// February 30) are errors, not normalised into another day.
func parseTimestamp(v string) (time.Time, bool) {
	s := strings.TrimSpace(v)
	if len(s) >= 10 && s[4] == '-' && s[7] == '-' {
		return parseISO(s)
	}
	if strings.IndexByte(s, '/') > 0 {
		return parseUSDate(s)
	}
	return time.Time{}, false
}

func parseISO(s string) (time.Time, bool) {
	year, ok1 := atoiN(s[0:4])
	month, ok2 := atoiN(s[5:7])
	day, ok3 := atoiN(s[8:10])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	rest := s[10:]
	var hour, minute, sec, nsec int
	loc := time.UTC
	if rest != "" {
		if rest[0] != 'T' && rest[0] != 't' && rest[0] != ' ' {
			return time.Time{}, false
		}
		rest = rest[1:]
		var ok bool
		if len(rest) < 5 || rest[2] != ':' {
			return time.Time{}, false
		}
		if hour, ok = atoiN(rest[0:2]); !ok {
			return time.Time{}, false
		}
		if minute, ok = atoiN(rest[3:5]); !ok {
			return time.Time{}, false
		}
		rest = rest[5:]
		if len(rest) >= 3 && rest[0] == ':' {
			if sec, ok = atoiN(rest[1:3]); !ok {
				return time.Time{}, false
			}
			rest = rest[3:]
			if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
				n := 1
				for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
					n++
				}
				if n == 1 || n > 10 {
					return time.Time{}, false
				}
				frac, _ := atoiN(rest[1:n])
				for k := n - 1; k < 9; k++ {
					frac *= 10
				}
				nsec = frac
				rest = rest[n:]
			}
		}
		if loc, ok = parseZone(rest); !ok {
			return time.Time{}, false
		}
	}
	return makeTime(year, month, day, hour, minute, sec, nsec, loc)
}

// parseZone reads "", "Z", " UTC", "+02:00", "+0200" or "+02".
func parseZone(z string) (*time.Location, bool) {
	z = strings.TrimPrefix(z, " ")
	switch z {
	case "", "Z", "z", "UTC":
		return time.UTC, true
	}
	if z[0] != '+' && z[0] != '-' {
		return nil, false
	}
	sign := 1
	if z[0] == '-' {
		sign = -1
	}
	z = z[1:]
	var hh, mm string
	switch {
	case len(z) == 2:
		hh = z
		mm = "00"
	case len(z) == 4:
		hh, mm = z[:2], z[2:]
	case len(z) == 5 && z[2] == ':':
		hh, mm = z[:2], z[3:]
	default:
		return nil, false
	}
	h, ok1 := atoiN(hh)
	m, ok2 := atoiN(mm)
	if !ok1 || !ok2 || h > 14 || m > 59 {
		return nil, false
	}
	return time.FixedZone("", sign*(h*3600+m*60)), true
}

// parseUSDate reads M/D/YY or M/D/YYYY, optionally followed by " HH:MM[:SS]".
func parseUSDate(s string) (time.Time, bool) {
	date, clock, _ := strings.Cut(s, " ")
	parts := strings.Split(date, "/")
	if len(parts) != 3 || len(parts[0]) > 2 || len(parts[1]) > 2 {
		return time.Time{}, false
	}
	month, ok1 := atoiN(parts[0])
	day, ok2 := atoiN(parts[1])
	year, ok3 := atoiN(parts[2])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, false
	}
	switch len(parts[2]) {
	case 2:
		year += 2000
	case 4:
	default:
		return time.Time{}, false
	}
	var hour, minute, sec int
	if clock != "" {
		hms := strings.Split(clock, ":")
		if len(hms) < 2 || len(hms) > 3 {
			return time.Time{}, false
		}
		var ok bool
		if hour, ok = atoiN(hms[0]); !ok || len(hms[0]) > 2 {
			return time.Time{}, false
		}
		if minute, ok = atoiN(hms[1]); !ok || len(hms[1]) != 2 {
			return time.Time{}, false
		}
		if len(hms) == 3 {
			if sec, ok = atoiN(hms[2]); !ok || len(hms[2]) != 2 {
				return time.Time{}, false
			}
		}
	}
	return makeTime(year, month, day, hour, minute, sec, 0, time.UTC)
}

// makeTime builds the time and refuses out-of-range parts, which time.Date
// would silently normalise (hour 30 becomes 06:00 the next day).
func makeTime(year, month, day, hour, minute, sec, nsec int, loc *time.Location) (time.Time, bool) {
	if year < 1970 || year > 9999 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	if t.Day() != day {
		return time.Time{}, false // e.g. February 30
	}
	return t.UTC(), true
}

// atoiN parses a short run of ASCII digits (no sign).
func atoiN(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
