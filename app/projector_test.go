package app_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections/ledger"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// TestServeProjectsTheLedger: with every role, serve folds appended cost
// events into the ledger, and a query sees them once the runner has caught up.
func TestServeProjectsTheLedger(t *testing.T) {
	r := start(t)
	ctx := t.Context()
	period := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	scope := &tallyv1.BillScope{Provider: "AWS", BillingAccountId: "111",
		BillingPeriodStart: timestamppb.New(period), BillingPeriodEnd: timestamppb.New(period.AddDate(0, 1, 0))}
	var events []*tallyv1.Envelope
	for i := range 50 {
		start := period.AddDate(0, 0, i%28)
		events = append(events, &tallyv1.Envelope{
			EventId:    eventstore.DeterministicID("acme", fmt.Sprintf("line-%d", i)),
			OccurredAt: timestamppb.New(start),
			Body: &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: &tallyv1.CostLine{
				LineKey: fmt.Sprintf("k%02d", i), Scope: scope, ServiceName: "Amazon EC2", ChargeCategory: "Usage",
				ChargePeriodStart: timestamppb.New(start), ChargePeriodEnd: timestamppb.New(start.Add(24 * time.Hour)),
				BilledCost: "1.10", BillingCurrency: "USD", RowCount: 1,
			}}},
		})
	}
	res, err := r.Store().Append(ctx, "acme", events)
	require.NoError(t, err)
	require.NotNil(t, r.Runner())
	require.NoError(t, r.Runner().WaitFor(ctx, "ledger", res.Head.StreamSeq))

	totals, err := ledger.NewQueries(r.Pool()).Totals(ctx, ledger.Filter{Tenant: "acme", From: period, To: period.AddDate(0, 1, 0)})
	require.NoError(t, err)
	require.Len(t, totals, 1)
	require.Equal(t, "USD", totals[0].Currency)
	require.Equal(t, "55", totals[0].Billed.String(), "50 lines of 1.10")
}
