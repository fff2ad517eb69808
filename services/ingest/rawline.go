package ingest

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// A changed line goes into its event as the bytes it was spilled as: the
// diff does not decode the line into a CostLine only for the log to encode
// it again (that was a fifth of an ingest's CPU and most of its garbage).
//
// The event body is an empty message of its type whose unknown fields hold
// the body's encoding, written here field by field in field-number order:
// marshalling it gives exactly the bytes proto.Marshal of the decoded body
// gives (TestRawBodies compares them), and every reader decodes it as the
// body it is. Only this package's diff builds such envelopes, and nothing
// reads their bodies back before they are appended.

// Field numbers, from the schema's descriptors rather than copied by hand.
var (
	lineFieldNums = func() (f struct {
		currency, chargeStart protowire.Number
		amounts               [6]protowire.Number // in the order of lineAmounts
	}) {
		fields := (&tallyv1.CostLine{}).ProtoReflect().Descriptor().Fields()
		num := func(name protoreflect.Name) protowire.Number {
			fd := fields.ByName(name)
			if fd == nil {
				panic("CostLine has no field " + name)
			}
			return fd.Number()
		}
		f.currency, f.chargeStart = num("billing_currency"), num("charge_period_start")
		for i, name := range []protoreflect.Name{"billed_cost", "effective_cost", "list_cost", "contracted_cost",
			"consumed_quantity", "pricing_quantity"} {
			f.amounts[i] = num(name)
		}
		return f
	}()
	recordedNums = fieldNums(&tallyv1.CostLineRecorded{}, "line", "post_close")
	restatedNums = fieldNums(&tallyv1.CostLineRestated{}, "line", "delta", "previous_event_id", "post_close")
)

func fieldNums(m proto.Message, names ...protoreflect.Name) []protowire.Number {
	fields := m.ProtoReflect().Descriptor().Fields()
	out := make([]protowire.Number, len(names))
	for i, name := range names {
		fd := fields.ByName(name)
		if fd == nil {
			panic(fmt.Sprintf("%s has no field %s", m.ProtoReflect().Descriptor().FullName(), name))
		}
		out[i] = fd.Number()
		if i > 0 && out[i] <= out[i-1] {
			panic(fmt.Sprintf("%s: fields %v are not in field-number order", m.ProtoReflect().Descriptor().FullName(), names))
		}
	}
	return out
}

// lineFields are what the diff needs of an encoded line besides its bytes.
type lineFields struct {
	currency    string
	chargeStart *timestamppb.Timestamp
	amounts     [6]string // as lineAmounts; "" is absent
}

// scanLine reads lineFields from an encoded CostLine without decoding the
// rest of it.
func scanLine(b []byte) (lineFields, error) {
	var f lineFields
	nums := &lineFieldNums
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return f, fmt.Errorf("decode a spilled line: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return f, fmt.Errorf("decode a spilled line: %w", protowire.ParseError(m))
			}
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return f, fmt.Errorf("decode a spilled line: %w", protowire.ParseError(m))
		}
		b = b[m:]
		switch num {
		case nums.currency:
			f.currency = string(v)
		case nums.chargeStart:
			ts := &timestamppb.Timestamp{}
			if err := proto.Unmarshal(v, ts); err != nil {
				return f, fmt.Errorf("decode a spilled line: charge_period_start: %w", err)
			}
			f.chargeStart = ts
		default:
			for i, an := range nums.amounts {
				if num == an {
					f.amounts[i] = string(v)
				}
			}
		}
	}
	return f, nil
}

// recordedBody is CostLineRecorded{Line: the line encoded as enc, PostClose: post}.
func recordedBody(enc []byte, post bool) *tallyv1.CostLineRecorded {
	b := make([]byte, 0, len(enc)+16)
	b = protowire.AppendTag(b, recordedNums[0], protowire.BytesType)
	b = protowire.AppendBytes(b, enc)
	b = appendBool(b, recordedNums[1], post)
	body := &tallyv1.CostLineRecorded{}
	body.ProtoReflect().SetUnknown(b)
	return body
}

// restatedBody is CostLineRestated{Line: the line encoded as enc, Delta,
// PreviousEventId, PostClose}.
func restatedBody(enc []byte, d *tallyv1.CostDelta, prev string, post bool) (*tallyv1.CostLineRestated, error) {
	delta, err := lineMarshal.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode a restatement's delta: %w", err)
	}
	b := make([]byte, 0, len(enc)+len(delta)+len(prev)+24)
	b = protowire.AppendTag(b, restatedNums[0], protowire.BytesType)
	b = protowire.AppendBytes(b, enc)
	b = protowire.AppendTag(b, restatedNums[1], protowire.BytesType)
	b = protowire.AppendBytes(b, delta)
	if prev != "" {
		b = protowire.AppendTag(b, restatedNums[2], protowire.BytesType)
		b = protowire.AppendString(b, prev)
	}
	b = appendBool(b, restatedNums[3], post)
	body := &tallyv1.CostLineRestated{}
	body.ProtoReflect().SetUnknown(b)
	return body, nil
}

// appendBool appends a proto3 bool field; false is not written.
func appendBool(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, 1)
}
