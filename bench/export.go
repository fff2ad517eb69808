package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/tally-ledger/tally/exports"
)

// ExportReport is the FOCUS CSV export of the projected ledger beside a raw COPY of the same
// ledger rows.
type ExportReport struct {
	// Export: exports.WriteFOCUSCSV of the tenant's month to io.Discard (ledger lines merge-
	// joined with their events from the log, 65 FOCUS columns), as the gateway's ExportFocus
	// calls it; Events is the lines written.
	Export Rate `json:"export"`
	// RawCopy: COPY (SELECT * FROM ledger.lines WHERE tenant and month) TO STDOUT through
	// pgx's CopyTo into io.Discard: the database's own cost of handing over the same rows.
	RawCopy Rate    `json:"raw_copyto_lines"`
	Ratio   float64 `json:"export_vs_raw_copyto"`
	Bytes   int64   `json:"export_bytes"`
	// PeakHeapMiB and HeapLiveMiB are Export.GoHeapPeakMiB and GoHeapLiveMiB.
	PeakHeapMiB float64 `json:"export_peak_heap_mib"`
	HeapLiveMiB float64 `json:"export_peak_heap_live_mib"`
	// BaseHeapMiB is the Go heap in use just before the export, after a GC (the pool's, and
	// the nats-server's when in-process): the export's own is the peak above it.
	BaseHeapMiB float64 `json:"export_base_heap_mib"`
}

// RunExport times exports.WriteFOCUSCSV of l's tenant and month, then the raw COPY of the
// same ledger rows, each after a garbage collection and with its own peak RSS.
func RunExport(ctx context.Context, l Ledger, logger *slog.Logger) (ExportReport, error) {
	var rep ExportReport
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rng := exports.Range{Tenant: l.Tenant, From: l.Month, To: l.Month.AddDate(0, 1, 0)}

	w := &countWriter{}
	m := l.h.measure("export", l.srv)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rep.BaseHeapMiB = float64(ms.HeapAlloc) / (1 << 20)
	start := time.Now()
	n, err := exports.WriteFOCUSCSV(ctx, w, exports.Source{DB: l.Pool, Log: l.Store}, rng)
	d := time.Since(start)
	if err := m.done(&rep.Export, err); err != nil {
		return rep, fmt.Errorf("export: %w", err)
	}
	if n != int64(l.Lines) {
		return rep, fmt.Errorf("export wrote %d lines, the ledger holds %d", n, l.Lines)
	}
	rep.Bytes = w.n
	rep.Export = Rate{Name: "export FOCUS CSV of the month (io.Discard)", Events: int(n), Duration: d,
		PerSec: float64(n) / d.Seconds(), Memory: rep.Export.Memory}
	rep.PeakHeapMiB, rep.HeapLiveMiB = rep.Export.GoHeapPeakMiB, rep.Export.GoHeapLiveMiB
	logger.Info("measured", "stage", rep.Export.Name, "per_sec", int(rep.Export.PerSec), "bytes", w.n,
		"tally_peak_rss_mib", int(rep.Export.TallyPeakRSSMiB), "nats_peak_rss_mib", int(rep.Export.NATSPeakRSSMiB))

	// COPY takes no parameters: the tenant (validated by eventstore.ValidateTenant at ingest)
	// and the bounds go in as quoted literals.
	lit := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	sql := fmt.Sprintf(`COPY (SELECT * FROM ledger.lines WHERE tenant_id = %s AND billing_period_start >= %s AND billing_period_start < %s) TO STDOUT`,
		lit(rng.Tenant), lit(rng.From.Format(time.RFC3339)), lit(rng.To.Format(time.RFC3339)))
	conn, err := l.Pool.Acquire(ctx)
	if err != nil {
		return rep, err
	}
	defer conn.Release()
	m = l.h.measure("export-raw-copy", l.srv)
	start = time.Now()
	tag, err := conn.Conn().PgConn().CopyTo(ctx, io.Discard, sql)
	d = time.Since(start)
	if err := m.done(&rep.RawCopy, err); err != nil {
		return rep, fmt.Errorf("raw copy to: %w", err)
	}
	if tag.RowsAffected() != n {
		return rep, fmt.Errorf("raw copy to: %d rows, the export wrote %d", tag.RowsAffected(), n)
	}
	rep.RawCopy = Rate{Name: "raw pgx CopyTo of the same lines rows", Events: int(n), Duration: d,
		PerSec: float64(n) / d.Seconds(), Memory: rep.RawCopy.Memory}
	rep.Ratio = rep.Export.PerSec / rep.RawCopy.PerSec
	logger.Info("measured", "stage", rep.RawCopy.Name, "per_sec", int(rep.RawCopy.PerSec))
	return rep, nil
}

// countWriter discards what it is given and counts the bytes.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}
