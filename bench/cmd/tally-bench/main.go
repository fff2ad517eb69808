// Command tally-bench runs Tally's benchmarks against the raw limits of the
// same machine, prints one table and writes the figures as JSON.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/tally-ledger/tally/bench"
)

type report struct {
	Log    *bench.LogReport    `json:"log,omitempty"`
	Ingest *bench.IngestReport `json:"ingest,omitempty"`
	// Project holds the project stage and, when run, the rebuild stage.
	Project *bench.ProjectReport `json:"project,omitempty"`
	// Query and Export are measured on the ledger the project stage built.
	Query  *bench.QueryReport  `json:"query,omitempty"`
	Export *bench.ExportReport `json:"export,omitempty"`
}

func main() {
	stages := flag.String("stages", "log,ingest,project,query,export,rebuild", "comma-separated stages to run: log, ingest, project, query, export, rebuild (query and export use the ledger the project stage builds, which they run)")
	events := flag.Int("events", 1_000_000, "log stage: events to append through the durable path")
	batch := flag.Int("batch", 10_000, "log stage: events per Append call")
	raw := flag.Int("raw-events", 0, "log stage: events for raw publish with default fsync (default: -events)")
	rawSync := flag.Int("raw-sync-events", 50_000, "log stage: events for raw publish with sync_interval: always (a sample: it runs at a few thousand a second)")
	rows := flag.Int("rows", 1_000_000, "ingest, project and rebuild stages: rows of the generated FOCUS bill (one cost event each)")
	projectBatch := flag.Int("project-batch", 20_000, "project and rebuild stages: events per projection transaction (20000 is the runner's default)")
	queries := flag.Int("queries", 200, "query stage: measured runs of the query (after 10 warm-up runs)")
	out := flag.String("json", "", "write the figures as JSON to this file")
	flag.Parse()
	if *raw == 0 {
		*raw = *events
	}
	run := strings.Split(*stages, ",")
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var rep report
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\tevents\tseconds\tper second\traw limit /s\tratio\tmessages\t")
	if slices.Contains(run, "log") {
		r, err := bench.RunLog(ctx, bench.LogConfig{
			Events: *events, BatchSize: *batch, RawEvents: *raw, RawSyncEvents: min(*rawSync, *raw), Logger: logger,
		})
		if err != nil {
			fail(logger, "log benchmark", err)
		}
		rep.Log = &r
		for _, x := range []bench.Rate{r.RawDefault, r.RawSync} {
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t\t\t%d\t\n", x.Name, x.Events, x.Duration.Seconds(), x.PerSec, x.Messages)
		}
		d := r.Durable
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%.0f\t%.2fx\t%d\t\n", d.Name, d.Events, d.Duration.Seconds(), d.PerSec, r.RawDefault.PerSec, r.VsRawDefault, d.Messages)
	}
	if slices.Contains(run, "ingest") {
		r, err := bench.RunIngest(ctx, bench.IngestConfig{Rows: *rows, Logger: logger})
		if err != nil {
			fail(logger, "ingest benchmark", err)
		}
		rep.Ingest = &r
		x := r.Ingest
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%.0f\t%.2fx\t\t\n", x.Name, x.Events, x.Duration.Seconds(), x.PerSec, r.RawDefault.PerSec, r.Ratio)
	}
	peak := bench.PeakRSSMiB() // the project stage starts the peak over for each of its parts
	var then func(context.Context, bench.Ledger) error
	if slices.Contains(run, "query") || slices.Contains(run, "export") {
		then = func(ctx context.Context, l bench.Ledger) error {
			if slices.Contains(run, "query") {
				r, err := bench.RunQuery(ctx, l, bench.QueryConfig{Iterations: *queries, Logger: logger})
				if err != nil {
					return fmt.Errorf("query benchmark: %w", err)
				}
				rep.Query = &r
			}
			if slices.Contains(run, "export") {
				r, err := bench.RunExport(ctx, l, logger)
				if err != nil {
					return fmt.Errorf("export benchmark: %w", err)
				}
				rep.Export = &r
			}
			return nil
		}
	}
	if slices.Contains(run, "project") || slices.Contains(run, "rebuild") || then != nil {
		r, err := bench.RunProject(ctx, bench.ProjectConfig{Rows: *rows, BatchEvents: *projectBatch,
			Rebuild: slices.Contains(run, "rebuild"), Logger: logger, Then: then})
		if err != nil {
			fail(logger, "project benchmark", err)
		}
		rep.Project = &r
		x := r.RawCopy
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t\t\t\t\n", x.Name, x.Events, x.Duration.Seconds(), x.PerSec)
		x = r.Project
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%.0f\t%.2fx\t\t\n", x.Name, x.Events, x.Duration.Seconds(), x.PerSec, r.RawCopy.PerSec, r.Ratio)
		if x := r.Rebuild; x != nil {
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t\t\t\t\n", x.Name, x.Events, x.Duration.Seconds(), x.PerSec)
		}
	}
	if q := rep.Query; q != nil {
		// events: queries run; per second: queries a second, one at a time; ratio: raw p50 / query p50.
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%.0f\t%.2fx\t\t\n", q.Query.Name, q.Query.Iterations, q.Query.Duration.Seconds(), q.Query.PerSec, q.Raw.PerSec, q.Ratio)
	}
	if e := rep.Export; e != nil {
		x := e.RawCopy
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t\t\t\t\n", x.Name, x.Events, x.Duration.Seconds(), x.PerSec)
		x = e.Export
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%.0f\t%.2fx\t\t\n", x.Name, x.Events, x.Duration.Seconds(), x.PerSec, e.RawCopy.PerSec, e.Ratio)
	}
	tw.Flush()
	if rep.Log != nil {
		fmt.Printf("\nlog: durable append / raw publish (default fsync, not durable): %.2fx (target >= 1.0x); / raw publish (sync_interval: always): %.1fx\n",
			rep.Log.VsRawDefault, rep.Log.VsRawSync)
	}
	if rep.Ingest != nil {
		t := rep.Ingest.Timings
		fmt.Printf("ingest: %.2fx raw publish (target >= 0.5x); file %.0f MB; phases: stage %.1fs, diff %.1fs, append %.1fs, state %.1fs\n",
			rep.Ingest.Ratio, float64(rep.Ingest.FileBytes)/1e6, t.Stage.Seconds(), t.Diff.Seconds(), t.Append.Seconds(), t.Fold.Seconds())
		fmt.Printf("ingest peak RSS (target < 256 MiB): this process %.0f MiB (Go heap: %.0f MiB in use, %.0f MiB live at most), external nats-server %.0f MiB (0: in-process)\n",
			rep.Ingest.PeakRSSMiB, rep.Ingest.PeakHeapMiB, rep.Ingest.HeapLiveMiB, rep.Ingest.ServerPeakRSSMiB)
	}
	if p := rep.Project; p != nil {
		fmt.Printf("project: %.2fx raw CopyFrom of the same rows into the same table shape (target >= 0.5x); %d events per batch; peak RSS (each part its own) project %.0f MiB",
			p.Ratio, p.BatchEvents, p.Project.PeakRSSMiB)
		if p.Rebuild != nil {
			fmt.Printf(", rebuild %.0f MiB", p.Rebuild.PeakRSSMiB)
		}
		fmt.Printf(", raw copy %.0f MiB (its rows held in memory)\n", p.RawCopy.PeakRSSMiB)
		if p.Rebuild != nil {
			fmt.Printf("rebuild: %d events in %.1f s\n", p.Rebuild.Events, p.Rebuild.Duration.Seconds())
		}
	}
	if q := rep.Query; q != nil {
		fmt.Printf("query (a month by service, %d groups from %d rollup rows of %d lines; %d runs after 10 warm-up): p50 %.2f ms, p99 %.2f ms (target < %.0f ms), max %.2f ms; raw count(*) of the same rollup rows p50 %.2f ms, p99 %.2f ms; peak RSS %.0f MiB\n",
			q.Groups, q.RollupRows, q.LedgerLines, q.Query.Iterations, q.Query.P50, q.Query.P99, q.TargetP99Ms, q.Query.Max, q.Raw.P50, q.Raw.P99, q.PeakRSSMiB)
	}
	if e := rep.Export; e != nil {
		fmt.Printf("export: %.2fx raw CopyTo of the same ledger rows; %.0f MB of FOCUS CSV; peak RSS (each its own) export %.0f MiB (Go heap: %.0f MiB before, %.0f MiB in use, %.0f MiB live at most), raw copy %.0f MiB\n",
			e.Ratio, float64(e.Bytes)/1e6, e.Export.PeakRSSMiB, e.BaseHeapMiB, e.PeakHeapMiB, e.HeapLiveMiB, e.RawCopy.PeakRSSMiB)
	}
	fmt.Printf("peak RSS of this process (nats-server in-process; PostgreSQL is another process): %.0f MiB\n", max(peak, bench.PeakRSSMiB()))
	if *out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			fail(logger, "write json", err)
		}
	}
}

func fail(logger *slog.Logger, what string, err error) {
	logger.Error(what+" failed", "err", err)
	os.Exit(1)
}
