package ledger_test

import (
	"bufio"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// benchLines is the size of the ledger BenchmarkQueryMonthByService queries:
// TALLY_BENCH_LINES, else 1,000,000 (the figure is 10,000,000).
func benchLines() int {
	if n, err := strconv.Atoi(os.Getenv("TALLY_BENCH_LINES")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// The generated ledger: benchTenants tenants of equal size, daily lines over six monthly
// billing periods (July to December 2025, December still preliminary). Each tenant has
// benchResources resources, each fixed to one of 10 billing accounts (spread over three
// providers), 30 services, 6 regions and a charge category, with a few usage lines per
// resource and day: the shape of a FOCUS export, where the daily rollup is much smaller than
// the lines but far from trivial (about 1,300 rollup rows per tenant and day).
const (
	benchTenants   = 8
	benchResources = 2500
	benchServices  = 30
	benchRegions   = 6
	benchAccounts  = 10
)

var (
	benchFrom = time.Date(2025, 7, 1, 0, 0, 0, 0, time.UTC)
	benchTo   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	providers = []string{"AWS", "Microsoft", "Google Cloud"}
	regions   = []string{"us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1", "ap-northeast-1"}
)

// BenchmarkQueryMonthByService measures a month's cost grouped by service for one tenant, the
// dashboard's most common question, over a ledger of benchLines lines: p50 and p99 of
// TALLY_BENCH_QUERIES (default 300) runs through ledger.Queries. The ledger is not projected
// from a log (only the query is measured): the lines are generated and COPied straight into
// the live tables with their indexes dropped, the indexes are built after the load, and the
// daily rollup is built from the lines by the same GROUP BY the fold keeps it equal to.
// line_history is left empty: no query here reads it. Run with -benchtime=1x; the database
// is dropped at the end.
//
//	TALLY_BENCH_LINES=10000000 go test -run '^$' -bench QueryMonthByService -benchtime=1x -timeout 60m ./projections/ledger/
func BenchmarkQueryMonthByService(b *testing.B) {
	ctx := context.Background()
	pool, _ := pgtest.NewDB(b)
	n := benchLines()
	loadLedger(b, pool, n)

	queries := 300
	if v, err := strconv.Atoi(os.Getenv("TALLY_BENCH_QUERIES")); err == nil && v > 0 {
		queries = v
	}
	// EUR→USD rates on business days, for the normalized cases (weekend lines take Friday's).
	_, err := pool.Exec(ctx, `INSERT INTO ledger.fx_rates
		SELECT format('tenant-%s', lpad(t::text, 2, '0')), 'EUR', 'USD', d::date, 1.08 + (extract(doy FROM d) % 7) / 100.0,
		    'bench', gen_random_uuid(), 0, 0
		FROM generate_series(0, $1 - 1) t, generate_series($2::timestamptz, $3::timestamptz, '1 day') d
		WHERE extract(isodow FROM d) < 6`, benchTenants, benchFrom, benchTo)
	require.NoError(b, err)
	q := ledger.NewQueries(pool)
	month := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		qu   ledger.Query
	}{
		// The dashboard's question: answered from the daily rollup.
		{"rollup", ledger.Query{Filter: ledger.Filter{Tenant: "tenant-03", From: month, To: month.AddDate(0, 1, 0)},
			GroupBy: []ledger.Dimension{ledger.Service}, Granularity: ledger.ByMonth}},
		// The same with a tag filter, which only the lines can answer.
		{"lines-tag", ledger.Query{Filter: ledger.Filter{Tenant: "tenant-03", From: month, To: month.AddDate(0, 1, 0),
			Tags: map[string][]string{"env": {"prod"}}},
			GroupBy: []ledger.Dimension{ledger.Service}, Granularity: ledger.ByMonth}},
		// Both again, normalized to USD at the recorded EUR→USD rates.
		{"rollup-usd", ledger.Query{Filter: ledger.Filter{Tenant: "tenant-03", From: month, To: month.AddDate(0, 1, 0)},
			GroupBy: []ledger.Dimension{ledger.Service}, Granularity: ledger.ByMonth, Normalize: "USD"}},
		{"lines-tag-usd", ledger.Query{Filter: ledger.Filter{Tenant: "tenant-03", From: month, To: month.AddDate(0, 1, 0),
			Tags: map[string][]string{"env": {"prod"}}},
			GroupBy: []ledger.Dimension{ledger.Service}, Granularity: ledger.ByMonth, Normalize: "USD"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				rows, err := q.Cost(ctx, c.qu) // warm the cache and the plan
				require.NoError(b, err)
				require.NotEmpty(b, rows)
				lat := make([]time.Duration, queries)
				for i := range lat {
					start := time.Now()
					_, err := q.Cost(ctx, c.qu)
					lat[i] = time.Since(start)
					require.NoError(b, err)
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(len(rows)), "groups")
			}
		})
	}
}

// loadLedger fills the live ledger tables of pool's database with n generated lines.
func loadLedger(b *testing.B, pool *pgxpool.Pool, n int) {
	b.Helper()
	ctx := context.Background()
	r, err := projections.NewRunner(pool, nil, projections.Options{}, ledger.New())
	require.NoError(b, err)
	require.NoError(b, r.Setup(ctx)) // schema, tables, checkpoint
	exec := func(what, sql string) {
		start := time.Now()
		_, err := pool.Exec(ctx, sql)
		require.NoError(b, err, what)
		b.Logf("%s: %s", what, time.Since(start).Round(time.Millisecond))
	}
	exec("drop indexes", `ALTER TABLE ledger.lines DROP CONSTRAINT lines_pkey;
		DROP INDEX ledger.lines_tenant_start_idx`)
	for m := benchFrom; m.Before(benchTo); m = m.AddDate(0, 1, 0) {
		exec("create partition", fmt.Sprintf(`CREATE TABLE ledger.lines_%s PARTITION OF ledger.lines FOR VALUES FROM ('%s') TO ('%s')`,
			m.Format("200601"), m.Format(time.RFC3339), m.AddDate(0, 1, 0).Format(time.RFC3339)))
	}

	// Two COPY streams, one per core: PostgreSQL parsing the text is the bottleneck.
	start := time.Now()
	const streams = 2
	var wg sync.WaitGroup
	errs := make([]error, streams)
	for w := range streams {
		wg.Go(func() {
			conn, err := pool.Acquire(ctx)
			if err != nil {
				errs[w] = err
				return
			}
			defer conn.Release()
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(writeLines(pw, w, streams, n)) }()
			_, errs[w] = conn.Conn().PgConn().CopyFrom(ctx, pr, `COPY ledger.lines (`+genColumns+`) FROM STDIN`)
			pr.CloseWithError(io.ErrClosedPipe)
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(b, err)
	}
	el := time.Since(start)
	b.Logf("COPY %d lines: %s (%.0f lines/s)", n, el.Round(time.Millisecond), float64(n)/el.Seconds())

	exec("primary key", `ALTER TABLE ledger.lines ADD PRIMARY KEY (tenant_id, billing_period_start, provider, billing_account_id, line_key)`)
	exec("day index", `CREATE INDEX lines_tenant_start_idx ON ledger.lines (tenant_id, (coalesce(charge_period_start, billing_period_start)))`)
	exec("daily rollup", `INSERT INTO ledger.daily (tenant_id, day, provider, billing_account_id, service_name, region_id,
			charge_category, billing_currency, final, billed_cost, effective_cost, list_cost, line_count)
		SELECT tenant_id, (coalesce(charge_period_start, billing_period_start) AT TIME ZONE 'UTC')::date, provider,
			billing_account_id, service_name, region_id, charge_category, billing_currency, final,
			trim_scale(sum(billed_cost)), trim_scale(sum(effective_cost)), trim_scale(sum(list_cost)), count(*)
		FROM ledger.lines GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9`)
	exec("vacuum lines", `VACUUM (ANALYZE) ledger.lines`)
	exec("vacuum daily", `VACUUM (ANALYZE) ledger.daily`)
	var lines, daily int64
	var size string
	require.NoError(b, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM ledger.lines), (SELECT count(*) FROM ledger.daily),
		pg_size_pretty(pg_database_size(current_database()))`).Scan(&lines, &daily, &size))
	require.EqualValues(b, n, lines)
	b.Logf("ledger: %d lines, %d daily rollup rows, database %s", lines, daily, size)
}

const genColumns = `tenant_id, provider, billing_account_id, billing_period_start, line_key, billing_period_end,
	billing_account_name, charge_period_start, charge_period_end, sub_account_id, sub_account_name, service_name,
	service_category, region_id, availability_zone, resource_id, sku_id, charge_category, charge_class,
	pricing_category, pricing_quantity, pricing_unit, consumed_quantity, consumed_unit, billed_cost, effective_cost,
	list_cost, contracted_cost, billing_currency, tags, final, post_close, last_event_id, updated_seq`

// writeLines writes, in COPY text format, the lines i < n with i % streams == w. Line i is
// tenant i % benchTenants, on day (i / benchTenants) % days of the range, for resource and
// usage line k = i / (benchTenants * days).
func writeLines(out io.Writer, w, streams, n int) error {
	bw := bufio.NewWriterSize(out, 1<<20)
	days := int(benchTo.Sub(benchFrom).Hours() / 24)
	var buf []byte
	tab := func(s string) { buf = append(buf, s...); buf = append(buf, '\t') }
	for i := w; i < n; i += streams {
		tenant := i % benchTenants
		day := (i / benchTenants) % days
		k := i / (benchTenants * days)
		res, usage := k%benchResources, k/benchResources
		h := fnv.New64a()
		fmt.Fprintf(h, "%d/%d", tenant, res)
		hv := h.Sum64()
		acct := int(hv % benchAccounts)
		svc := int(hv>>8) % benchServices
		reg := int(hv>>16) % benchRegions
		start := benchFrom.AddDate(0, 0, day)
		period := time.Date(start.Year(), start.Month(), 1, 0, 0, 0, 0, time.UTC)
		category := "Usage"
		switch {
		case res%50 == 0:
			category = "Tax"
		case res%97 == 0:
			category = "Credit"
		}
		currency := "USD"
		if acct%5 == 0 {
			currency = "EUR"
		}
		env := "prod"
		if res%3 == 0 {
			env = "dev"
		}
		cents := int64(hv>>24)%50000 + int64(i%997)
		cost := strconv.FormatInt(cents/10000, 10) + "." + fmt.Sprintf("%04d", cents%10000)
		if category == "Credit" {
			cost = "-" + cost
		}
		buf = buf[:0]
		tab(fmt.Sprintf("tenant-%02d", tenant))
		tab(providers[acct%3])
		tab(fmt.Sprintf("acct-%02d", acct))
		tab(period.Format(time.RFC3339))
		tab(fmt.Sprintf("r%05d-u%d-d%03d", res, usage, day))
		tab(period.AddDate(0, 1, 0).Format(time.RFC3339))
		tab(fmt.Sprintf("Account %02d", acct))
		tab(start.Format(time.RFC3339))
		tab(start.AddDate(0, 0, 1).Format(time.RFC3339))
		tab(fmt.Sprintf("sub-%02d-%d", acct, res%4))
		tab("Sub account")
		tab(fmt.Sprintf("Service %02d", svc))
		tab("Compute")
		tab(regions[reg])
		tab(regions[reg] + "a")
		tab(fmt.Sprintf("arn:resource/%05d", res))
		tab(fmt.Sprintf("sku-%02d-%d", svc, usage))
		tab(category)
		tab("")
		tab("Standard")
		tab("1")
		tab("Hours")
		tab("24")
		tab("Hours")
		for range 4 {
			tab(cost)
		}
		tab(currency)
		tab(`{"env": "` + env + `", "team": "team-` + strconv.Itoa(res%12) + `"}`)
		if period.Month() == 12 {
			tab("f")
		} else {
			tab("t")
		}
		tab("f")
		tab(fmt.Sprintf("00000000-0000-4000-8000-%012x", i))
		buf = strconv.AppendInt(buf, int64(i+1), 10)
		buf = append(buf, '\n')
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}
