package ledger_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/bench/rawcopy"
	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// benchEvents is the number of cost events the benchmarks project: TALLY_BENCH_EVENTS, else
// 100,000 (the figure is 1,000,000: set it for the closing note).
func benchEvents() int {
	if n, err := strconv.Atoi(os.Getenv("TALLY_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// BenchmarkFold is the benchmark. Each iteration takes a fresh database and times,
// after a CHECKPOINT each:
//   - the yardstick: raw pgx CopyFrom of the lines rows the fold writes for these events,
//     prebuilt in memory (pgtype.Numeric amounts, [16]byte ids), into a lines table of the same
//     shape (a ledger schema set up by Setup: same columns, primary key, day index, monthly
//     partition), in one transaction (rawcopy.Lines);
//   - the fold: the runner folding the same events from a real log into an empty ledger
//     (Runner.CatchUp: read and decode the log, lines and line_history rows, daily rollup, one
//     transaction and checkpoint per batch of 10,000).
//
// ns/op is the fold alone; it reports the fold's events/s, the raw rows/s and their ratio
// (target: at least 0.5). For the 1M figure: TALLY_BENCH_EVENTS=1000000 -benchtime=1x.
//
//	go test -run '^$' -bench Fold -count 6 ./projections/ledger/
func BenchmarkFold(b *testing.B) {
	e := newEnv(b)
	n := benchEvents()
	bulk(b, e.store, "acme", n)
	ctx := context.Background()
	var raw rawcopy.Lines
	require.NoError(b, e.store.Read(ctx, eventstore.ReadFilter{}, raw.Add))
	require.Len(b, raw.Rows, n)
	b.ResetTimer()
	var fold, rawCopy time.Duration
	for range b.N {
		b.StopTimer()
		pool, _ := pgtest.NewDB(b)
		d, err := raw.CopyLines(ctx, pool, "ledger_raw")
		require.NoError(b, err)
		rawCopy += d
		r, err := projections.NewRunner(pool, e.store, projections.Options{BatchEvents: 10000}, ledger.New())
		require.NoError(b, err)
		require.NoError(b, r.Setup(ctx))
		rawcopy.Settle(ctx, pool)
		b.StartTimer()
		start := time.Now()
		require.NoError(b, r.CatchUp(ctx))
		fold += time.Since(start)
		b.StopTimer()
		require.Equal(b, n, historyCount(b, env{pool: pool}, "ledger"))
		pool.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/fold.Seconds(), "events/s")
	b.ReportMetric(float64(n*b.N)/rawCopy.Seconds(), "raw-rows/s")
	b.ReportMetric(rawCopy.Seconds()/fold.Seconds(), "fold/raw")
}

// BenchmarkReadLog is the log side alone: reading and decoding the same events.
func BenchmarkReadLog(b *testing.B) {
	e := newEnv(b)
	n := benchEvents()
	bulk(b, e.store, "acme", n)
	b.ResetTimer()
	for range b.N {
		got := 0
		require.NoError(b, e.store.Read(context.Background(), eventstore.ReadFilter{}, func(eventstore.Event) error { got++; return nil }))
		require.Equal(b, n, got)
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRebuild rebuilds a ledger of benchEvents recorded cost lines with no downtime
// (Runner.Rebuild: replay into ledger_next beside the live copy, then swap), per iteration
// (run with -benchtime=1x), and checks that the rebuilt copy has the same totals.
//
//	TALLY_BENCH_EVENTS=1000000 go test -run '^$' -bench Rebuild -benchtime=1x -timeout 30m ./projections/ledger/
func BenchmarkRebuild(b *testing.B) {
	e := newEnv(b)
	n := benchEvents()
	want := bulk(b, e.store, "acme", n)
	ctx := context.Background()
	r, err := projections.NewRunner(e.pool, e.store, projections.Options{BatchEvents: 10000}, ledger.New())
	require.NoError(b, err)
	require.NoError(b, r.CatchUp(ctx))
	b.ResetTimer()
	var total time.Duration
	var last projections.Progress
	for range b.N {
		start := time.Now()
		require.NoError(b, r.Rebuild(ctx, ledger.Name, func(p projections.Progress) { last = p }))
		total += time.Since(start)
	}
	b.StopTimer()
	require.True(b, last.Swapped)
	require.EqualValues(b, n, last.Events)
	require.Equal(b, want, billedTotals(b, ledger.NewQueries(e.pool), "acme"))
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
	b.ReportMetric(total.Seconds()/float64(b.N), "s/rebuild")
}
