package focus

import (
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestParseTimestamp(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
		return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
	}
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2024-09-01T00:00:00Z", utc(2024, 9, 1, 0, 0, 0, 0), true},
		{"2024-09-01 00:00:00", utc(2024, 9, 1, 0, 0, 0, 0), true},
		{"2024-09-01T13:45:10", utc(2024, 9, 1, 13, 45, 10, 0), true},
		{"2024-09-01T13:45Z", utc(2024, 9, 1, 13, 45, 0, 0), true},
		{"2024-09-01T00:00:00.5Z", utc(2024, 9, 1, 0, 0, 0, 500_000_000), true},
		{"2024-09-01T00:00:00.123456789Z", utc(2024, 9, 1, 0, 0, 0, 123_456_789), true},
		{"2024-09-01T02:00:00+02:00", utc(2024, 9, 1, 0, 0, 0, 0), true},
		{"2024-09-01T00:00:00-0530", utc(2024, 9, 1, 5, 30, 0, 0), true},
		{"2024-09-01 00:00:00 UTC", utc(2024, 9, 1, 0, 0, 0, 0), true},
		{"2024-09-01 00:00:00+00", utc(2024, 9, 1, 0, 0, 0, 0), true},
		{" 2024-09-01 ", utc(2024, 9, 1, 0, 0, 0, 0), true},
		{"2024-02-29", utc(2024, 2, 29, 0, 0, 0, 0), true},
		{"4/1/25", utc(2025, 4, 1, 0, 0, 0, 0), true},
		{"12/31/2025", utc(2025, 12, 31, 0, 0, 0, 0), true},
		{"4/1/2025 13:05", utc(2025, 4, 1, 13, 5, 0, 0), true},
		{"4/1/2025 13:05:09", utc(2025, 4, 1, 13, 5, 9, 0), true},

		{"", time.Time{}, false},
		{"0001-01-01", time.Time{}, false},
		{"1969-12-31T23:59:59Z", time.Time{}, false},
		{"2023-02-29", time.Time{}, false},
		{"2024-09-01T24:00:00Z", time.Time{}, false},
		{"2023-02-01T30:00:00Z", time.Time{}, false},
		{"2024-09-01T00:60:00Z", time.Time{}, false},
		{"2024-09-01T00:00:60Z", time.Time{}, false},
		{"2024-13-01", time.Time{}, false},
		{"2024-00-10", time.Time{}, false},
		{"2024-09-00", time.Time{}, false},
		{"2024-09-01X00:00:00", time.Time{}, false},
		{"2024-09-01T00:00:00.Z", time.Time{}, false},
		{"2024-09-01T00:00:00+25:00", time.Time{}, false},
		{"2024-09-01T00:00:00 PST", time.Time{}, false},
		{"13/1/25", time.Time{}, false},
		{"4/31/25", time.Time{}, false},
		{"4/1/125", time.Time{}, false},
		{"4/1", time.Time{}, false},
		{"2024/09/01", time.Time{}, false},
		{"1725148800", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := parseTimestamp(tt.in)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
			if ok {
				require.Equal(t, time.UTC, got.Location())
			}
		})
	}
}

func TestParseDecimal(t *testing.T) {
	tests := []struct {
		in   string
		want string // decimal String(); "" when invalid
	}{
		{"0.00000080000", "0.0000008"},
		{"1.5E-7", "0.00000015"},
		{"1.5e+3", "1500"},
		{"-2.61370000000", "-2.6137"},
		{"+3", "3"},
		{".5", "0.5"},
		{"5.", "5"},
		{"0.00 ", "0"},
		{" 42 ", "42"},
		{"123456789012345678901234567890.123456789", "123456789012345678901234567890.123456789"},
		{"1E64", "10000000000000000000000000000000000000000000000000000000000000000"},

		{"", ""},
		{"-", ""},
		{".", ""},
		{"12,3", ""},
		{"1,000.00", ""},
		{"$10.00", ""},
		{"10 USD", ""},
		{"NaN", ""},
		{"Inf", ""},
		{"-Infinity", ""},
		{"0x10", ""},
		{"1_000", ""},
		{"1e", ""},
		{"1e+", ""},
		{"1e5.5", ""},
		{"1E-65", ""},
		{"1E99999", ""},
		{"１", ""},
		{"1..2", ""},
		{"--1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, _, ok := parseDecimal(tt.in)
			require.Equal(t, tt.want != "", ok)
			if ok {
				require.Equal(t, tt.want, d.String())
			}
		})
	}
}

func TestParseKeyValues(t *testing.T) {
	tests := []struct {
		in   string
		want []KeyValue
		ok   bool
	}{
		{`{}`, []KeyValue{}, true},
		{`{"team":"a","env":"prod"}`, []KeyValue{{"env", "prod", KindString}, {"team", "a", KindString}}, true},
		{`{"org":"x"," org":"y"}`, []KeyValue{{" org", "y", KindString}, {"org", "x", KindString}}, true},
		{`{"n":1.5E-7,"i":42,"b":true,"f":false,"z":null}`, []KeyValue{
			{"b", "true", KindBool}, {"f", "false", KindBool}, {"i", "42", KindNumber},
			{"n", "1.5E-7", KindNumber}, {"z", "", KindNull},
		}, true},
		{`{"nested": {"a": [1, 2]}}`, []KeyValue{{"nested", `{"a":[1,2]}`, KindJSON}}, true},
		{` { "a" : "\u00e9\n" } `, []KeyValue{{"a", "é\n", KindString}}, true},

		{`{"a":1,"a":2}`, nil, false},
		{`{"a":`, nil, false},
		{`{"a":1}{}`, nil, false},
		{`["a"]`, nil, false},
		{`"a"`, nil, false},
		{`{a:1}`, nil, false},
		{``, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, _, ok := parseKeyValues(tt.in)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestNormalizeCurrency(t *testing.T) {
	for in, want := range map[string]string{"USD": "USD", "eur": "EUR", "Jpy": "JPY", "XCG": "XCG"} {
		got, ok := normalizeCurrency(in)
		require.True(t, ok, in)
		require.Equal(t, want, got)
	}
	for _, in := range []string{"", "US", "USDT", "XYZ", "HRK", "XAU", "XXX", "BOV", "Token"} {
		_, ok := normalizeCurrency(in)
		require.False(t, ok, in)
	}
}

func TestCanonicalEnum(t *testing.T) {
	for in, want := range map[string]string{"Usage-based": "Usage-Based", "USAGE-BASED": "Usage-Based", "one-time": "One-Time"} {
		got, ok := canonical(chargeFreqs, in)
		require.True(t, ok)
		require.Equal(t, want, got)
	}
	_, ok := canonical(chargeFreqs, "UsageBased")
	require.False(t, ok)
}

// FuzzFlatObject checks that the fast tag scanner agrees with the
// encoding/json path on every input it accepts.
//
//	go test ./services/focus -run '^$' -fuzz FuzzFlatObject -fuzztime 1m
func FuzzFlatObject(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { "a" : "b" , "c":1.5E-7,"d":true,"e":null,"f":-0.0e+1 } `, `{"a":"\n"}`, `{"a":{"b":1}}`,
		`{"a":01}`, `{"a":1.}`, `{"a":"x"}x`, `{"a" "b"}`, `{"é":"ü"}`, `{"a":tru}`, `{"a":1,}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // the reader checks UTF-8 before parsing any field
		}
		fast, ok := scanFlatObject(s)
		if !ok {
			return
		}
		slow, reason, ok := decodeKeyValues(s)
		if !ok {
			t.Fatalf("fast path accepted %q, encoding/json refuses it: %s", s, reason)
		}
		require.Equal(t, slow, fast)
	})
}
