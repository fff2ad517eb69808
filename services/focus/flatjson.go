package focus

// scanFlatObject is the fast path of parseKeyValues for what tag columns
// almost always hold: one flat JSON object whose keys and string values have
// no escapes. encoding/json's Decoder costs about a third of the read time
// of a tagged bill; this scanner slices the input instead.
//
// It returns ok=false for anything outside that subset (escapes, nesting,
// control characters, odd numbers, invalid JSON alike), and the caller then
// takes the general path, which decides validity; so the fast path never has
// to get an error message right, only to agree with encoding/json on what it
// accepts (FuzzFlatObject checks that).
func scanFlatObject(s string) (kvs []KeyValue, ok bool) {
	i := skipSpace(s, 0)
	if i >= len(s) || s[i] != '{' {
		return nil, false
	}
	i = skipSpace(s, i+1)
	kvs = make([]KeyValue, 0, 4)
	if i < len(s) && s[i] == '}' {
		return kvs, skipSpace(s, i+1) == len(s)
	}
	for {
		key, j, ok := scanString(s, i)
		if !ok {
			return nil, false
		}
		i = skipSpace(s, j)
		if i >= len(s) || s[i] != ':' {
			return nil, false
		}
		i = skipSpace(s, i+1)
		kv := KeyValue{Key: key}
		switch {
		case i >= len(s):
			return nil, false
		case s[i] == '"':
			kv.Value, j, ok = scanString(s, i)
			kv.Kind = KindString
		case hasPrefix(s, i, "true"):
			kv.Value, j, ok, kv.Kind = "true", i+4, true, KindBool
		case hasPrefix(s, i, "false"):
			kv.Value, j, ok, kv.Kind = "false", i+5, true, KindBool
		case hasPrefix(s, i, "null"):
			j, ok, kv.Kind = i+4, true, KindNull
		default:
			if j, ok = scanNumber(s, i); ok {
				kv.Value, kv.Kind = s[i:j], KindNumber
			}
		}
		if !ok {
			return nil, false
		}
		kvs = append(kvs, kv)
		i = skipSpace(s, j)
		if i >= len(s) {
			return nil, false
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case '}':
			return kvs, skipSpace(s, i+1) == len(s)
		default:
			return nil, false
		}
	}
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

func hasPrefix(s string, i int, p string) bool { return len(s)-i >= len(p) && s[i:i+len(p)] == p }

// scanString reads a JSON string without escapes starting at s[i] == '"'.
// Input is valid UTF-8 (checked for every field before), so bytes >= 0x80
// can be taken as they are.
func scanString(s string, i int) (string, int, bool) {
	if i >= len(s) || s[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"':
			return s[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20:
			return "", 0, false
		}
	}
	return "", 0, false
}

// scanNumber reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(s string, i int) (int, bool) {
	j := i
	if j < len(s) && s[j] == '-' {
		j++
	}
	switch {
	case j < len(s) && s[j] == '0':
		j++
	case j < len(s) && s[j] >= '1' && s[j] <= '9':
		j = digits(s, j)
	default:
		return 0, false
	}
	if j < len(s) && s[j] == '.' {
		k := digits(s, j+1)
		if k == j+1 {
			return 0, false
		}
		j = k
	}
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		j++
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		k := digits(s, j)
		if k == j {
			return 0, false
		}
		j = k
	}
	return j, true
}

func digits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
