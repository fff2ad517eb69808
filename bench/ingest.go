package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/migrations"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/focusgen"
	"github.com/tally-ledger/tally/services/ingest"
	"github.com/tally-ledger/tally/storage"
)

// IngestConfig sizes the ingestion benchmark.
type IngestConfig struct {
	Rows   int
	Dir    string // scratch space for the generated file and the log
	Logger *slog.Logger
	// NATSServer is the path of a nats-server binary. When set, raw publish
	// and the ingest each run against a nats-server process of their own
	// (the same settings as the embedded one) instead of an in-process
	// server, so that the ingest's memory and the server's are measured
	// apart.
	NATSServer string
	// HeapProfiles, when set, is a directory for heap profiles (see meter).
	HeapProfiles string
}

// IngestReport is one ingest of a generated bill beside raw publish.
type IngestReport struct {
	Ingest     Rate           `json:"ingest"`
	RawDefault Rate           `json:"raw_publish_default_fsync"`
	Ratio      float64        `json:"ingest_vs_raw_default"`
	FileBytes  int64          `json:"file_bytes"`
	Timings    ingest.Timings `json:"timings_ns"`
	// PeakRSSMiB is Ingest.TallyPeakRSSMiB: the bench process's peak resident set during
	// the ingest alone (the ingest, the Go runtime and, unless the server is external,
	// nats-server's).
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// ServerPeakRSSMiB is Ingest.NATSPeakRSSMiB: the external nats-server process's peak
	// resident set during the ingest; 0 with the in-process server.
	ServerPeakRSSMiB float64 `json:"server_peak_rss_mib,omitempty"`
	// PeakHeapMiB and HeapLiveMiB are Ingest.GoHeapPeakMiB and GoHeapLiveMiB.
	PeakHeapMiB float64 `json:"peak_heap_mib"`
	HeapLiveMiB float64 `json:"peak_heap_live_mib"`
	// ExternalServer: NATSServer was used.
	ExternalServer bool `json:"external_server"`
}

// RunIngest generates a FOCUS 1.3 bill of cfg.Rows rows, ingests it end to
// end into JetStream (sync_interval: always; a nats-server process when
// cfg.NATSServer is set, else in this process) and a scratch PostgreSQL
// database, and measures raw publish of as many events in the same run.
func RunIngest(ctx context.Context, cfg IngestConfig) (IngestReport, error) {
	var rep IngestReport
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "tally-bench-ingest-")
		if err != nil {
			return rep, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	path := filepath.Join(dir, "bill.csv")
	f, err := os.Create(path)
	if err != nil {
		return rep, err
	}
	if _, err := focusgen.Generate(ctx, f, focusgen.Params{Seed: 1, Period: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Rows: cfg.Rows}); err != nil {
		f.Close()
		return rep, err
	}
	if err := f.Close(); err != nil {
		return rep, err
	}
	if st, err := os.Stat(path); err == nil {
		rep.FileBytes = st.Size()
	}

	rep.ExternalServer = cfg.NATSServer != ""
	h := harness{cfg.NATSServer, cfg.HeapProfiles}

	if rep.RawDefault, err = rawPublish(ctx, h, "ingest-raw-publish", filepath.Join(dir, "raw"), cfg.Rows, true); err != nil {
		return rep, fmt.Errorf("raw publish: %w", err)
	}
	cfg.Logger.Info("measured", "stage", rep.RawDefault.Name, "per_sec", int(rep.RawDefault.PerSec))

	pool, drop, err := scratchDB(ctx, cfg.Logger)
	if err != nil {
		return rep, err
	}
	defer drop()
	srv, nc, err := startLog(ctx, cfg.NATSServer, filepath.Join(dir, "nats"), false)
	if err != nil {
		return rep, err
	}
	defer srv.stop()
	defer nc.Close()
	// The event-id index on disk, as tally serve keeps it (DataDir/eventindex).
	store, err := eventstore.Open(ctx, nc, eventstore.Options{Logger: slog.New(slog.DiscardHandler), IndexDir: filepath.Join(dir, "eventindex")})
	if err != nil {
		return rep, err
	}
	defer func() { _ = store.Close() }()
	r, err := focus.Open(path)
	if err != nil {
		return rep, err
	}
	defer r.Close()
	m := h.measure("ingest", srv)
	start := time.Now()
	sum, err := ingest.Ingest(ctx, store, pool, "bench", r, ingest.Options{Logger: cfg.Logger})
	d := time.Since(start)
	if err := m.done(&rep.Ingest, err); err != nil {
		return rep, err
	}
	if sum.Appended != int64(cfg.Rows) {
		return rep, fmt.Errorf("ingest appended %d events for %d rows", sum.Appended, cfg.Rows)
	}
	rep.Ingest = Rate{Name: "ingest FOCUS CSV -> durable events", Events: cfg.Rows, Duration: d, PerSec: float64(cfg.Rows) / d.Seconds(),
		Memory: rep.Ingest.Memory}
	rep.Ratio = rep.Ingest.PerSec / rep.RawDefault.PerSec
	rep.Timings = sum.Timings
	rep.PeakRSSMiB, rep.ServerPeakRSSMiB = rep.Ingest.TallyPeakRSSMiB, rep.Ingest.NATSPeakRSSMiB
	rep.PeakHeapMiB, rep.HeapLiveMiB = rep.Ingest.GoHeapPeakMiB, rep.Ingest.GoHeapLiveMiB
	cfg.Logger.Info("measured", "stage", rep.Ingest.Name, "per_sec", int(rep.Ingest.PerSec), "timings", fmt.Sprintf("%+v", sum.Timings),
		"peak_rss_mib", int(rep.PeakRSSMiB), "server_peak_rss_mib", int(rep.ServerPeakRSSMiB),
		"peak_heap_mib", int(rep.PeakHeapMiB), "peak_heap_live_mib", int(rep.HeapLiveMiB))
	return rep, nil
}

// scratchDB creates a fresh migrated database on the PostgreSQL Tally would
// use (DATABASE_URL, else the local server) and returns a drop function.
func scratchDB(ctx context.Context, log *slog.Logger) (*pgxpool.Pool, func(), error) {
	server, stop, err := storage.Resolve(ctx, storage.Config{URL: os.Getenv("DATABASE_URL"), Logger: log})
	if err != nil {
		return nil, nil, err
	}
	name := fmt.Sprintf("tally_bench_%d", time.Now().UnixNano())
	url, err := storage.EnsureDatabase(ctx, server, name)
	if err != nil {
		_ = stop()
		return nil, nil, err
	}
	pool, err := storage.Open(ctx, url)
	if err != nil {
		_ = stop()
		return nil, nil, err
	}
	if err := migrations.Up(ctx, pool); err != nil {
		pool.Close()
		_ = stop()
		return nil, nil, err
	}
	drop := func() {
		pool.Close()
		dctx := context.WithoutCancel(ctx)
		if conn, err := pgx.Connect(dctx, server); err == nil {
			_, _ = conn.Exec(dctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			conn.Close(dctx)
		}
		_ = stop()
	}
	return pool, drop, nil
}
