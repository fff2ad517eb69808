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

	"github.com/tally-ledger/tally/bench/rawcopy"
	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/focusgen"
	"github.com/tally-ledger/tally/services/ingest"
)

// ProjectConfig sizes the projection benchmark.
type ProjectConfig struct {
	Rows int // of the generated FOCUS bill: one cost event each
	// BatchEvents per projection transaction; 0 is 20,000, the runner's default.
	BatchEvents int
	// Rebuild also times a zero-downtime rebuild of the projected ledger.
	Rebuild bool
	Dir     string // scratch space for the generated file and the log
	Logger  *slog.Logger
	// Then, when set, is called with the projected ledger once the project and rebuild
	// stages are measured (before the raw copy, the database and the log are dropped): the query and
	// export stages (RunQuery, RunExport) measure that ledger rather than building another.
	// Its error is RunProject's.
	Then func(ctx context.Context, l Ledger) error
	// NATSServer is the path of a nats-server binary: the log is then a nats-server process
	// of its own (the settings of the embedded one, sync_interval: always), as in production,
	// so that Tally's memory and the server's are measured apart. Empty: in this process.
	NATSServer string
	// SharedStore folds with the eventstore.Store that did the (untimed) ingest, holding the
	// id index of the events it appended, as one process with both roles would. By default
	// the runner reads through a Store and a connection of its own, as a projector-only
	// process (tally serve --roles=projector) does, and the ingest's is dropped first.
	SharedStore bool
	// HeapProfiles, when set, is a directory for heap profiles of each stage (see meter).
	HeapProfiles string
}

// Ledger is the ledger the project stage built: one tenant's generated bill of one month,
// projected into the live ledger of a scratch database, with the log it was folded from.
type Ledger struct {
	Pool   *pgxpool.Pool
	Store  *eventstore.Store
	Tenant string
	Month  time.Time // the bill's billing period (first instant, UTC)
	Lines  int       // ledger lines, one per cost event

	srv *logServer // the log's nats-server, whose memory the stages measure too
	h   harness
}

// ProjectReport is the ledger projection of an ingested bill beside raw CopyFrom of the same
// rows, and the rebuild of that ledger.
type ProjectReport struct {
	// Project: the runner folding every cost event of the log into an empty ledger
	// (Runner.CatchUp: read and decode the log, line rows, history rows, daily rollup, one
	// transaction and checkpoint per batch).
	Project Rate `json:"project"`
	// RawCopy: pgx CopyFrom of the same lines rows, prebuilt in memory, into a lines table of
	// the same shape (see package rawcopy), in one transaction.
	RawCopy Rate    `json:"raw_copyfrom_lines"`
	Ratio   float64 `json:"project_vs_raw_copyfrom"`
	// Rebuild: Runner.Rebuild of the projected ledger (replay into ledger_next beside the live
	// copy, swap), when asked for.
	Rebuild     *Rate `json:"rebuild,omitempty"`
	BatchEvents int   `json:"batch_events"`
	// SharedStore: the runner read through the ingest's Store (ProjectConfig.SharedStore).
	SharedStore bool `json:"shared_store"`
}

// RunProject generates a FOCUS 1.3 bill of cfg.Rows rows and ingests it (not timed), then
// times, in this order: the ledger projection of the log into an empty ledger, its rebuild
// (if asked), cfg.Then's stages, and raw CopyFrom of the same lines rows into a table of the
// same shape. Each
// measured stage starts after a CHECKPOINT and a garbage collection, and its memory is its
// own (peaks reset at its start; the raw copy's includes its prebuilt rows). The raw rows are
// built after the projection and rebuild, so that their memory is not charged to them.
func RunProject(ctx context.Context, cfg ProjectConfig) (ProjectReport, error) {
	rep := ProjectReport{BatchEvents: cfg.BatchEvents}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if rep.BatchEvents <= 0 {
		rep.BatchEvents = 10_000
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "tally-bench-project-")
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
	if _, err := focusgen.Generate(ctx, f, focusgen.Params{Seed: 2, Period: projectMonth, Rows: cfg.Rows}); err != nil {
		f.Close()
		return rep, err
	}
	if err := f.Close(); err != nil {
		return rep, err
	}
	pool, drop, err := scratchDB(ctx, cfg.Logger)
	if err != nil {
		return rep, err
	}
	defer drop()
	h := harness{cfg.NATSServer, cfg.HeapProfiles}
	srv, nc, err := startLog(ctx, cfg.NATSServer, filepath.Join(dir, "nats"), false)
	if err != nil {
		return rep, err
	}
	defer srv.stop()
	defer nc.Close()
	indexOpts := eventstore.Options{Logger: slog.New(slog.DiscardHandler), IndexDir: filepath.Join(dir, "eventindex")}
	store, err := eventstore.Open(ctx, nc, indexOpts)
	if err != nil {
		return rep, err
	}
	// store is the ingest's Store, then (unless shared) the runner's own: whichever it is
	// at the end is closed (and its index flushed) here.
	defer func() { _ = store.Close() }()
	r, err := focus.Open(path)
	if err != nil {
		return rep, err
	}
	sum, err := ingest.Ingest(ctx, store, pool, projectTenant, r, ingest.Options{Logger: slog.New(slog.DiscardHandler)})
	r.Close()
	if err != nil {
		return rep, fmt.Errorf("ingest the bill to project: %w", err)
	}
	events := int(sum.Appended)
	cfg.Logger.Info("ingested the bill to project", "events", events)

	rep.SharedStore = cfg.SharedStore
	if !cfg.SharedStore {
		// The ingest's Store is not used from here: closed with its connection, a GC frees
		// both.
		_ = store.Close()
		nc.Close()
		if nc, err = srv.connect(); err != nil {
			return rep, err
		}
		defer nc.Close()
		if store, err = eventstore.Open(ctx, nc, indexOpts); err != nil {
			return rep, err
		}
	}
	runner, err := projections.NewRunner(pool, store, projections.Options{BatchEvents: rep.BatchEvents,
		Logger: slog.New(slog.DiscardHandler)}, ledger.New())
	if err != nil {
		return rep, err
	}
	if err := runner.Setup(ctx); err != nil {
		return rep, err
	}
	rawcopy.Settle(ctx, pool)
	m := h.measure("project", srv)
	start := time.Now()
	err = runner.CatchUp(ctx)
	d := time.Since(start)
	if err := m.done(&rep.Project, err); err != nil {
		return rep, fmt.Errorf("project: %w", err)
	}
	if err := checkLedger(ctx, pool, "ledger", events); err != nil {
		return rep, err
	}
	rep.Project = Rate{Name: "project cost events -> ledger (runner)", Events: events, Duration: d,
		PerSec: float64(events) / d.Seconds(), Memory: rep.Project.Memory}
	cfg.Logger.Info("measured", "stage", rep.Project.Name, "per_sec", int(rep.Project.PerSec),
		"tally_peak_rss_mib", int(rep.Project.TallyPeakRSSMiB), "nats_peak_rss_mib", int(rep.Project.NATSPeakRSSMiB))

	if cfg.Rebuild {
		rawcopy.Settle(ctx, pool)
		var last projections.Progress
		var rb Rate
		m := h.measure("rebuild", srv)
		start := time.Now()
		err := runner.Rebuild(ctx, ledger.Name, func(p projections.Progress) { last = p })
		d := time.Since(start)
		if err := m.done(&rb, err); err != nil {
			return rep, fmt.Errorf("rebuild: %w", err)
		}
		if !last.Swapped || last.Events != int64(events) {
			return rep, fmt.Errorf("rebuild folded %d events (swapped %v), want %d", last.Events, last.Swapped, events)
		}
		if err := checkLedger(ctx, pool, "ledger", events); err != nil {
			return rep, err
		}
		rep.Rebuild = &Rate{Name: "rebuild ledger (replay beside live, swap)", Events: events, Duration: d,
			PerSec: float64(events) / d.Seconds(), Memory: rb.Memory}
		cfg.Logger.Info("measured", "stage", rep.Rebuild.Name, "seconds", d.Seconds(),
			"tally_peak_rss_mib", int(rep.Rebuild.TallyPeakRSSMiB), "nats_peak_rss_mib", int(rep.Rebuild.NATSPeakRSSMiB))
	}

	if cfg.Then != nil {
		if err := cfg.Then(ctx, Ledger{Pool: pool, Store: store, Tenant: projectTenant, Month: projectMonth, Lines: events,
			srv: srv, h: h}); err != nil {
			return rep, err
		}
	}
	// The raw copy's memory includes its rows, read from the log and built before its clock
	// starts: they are the raw side's, not Tally's. It runs last, so that what the process
	// keeps of its 3+ GiB heap for 1M rows is charged to no stage of Tally's (run before them,
	// it added 150-250 MiB to the query's and the export's peak RSS).
	m = h.measure("raw-copy", srv)
	var raw rawcopy.Lines
	err = store.Read(ctx, eventstore.ReadFilter{Kinds: ledger.New().Kinds()}, raw.Add)
	if err == nil && len(raw.Rows) != events {
		err = fmt.Errorf("log holds %d recorded lines, ingest appended %d", len(raw.Rows), events)
	}
	if err == nil {
		d, err = raw.CopyLines(ctx, pool, "ledger_raw")
	}
	if err := m.done(&rep.RawCopy, err); err != nil {
		return rep, err
	}
	rep.RawCopy = Rate{Name: "raw pgx CopyFrom of the same lines rows", Events: events, Duration: d,
		PerSec: float64(events) / d.Seconds(), Memory: rep.RawCopy.Memory}
	rep.Ratio = rep.Project.PerSec / rep.RawCopy.PerSec
	cfg.Logger.Info("measured", "stage", rep.RawCopy.Name, "per_sec", int(rep.RawCopy.PerSec))
	return rep, nil
}

// The tenant and billing month of the project stage's generated bill.
const projectTenant = "bench"

var projectMonth = time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)

// checkLedger checks that schema's ledger holds one line and one history row per event.
func checkLedger(ctx context.Context, pool *pgxpool.Pool, schema string, events int) error {
	s := pgx.Identifier{schema}.Sanitize()
	var lines, history int
	if err := pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM "+s+".lines), (SELECT count(*) FROM "+s+".line_history)").Scan(&lines, &history); err != nil {
		return err
	}
	if lines != events || history != events {
		return fmt.Errorf("%s holds %d lines and %d history rows for %d events", schema, lines, history, events)
	}
	return nil
}
