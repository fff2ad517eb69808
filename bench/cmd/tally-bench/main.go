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
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/tally-ledger/tally/bench"
)

type report struct {
	// NATSServer is the nats-server binary every stage's log ran in, as a process of its
	// own; empty: in the bench process.
	NATSServer string              `json:"nats_server,omitempty"`
	Log        *bench.LogReport    `json:"log,omitempty"`
	Ingest     *bench.IngestReport `json:"ingest,omitempty"`
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
	projectBatch := flag.Int("project-batch", 10_000, "project and rebuild stages: events per projection transaction (10000 is the runner's default)")
	queries := flag.Int("queries", 200, "query stage: measured runs of the query (after 10 warm-up runs)")
	out := flag.String("json", "", "write the figures as JSON to this file")
	natsServer := flag.String("nats-server", os.Getenv("TALLY_BENCH_NATS_SERVER"), "nats-server binary: every stage's log runs in a nats-server process of its own, as in production, and its memory is measured apart from Tally's (default $TALLY_BENCH_NATS_SERVER; empty: in this process)")
	heapProfiles := flag.String("memprofile", "", "directory for heap profiles of this process at each stage's start, peak of live heap and end (<stage>-start|peak|end.pb.gz)")
	sharedStore := flag.Bool("shared-store", false, "project stage: fold with the eventstore.Store that did the untimed ingest (and holds its id index), as one process with both roles would; default: a Store of its own, as a projector-only process")
	flag.Parse()
	if *raw == 0 {
		*raw = *events
	}
	run := strings.Split(*stages, ",")
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *natsServer != "" {
		p, err := filepath.Abs(*natsServer)
		if err != nil {
			fail(logger, "nats-server path", err)
		}
		if _, err := os.Stat(p); err != nil {
			fail(logger, "nats-server binary", err)
		}
		*natsServer = p
	}
	if *heapProfiles != "" {
		if err := os.MkdirAll(*heapProfiles, 0o755); err != nil {
			fail(logger, "heap profile directory", err)
		}
	}

	rep := report{NATSServer: *natsServer}
	external := *natsServer != ""
	if external {
		fmt.Printf("log: a nats-server process of its own for each stage (%s), as in production; \"tally RSS\" is this process, \"nats RSS\" the server's\n\n", *natsServer)
	} else {
		fmt.Print("log: nats-server in this process (no -nats-server): \"tally RSS\" includes the server's\n\n")
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\tevents\tseconds\tper second\traw limit /s\tratio\tmessages\ttally RSS MiB\tnats RSS MiB\t")
	// row prints one measured stage; limit and ratio are left empty when 0.
	row := func(x bench.Rate, limit, ratio float64, msgs bool) {
		cell := func(ok bool, format string, v any) string {
			if !ok {
				return ""
			}
			return fmt.Sprintf(format, v)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t\n", x.Name, x.Events, x.Duration.Seconds(), x.PerSec,
			cell(limit > 0, "%.0f", limit), cell(ratio > 0, "%.2fx", ratio), cell(msgs, "%d", x.Messages), rss(x.Memory, external))
	}
	if slices.Contains(run, "log") {
		r, err := bench.RunLog(ctx, bench.LogConfig{
			Events: *events, BatchSize: *batch, RawEvents: *raw, RawSyncEvents: min(*rawSync, *raw), Logger: logger,
			NATSServer: *natsServer, HeapProfiles: *heapProfiles,
		})
		if err != nil {
			fail(logger, "log benchmark", err)
		}
		rep.Log = &r
		row(r.RawDefault, 0, 0, true)
		row(r.RawSync, 0, 0, true)
		row(r.Durable, r.RawDefault.PerSec, r.VsRawDefault, true)
	}
	if slices.Contains(run, "ingest") {
		r, err := bench.RunIngest(ctx, bench.IngestConfig{Rows: *rows, Logger: logger, NATSServer: *natsServer, HeapProfiles: *heapProfiles})
		if err != nil {
			fail(logger, "ingest benchmark", err)
		}
		rep.Ingest = &r
		row(r.RawDefault, 0, 0, false)
		row(r.Ingest, r.RawDefault.PerSec, r.Ratio, false)
	}
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
			Rebuild: slices.Contains(run, "rebuild"), Logger: logger, Then: then,
			NATSServer: *natsServer, SharedStore: *sharedStore, HeapProfiles: *heapProfiles})
		if err != nil {
			fail(logger, "project benchmark", err)
		}
		rep.Project = &r
		row(r.RawCopy, 0, 0, false)
		row(r.Project, r.RawCopy.PerSec, r.Ratio, false)
		if x := r.Rebuild; x != nil {
			row(*x, 0, 0, false)
		}
	}
	if q := rep.Query; q != nil {
		// events: queries run; per second: queries a second, one at a time; ratio: raw p50 / query p50.
		row(bench.Rate{Name: q.Query.Name, Events: q.Query.Iterations, Duration: q.Query.Duration, PerSec: q.Query.PerSec, Memory: q.Memory},
			q.Raw.PerSec, q.Ratio, false)
	}
	if e := rep.Export; e != nil {
		row(e.RawCopy, 0, 0, false)
		row(e.Export, e.RawCopy.PerSec, e.Ratio, false)
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
	}
	if p := rep.Project; p != nil {
		store := "a Store of its own, as a projector-only process"
		if p.SharedStore {
			store = "the ingest's Store (with its id index), as one process with both roles"
		}
		fmt.Printf("project: %.2fx raw CopyFrom of the same rows into the same table shape (target >= 0.5x); %d events per batch; the runner read the log through %s\n",
			p.Ratio, p.BatchEvents, store)
		if p.Rebuild != nil {
			fmt.Printf("rebuild: %d events in %.1f s\n", p.Rebuild.Events, p.Rebuild.Duration.Seconds())
		}
	}
	if q := rep.Query; q != nil {
		fmt.Printf("query (a month by service, %d groups from %d rollup rows of %d lines; %d runs after 10 warm-up): p50 %.2f ms, p99 %.2f ms (target < %.0f ms), max %.2f ms; raw count(*) of the same rollup rows p50 %.2f ms, p99 %.2f ms\n",
			q.Groups, q.RollupRows, q.LedgerLines, q.Query.Iterations, q.Query.P50, q.Query.P99, q.TargetP99Ms, q.Query.Max, q.Raw.P50, q.Raw.P99)
	}
	if e := rep.Export; e != nil {
		fmt.Printf("export: %.2fx raw CopyTo of the same ledger rows; %.0f MB of FOCUS CSV\n", e.Ratio, float64(e.Bytes)/1e6)
	}
	legend := "\nRSS MiB: each stage's own peak resident set (reset at its start; Tally's target: under 256 MiB a stage). " +
		"tally: this process, i.e. Tally's code, the Go runtime and the harness; on a raw row, the raw side (the raw copy holds its prebuilt rows). " +
		"nats: the nats-server process. PostgreSQL is another process, measured by neither."
	if !external {
		legend = "\nRSS MiB: each stage's own peak resident set (reset at its start; Tally's target: under 256 MiB a stage). " +
			"tally: this process, i.e. Tally's code, the Go runtime, the harness and the in-process nats-server (-nats-server measures them apart); " +
			"on a raw row, the raw side. PostgreSQL is another process."
	}
	fmt.Println(legend)
	printHeap(rep)
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

// rss is the table's two memory cells: this process's peak RSS and the nats-server
// process's ("-" when it runs in this process).
func rss(m bench.Memory, external bool) string {
	if !external {
		return fmt.Sprintf("%.0f\t-", m.TallyPeakRSSMiB)
	}
	return fmt.Sprintf("%.0f\t%.0f", m.TallyPeakRSSMiB, m.NATSPeakRSSMiB)
}

// printHeap prints the Go heap of Tally's stages: the peak in use and the most a GC marked
// live (RSS follows the peak in use; GOGC lets it reach about twice the live heap).
func printHeap(rep report) {
	var parts []string
	type stage struct {
		name string
		m    bench.Memory
	}
	var stages []stage
	add := func(name string, m bench.Memory) {
		parts = append(parts, fmt.Sprintf("%s %.0f/%.0f", name, m.GoHeapPeakMiB, m.GoHeapLiveMiB))
		stages = append(stages, stage{name, m})
	}
	if rep.Log != nil {
		add("append", rep.Log.Durable.Memory)
	}
	if rep.Ingest != nil {
		add("ingest", rep.Ingest.Ingest.Memory)
	}
	if p := rep.Project; p != nil {
		add("project", p.Project.Memory)
		if p.Rebuild != nil {
			add("rebuild", p.Rebuild.Memory)
		}
	}
	if rep.Query != nil {
		add("query", rep.Query.Memory)
	}
	if rep.Export != nil {
		add("export", rep.Export.Export.Memory)
	}
	if len(parts) == 0 {
		return
	}
	fmt.Printf("Go heap of this process, MiB in use at most / marked live at most: %s\n", strings.Join(parts, ", "))
	fmt.Println("this process at its highest RSS sampled, MiB: RSS = heap objects + heap unused (fragmentation) + heap free (not yet returned) + stacks + runtime metadata + other + outside Go (code, data)")
	for _, s := range stages {
		if b := s.m.AtPeak; b != nil {
			fmt.Printf("  %s: %.0f = %.0f + %.0f + %.0f + %.0f + %.0f + %.0f + %.0f\n", s.name, b.RSS, b.HeapObjects, b.HeapUnused, b.HeapFree,
				b.Stacks, b.Metadata, b.Other, b.Outside)
		}
	}
}
