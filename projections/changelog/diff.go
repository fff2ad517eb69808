package changelog

import (
	"encoding/json"
	"sort"
	"strconv"
)

// FieldChange is one leaf field that differs between an item's documents: its path
// ("amount", "scope.provider", "shares[1].value", "tags.team") and its JSON values before and
// after ("null" when absent).
type FieldChange struct {
	Field  string          `json:"field"`
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
}

// Diff lists the leaf fields of before and after that differ, in path order. An empty object
// or list counts as a leaf, so that a field going from [] to absent shows.
func Diff(before, after map[string]any) ([]FieldChange, error) {
	a, b := map[string]any{}, map[string]any{}
	if before != nil {
		flatten("", before, a)
	}
	if after != nil {
		flatten("", after, b)
	}
	paths := make([]string, 0, len(a)+len(b))
	for p := range a {
		paths = append(paths, p)
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	out := []FieldChange{}
	for _, p := range paths {
		x, err := leafJSON(a, p)
		if err != nil {
			return nil, err
		}
		y, err := leafJSON(b, p)
		if err != nil {
			return nil, err
		}
		if string(x) != string(y) {
			out = append(out, FieldChange{Field: p, Before: x, After: y})
		}
	}
	return out, nil
}

func leafJSON(m map[string]any, path string) (json.RawMessage, error) {
	v, ok := m[path]
	if !ok {
		return json.RawMessage("null"), nil
	}
	return encodeJSON(v)
}

// flatten puts every leaf of v under prefix into out.
func flatten(prefix string, v any, out map[string]any) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 && prefix != "" {
			out[prefix] = x
			return
		}
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, e, out)
		}
	case []any:
		if len(x) == 0 {
			out[prefix] = x
			return
		}
		for i, e := range x {
			flatten(prefix+"["+strconv.Itoa(i)+"]", e, out)
		}
	default:
		out[prefix] = v
	}
}
