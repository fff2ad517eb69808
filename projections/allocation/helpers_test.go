package allocation_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/allocation"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

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

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// catchUp folds the whole log into pool's allocation schema, in batches of at least batch
// events (whole log messages).
func catchUp(t testing.TB, store *eventstore.Store, pool *pgxpool.Pool, batch int) {
	t.Helper()
	r, err := projections.NewRunner(pool, store, projections.Options{BatchEvents: batch}, allocation.New())
	require.NoError(t, err)
	require.NoError(t, r.CatchUp(ctxT(t)))
}

// appendOne appends each event in a message of its own, so that a runner with batches of one
// event folds them one at a time.
func appendOne(t testing.TB, st *eventstore.Store, tenant string, events ...*tallyv1.Envelope) {
	t.Helper()
	for _, e := range events {
		_, err := st.Append(ctxT(t), tenant, []*tallyv1.Envelope{e})
		require.NoError(t, err)
	}
}

func appendAll(t testing.TB, st *eventstore.Store, tenant string, events ...*tallyv1.Envelope) {
	t.Helper()
	_, err := st.Append(ctxT(t), tenant, events)
	require.NoError(t, err)
}

var sep1 = time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)

// sep is September 2024's day d (0 is August 31).
func sep(d int) time.Time { return sep1.AddDate(0, 0, d-1) }

func envelope(tenant, key string) *tallyv1.Envelope {
	return &tallyv1.Envelope{EventId: eventstore.DeterministicID(tenant, key), TenantId: tenant, IdempotencyKey: key,
		OccurredAt: timestamppb.New(sep1), Actor: &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "test"}}
}

// costLine is a USD line of September 2024's AWS bill charged on day d; tags are "k=v".
func costLine(key string, d int, service, amount string, tags ...string) *tallyv1.CostLine {
	l := &tallyv1.CostLine{
		LineKey: key,
		Scope: &tallyv1.BillScope{Provider: "AWS", BillingAccountId: "111", BillingPeriodStart: timestamppb.New(sep1),
			BillingPeriodEnd: timestamppb.New(sep1.AddDate(0, 1, 0))},
		ChargePeriodStart: timestamppb.New(sep(d).Add(3 * time.Hour)),
		ServiceName:       service, RegionId: "us-east-1", ResourceId: "arn:aws:x:" + key,
		EffectiveCost: amount, BilledCost: amount, BillingCurrency: "USD",
	}
	for _, kv := range tags {
		k, v, _ := strings.Cut(kv, "=")
		l.Tags = append(l.Tags, &tallyv1.KeyValue{Key: k, Value: v})
	}
	sort.Slice(l.Tags, func(i, j int) bool { return l.Tags[i].Key < l.Tags[j].Key })
	return l
}

func recorded(tenant string, l *tallyv1.CostLine) *tallyv1.Envelope {
	e := envelope(tenant, "recorded/"+l.GetLineKey()+"/"+l.GetEffectiveCost())
	e.Body = &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: l}}
	return e
}

func restated(tenant string, l *tallyv1.CostLine) *tallyv1.Envelope {
	e := envelope(tenant, "restated/"+l.GetLineKey()+"/"+l.GetEffectiveCost())
	e.Body = &tallyv1.Envelope_CostLineRestated{CostLineRestated: &tallyv1.CostLineRestated{Line: l}}
	return e
}

func retracted(tenant string, l *tallyv1.CostLine) *tallyv1.Envelope {
	e := envelope(tenant, "retracted/"+l.GetLineKey())
	e.Body = &tallyv1.Envelope_CostLineRetracted{CostLineRetracted: &tallyv1.CostLineRetracted{
		Scope: l.GetScope(), LineKey: l.GetLineKey(), Delta: &tallyv1.CostDelta{BillingCurrency: "USD"}}}
	return e
}

// rule is a rule version effective from September day d; shares are cost center, value pairs.
func rule(id string, version uint32, priority int32, d int, split tallyv1.SplitKind, shares ...string) *tallyv1.AllocationRuleSet {
	r := &tallyv1.AllocationRuleSet{RuleId: id, Version: version, Priority: priority,
		EffectiveFrom: timestamppb.New(sep(d)), Split: split, Match: &tallyv1.AllocationMatch{}}
	for i := 0; i+1 < len(shares); i += 2 {
		r.Shares = append(r.Shares, &tallyv1.CostCenterShare{CostCenter: shares[i], Value: shares[i+1]})
	}
	return r
}

func ruleSet(tenant string, r *tallyv1.AllocationRuleSet) *tallyv1.Envelope {
	e := envelope(tenant, fmt.Sprintf("allocation_rule_set/%s/%d/%s", r.GetRuleId(), r.GetVersion(), r.String()))
	e.Body = &tallyv1.Envelope_AllocationRuleSet{AllocationRuleSet: r}
	return e
}

func ruleRetired(tenant, id string, d int) *tallyv1.Envelope {
	e := envelope(tenant, fmt.Sprintf("allocation_rule_retired/%s/%d", id, d))
	e.Body = &tallyv1.Envelope_AllocationRuleRetired{AllocationRuleRetired: &tallyv1.AllocationRuleRetired{
		RuleId: id, EffectiveTo: timestamppb.New(sep(d))}}
	return e
}

const (
	direct = tallyv1.SplitKind_SPLIT_KIND_DIRECT
	pct    = tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE
	fixed  = tallyv1.SplitKind_SPLIT_KIND_FIXED_AMOUNT
	prop   = tallyv1.SplitKind_SPLIT_KIND_PROPORTIONAL
	even   = tallyv1.SplitKind_SPLIT_KIND_EVEN
)

// dump is every row of the computed allocation tables in schema, as text, in key order: what
// two folds must agree on byte for byte.
func dump(t testing.TB, pool *pgxpool.Pool, schema string) []string {
	t.Helper()
	var out []string
	for _, q := range []string{
		`SELECT 'A', tenant_id, day::text, cost_center, currency, rule_id, rule_version::text, amount::text FROM %s.allocated_daily ORDER BY 2, 3, 4, 5, 6, 7`,
		`SELECT 'U', tenant_id, day::text, currency, service_name, '', '', amount::text FROM %s.unallocated_daily ORDER BY 2, 3, 4, 5`,
		`SELECT 'F', tenant_id, day::text, reason, '', '', '', '' FROM %s.failed_days ORDER BY 2, 3`,
		`SELECT 'L', tenant_id, day::text, line_key, service_name, tags::text, currency, amount::text FROM %s.lines ORDER BY 2, 4`,
	} {
		rows, err := pool.Query(ctxT(t), fmt.Sprintf(q, schema))
		require.NoError(t, err)
		for rows.Next() {
			vals, err := rows.Values()
			require.NoError(t, err)
			parts := make([]string, len(vals))
			for i, v := range vals {
				parts[i] = fmt.Sprint(v)
			}
			out = append(out, strings.Join(parts, "|"))
		}
		require.NoError(t, rows.Err())
	}
	return out
}

// byCostCenter sums Allocated rows per cost center as strings.
func byCostCenter(rows []allocation.AllocatedRow) map[string]string {
	acc := map[string]decimal.Decimal{}
	for _, r := range rows {
		acc[r.CostCenter] = acc[r.CostCenter].Add(r.Amount)
	}
	out := map[string]string{}
	for k, v := range acc {
		out[k] = v.String()
	}
	return out
}

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }
