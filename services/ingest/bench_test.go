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
func BenchmarkIngest(b *testing.B) {
	rows := 100_000
	if s := os.Getenv("TALLY_BENCH_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(b, err)
		rows = n
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
		sum, err := ingest.Ingest(ctxT(b), e.store, e.pool, "bench-"+strconv.Itoa(i), r, ingest.Options{})
		require.NoError(b, err)
		require.Equal(b, int64(rows), sum.Appended)
		b.Logf("timings: %+v", sum.Timings)
		r.Close()
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}
