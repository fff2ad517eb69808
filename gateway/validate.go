package gateway

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/money"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/services/focus"
)

// Limits on what a request may carry; they keep events and audit records
// small and ids usable as keys.
const (
	maxIDLen   = 256  // ids, names, keys
	maxTextLen = 4096 // descriptions, reasons
	maxTags    = 1000
)

func checkTenant(field, id string) error {
	if id == "" {
		return fieldErr(field, "is required")
	}
	if err := eventstore.ValidateTenant(id); err != nil {
		return fieldErr(field, "%s is not a valid tenant id: use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit", quote(id))
	}
	return nil
}

// checkText refuses invalid UTF-8, control characters and overlong values.
func checkText(field, v string, max int) error {
	if len(v) > max {
		return fieldErr(field, "is %d bytes long, over the limit of %d", len(v), max)
	}
	if !utf8.ValidString(v) {
		return fieldErr(field, "is not valid UTF-8")
	}
	for _, r := range v {
		if r < 0x20 && r != '\t' && r != '\n' || r == 0x7f {
			return fieldErr(field, "contains a control character")
		}
	}
	return nil
}

func requireID(field, v string) error {
	if strings.TrimSpace(v) == "" {
		return fieldErr(field, "is required")
	}
	return checkText(field, v, maxIDLen)
}

func optionalID(field, v string) error { return checkText(field, v, maxIDLen) }

// parseDecimal checks an exact decimal string and returns its canonical
// text: the sender's digits when written plainly ("12.3400" stays), plain
// notation when written with an exponent ("1.5E-7" becomes "0.00000015").
// Never a float.
func parseDecimal(field, v string) (string, decimal.Decimal, error) {
	s := strings.TrimSpace(v)
	if s == "" {
		return "", decimal.Decimal{}, fieldErr(field, "is required (a decimal string such as \"12.34\")")
	}
	d, err := money.Parse(s)
	if err != nil {
		return "", decimal.Decimal{}, fieldErr(field, "%s %s", quote(v), err)
	}
	if strings.ContainsAny(s, "eE") {
		return d.String(), d, nil
	}
	return strings.TrimPrefix(s, "+"), d, nil
}

// setDecimal validates *p and replaces it with its canonical text.
func setDecimal(field string, p *string) (decimal.Decimal, error) {
	canon, d, err := parseDecimal(field, *p)
	if err != nil {
		return d, err
	}
	*p = canon
	return d, nil
}

// setCurrency validates an ISO 4217 code; lower case is an obvious spelling
// and is upper-cased.
func setCurrency(field string, p *string) error {
	if *p == "" {
		return fieldErr(field, "is required (an ISO 4217 code such as \"USD\")")
	}
	up := strings.ToUpper(*p)
	if !focus.IsCurrency(up) {
		return fieldErr(field, "%s is not an ISO 4217 code", quote(*p))
	}
	*p = up
	return nil
}

func requireTime(field string, ts *timestamppb.Timestamp) error {
	if ts == nil {
		return fieldErr(field, "is required")
	}
	if err := ts.CheckValid(); err != nil {
		return fieldErr(field, "is not a valid timestamp")
	}
	return nil
}

// checkPeriod requires both ends and start < end; the end is named when
// the order is wrong.
func checkPeriod(startField, endField string, start, end *timestamppb.Timestamp) error {
	if err := requireTime(startField, start); err != nil {
		return err
	}
	if err := requireTime(endField, end); err != nil {
		return err
	}
	if !start.AsTime().Before(end.AsTime()) {
		return fieldErr(endField, "(%s) must be after %s (%s)", end.AsTime().Format(time.RFC3339), startField, start.AsTime().Format(time.RFC3339))
	}
	return nil
}

// checkKeyValues requires non-empty, unique keys and sorts the list by key,
// so that the same set always encodes to the same bytes.
func checkKeyValues(field string, kvs []*tallyv1.KeyValue) error {
	if len(kvs) > maxTags {
		return fieldErr(field, "has %d entries, over the limit of %d", len(kvs), maxTags)
	}
	for i, kv := range kvs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if kv == nil || kv.GetKey() == "" {
			return fieldErr(f+".key", "is required")
		}
		if err := checkText(f+".key", kv.GetKey(), maxIDLen); err != nil {
			return err
		}
		if err := checkText(f+".value", kv.GetValue(), maxTextLen); err != nil {
			return err
		}
	}
	slices.SortStableFunc(kvs, func(a, b *tallyv1.KeyValue) int { return strings.Compare(a.GetKey(), b.GetKey()) })
	for i := 1; i < len(kvs); i++ {
		if kvs[i].GetKey() == kvs[i-1].GetKey() {
			return fieldErr(field, "has the key %s twice", quote(kvs[i].GetKey()))
		}
	}
	return nil
}

func checkActor(field string, a *tallyv1.Actor) error {
	if a == nil {
		return nil
	}
	if a.GetKind() == tallyv1.ActorKind_ACTOR_KIND_UNSPECIFIED {
		return fieldErr(field+".kind", "is required")
	}
	if _, ok := tallyv1.ActorKind_name[int32(a.GetKind())]; !ok {
		return fieldErr(field+".kind", "%d is not an actor kind", a.GetKind())
	}
	return requireID(field+".id", a.GetId())
}

// quote shows a value in a message, cut short.
func quote(v string) string {
	const max = 64
	if len(v) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		return fmt.Sprintf("%q... (%d bytes)", v[:cut], len(v))
	}
	return fmt.Sprintf("%q", v)
}
