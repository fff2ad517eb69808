package ledger_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// benchEvents is the number of cost events the benchmarks project: TALLY_BENCH_EVENTS, else
// 100,000 (the figure is 1,000,000: set it for the closing note).
func benchEvents() int {
	if n, err := strconv.Atoi(os.Getenv("TALLY_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// BenchmarkProjectLedger folds benchEvents recorded cost lines from a real log into an empty
// ledger, per iteration (run with -benchtime=1x).
func BenchmarkProjectLedger(b *testing.B) {
	e := newEnv(b)
	n := benchEvents()
	bulk(b, e.store, "acme", n)
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		b.StopTimer()
		pool, _ := pgtest.NewDB(b)
		r, err := projections.NewRunner(pool, e.store, projections.Options{BatchEvents: 10000}, ledger.New())
		require.NoError(b, err)
		b.StartTimer()
		start := time.Now()
		require.NoError(b, r.CatchUp(context.Background()))
		total += time.Since(start)
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
}

// BenchmarkReadLog is the log side alone: reading and decoding the same events.
func BenchmarkReadLog(b *testing.B) {
	e := newEnv(b)
	n := benchEvents()
	bulk(b, e.store, "acme", n)
	b.ResetTimer()
	for range b.N {
		got := 0
		require.NoError(b, e.store.Read(context.Background(), eventstore.ReadFilter{}, func(eventstore.Event) error { got++; return nil }))
		require.Equal(b, n, got)
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRawCopy is the yardstick: pgx CopyFrom of the same rows into a table of the lines
// table's shape (same columns and primary key), with pgtype.Numeric amounts and [16]byte ids.
func BenchmarkRawCopy(b *testing.B) {
	e := newEnv(b)
	n := benchEvents()
	bulk(b, e.store, "acme", n)
	var rows [][]any
	require.NoError(b, e.store.Read(context.Background(), eventstore.ReadFilter{}, func(ev eventstore.Event) error {
		l := ev.Envelope.GetCostLineRecorded().GetLine()
		id := uuid.MustParse(ev.Envelope.GetEventId())
		num := func(s string) pgtype.Numeric {
			var v pgtype.Numeric
			require.NoError(b, v.Scan(s))
			return v
		}
		rows = append(rows, []any{ev.Envelope.GetTenantId(), l.GetScope().GetProvider(), l.GetScope().GetBillingAccountId(),
			l.GetScope().GetBillingPeriodStart().AsTime(), l.GetLineKey(), l.GetScope().GetBillingPeriodEnd().AsTime(),
			l.GetBillingAccountName(), l.GetChargePeriodStart().AsTime(), l.GetChargePeriodEnd().AsTime(),
			l.GetSubAccountId(), l.GetSubAccountName(), l.GetServiceName(), l.GetServiceCategory(), l.GetRegionId(),
			l.GetAvailabilityZone(), l.GetResourceId(), l.GetSkuId(), l.GetChargeCategory(), l.GetChargeClass(),
			l.GetPricingCategory(), nil, l.GetPricingUnit(), num(l.GetConsumedQuantity()), l.GetConsumedUnit(),
			num(l.GetBilledCost()), num(l.GetEffectiveCost()), num(l.GetListCost()), num(l.GetContractedCost()),
			l.GetBillingCurrency(), `{"team": "x"}`, false, false, [16]byte(id), int64(ev.StreamSeq)})
		return nil
	}))
	cols := []string{"tenant_id", "provider", "billing_account_id", "billing_period_start", "line_key", "billing_period_end",
		"billing_account_name", "charge_period_start", "charge_period_end", "sub_account_id", "sub_account_name", "service_name",
		"service_category", "region_id", "availability_zone", "resource_id", "sku_id", "charge_category", "charge_class",
		"pricing_category", "pricing_quantity", "pricing_unit", "consumed_quantity", "consumed_unit", "billed_cost", "effective_cost",
		"list_cost", "contracted_cost", "billing_currency", "tags", "final", "post_close", "last_event_id", "updated_seq"}
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		b.StopTimer()
		pool, _ := pgtest.NewDB(b)
		ctx := context.Background()
		tx, err := pool.Begin(ctx)
		require.NoError(b, err)
		_, err = tx.Exec(ctx, "CREATE SCHEMA shape")
		require.NoError(b, err)
		require.NoError(b, ledger.New().Setup(ctx, tx, "shape"))
		// The lines table's columns and primary key, without the monthly partitions.
		_, err = tx.Exec(ctx, `CREATE TABLE raw_lines (LIKE shape.lines INCLUDING DEFAULTS);
			ALTER TABLE raw_lines ADD PRIMARY KEY (tenant_id, billing_period_start, provider, billing_account_id, line_key)`)
		require.NoError(b, err)
		require.NoError(b, tx.Commit(ctx))
		b.StartTimer()
		start := time.Now()
		copied, err := pool.CopyFrom(ctx, pgx.Identifier{"raw_lines"}, cols, pgx.CopyFromRows(rows))
		total += time.Since(start)
		require.NoError(b, err)
		require.EqualValues(b, n, copied)
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "rows/s")
}

// BenchmarkRebuild rebuilds a ledger of benchEvents recorded cost lines with no downtime
// (Runner.Rebuild: replay into ledger_next beside the live copy, then swap), per iteration
// (run with -benchtime=1x), and checks that the rebuilt copy has the same totals.
//
//	TALLY_BENCH_EVENTS=1000000 go test -run '^$' -bench Rebuild -benchtime=1x -timeout 30m ./projections/ledger/
func BenchmarkRebuild(b *testing.B) {
	e := newEnv(b)
	n := benchEvents()
	want := bulk(b, e.store, "acme", n)
	ctx := context.Background()
	r, err := projections.NewRunner(e.pool, e.store, projections.Options{BatchEvents: 10000}, ledger.New())
	require.NoError(b, err)
	require.NoError(b, r.CatchUp(ctx))
	b.ResetTimer()
	var total time.Duration
	var last projections.Progress
	for range b.N {
		start := time.Now()
		require.NoError(b, r.Rebuild(ctx, ledger.Name, func(p projections.Progress) { last = p }))
		total += time.Since(start)
	}
	b.StopTimer()
	require.True(b, last.Swapped)
	require.EqualValues(b, n, last.Events)
	require.Equal(b, want, billedTotals(b, ledger.NewQueries(e.pool), "acme"))
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
	b.ReportMetric(total.Seconds()/float64(b.N), "s/rebuild")
}
