package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type env struct {
	store *eventstore.Store
	pool  *pgxpool.Pool
	url   string
}

func newEnv(t testing.TB) env {
	t.Helper()
	srv := natstest.Run(t, natstest.NoSyncAlways())
	pool, url := pgtest.NewDB(t)
	return env{store: srv.Store(), pool: pool, url: url}
}

func (e env) runner(t testing.TB, opts projections.Options) *projections.Runner {
	t.Helper()
	r, err := projections.NewRunner(e.pool, e.store, opts, ledger.New())
	require.NoError(t, err)
	return r
}

var period = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func scope(account string) *tallyv1.BillScope {
	return &tallyv1.BillScope{Provider: "AWS", BillingAccountId: account,
		BillingPeriodStart: timestamppb.New(period), BillingPeriodEnd: timestamppb.New(period.AddDate(0, 1, 0))}
}

// line is a cost line of account on day (1-based) of the period.
func line(account, key, service string, day int, billed, currency string) *tallyv1.CostLine {
	start := period.AddDate(0, 0, day-1)
	return &tallyv1.CostLine{
		LineKey: key, Scope: scope(account), ServiceName: service, RegionId: "us-east-1", ChargeCategory: "Usage",
		ChargePeriodStart: timestamppb.New(start), ChargePeriodEnd: timestamppb.New(start.Add(24 * time.Hour)),
		BilledCost: billed, EffectiveCost: billed, ListCost: billed, ContractedCost: billed,
		ConsumedQuantity: "1", BillingCurrency: currency,
		Tags: []*tallyv1.KeyValue{{Key: "team", Value: "team-" + service[:1]}},
	}
}

func envelope(tenant, key string) *tallyv1.Envelope {
	return &tallyv1.Envelope{
		EventId: eventstore.DeterministicID(tenant, key), TenantId: tenant, IdempotencyKey: key,
		OccurredAt: timestamppb.New(period),
		Actor:      &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "test"},
	}
}

func recorded(tenant string, l *tallyv1.CostLine) *tallyv1.Envelope {
	e := envelope(tenant, "rec/"+l.GetScope().GetBillingAccountId()+"/"+l.GetLineKey())
	e.Body = &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: l}}
	return e
}

func restated(tenant string, l *tallyv1.CostLine, delta, prev string) *tallyv1.Envelope {
	e := envelope(tenant, "res/"+l.GetScope().GetBillingAccountId()+"/"+l.GetLineKey()+"/"+prev)
	e.Body = &tallyv1.Envelope_CostLineRestated{CostLineRestated: &tallyv1.CostLineRestated{Line: l, PreviousEventId: prev,
		Delta: &tallyv1.CostDelta{BilledCost: delta, EffectiveCost: delta, ListCost: delta, ContractedCost: delta, BillingCurrency: l.GetBillingCurrency()}}}
	return e
}

func retracted(tenant, account, key, delta, currency, prev string) *tallyv1.Envelope {
	e := envelope(tenant, "ret/"+account+"/"+key+"/"+prev)
	e.Body = &tallyv1.Envelope_CostLineRetracted{CostLineRetracted: &tallyv1.CostLineRetracted{Scope: scope(account), LineKey: key, PreviousEventId: prev,
		Delta: &tallyv1.CostDelta{BilledCost: delta, EffectiveCost: delta, ListCost: delta, ContractedCost: delta, BillingCurrency: currency}}}
	return e
}

func finalized(tenant, account string) *tallyv1.Envelope {
	e := envelope(tenant, "fin/"+account)
	e.Body = &tallyv1.Envelope_BillingPeriodFinalized{BillingPeriodFinalized: &tallyv1.BillingPeriodFinalized{Scope: scope(account)}}
	return e
}

// fxRate records that one from is worth rate to on day ("YYYY-MM-DD"); version tells a
// restated rate's event from the first one.
func fxRate(tenant, from, to, day, rate, version string) *tallyv1.Envelope {
	e := envelope(tenant, "fx/"+from+"/"+to+"/"+day+"/"+version)
	e.Body = &tallyv1.Envelope_FxRateRecorded{FxRateRecorded: &tallyv1.FxRateRecorded{
		FromCurrency: from, ToCurrency: to, Rate: rate, Date: day, Source: "test-feed"}}
	return e
}

// recID is the id of the recorded event of a line.
func recID(tenant, account, key string) string {
	return eventstore.DeterministicID(tenant, "rec/"+account+"/"+key)
}

func appendEvents(t testing.TB, st *eventstore.Store, tenant string, events ...*tallyv1.Envelope) {
	t.Helper()
	_, err := st.Append(context.Background(), tenant, events)
	require.NoError(t, err)
}

// bulk appends n recorded lines for tenant, spread over days, services and two currencies, in
// messages of up to 250 events, and returns the expected billed total per currency.
func bulk(t testing.TB, st *eventstore.Store, tenant string, n int) map[string]string {
	t.Helper()
	services := []string{"EC2", "S3", "RDS", "Lambda"}
	totals := map[string]int64{} // in cents
	var batch []*tallyv1.Envelope
	for i := range n {
		cur := "USD"
		if i%5 == 0 {
			cur = "EUR"
		}
		cents := int64(i%997 + 1)
		totals[cur] += cents
		batch = append(batch, recorded(tenant, line("acct-1", fmt.Sprintf("%s-%07d", tenant, i), services[i%4], i%28+1,
			fmt.Sprintf("%d.%02d", cents/100, cents%100), cur)))
		if len(batch) == 250 {
			appendEvents(t, st, tenant, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		appendEvents(t, st, tenant, batch...)
	}
	out := map[string]string{}
	for c, v := range totals {
		out[c] = fmt.Sprintf("%d.%02d", v/100, v%100)
	}
	return out
}

// billedTotals is the ledger's billed total per currency for tenant.
func billedTotals(t testing.TB, q *ledger.Queries, tenant string) map[string]string {
	t.Helper()
	totals, err := q.Totals(context.Background(), ledger.Filter{Tenant: tenant})
	require.NoError(t, err)
	out := map[string]string{}
	for _, tt := range totals {
		out[tt.Currency] = tt.Billed.StringFixed(2)
	}
	return out
}

// checksum is an md5 over every row of every ledger table in schema, in key order.
func checksum(t testing.TB, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, schema string) string {
	t.Helper()
	var sum string
	s := pgx.Identifier{schema}.Sanitize()
	require.NoError(t, db.QueryRow(context.Background(), `SELECT md5(concat_ws('#',
		(SELECT string_agg(x::text, '|' ORDER BY tenant_id, billing_period_start, provider, billing_account_id, line_key) FROM `+s+`.lines x),
		(SELECT string_agg(x::text, '|' ORDER BY tenant_id, stream_seq, event_index) FROM `+s+`.line_history x),
		(SELECT string_agg(x::text, '|' ORDER BY tenant_id, provider, billing_account_id, billing_period_start) FROM `+s+`.finalized_scopes x),
		(SELECT string_agg(x::text, '|' ORDER BY tenant_id, day, provider, billing_account_id, service_name, region_id, charge_category, billing_currency, final) FROM `+s+`.daily x),
		(SELECT string_agg(x::text, '|' ORDER BY tenant_id, from_currency, to_currency, day) FROM `+s+`.fx_rates x)))`).Scan(&sum))
	return sum
}

// dailyMatchesLines checks the rollup equals the same GROUP BY over lines.
func dailyMatchesLines(t testing.TB, db *pgxpool.Pool, schema string) {
	t.Helper()
	s := pgx.Identifier{schema}.Sanitize()
	var diff int
	require.NoError(t, db.QueryRow(context.Background(), `SELECT count(*) FROM (
		(SELECT tenant_id, day, provider, billing_account_id, service_name, region_id, charge_category, billing_currency, final,
		        billed_cost, effective_cost, list_cost, line_count FROM `+s+`.daily
		 EXCEPT
		 SELECT tenant_id, (coalesce(charge_period_start, billing_period_start) AT TIME ZONE 'UTC')::date, provider, billing_account_id,
		        service_name, region_id, charge_category, billing_currency, final,
		        trim_scale(sum(billed_cost)), trim_scale(sum(effective_cost)), trim_scale(sum(list_cost)), count(*)
		 FROM `+s+`.lines GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9)
		UNION ALL
		(SELECT tenant_id, (coalesce(charge_period_start, billing_period_start) AT TIME ZONE 'UTC')::date, provider, billing_account_id,
		        service_name, region_id, charge_category, billing_currency, final,
		        trim_scale(sum(billed_cost)), trim_scale(sum(effective_cost)), trim_scale(sum(list_cost)), count(*)
		 FROM `+s+`.lines GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
		 EXCEPT
		 SELECT tenant_id, day, provider, billing_account_id, service_name, region_id, charge_category, billing_currency, final,
		        billed_cost, effective_cost, list_cost, line_count FROM `+s+`.daily)) d`).Scan(&diff))
	require.Zero(t, diff, "daily rollup differs from lines in %d rows", diff)
}
