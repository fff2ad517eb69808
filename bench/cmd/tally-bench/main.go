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
}

func main() {
	stages := flag.String("stages", "log,ingest", "comma-separated stages to run: log, ingest")
	events := flag.Int("events", 1_000_000, "log stage: events to append through the durable path")
	batch := flag.Int("batch", 10_000, "log stage: events per Append call")
	raw := flag.Int("raw-events", 0, "log stage: events for raw publish with default fsync (default: -events)")
	rawSync := flag.Int("raw-sync-events", 50_000, "log stage: events for raw publish with sync_interval: always (a sample: it runs at a few thousand a second)")
	rows := flag.Int("rows", 1_000_000, "ingest stage: rows of the generated FOCUS bill")
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
	fmt.Printf("peak RSS of this process (nats-server in-process; PostgreSQL is another process): %.0f MiB\n", bench.PeakRSSMiB())
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
