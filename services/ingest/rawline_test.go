package ingest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

func sampleLine() *tallyv1.CostLine {
	start := time.Date(2026, 10, 3, 0, 0, 0, 0, time.UTC)
	return &tallyv1.CostLine{
		LineKey: "ab12",
		Scope: &tallyv1.BillScope{Provider: "AWS", BillingAccountId: "123",
			BillingPeriodStart: timestamppb.New(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)),
			BillingPeriodEnd:   timestamppb.New(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))},
		ChargePeriodStart: timestamppb.New(start),
		ChargePeriodEnd:   timestamppb.New(start.Add(time.Hour)),
		ServiceName:       "Amazon EC2",
		BilledCost:        "12.3456",
		EffectiveCost:     "-0.5",
		ListCost:          "13",
		ConsumedQuantity:  "24",
		PricingQuantity:   "1e-7",
		BillingCurrency:   "EUR",
		Tags:              []*tallyv1.KeyValue{{Key: "team", Value: "ünïcode"}},
		RowCount:          1,
	}
}

// TestRawBodies: an event body built from a line's bytes marshals to
// exactly the bytes of the decoded body, and decodes back to it.
func TestRawBodies(t *testing.T) {
	line := sampleLine()
	enc, err := lineBytes(line)
	require.NoError(t, err)
	d := &tallyv1.CostDelta{BilledCost: "1.5", EffectiveCost: "-2", BillingCurrency: "EUR"}
	restated := func(prev string, post bool) proto.Message {
		b, err := restatedBody(enc, d, prev, post)
		require.NoError(t, err)
		return b
	}
	for _, tc := range []struct {
		name string
		raw  proto.Message
		want proto.Message
	}{
		{"recorded", recordedBody(enc, false), &tallyv1.CostLineRecorded{Line: line}},
		{"recorded post close", recordedBody(enc, true), &tallyv1.CostLineRecorded{Line: line, PostClose: true}},
		{"restated", restated("0190a0b0-0000-7000-8000-000000000001", false),
			&tallyv1.CostLineRestated{Line: line, Delta: d, PreviousEventId: "0190a0b0-0000-7000-8000-000000000001"}},
		{"restated of a retracted line, post close", restated("", true),
			&tallyv1.CostLineRestated{Line: line, Delta: d, PostClose: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lineMarshal.Marshal(tc.raw)
			require.NoError(t, err)
			want, err := lineMarshal.Marshal(tc.want)
			require.NoError(t, err)
			require.Equal(t, want, got)
			// In an envelope too, as the log stores it.
			env := func(m proto.Message) *tallyv1.Envelope {
				e := &tallyv1.Envelope{TenantId: "acme", EventId: "x"}
				switch b := m.(type) {
				case *tallyv1.CostLineRecorded:
					e.Body = &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: b}
				case *tallyv1.CostLineRestated:
					e.Body = &tallyv1.Envelope_CostLineRestated{CostLineRestated: b}
				}
				return e
			}
			got, err = proto.Marshal(env(tc.raw))
			require.NoError(t, err)
			want, err = proto.Marshal(env(tc.want))
			require.NoError(t, err)
			require.Equal(t, want, got)
			dec := &tallyv1.Envelope{}
			require.NoError(t, proto.Unmarshal(got, dec))
			require.True(t, proto.Equal(env(tc.want), dec), "decodes as the body it stands for")
			require.Empty(t, dec.ProtoReflect().GetUnknown())
		})
	}
}

// TestScanLine reads the fields the diff needs from a line's bytes, as a
// full decode would.
func TestScanLine(t *testing.T) {
	line := sampleLine()
	line.ContractedCost = ""
	enc, err := lineBytes(line)
	require.NoError(t, err)
	f, err := scanLine(enc)
	require.NoError(t, err)
	require.Equal(t, "EUR", f.currency)
	require.True(t, proto.Equal(line.GetChargePeriodStart(), f.chargeStart))
	require.Equal(t, lineAmounts(line), f.amounts)
	require.Equal(t, "", f.amounts[3], "an absent amount stays absent")

	_, err = scanLine(enc[:len(enc)-1])
	require.ErrorContains(t, err, "decode a spilled line")
}
