package exports_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/exports"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/closepkg"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/ingest"
	"github.com/tally-ledger/tally/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const samplePath = "../testdata/focus/FOCUS-1.0/focus_sample.csv"

type env struct {
	store *eventstore.Store
	pool  *pgxpool.Pool
}

func newEnv(t testing.TB) env {
	t.Helper()
	srv := natstest.Run(t, natstest.NoSyncAlways())
	pool, _ := pgtest.NewDB(t)
	return env{store: srv.Store(), pool: pool}
}

func (e env) source() exports.Source { return exports.Source{DB: e.pool, Log: e.store} }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// catchUp folds the whole log into the ledger and close package.
func (e env) catchUp(t testing.TB) {
	t.Helper()
	r, err := projections.NewRunner(e.pool, e.store, projections.Options{}, ledger.New(), closepkg.New())
	require.NoError(t, err)
	require.NoError(t, r.CatchUp(ctxT(t)))
}

// ingestFile ingests the FOCUS file at path into tenant.
func (e env) ingestFile(t testing.TB, tenant, path string, final bool) ingest.Summary {
	t.Helper()
	r, err := focus.Open(path)
	require.NoError(t, err)
	defer r.Close()
	sum, err := ingest.Ingest(ctxT(t), e.store, e.pool, tenant, r, ingest.Options{Final: final, TempDir: t.TempDir()})
	require.NoError(t, err)
	return sum
}

// ledgerRows is every line of tenant in the ledger, all columns but the tenant, the last
// event's id and its log position, one text row each, in key order.
func (e env) ledgerRows(t testing.TB, tenant string) []string {
	t.Helper()
	rows, err := e.pool.Query(ctxT(t), `SELECT ROW(provider, billing_account_id, billing_period_start, line_key,
	    billing_period_end, billing_account_name, charge_period_start, charge_period_end, sub_account_id,
	    sub_account_name, service_name, service_category, region_id, availability_zone, resource_id, sku_id,
	    charge_category, charge_class, pricing_category, pricing_quantity, pricing_unit, consumed_quantity,
	    consumed_unit, billed_cost, effective_cost, list_cost, contracted_cost, billing_currency, tags, final,
	    post_close)::text
	FROM ledger.lines WHERE tenant_id = $1 ORDER BY billing_period_start, provider, billing_account_id, line_key`, tenant)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

// dailyRows is tenant's daily rollup without the tenant.
func (e env) dailyRows(t testing.TB, tenant string) []string {
	t.Helper()
	rows, err := e.pool.Query(ctxT(t), `SELECT ROW(day, provider, billing_account_id, service_name, region_id,
	    charge_category, billing_currency, final, billed_cost, effective_cost, list_cost, line_count)::text
	FROM ledger.daily WHERE tenant_id = $1 ORDER BY 1`, tenant)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

// exportTo writes tenant's export in format ("csv" or "parquet") to a file and returns its
// path and line count.
func (e env) exportTo(t testing.TB, rng exports.Range, format string) (string, int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), rng.Tenant+"-export."+format)
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	write := exports.WriteFOCUSCSV
	if format == "parquet" {
		write = exports.WriteFOCUSParquet
	}
	start := time.Now()
	n, err := write(ctxT(t), f, e.source(), rng)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	st, err := os.Stat(path)
	require.NoError(t, err)
	t.Logf("exported %d lines as %s, %d bytes, in %s", n, format, st.Size(), time.Since(start))
	return path, n
}

// requireSameLedger compares two tenants' ledgers row for row and says where they differ.
func requireSameLedger(t testing.TB, e env, want, got string) {
	t.Helper()
	a, b := e.ledgerRows(t, want), e.ledgerRows(t, got)
	require.NotEmpty(t, a)
	require.Equal(t, len(a), len(b), "line count of %s vs %s", want, got)
	for i := range a {
		if a[i] != b[i] {
			require.Failf(t, "ledgers differ", "line %d of %d:\n%s: %s\n%s: %s", i, len(a), want, a[i], got, b[i])
		}
	}
	require.Equal(t, e.dailyRows(t, want), e.dailyRows(t, got), "daily rollups")
}

func month(s string) time.Time {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		panic(err)
	}
	return t
}

func header(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	first, _, _ := strings.Cut(string(b), "\n")
	return strings.Split(first, ",")
}
