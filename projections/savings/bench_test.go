package savings_test

import (
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections/savings"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// BenchmarkFold folds a month of daily lines of 2,000 resources (60,000 line events), 200 of
// which have an action, then the bill's finalization, in batches of 5,000 as the runner cuts
// them, with Apply in a transaction per batch. It reports line events per second.
func BenchmarkFold(b *testing.B) {
	e := newEnv(b)
	const resources, actions = 2000, 200
	var events []eventstore.Event
	ev := func(env *tallyv1.Envelope) {
		env.TenantId, env.EventId, env.TenantSeq = "acme", uuid.NewString(), uint64(len(events)+1)
		events = append(events, eventstore.Event{StreamSeq: uint64(len(events) + 1), Envelope: env})
	}
	for a := range actions {
		ev(remediation(&tallyv1.RemediationExecuted{ActionId: fmt.Sprint("act-", a), BillingAccountId: account,
			ResourceId: fmt.Sprint("r-", a*10), Kind: tallyv1.RemediationKind_REMEDIATION_KIND_STOP,
			ExecutedAt: timestamppb.New(day(10 + a%10))}))
	}
	for d := 1; d <= 30; d++ {
		for r := range resources {
			ev(recorded(costLine(sep, fmt.Sprint("r-", r), day(d), "1.25", fmt.Sprintf("r-%d-%d", r, d))))
		}
	}
	ev(finalized(sep))
	b.ResetTimer()
	for i := range b.N {
		foldDirect(b, e.pool, fmt.Sprint("bench_", i), events, 5000)
	}
	b.ReportMetric(float64(len(events)*b.N)/b.Elapsed().Seconds(), "events/s")
	b.StopTimer()
	// Every resource costs 1.25 every day: each action is measured with a zero saving.
	a, _, err := savings.NewQueriesIn(e.pool, "bench_0").Get(ctxT(b), "acme", "act-0")
	require.NoError(b, err)
	require.Equal(b, savings.StatusMeasured, a.Status)
	require.Equal(b, "0", a.RealizedDaily)
}
