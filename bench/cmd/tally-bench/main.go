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
	"text/tabwriter"
	"time"

	"github.com/tally-ledger/tally/bench"
)

func main() {
	events := flag.Int("events", 1_000_000, "events to append through the durable path")
	batch := flag.Int("batch", 10_000, "events per Append call")
	raw := flag.Int("raw-events", 0, "events for raw publish with default fsync (default: -events)")
	rawSync := flag.Int("raw-sync-events", 50_000, "events for raw publish with sync_interval: always (a sample: it runs at a few thousand a second)")
	out := flag.String("json", "", "write the figures as JSON to this file")
	flag.Parse()
	if *raw == 0 {
		*raw = *events
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	rep, err := bench.RunLog(ctx, bench.LogConfig{
		Events: *events, BatchSize: *batch, RawEvents: *raw, RawSyncEvents: min(*rawSync, *raw), Logger: logger,
	})
	if err != nil {
		logger.Error("benchmark failed", "err", err)
		os.Exit(1)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\tevents\tseconds\tevents/s\tmessages\tbytes/event\t")
	for _, r := range []bench.Rate{rep.RawDefault, rep.RawSync, rep.Durable} {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%d\t%d\t\n", r.Name, r.Events, r.Duration.Seconds(), r.PerSec, r.Messages, r.EventBytes)
	}
	tw.Flush()
	fmt.Printf("\ndurable append / raw publish (default fsync, not durable): %.2fx  (target >= 1.0x)\n", rep.VsRawDefault)
	fmt.Printf("durable append / raw publish (sync_interval: always):      %.1fx\n", rep.VsRawSync)
	fmt.Printf("peak RSS of this process (servers in-process): %.0f MiB\n", rep.PeakRSSMiB)
	if *out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			logger.Error("write json", "err", err)
			os.Exit(1)
		}
	}
	_ = time.Second
}
