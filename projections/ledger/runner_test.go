package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/storage/pgtest"
)

var errCrash = errors.New("injected crash between write and commit")

func historyCount(t testing.TB, e env, schema string) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+schema+".line_history").Scan(&n))
	return n
}

// TestCrashBetweenWriteAndCommit fails batch transactions after the read model was written
// and before the commit, at seeded random batches; each failure is a "crash": a new runner
// starts from the committed checkpoint. The final ledger is exact and nothing is doubled.
func TestCrashBetweenWriteAndCommit(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	want := bulk(t, e.store, "acme", 6000)
	rng := rand.New(rand.NewPCG(4, 4))
	crashes, calls := 0, 0
	for attempt := 0; ; attempt++ {
		require.Less(t, attempt, 200)
		r := e.runner(t, projections.Options{BatchEvents: 400, BeforeCommit: func(context.Context, string, uint64) error {
			calls++
			if rng.IntN(2) == 0 {
				crashes++
				return errCrash
			}
			return nil
		}})
		err := r.CatchUp(ctx)
		if err == nil {
			break
		}
		require.ErrorIs(t, err, errCrash)
	}
	require.Greater(t, crashes, 3)
	require.Equal(t, want, billedTotals(t, ledger.NewQueries(e.pool), "acme"))
	require.Equal(t, 6000, historyCount(t, e, "ledger"), "every event folded exactly once")
	dailyMatchesLines(t, e.pool, "ledger")
	t.Logf("%d injected crashes in %d batches", crashes, calls)
}

// TestReplayReproducesLedger folds the log into two empty databases with different batch
// sizes and requires the same bytes in every table.
func TestReplayReproducesLedger(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	bulk(t, e.store, "acme", 3000)
	bulk(t, e.store, "beta", 1000)
	appendEvents(t, e.store, "acme",
		restated("acme", line("acct-1", "acme-0000007", "RDS", 8, "99.99", "USD"), "99.91", recID("acme", "acct-1", "acme-0000007")),
		retracted("acme", "acct-1", "acme-0000008", "-0.09", "USD", recID("acme", "acct-1", "acme-0000008")),
		finalized("acme", "acct-1"))
	require.NoError(t, e.runner(t, projections.Options{BatchEvents: 700}).CatchUp(ctx))
	first := checksum(t, e.pool, "ledger")

	pool2, _ := pgtest.NewDB(t)
	r2, err := projections.NewRunner(pool2, e.store, projections.Options{BatchEvents: 5000}, ledger.New())
	require.NoError(t, err)
	require.NoError(t, r2.CatchUp(ctx))
	require.Equal(t, first, checksum(t, pool2, "ledger"))
	dailyMatchesLines(t, pool2, "ledger")
}

// TestLagAndWaitFor: lag is visible before the runner runs, in Status and the gauges, and
// WaitFor returns once the head is folded.
func TestLagAndWaitFor(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	reg := prometheus.NewRegistry()
	r := e.runner(t, projections.Options{Registerer: reg, PollInterval: 20 * time.Millisecond})
	require.NoError(t, r.CatchUp(ctx)) // sets the projection up
	bulk(t, e.store, "acme", 2500)
	head, err := e.store.LastSeq(ctx)
	require.NoError(t, err)

	st, err := r.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, head, st[0].Lag)
	require.Equal(t, float64(head), gauge(t, reg, "tally_projection_lag_events"))

	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	require.ErrorIs(t, r.WaitFor(wctx, ledger.Name, head), context.DeadlineExceeded, "not projected while nothing runs")
	cancel()

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- r.Run(runCtx) }()
	defer func() { stop(); <-done }()
	start := time.Now()
	require.NoError(t, r.WaitFor(ctx, ledger.Name, head))
	t.Logf("2500 events projected and seen through WaitFor in %s", time.Since(start))

	// Read-your-writes: append one more line and wait for exactly its sequence.
	appendEvents(t, e.store, "acme", recorded("acme", line("acct-1", "late", "EC2", 3, "1.23", "USD")))
	head2, err := e.store.LastSeq(ctx)
	require.NoError(t, err)
	require.NoError(t, projections.WaitFor(ctx, e.pool, ledger.Name, head2, 10*time.Millisecond))
	rows, err := ledger.NewQueries(e.pool).Cost(ctx, ledger.Query{Filter: ledger.Filter{Tenant: "acme", Dimensions: map[ledger.Dimension][]string{ledger.Service: {"EC2"}}}})
	require.NoError(t, err)
	require.NotEmpty(t, rows)

	st, err = r.Status(ctx)
	require.NoError(t, err)
	require.Zero(t, st[0].Lag)
	require.Equal(t, "live", st[0].State)
	require.Zero(t, gauge(t, reg, "tally_projection_lag_events"))
	require.Equal(t, float64(head2), gauge(t, reg, "tally_projection_checkpoint"))
}

func gauge(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestRebuildWhileServing rebuilds the ledger while the live runner runs and a goroutine
// queries totals without pause: every query succeeds and sees the exact totals, and after
// the swap every row equals what the live copy held.
func TestRebuildWhileServing(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	want := bulk(t, e.store, "acme", 20000)
	r := e.runner(t, projections.Options{PollInterval: 20 * time.Millisecond, BatchEvents: 2000})
	require.NoError(t, r.CatchUp(ctx))
	before := checksum(t, e.pool, "ledger")

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() { _ = r.Run(runCtx) })

	var queries, failures atomic.Int64
	var firstErr atomic.Value
	q := ledger.NewQueries(e.pool)
	wg.Go(func() {
		for runCtx.Err() == nil {
			totals, err := q.Totals(runCtx, ledger.Filter{Tenant: "acme"})
			if runCtx.Err() != nil {
				return
			}
			got := map[string]string{}
			for _, tt := range totals {
				got[tt.Currency] = tt.Billed.StringFixed(2)
			}
			if err == nil && fmt.Sprint(got) != fmt.Sprint(want) {
				err = fmt.Errorf("totals %v, want %v", got, want)
			}
			queries.Add(1)
			if err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}
	})
	var reports []projections.Progress
	require.NoError(t, r.Rebuild(ctx, ledger.Name, func(p projections.Progress) { reports = append(reports, p) }))
	time.Sleep(100 * time.Millisecond) // queries after the swap
	stop()
	wg.Wait()
	require.Zero(t, failures.Load(), "of %d queries; first error: %v", queries.Load(), firstErr.Load())
	require.Greater(t, queries.Load(), int64(10))
	require.NotEmpty(t, reports)
	last := reports[len(reports)-1]
	require.True(t, last.Swapped)
	require.EqualValues(t, 20000, last.Events)
	require.Equal(t, before, checksum(t, e.pool, "ledger"))
	var schemas int
	require.NoError(t, e.pool.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname IN ('ledger_next', 'ledger_old')").Scan(&schemas))
	require.Zero(t, schemas, "no copy left behind")
	t.Logf("%d queries during the rebuild; %.0f events/s", queries.Load(), last.EventsPerSec)

	// The live runner goes on folding after the swap.
	appendEvents(t, e.store, "acme", recorded("acme", line("acct-1", "after-swap", "EC2", 3, "1", "GBP")))
	head, err := e.store.LastSeq(ctx)
	require.NoError(t, err)
	r2 := e.runner(t, projections.Options{})
	require.NoError(t, r2.CatchUp(ctx))
	require.NoError(t, r2.WaitFor(ctx, ledger.Name, head))
	require.Equal(t, "1.00", billedTotals(t, q, "acme")["GBP"])
}

// bumped is the ledger with a newer version.
type bumped struct{ *ledger.Projection }

func (bumped) Version() int { return ledger.Version + 1 }

// TestVersionBumpRebuilds: a runner whose projection version differs from the stored one
// rebuilds on start, to the same rows.
func TestVersionBumpRebuilds(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	bulk(t, e.store, "acme", 1500)
	require.NoError(t, e.runner(t, projections.Options{}).CatchUp(ctx))
	before := checksum(t, e.pool, "ledger")

	r, err := projections.NewRunner(e.pool, e.store, projections.Options{}, bumped{ledger.New()})
	require.NoError(t, err)
	st, err := r.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, "stale", st[0].State)
	require.NoError(t, r.CatchUp(ctx))
	st, err = r.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, "live", st[0].State)
	require.Equal(t, ledger.Version+1, st[0].StoredVersion)
	require.Equal(t, before, checksum(t, e.pool, "ledger"))
}

// TestPartitionsTwoRunners: two runners share the log and the database, four partitions, at
// most two each: every partition is owned by one of them and every event folded exactly once.
func TestPartitionsTwoRunners(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	want := map[string]map[string]string{}
	total := 0
	for i := range 8 {
		tenant := fmt.Sprintf("tenant-%d", i)
		want[tenant] = bulk(t, e.store, tenant, 300+i*50)
		total += 300 + i*50
	}
	head, err := e.store.LastSeq(ctx)
	require.NoError(t, err)
	opts := projections.Options{Partitions: 4, MaxOwned: 2, PollInterval: 20 * time.Millisecond, BatchEvents: 200}
	a, b := e.runner(t, opts), e.runner(t, opts)
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() { _ = a.Run(runCtx) })
	wg.Go(func() { _ = b.Run(runCtx) })
	require.NoError(t, a.WaitFor(ctx, ledger.Name, head))

	var holders, locks int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(DISTINCT pid), count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&holders, &locks))
	require.Equal(t, 2, holders, "both runners own partitions")
	require.Equal(t, 4, locks, "each partition has one owner")

	q := ledger.NewQueries(e.pool)
	for tenant, w := range want {
		require.Equal(t, w, billedTotals(t, q, tenant), tenant)
	}
	require.Equal(t, total, historyCount(t, e, "ledger"), "every event folded exactly once")
	st, err := a.Status(ctx)
	require.NoError(t, err)
	require.Len(t, st[0].Partitions, 4)
	dailyMatchesLines(t, e.pool, "ledger")
}
