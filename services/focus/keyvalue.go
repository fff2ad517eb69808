package focus

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
)

// parseKeyValues reads a FOCUS key/value column (Tags, AllocatedTags,
// SkuPriceDetails): a JSON object whose values may be strings, numbers,
// booleans or null in real data. Keys are kept byte for byte (the FOCUS
// sample has both "org" and " org"), values keep their text so a number
// like 1.5E-7 is not rounded through float64, and the result is sorted by
// key so that two files listing the same tags in another order compare equal.
// A duplicate key is an error: which value would the ledger keep?
func parseKeyValues(v string) ([]KeyValue, string, bool) {
	kvs, ok := scanFlatObject(v)
	if !ok {
		var reason string
		if kvs, reason, ok = decodeKeyValues(v); !ok {
			return nil, reason, false
		}
	}
	slices.SortStableFunc(kvs, func(a, b KeyValue) int { return strings.Compare(a.Key, b.Key) })
	for i := 1; i < len(kvs); i++ {
		if kvs[i].Key == kvs[i-1].Key {
			return nil, "has duplicate key " + quote(kvs[i].Key), false
		}
	}
	return kvs, "", true
}

// decodeKeyValues is the general path, through encoding/json.
func decodeKeyValues(v string) ([]KeyValue, string, bool) {
	dec := json.NewDecoder(strings.NewReader(v))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, "is not valid JSON", false
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, "is not a JSON object", false
	}
	kvs := []KeyValue{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, "is not valid JSON", false
		}
		key, _ := tok.(string) // inside an object the decoder only yields string keys
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, "is not valid JSON", false
		}
		kv, ok := keyValueOf(key, raw)
		if !ok {
			return nil, "is not valid JSON", false
		}
		kvs = append(kvs, kv)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, "is not valid JSON", false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, "is not valid JSON (text after the object)", false
	}
	return kvs, "", true
}

func keyValueOf(key string, raw json.RawMessage) (KeyValue, bool) {
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return KeyValue{}, false
		}
		return KeyValue{Key: key, Value: s, Kind: KindString}, true
	case 't', 'f':
		return KeyValue{Key: key, Value: string(raw), Kind: KindBool}, true
	case 'n':
		return KeyValue{Key: key, Kind: KindNull}, true
	case '{', '[':
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return KeyValue{}, false
		}
		return KeyValue{Key: key, Value: b.String(), Kind: KindJSON}, true
	default:
		return KeyValue{Key: key, Value: string(raw), Kind: KindNumber}, true
	}
}

// parseJSONText checks a JSON column kept as text (ContractApplied,
// AllocatedMethodDetails): it must be a JSON object.
func parseJSONText(v string) (string, string, bool) {
	s := strings.TrimSpace(v)
	if !json.Valid([]byte(s)) {
		return "", "is not valid JSON", false
	}
	if s[0] != '{' {
		return "", "is not a JSON object", false
	}
	return s, "", true
}
