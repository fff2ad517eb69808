package ledger_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// TestFold appends recorded, restated, retracted and finalized events to a real log, folds
// them, and checks exact totals, finality, history and the rollup, batch size by batch size.
func TestFold(t *testing.T) {
	for _, batch := range []int{1, 3, 1000} {
		t.Run(fmt.Sprint("batch ", batch), func(t *testing.T) {
			e := newEnv(t)
			ctx := t.Context()
			a1 := line("acct-1", "k1", "EC2", 1, "10.10", "USD")
			a2 := line("acct-1", "k2", "S3", 2, "0.000001", "USD")
			a3 := line("acct-1", "k3", "EC2", 2, "5", "EUR")
			b1 := line("acct-2", "k1", "RDS", 3, "7.25", "USD")
			appendEvents(t, e.store, "acme", recorded("acme", a1), recorded("acme", a2), recorded("acme", a3), recorded("acme", b1))
			appendEvents(t, e.store, "other", recorded("other", line("acct-9", "k1", "EC2", 1, "1000", "USD")))
			// A revised bill: a1 up by 0.90, a3 retracted.
			a1r := line("acct-1", "k1", "EC2", 1, "11.00", "USD")
			appendEvents(t, e.store, "acme",
				restated("acme", a1r, "0.90", recID("acme", "acct-1", "k1")),
				retracted("acme", "acct-1", "k3", "-5", "EUR", recID("acme", "acct-1", "k3")))
			appendEvents(t, e.store, "acme", finalized("acme", "acct-1"))
			// After finalization: a post-close restatement of a2.
			a2r := line("acct-1", "k2", "S3", 2, "0.000003", "USD")
			appendEvents(t, e.store, "acme", restated("acme", a2r, "0.000002", recID("acme", "acct-1", "k2")))

			r := e.runner(t, projections.Options{BatchEvents: batch})
			require.NoError(t, r.CatchUp(ctx))

			q := ledger.NewQueries(e.pool)
			totals, err := q.Totals(ctx, ledger.Filter{Tenant: "acme"})
			require.NoError(t, err)
			require.Len(t, totals, 1, "EUR line retracted")
			require.Equal(t, "USD", totals[0].Currency)
			require.Equal(t, "18.250003", totals[0].Billed.String())
			require.Equal(t, "11.000003", totals[0].FinalBilled.String())
			require.Equal(t, "7.25", totals[0].PreliminaryBilled.String())
			require.Equal(t, int64(3), totals[0].Lines)
			require.Equal(t, int64(2), totals[0].FinalLines)

			rows, err := q.Cost(ctx, ledger.Query{Filter: ledger.Filter{Tenant: "acme"}, GroupBy: []ledger.Dimension{ledger.Service}, Granularity: ledger.ByMonth})
			require.NoError(t, err)
			got := map[string]string{}
			for _, row := range rows {
				require.Equal(t, period, row.Period)
				got[row.Groups[0]] = row.Billed.String()
			}
			require.Equal(t, map[string]string{"EC2": "11", "S3": "0.000003", "RDS": "7.25"}, got)

			byTag, err := q.Cost(ctx, ledger.Query{Filter: ledger.Filter{Tenant: "acme", Tags: map[string][]string{"team": {"team-E"}}}, GroupByTags: []string{"team"}})
			require.NoError(t, err)
			require.Len(t, byTag, 1)
			require.Equal(t, []string{"team-E"}, byTag[0].Groups)
			require.Equal(t, "11", byTag[0].Billed.String())

			hist, err := q.History(ctx, "acme", "k3")
			require.NoError(t, err)
			require.Len(t, hist, 2)
			require.Equal(t, []string{"recorded", "retracted"}, []string{hist[0].Op, hist[1].Op})
			require.Equal(t, "-5", hist[1].BilledDelta.String())

			other := billedTotals(t, q, "other")
			require.Equal(t, map[string]string{"USD": "1000.00"}, other, "tenants never mix")
			dailyMatchesLines(t, e.pool, ledger.Name)
		})
	}
}

// recordedAgain records l again, without a retraction in between (a re-sent bill line);
// version tells its event from the first.
func recordedAgain(tenant string, l *tallyv1.CostLine, version string) *tallyv1.Envelope {
	e := recorded(tenant, l)
	e.IdempotencyKey += "/" + version
	e.EventId = eventstore.DeterministicID(tenant, e.IdempotencyKey)
	return e
}

// TestLineEventsOfOneLine folds lines recorded again (no retraction in between), and lines
// recorded then restated, retracted or recorded again within one log message, cut into
// batches of every message and of the whole log. Across batches, the fast path's COPY finds a
// "new" line in the ledger already and the batch's new lines are folded the general way,
// staged from their COPY rows; within one, a recorded line's fresh row is dropped (and taken
// out of the daily sums) for the later event of its line. Every cut gives the same bytes and
// the expected lines.
func TestLineEventsOfOneLine(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	appendEvents(t, e.store, "acme",
		recorded("acme", line("acct-1", "k1", "EC2", 1, "10.00", "USD")),
		recorded("acme", line("acct-1", "k2", "S3", 1, "2.5", "USD")),
		recorded("acme", line("acct-2", "k3", "RDS", 2, "7", "EUR")))
	appendEvents(t, e.store, "acme",
		recordedAgain("acme", line("acct-1", "k1", "EC2", 1, "12.50", "USD"), "v2"), // k1 is in the ledger: COPY fails
		recorded("acme", line("acct-1", "k4", "EC2", 3, "1.25", "USD")),
		restated("acme", line("acct-1", "k2", "S3", 1, "3.5", "USD"), "1", recID("acme", "acct-1", "k2")),
		recorded("acme", line("acct-1", "k5", "Lambda", 3, "0.75", "USD")),
		retracted("acme", "acct-1", "k5", "-0.75", "USD", recID("acme", "acct-1", "k5")))
	appendEvents(t, e.store, "acme",
		recorded("acme", line("acct-2", "k6", "RDS", 4, "0.001", "EUR")),
		recordedAgain("acme", line("acct-2", "k6", "RDS", 4, "0.002", "EUR"), "v2"),
		recorded("acme", line("acct-2", "k7", "RDS", 4, "5", "EUR")),
		finalized("acme", "acct-2"),
		recordedAgain("acme", line("acct-2", "k3", "RDS", 2, "8", "EUR"), "v2"))

	var sums []string
	for _, batch := range []int{1, 1000} {
		pool, _ := pgtest.NewDB(t)
		r, err := projections.NewRunner(pool, e.store, projections.Options{BatchEvents: batch}, ledger.New())
		require.NoError(t, err)
		require.NoError(t, r.CatchUp(ctx))
		q := ledger.NewQueries(pool)
		require.Equal(t, map[string]string{"USD": "17.25", "EUR": "13.00"}, billedTotals(t, q, "acme"), "batch %d", batch)
		totals, err := q.Totals(ctx, ledger.Filter{Tenant: "acme"})
		require.NoError(t, err)
		lines := map[string]int64{}
		for _, tt := range totals {
			lines[tt.Currency] = tt.Lines
		}
		require.Equal(t, map[string]int64{"USD": 3, "EUR": 3}, lines, "batch %d: k5 retracted", batch)
		var history int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM ledger.line_history").Scan(&history))
		require.Equal(t, 12, history, "batch %d: one history row per line event", batch)
		dailyMatchesLines(t, pool, ledger.Name)
		sums = append(sums, checksum(t, pool, ledger.Name))
	}
	require.Equal(t, sums[0], sums[1], "same bytes however the log is cut")
}

var (
	_ projections.Projection    = (*ledger.Projection)(nil)
	_ projections.Preparer      = (*ledger.Projection)(nil)
	_ projections.BatchPreparer = (*ledger.Projection)(nil)
)
