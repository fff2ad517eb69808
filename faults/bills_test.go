package faults

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/closepkg"
	"github.com/tally-ledger/tally/projections/ledger"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/services/focusgen"
)

// bill is one FOCUS file to ingest for a tenant.
type bill struct {
	name, tenant, path string
	final              bool
}

// bills is a deterministic, endless sequence of bills for two tenants: per
// tenant, a month's bill, the next month's bill, then that month's revised
// bill (restated, dropped and added lines) marked final; and so on, month
// after month. Files are written when first asked for.
type bills struct {
	t     *testing.T
	dir   string
	rows  int
	cache []*bill
}

var tenants = []string{"acme", "globex"}

func newBills(t *testing.T, rows int) *bills {
	return &bills{t: t, dir: t.TempDir(), rows: rows}
}

func (s *bills) get(i int) *bill {
	s.t.Helper()
	for len(s.cache) <= i {
		s.cache = append(s.cache, s.write(len(s.cache)))
	}
	return s.cache[i]
}

func (s *bills) write(i int) *bill {
	s.t.Helper()
	ti := i % len(tenants)
	tenant, n := tenants[ti], i/len(tenants)
	round, step := n/3, n%3
	month := time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 2*round+min(step, 1), 0)
	p := focusgen.Params{Seed: uint64(1000*ti + 10*round + min(step, 1) + 1), Period: month, Rows: s.rows}
	b := &bill{tenant: tenant, name: fmt.Sprintf("%s-%s", tenant, month.Format("2006-01"))}
	if step == 2 {
		b.name += "-revised"
		b.final = true
	}
	b.path = filepath.Join(s.dir, b.name+".csv")
	f, err := os.Create(b.path)
	require.NoError(s.t, err)
	defer f.Close()
	if step == 2 {
		_, err = focusgen.GenerateRevision(s.t.Context(), f, p, focusgen.Revision{Seed: uint64(i + 1), Restated: 0.10, Dropped: 0.05, Added: 0.05})
	} else {
		_, err = focusgen.Generate(s.t.Context(), f, p)
	}
	require.NoError(s.t, err)
	require.NoError(s.t, f.Close())
	return b
}

// The expected ledger is recomputed from the CSV files alone: encoding/csv
// and decimal, none of services/focus or services/ingest. A bill is a
// snapshot of its scopes (provider, billing account, billing period): the
// lines of a scope are those of the last file ingested that holds the scope,
// and a scope is final once a file holding it was ingested with --final.
type scopeKey struct{ provider, account, period string }

// groupKey is a row of `tally costs --group-by provider,service`.
type groupKey struct{ tenant, provider, service, currency string }

func (g groupKey) String() string {
	return g.tenant + "|" + g.provider + "|" + g.service + "|" + g.currency
}

type sums struct {
	billed decimal.Decimal
	lines  int64
}

type expectedLedger struct {
	scopes map[string]map[scopeKey]map[groupKey]*sums // tenant → scope → groups
	final  map[string]map[scopeKey]bool
	files  int
}

func newExpectedLedger() *expectedLedger {
	return &expectedLedger{scopes: map[string]map[scopeKey]map[groupKey]*sums{}, final: map[string]map[scopeKey]bool{}}
}

// ingested records that b was ingested to the end.
func (e *expectedLedger) ingested(t *testing.T, b *bill) {
	t.Helper()
	f, err := os.Open(b.path)
	require.NoError(t, err)
	defer f.Close()
	r := csv.NewReader(f)
	r.ReuseRecord = true
	head, err := r.Read()
	require.NoError(t, err)
	col := map[string]int{}
	for i, h := range head {
		col[h] = i
	}
	for _, c := range []string{"BilledCost", "BillingCurrency", "BillingAccountId", "BillingPeriodStart", "ServiceName", "ServiceProviderName"} {
		require.Contains(t, col, c, "%s has no %s column", b.path, c)
	}
	file := map[scopeKey]map[groupKey]*sums{}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		start, err := time.Parse(time.RFC3339, rec[col["BillingPeriodStart"]])
		require.NoError(t, err, "%s:%d BillingPeriodStart", b.path, line)
		sk := scopeKey{provider: rec[col["ServiceProviderName"]], account: rec[col["BillingAccountId"]], period: start.UTC().Format(time.RFC3339)}
		gk := groupKey{tenant: b.tenant, provider: sk.provider, service: rec[col["ServiceName"]], currency: rec[col["BillingCurrency"]]}
		billed, err := decimal.NewFromString(rec[col["BilledCost"]])
		require.NoError(t, err, "%s:%d BilledCost", b.path, line)
		if file[sk] == nil {
			file[sk] = map[groupKey]*sums{}
		}
		g := file[sk][gk]
		if g == nil {
			g = &sums{}
			file[sk][gk] = g
		}
		g.billed = g.billed.Add(billed)
		g.lines++
	}
	if e.scopes[b.tenant] == nil {
		e.scopes[b.tenant], e.final[b.tenant] = map[scopeKey]map[groupKey]*sums{}, map[scopeKey]bool{}
	}
	for sk, groups := range file {
		e.scopes[b.tenant][sk] = groups
		if b.final {
			e.final[b.tenant][sk] = true
		}
	}
	e.files++
}

// costRow is one row of the ledger by tenant, provider, service and currency.
type costRow struct {
	Billed, Final string
	Lines         int64
}

// want is the expected ledger, keyed by groupKey.String().
func (e *expectedLedger) want() (rows map[string]costRow, lines map[string]int64) {
	billed, final := map[string]decimal.Decimal{}, map[string]decimal.Decimal{}
	count := map[string]int64{}
	lines = map[string]int64{}
	for tenant, scopes := range e.scopes {
		for sk, groups := range scopes {
			for gk, s := range groups {
				k := gk.String()
				billed[k] = billed[k].Add(s.billed)
				f := final[k] // zero until a final scope adds to it
				if e.final[tenant][sk] {
					f = f.Add(s.billed)
				}
				final[k] = f
				count[k] += s.lines
				lines[tenant] += s.lines
			}
		}
	}
	rows = map[string]costRow{}
	for k, v := range billed {
		rows[k] = costRow{Billed: v.String(), Final: final[k].String(), Lines: count[k]}
	}
	return rows, lines
}

// costs asks the running Tally for a tenant's ledger through `tally costs
// --output json` (CLI, gateway, ledger queries), grouped by provider and
// service, over every period.
func (s *tallyServe) costs(tenant string) map[string]costRow {
	s.t.Helper()
	cmd := exec.CommandContext(s.t.Context(), s.bin, "costs", "--tenant", tenant, "--from", "2000-01-01", "--to", "2100-01-01",
		"--group-by", "provider,service", "--output", "json", "--server", "http://"+s.addr, "--data-dir", s.dataDir)
	cmd.Env = childEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(s.t, err, "tally costs: %s", stderr.String())
	var resp tallyv1.GetCostResponse
	require.NoError(s.t, protojson.Unmarshal(out, &resp))
	require.Len(s.t, resp.GetGroups(), 2, "groups %v", resp.GetGroups())
	got := map[string]costRow{}
	for _, r := range resp.GetRows() {
		k := groupKey{tenant: tenant, provider: r.GetGroups()[0], service: r.GetGroups()[1], currency: r.GetCurrency()}.String()
		require.NotContains(s.t, got, k, "one row per group")
		got[k] = costRow{Billed: canonical(s.t, r.GetTotal().GetBilled()), Final: canonical(s.t, r.GetFinal().GetBilled()), Lines: r.GetTotal().GetLines()}
	}
	return got
}

// canonical writes a decimal string without trailing zeros, as decimal's
// String does, so that "1.50" and "1.5" compare equal and nothing else does.
func canonical(t *testing.T, s string) string {
	t.Helper()
	if s == "" {
		return "0"
	}
	d, err := decimal.NewFromString(s)
	require.NoError(t, err, "amount %q", s)
	return d.String()
}

// checkLedger compares the ledger of every tenant with the recomputation from
// the files, row by row and in total.
func checkLedger(t *testing.T, s *tallyServe, pool *pgxpool.Pool, exp *expectedLedger) (lines int64) {
	t.Helper()
	wantRows, wantLines := exp.want()
	got := map[string]costRow{}
	for _, tenant := range tenants {
		for k, v := range s.costs(tenant) {
			got[k] = v
		}
	}
	require.Equal(t, wantRows, got, "ledger by tenant, provider, service and currency vs the input files")

	gotLines := map[string]int64{}
	rows, err := pool.Query(t.Context(), "SELECT tenant_id, count(*) FROM ledger.lines GROUP BY 1")
	require.NoError(t, err)
	for rows.Next() {
		var tenant string
		var n int64
		require.NoError(t, rows.Scan(&tenant, &n))
		gotLines[tenant] = n
	}
	require.NoError(t, rows.Err())
	require.Equal(t, wantLines, gotLines, "ledger lines per tenant (one per input row of each scope's last file)")
	for _, n := range gotLines {
		lines += n
	}
	dailyMatchesLines(t, pool)
	return lines
}

// dailyMatchesLines: the daily rollup equals the same GROUP BY over the lines
// (a batch folded twice, or half, would show here first).
func dailyMatchesLines(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	const lines = `SELECT tenant_id, (coalesce(charge_period_start, billing_period_start) AT TIME ZONE 'UTC')::date, provider,
		billing_account_id, service_name, region_id, charge_category, billing_currency, final,
		trim_scale(sum(billed_cost)), trim_scale(sum(effective_cost)), trim_scale(sum(list_cost)), count(*)
		FROM ledger.lines GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9`
	const daily = `SELECT tenant_id, day, provider, billing_account_id, service_name, region_id, charge_category,
		billing_currency, final, billed_cost, effective_cost, list_cost, line_count FROM ledger.daily`
	var diff int
	require.NoError(t, pool.QueryRow(t.Context(),
		`SELECT count(*) FROM ((`+daily+` EXCEPT `+lines+`) UNION ALL (`+lines+` EXCEPT `+daily+`)) d`).Scan(&diff))
	require.Zero(t, diff, "daily rollup rows that differ from the lines")
}

// logFacts is what the whole log holds.
type logFacts struct {
	events     int
	messages   uint64
	costEvents map[string]int64 // recorded, restated and retracted lines per tenant
}

// checkLog reads the whole log: every event id must appear once, every
// tenant's hash chain must verify, and the ledger must hold one history row
// per cost-line event (none folded twice, none missed).
func checkLog(t *testing.T, st *eventstore.Store, pool *pgxpool.Pool) logFacts {
	t.Helper()
	ctx := t.Context()
	facts := logFacts{costEvents: map[string]int64{}}
	seen := map[string]uint64{}
	var dups []string
	tenantsSeen := map[string]bool{}
	require.NoError(t, st.Read(ctx, eventstore.ReadFilter{}, func(ev eventstore.Event) error {
		facts.events++
		env := ev.Envelope
		if at, ok := seen[env.GetEventId()]; ok && len(dups) < 10 {
			dups = append(dups, fmt.Sprintf("%s in log messages %d and %d", env.GetEventId(), at, ev.StreamSeq))
		}
		seen[env.GetEventId()] = ev.StreamSeq
		tenantsSeen[env.GetTenantId()] = true
		switch env.GetBody().(type) {
		case *tallyv1.Envelope_CostLineRecorded, *tallyv1.Envelope_CostLineRestated, *tallyv1.Envelope_CostLineRetracted:
			facts.costEvents[env.GetTenantId()]++
		}
		return nil
	}))
	require.Empty(t, dups, "event ids that appear twice in the log")
	var err error
	facts.messages, err = st.LastSeq(ctx)
	require.NoError(t, err)
	for tenant := range tenantsSeen {
		rep, err := st.Verify(ctx, tenant)
		require.NoError(t, err)
		require.True(t, rep.OK(), "tenant %s's chain: %v", tenant, rep.FirstBad())
	}
	history := map[string]int64{}
	rows, err := pool.Query(ctx, "SELECT tenant_id, count(*) FROM ledger.line_history GROUP BY 1")
	require.NoError(t, err)
	for rows.Next() {
		var tenant string
		var n int64
		require.NoError(t, rows.Scan(&tenant, &n))
		history[tenant] = n
	}
	require.NoError(t, rows.Err())
	require.Equal(t, facts.costEvents, history, "ledger history rows per tenant = cost-line events in the log")
	return facts
}

// waitProjected waits until both read models have folded the log up to head.
func waitProjected(t *testing.T, pool *pgxpool.Pool, head uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	for _, name := range []string{ledger.Name, closepkg.Name} {
		require.NoError(t, projections.WaitFor(ctx, pool, name, head, 50*time.Millisecond), "projection %s reaching %d", name, head)
	}
}

// checkpoint is the lowest checkpoint of the read models (0 before they are
// set up).
func checkpoint(ctx context.Context, pool *pgxpool.Pool) uint64 {
	var low uint64
	for i, name := range []string{ledger.Name, closepkg.Name} {
		cp, err := projections.Checkpoint(ctx, pool, name)
		if err != nil {
			return 0
		}
		if i == 0 || cp < low {
			low = cp
		}
	}
	return low
}
