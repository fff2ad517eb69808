package ingest_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/focusgen"
	"github.com/tally-ledger/tally/services/ingest"
)

// BenchmarkIngest ingests one generated FOCUS 1.3 bill of
// TALLY_BENCH_ROWS rows (default 100,000) end to end: file to durable
// events, with the ingest state updated. One op is one row; run with
// -benchtime=1x. `make bench` puts the figure beside raw JetStream publish.
// TALLY_BENCH_BATCH sets Options.BatchEvents (default: the ingest's).
func BenchmarkIngest(b *testing.B) {
	rows := 100_000
	if s := os.Getenv("TALLY_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(b, err)
		rows = n
	}
	var opts ingest.Options
	if s := os.Getenv("TALLY_BENCH_BATCH"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(b, err)
		opts.BatchEvents = n
	}
	path := filepath.Join(b.TempDir(), "bill.csv")
	f, err := os.Create(path)
	require.NoError(b, err)
	_, err = focusgen.Generate(context.Background(), f, focusgen.Params{Seed: 1, Period: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Rows: rows})
	require.NoError(b, err)
	require.NoError(b, f.Close())

	e := newEnv(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := focus.Open(path)
		require.NoError(b, err)
		sum, err := ingest.Ingest(ctxT(b), e.store, e.pool, "bench-"+strconv.Itoa(i), r, opts)
		require.NoError(b, err)
		require.Equal(b, int64(rows), sum.Appended)
		b.Logf("timings: %+v", sum.Timings)
		r.Close()
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkIngestRevision ingests a generated bill of TALLY_BENCH_ROWS rows
// (default 100,000), untimed, and then, timed, its revision: 10% of the
// lines restated, 5% dropped and 5% added. One op is one revised ingest;
// run with -benchtime=1x. It reports the changes appended per second and
// the log messages (one fsync each) they took.
func BenchmarkIngestRevision(b *testing.B) {
	rows := 100_000
	if s := os.Getenv("TALLY_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(b, err)
		rows = n
	}
	dir := b.TempDir()
	p := focusgen.Params{Seed: 1, Period: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Rows: rows}
	orig, revised := filepath.Join(dir, "bill.csv"), filepath.Join(dir, "bill-revised.csv")
	f, err := os.Create(orig)
	require.NoError(b, err)
	_, err = focusgen.Generate(context.Background(), f, p)
	require.NoError(b, err)
	require.NoError(b, f.Close())
	f, err = os.Create(revised)
	require.NoError(b, err)
	diff, err := focusgen.GenerateRevision(context.Background(), f, p, focusgen.Revision{Seed: 2, Restated: 0.10, Dropped: 0.05, Added: 0.05})
	require.NoError(b, err)
	require.NoError(b, f.Close())
	changes := int64(diff.Restated + diff.Dropped + diff.Added)

	e := newEnv(b)
	ingestPath := func(tenant, path string) ingest.Summary {
		r, err := focus.Open(path)
		require.NoError(b, err)
		defer r.Close()
		sum, err := ingest.Ingest(ctxT(b), e.store, e.pool, tenant, r, ingest.Options{})
		require.NoError(b, err)
		return sum
	}
	var messages int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tenant := "bench-rev-" + strconv.Itoa(i)
		b.StopTimer()
		ingestPath(tenant, orig)
		b.StartTimer()
		sum := ingestPath(tenant, revised)
		require.Equal(b, changes, sum.Appended)
		messages += sum.Messages
		b.Logf("%d changes in %d log messages, %s; timings: %+v", sum.Appended, sum.Messages, sum.Duration.Round(time.Millisecond), sum.Timings)
	}
	b.ReportMetric(float64(changes*int64(b.N))/b.Elapsed().Seconds(), "changes/s")
	b.ReportMetric(float64(messages)/float64(b.N), "messages/op")
}
