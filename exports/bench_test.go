package exports_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/exports"
	"github.com/tally-ledger/tally/services/focusgen"
)

// BenchmarkExportFOCUS exports a 25,000- and a 100,000-line ledger (generated bills) to io.Discard as CSV
// and as Parquet, and reports lines/s and the highest live heap seen while it ran (sampled
// every 5 ms, after a GC before the export): the export's memory does not grow with the
// ledger. Run: go test -run '^$' -bench ExportFOCUS -benchtime 3x ./exports/
func BenchmarkExportFOCUS(b *testing.B) {
	e := newEnv(b)
	for _, rows := range []int{25_000, 100_000} {
		tenant := fmt.Sprintf("bench-%d", rows)
		path := filepath.Join(b.TempDir(), tenant+".csv")
		f, err := os.Create(path)
		require.NoError(b, err)
		_, err = focusgen.Generate(ctxT(b), f, focusgen.Params{Seed: 3, Period: month("2025-09"), Rows: rows})
		require.NoError(b, err)
		require.NoError(b, f.Close())
		e.ingestFile(b, tenant, path, false)
		e.catchUp(b)
		rng := exports.Range{Tenant: tenant, From: month("2025-09"), To: month("2025-10")}
		b.Run(fmt.Sprintf("lines=%d", rows), func(b *testing.B) { benchExport(b, e, rng) })
	}
}

func benchExport(b *testing.B, e env, rng exports.Range) {
	for _, tc := range []struct {
		name  string
		write func() (int64, error)
	}{
		{"csv", func() (int64, error) { return exports.WriteFOCUSCSV(ctxT(b), io.Discard, e.source(), rng) }},
		{"parquet", func() (int64, error) { return exports.WriteFOCUSParquet(ctxT(b), io.Discard, e.source(), rng) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var lines int64
			var peak, base atomic.Uint64
			for b.Loop() {
				runtime.GC()
				var ms0 runtime.MemStats
				runtime.ReadMemStats(&ms0)
				base.Store(ms0.HeapAlloc)
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Go(func() {
					var ms runtime.MemStats
					for {
						runtime.ReadMemStats(&ms)
						if ms.HeapAlloc > peak.Load() {
							peak.Store(ms.HeapAlloc)
						}
						select {
						case <-stop:
							return
						case <-time.After(5 * time.Millisecond):
						}
					}
				})
				n, err := tc.write()
				close(stop)
				wg.Wait()
				require.NoError(b, err)
				lines += n
			}
			b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
			b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(base.Load())/(1<<20), "heap-before-MiB")
		})
	}
}
