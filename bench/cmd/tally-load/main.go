// Command tally-load runs Tally's bounded loopback load tests against a Tally started in this
// process (gateway role, embedded JetStream with sync_interval: always, PostgreSQL), prints
// one table and writes the figures as JSON.
//
// Modes:
//   - query: 64 clients (each its own HTTP/2 connection and Connect client, with a viewer
//     token of the tenant) call LedgerService.GetCost back to back over a ledger of
//     1,000,000 lines, first a month grouped by service, then a mix with tag filters, for
//     -duration each: requests/s, p50, p95, p99, max and errors.
//   - append: single-event pushes (IngestService.RecordUsage, ingester token scoped to the
//     tenant) at a fixed rate, open loop (each request timed from when it was due), beside the
//     same events appended straight to the event store and raw JetStream publish of same-size
//     messages on the same server, at the same rate: p50/p99 and errors of each and the
//     differences.
//
// The ledger is generated (services/focusgen), ingested (services/ingest) and projected
// (ledger projection) into -data on the first run and reused by later ones.
//
//	go run ./bench/cmd/tally-load -json bench-results/load.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tally-ledger/tally/bench"
)

type report struct {
	MeasuredAtUTC string `json:"measured_at_utc"`
	// LoadAverage of the machine (1 minute) before and after the measured phases: the
	// figures mean little on a machine busy with other work.
	LoadAverage [2]string           `json:"load_average_before_after"`
	GoMaxProcs  int                 `json:"gomaxprocs"`
	Setup       *bench.LoadSetup    `json:"setup,omitempty"`
	Query       []bench.QueryPhase  `json:"query,omitempty"`
	Append      *bench.AppendReport `json:"append,omitempty"`
}

func main() {
	modes := flag.String("modes", "query,append", "comma-separated modes to run: query, append")
	data := flag.String("data", "bench-results/load-data", "data directory of the Tally under load; a ledger built there is reused")
	lines := flag.Int("lines", 1_000_000, "query mode: lines of the tenant's ledger")
	months := flag.Int("months", 4, "query mode: monthly bills the lines are spread over")
	tenant := flag.String("tenant", "load", "query mode: the tenant whose ledger is queried")
	clients := flag.Int("clients", 64, "query mode: concurrent clients")
	duration := flag.Duration("duration", 30*time.Second, "query mode: length of each of its two phases")
	appendDuration := flag.Duration("append-duration", 20*time.Second, "append mode: length of each of its three phases (gateway, store, raw)")
	rate := flag.Int("rate", 500, "append mode: requests per second, open loop")
	pushTenant := flag.String("push-tenant", "loadpush", "append mode: the tenant the pushes are for")
	out := flag.String("json", "", "write the figures as JSON to this file")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the measured phases to this file")
	mutexProfile := flag.String("mutexprofile", "", "write a mutex contention profile of the measured phases to this file")
	flag.Parse()
	run := strings.Split(*modes, ",")
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	progress := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	rep := report{MeasuredAtUTC: time.Now().UTC().Format(time.RFC3339), GoMaxProcs: runtime.GOMAXPROCS(0)}
	if err := os.MkdirAll(*data, 0o755); err != nil {
		fail(progress, "data directory", err)
	}
	progress.Info("starting tally and preparing the ledger (the first run generates, ingests and projects it)", "data", *data, "lines", *lines)
	l, err := bench.StartLoad(ctx, bench.LoadConfig{DataDir: *data, DatabaseURL: os.Getenv("DATABASE_URL"),
		Lines: *lines, Months: *months, Tenant: *tenant, Logger: logger})
	if err != nil {
		fail(progress, "start", err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			progress.Warn("stopping tally", "err", err)
		}
	}()
	rep.Setup = &l.Setup
	rep.LoadAverage[0] = loadAverage()
	progress.Info("ready", "url", l.URL, "lines", l.Setup.Lines, "reused", l.Setup.Reused, "daily_rollup_rows", l.Setup.DailyRows)

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail(progress, "cpu profile", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(progress, "cpu profile", err)
		}
		defer pprof.StopCPUProfile()
	}

	if *mutexProfile != "" {
		runtime.SetMutexProfileFraction(5)
		defer func() {
			f, err := os.Create(*mutexProfile)
			if err == nil {
				err = errors.Join(pprof.Lookup("mutex").WriteTo(f, 0), f.Close())
			}
			if err != nil {
				progress.Warn("mutex profile", "err", err)
			}
		}()
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	row := func(name string, x bench.Latency) {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t\n", name, x.Requests, x.PerSec, x.P50, x.P95, x.P99, x.Max, x.Errors)
	}
	fmt.Fprintln(tw, "phase\trequests\tper second\tp50 ms\tp95 ms\tp99 ms\tmax ms\terrors\t")
	if slices.Contains(run, "query") {
		for _, ph := range []struct {
			name string
			mix  []bench.QueryKind
		}{
			{"month by service", []bench.QueryKind{bench.MonthByService}},
			{"mix with tag filters", []bench.QueryKind{bench.MonthByService, bench.MonthTeamByService, bench.MonthByDayAndProvider, bench.MonthTeamEnvByProvider}},
		} {
			progress.Info("query load", "phase", ph.name, "clients", *clients, "duration", *duration)
			q, err := l.RunQueryLoad(ctx, ph.name, *clients, *duration, ph.mix)
			if err != nil {
				fail(progress, "query load", err)
			}
			rep.Query = append(rep.Query, q)
			row(fmt.Sprintf("GetCost, %d clients: %s", *clients, ph.name), q.Total)
			if len(ph.mix) > 1 {
				for _, k := range ph.mix {
					row("  "+k.Name, q.PerKind[k.Name])
				}
			}
		}
	}
	if slices.Contains(run, "append") {
		progress.Info("append load", "rate", *rate, "duration", *appendDuration)
		a, err := l.RunAppendLoad(ctx, *pushTenant, *rate, *appendDuration)
		if err != nil {
			fail(progress, "append load", err)
		}
		rep.Append = &a
		for _, x := range []bench.OpenLoop{a.Gateway, a.Store, a.Raw} {
			row(fmt.Sprintf("%s, %d/s", x.Name, x.Rate), x.Latency)
		}
	}
	tw.Flush()
	rep.LoadAverage[1] = loadAverage()
	fmt.Printf("machine load average (1 min) before / after: %s / %s on %d cores\n", rep.LoadAverage[0], rep.LoadAverage[1], runtime.NumCPU())
	if a := rep.Append; a != nil {
		fmt.Printf("\nappend: message %d bytes; through the gateway %+.2f ms at p50 and %+.2f ms at p99 over raw publish (aim: gateway p99 < 5 ms: %.2f ms);\n"+
			"  of which the gateway (HTTP/2, token, validation) %+.2f / %+.2f ms and the store (chain, tenant lock, conditional publish) %+.2f / %+.2f ms\n",
			a.Gateway.MessageBytes, a.DeltaP50, a.DeltaP99, a.Gateway.Latency.P99,
			a.GatewayOverStoreP50, a.GatewayOverStoreP99, a.StoreOverRawP50, a.StoreOverRawP99)
	}
	errs := 0
	for _, q := range rep.Query {
		errs += q.Total.Errors
		if q.Total.FirstError != "" {
			fmt.Printf("query %s: first error: %s\n", q.Name, q.Total.FirstError)
		}
	}
	if a := rep.Append; a != nil {
		errs += a.Gateway.Latency.Errors + a.Store.Latency.Errors + a.Raw.Latency.Errors
		for _, x := range []bench.OpenLoop{a.Gateway, a.Store, a.Raw} {
			if x.Latency.FirstError != "" {
				fmt.Printf("%s: first error: %s\n", x.Name, x.Latency.FirstError)
			}
		}
	}
	if *out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			fail(progress, "write json", err)
		}
		fmt.Println("figures written to", *out)
	}
	if errs > 0 {
		progress.Error("requests failed", "errors", errs)
		pprof.StopCPUProfile()
		_ = l.Close()
		os.Exit(1)
	}
}

// loadAverage is the machine's one-minute load average ("" where /proc has none).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func fail(l *slog.Logger, what string, err error) {
	l.Error(what, "err", err)
	os.Exit(1)
}
