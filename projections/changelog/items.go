package changelog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// Item types.
const (
	ItemAllocationRule = "allocation_rule"
	ItemBudget         = "budget"
	ItemInvoice        = "invoice"
	ItemPeriodClose    = "period_close"
	ItemFXRate         = "fx_rate"
	ItemResourceTags   = "resource_tags"
)

// kinds are the event kinds the change log folds, in the envelope's oneof order.
var kinds = []string{"resource_tagged", "allocation_rule_set", "allocation_rule_retired", "invoice_recorded",
	"period_closed", "fx_rate_recorded", "budget_set"}

// Kinds are the event kinds the change log holds.
func Kinds() []string { return append([]string(nil), kinds...) }

// IsKind reports whether kind is one of Kinds.
func IsKind(kind string) bool {
	for _, k := range kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// doc is an item's document: a JSON object decoded with UseNumber.
type doc = map[string]any

// change is what one event does to its item, before the previous state is known.
type change struct {
	item, key string
	approver  *tallyv1.Actor
	// next computes the item's document after the event from the one before (nil: none).
	next func(before doc) (doc, error)
}

// changeOf describes ev's change, or returns nil for an event of another kind.
func changeOf(env *tallyv1.Envelope) (*change, error) {
	replace := func(body proto.Message) func(doc) (doc, error) {
		return func(doc) (doc, error) { return bodyDoc(body) }
	}
	switch b := env.GetBody().(type) {
	case *tallyv1.Envelope_AllocationRuleSet:
		r := b.AllocationRuleSet
		return &change{item: ItemAllocationRule, key: r.GetRuleId(), approver: r.GetApprover(), next: replace(r)}, nil
	case *tallyv1.Envelope_AllocationRuleRetired:
		r := b.AllocationRuleRetired
		return &change{item: ItemAllocationRule, key: r.GetRuleId(), approver: r.GetApprover(), next: func(before doc) (doc, error) {
			after := clone(before)
			if after == nil {
				after = doc{"rule_id": r.GetRuleId()}
			}
			retired, err := bodyDoc(r)
			if err != nil {
				return nil, err
			}
			delete(retired, "rule_id")
			after["retired"] = retired
			return after, nil
		}}, nil
	case *tallyv1.Envelope_BudgetSet:
		s := b.BudgetSet
		return &change{item: ItemBudget, key: s.GetBudgetId(), approver: s.GetApprover(), next: replace(s)}, nil
	case *tallyv1.Envelope_InvoiceRecorded:
		inv := b.InvoiceRecorded
		return &change{item: ItemInvoice, key: inv.GetScope().GetProvider() + "/" + inv.GetInvoiceId(), next: replace(inv)}, nil
	case *tallyv1.Envelope_PeriodClosed:
		c := b.PeriodClosed
		key := c.GetPeriod()
		if c.GetProvider() != "" {
			key += "/" + c.GetProvider()
		}
		return &change{item: ItemPeriodClose, key: key, approver: c.GetApprover(), next: replace(c)}, nil
	case *tallyv1.Envelope_FxRateRecorded:
		f := b.FxRateRecorded
		return &change{item: ItemFXRate, key: f.GetFromCurrency() + "/" + f.GetToCurrency() + "/" + f.GetDate(), next: replace(f)}, nil
	case *tallyv1.Envelope_ResourceTagged:
		t := b.ResourceTagged
		return &change{item: ItemResourceTags, key: t.GetProvider() + "/" + t.GetResourceId(), next: func(before doc) (doc, error) {
			tags := doc{}
			if old, ok := before["tags"].(map[string]any); ok {
				for k, v := range old {
					tags[k] = v
				}
			}
			for _, kv := range t.GetTags() {
				tags[kv.GetKey()] = kv.GetValue()
			}
			for _, k := range t.GetRemovedKeys() {
				delete(tags, k)
			}
			// The body's own fields, in the body's JSON form, but the tags as a map.
			after, err := bodyDoc(t)
			if err != nil {
				return nil, err
			}
			delete(after, "removed_keys")
			after["tags"] = tags
			return after, nil
		}}, nil
	}
	return nil, nil
}

// bodyDoc is body as a document: protobuf JSON with proto names, without its approver.
func bodyDoc(body proto.Message) (doc, error) {
	m := proto.Clone(body)
	if f := m.ProtoReflect().Descriptor().Fields().ByName("approver"); f != nil {
		m.ProtoReflect().Clear(f)
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return decodeDoc(b)
}

// decodeDoc decodes a JSON object, keeping numbers as written.
func decodeDoc(b []byte) (doc, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out doc
	if err := d.Decode(&out); err != nil {
		return nil, fmt.Errorf("decode item document: %w", err)
	}
	return out, nil
}

// encodeJSON is v as compact JSON, keys sorted, without HTML escaping.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// clone deep-copies d (documents are maps and slices of JSON values).
func clone(d doc) doc {
	if d == nil {
		return nil
	}
	return cloneValue(d).(doc)
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = cloneValue(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}

// actorCols is an actor as stored: its kind's name and id; ("", "") for none.
func actorCols(a *tallyv1.Actor) (string, string) {
	if a.GetId() == "" && a.GetKind() == tallyv1.ActorKind_ACTOR_KIND_UNSPECIFIED {
		return "", ""
	}
	return a.GetKind().String(), a.GetId()
}

// sortedKinds returns ks sorted and deduplicated, all checked.
func sortedKinds(ks []string) ([]string, error) {
	seen := map[string]bool{}
	out := []string{} // never nil: pgx sends a nil slice as NULL
	for _, k := range ks {
		if !IsKind(k) {
			return nil, fmt.Errorf("%w: kind %q is not a configuration event kind: use one of %v", ErrInvalid, k, kinds)
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}
