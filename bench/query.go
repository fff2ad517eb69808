package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/storage"
)

// QueryTargetP99Ms is the target for the dashboard's question: p99 under 100 ms.
const QueryTargetP99Ms = 100

// QueryConfig sizes the query benchmark.
type QueryConfig struct {
	Iterations int // measured runs of each query; 0 is 200
	Warmup     int // runs before measuring (cache, plan); 0 is 10
	Logger     *slog.Logger
}

// Latencies of one query repeated: total time, and percentiles in milliseconds.
type Latencies struct {
	Name       string        `json:"name"`
	Iterations int           `json:"iterations"`
	Duration   time.Duration `json:"duration_ns"`
	PerSec     float64       `json:"per_sec"` // a rate, not money
	P50        float64       `json:"p50_ms"`
	P99        float64       `json:"p99_ms"`
	Max        float64       `json:"max_ms"`
}

// QueryReport is the dashboard's question asked of the projected ledger, beside the cheapest
// read of the same rollup rows.
type QueryReport struct {
	// Query: ledger.Queries.Cost of the bill's month grouped by service, month granularity
	// (as LedgerService.GetCost asks it), through storage.ReadAsTenant.
	Query Latencies `json:"query"`
	// Raw: SELECT count(*) of the same tenant-month of the daily rollup, through the same
	// ReadAsTenant: the cheapest read of the rows the query sums.
	Raw Latencies `json:"raw_count_daily"`
	// Ratio is Raw.P50 / Query.P50 (1.0: the query costs no more than counting its rows).
	Ratio       float64 `json:"raw_p50_vs_query_p50"`
	TargetP99Ms float64 `json:"target_p99_ms"`
	Groups      int     `json:"groups"`       // rows of the answer
	RollupRows  int64   `json:"rollup_rows"`  // daily rows the query reads
	LedgerLines int     `json:"ledger_lines"` // lines the answer sums
	// PeakRSSMiB is Memory.TallyPeakRSSMiB.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// Memory of the measured runs of the query (not of the raw count).
	Memory Memory `json:"memory"`
}

// RunQuery times ledger.Queries.Cost of l's month grouped by service over l's ledger, and
// a count(*) of the same rollup rows, each cfg.Warmup times unmeasured then cfg.Iterations
// times, one after the other. It checks once that the answer sums every line of the month.
func RunQuery(ctx context.Context, l Ledger, cfg QueryConfig) (QueryReport, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Iterations <= 0 {
		cfg.Iterations = 200
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = 10
	}
	rep := QueryReport{TargetP99Ms: QueryTargetP99Ms}
	qu := ledger.Query{Filter: ledger.Filter{Tenant: l.Tenant, From: l.Month, To: l.Month.AddDate(0, 1, 0)},
		GroupBy: []ledger.Dimension{ledger.Service}, Granularity: ledger.ByMonth}
	var rows []ledger.Row
	query := func() error {
		return storage.ReadAsTenant(ctx, l.Pool, l.Tenant, func(tx pgx.Tx) error {
			var err error
			rows, err = ledger.NewQueries(tx).Cost(ctx, qu)
			return err
		})
	}
	raw := func() error {
		return storage.ReadAsTenant(ctx, l.Pool, l.Tenant, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT count(*) FROM ledger.daily WHERE tenant_id = $1 AND day >= $2::date AND day < $3::date`,
				l.Tenant, qu.From.Format(time.DateOnly), qu.To.Format(time.DateOnly)).Scan(&rep.RollupRows)
		})
	}

	// The answer must cover the month's lines, or the figures are of the wrong question.
	if err := query(); err != nil {
		return rep, fmt.Errorf("query: %w", err)
	}
	var want int64
	if err := l.Pool.QueryRow(ctx, `SELECT count(*) FROM ledger.lines WHERE tenant_id = $1
		AND coalesce(charge_period_start, billing_period_start) >= $2 AND coalesce(charge_period_start, billing_period_start) < $3`,
		l.Tenant, qu.From, qu.To).Scan(&want); err != nil {
		return rep, err
	}
	var got int64
	for _, r := range rows {
		got += r.Lines
	}
	if got != want || want == 0 {
		return rep, fmt.Errorf("query: the answer sums %d lines, the ledger holds %d in the month", got, want)
	}
	rep.Groups, rep.LedgerLines = len(rows), int(want)

	m := l.h.measure("query", l.srv)
	var err error
	rep.Query, err = repeat(ctx, "query month by service (ReadAsTenant)", cfg, query)
	var mem Rate
	if err := m.done(&mem, err); err != nil {
		return rep, fmt.Errorf("query: %w", err)
	}
	rep.Memory, rep.PeakRSSMiB = mem.Memory, mem.TallyPeakRSSMiB
	if rep.Raw, err = repeat(ctx, "raw count(*) of the same rollup rows", cfg, raw); err != nil {
		return rep, fmt.Errorf("raw count: %w", err)
	}
	if rep.RollupRows == 0 {
		return rep, errors.New("raw count: no rollup rows in the month")
	}
	if rep.Query.P50 > 0 {
		rep.Ratio = rep.Raw.P50 / rep.Query.P50
	}
	cfg.Logger.Info("measured", "stage", rep.Query.Name, "p50_ms", rep.Query.P50, "p99_ms", rep.Query.P99,
		"max_ms", rep.Query.Max, "raw_p50_ms", rep.Raw.P50, "groups", rep.Groups, "rollup_rows", rep.RollupRows)
	return rep, nil
}

// repeat runs fn cfg.Warmup times, then cfg.Iterations times measured.
func repeat(ctx context.Context, name string, cfg QueryConfig, fn func() error) (Latencies, error) {
	out := Latencies{Name: name, Iterations: cfg.Iterations}
	for range cfg.Warmup {
		if err := fn(); err != nil {
			return out, err
		}
	}
	lat := make([]time.Duration, cfg.Iterations)
	start := time.Now()
	for i := range lat {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		t := time.Now()
		if err := fn(); err != nil {
			return out, err
		}
		lat[i] = time.Since(t)
	}
	out.Duration = time.Since(start)
	out.PerSec = float64(cfg.Iterations) / out.Duration.Seconds()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	out.P50 = ms(lat[len(lat)/2])
	out.P99 = ms(lat[min(len(lat)-1, len(lat)*99/100)])
	out.Max = ms(lat[len(lat)-1])
	return out, nil
}
