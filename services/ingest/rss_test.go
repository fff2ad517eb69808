package ingest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/bench"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/focusgen"
	"github.com/tally-ledger/tally/services/ingest"
)

// BenchmarkIngestPeakRSS measures the peak resident set of an ingest of
// TALLY_BENCH_ROWS generated rows (default 200,000), in a child process that
// does nothing else: its VmHWM includes the in-process JetStream server and
// the Go runtime, not PostgreSQL. Compare two sizes to see whether it is flat:
//
//	TALLY_BENCH_ROWS=1000000 go test -run '^$' -bench IngestPeakRSS -benchtime 1x -timeout 30m ./services/ingest/
func BenchmarkIngestPeakRSS(b *testing.B) {
	rows := 200_000
	if n, err := strconv.Atoi(os.Getenv("TALLY_BENCH_ROWS")); err == nil && n > 0 {
		rows = n
	}
	path := filepath.Join(b.TempDir(), "bill.csv")
	f, err := os.Create(path)
	require.NoError(b, err)
	_, err = focusgen.Generate(context.Background(), f, focusgen.Params{Seed: 1, Period: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Rows: rows})
	require.NoError(b, err)
	require.NoError(b, f.Close())
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestIngestInChild$", "-test.v", "-test.timeout", "60m")
		cmd.Env = append(os.Environ(), rssChildEnv+"="+path)
		out, err := cmd.CombinedOutput()
		b.Logf("child:\n%s", out)
		require.NoError(b, err)
		var hwm, heap float64
		for _, line := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(line, "peak_rss_mib "); ok {
				_, err := fmt.Sscanf(v, "%f %f", &hwm, &heap)
				require.NoError(b, err)
			}
		}
		require.Positive(b, hwm, "the child reported its peak RSS")
		b.ReportMetric(hwm, "peak-RSS-MiB")
		b.ReportMetric(heap, "peak-heap-MiB")
	}
}

// rssChildEnv names the file the child process ingests.
const rssChildEnv = "TALLY_RSS_CHILD"

// TestIngestInChild is the child of BenchmarkIngestPeakRSS. Run on its own
// (no TALLY_RSS_CHILD) it ingests a small generated bill through the same
// path and checks every row was appended.
func TestIngestInChild(t *testing.T) {
	path := os.Getenv(rssChildEnv)
	if path == "" {
		path = filepath.Join(t.TempDir(), "small.csv")
		f, err := os.Create(path)
		require.NoError(t, err)
		_, err = focusgen.Generate(context.Background(), f, focusgen.Params{Seed: 4, Period: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Rows: 3000})
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	rssChild(t, path)
}

func rssChild(t *testing.T, path string) {
	e := newEnv(t)
	var peakHeap atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peakHeap.Load() {
				peakHeap.Store(ms.HeapInuse)
				if prof := os.Getenv("TALLY_RSS_HEAPPROF"); prof != "" {
					if f, err := os.Create(prof); err == nil {
						pprof.WriteHeapProfile(f) //nolint:errcheck // diagnostics
						f.Close()
					}
				}
			}
		}
	}()
	before := bench.PeakRSSMiB()
	r, err := focus.Open(path)
	require.NoError(t, err)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	start := time.Now()
	sum, err := ingest.Ingest(ctx, e.store, e.pool, "rss", r, ingest.Options{})
	require.NoError(t, err)
	require.Equal(t, sum.RowsRead, sum.Appended, "every generated row is a new line")
	close(stop)
	d := time.Since(start)
	after := bench.PeakRSSMiB()
	fmt.Printf("rows %d appended %d in %s (%.0f rows/s); VmHWM before ingest %.0f MiB, after %.0f MiB; peak Go heap in use %.0f MiB\ntimings %+v\n",
		sum.RowsRead, sum.Appended, d.Round(time.Millisecond), float64(sum.RowsRead)/d.Seconds(),
		before, after, float64(peakHeap.Load())/(1<<20), sum.Timings)
	fmt.Printf("peak_rss_mib %.0f %.0f\n", after, float64(peakHeap.Load())/(1<<20))
}
