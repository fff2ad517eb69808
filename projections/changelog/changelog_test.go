package changelog_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/changelog"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// fold folds the whole log into a new database with batches of batch events and returns
// queries over it.
func fold(t *testing.T, store *eventstore.Store, batch int) (*changelog.Queries, *pgxpool.Pool) {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	r, err := projections.NewRunner(pool, store, projections.Options{BatchEvents: batch}, changelog.New())
	require.NoError(t, err)
	require.NoError(t, r.CatchUp(ctxT(t)))
	return changelog.NewQueries(pool), pool
}

var (
	sep  = time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
	user = func(id string) *tallyv1.Actor { return &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_USER, Id: id} }
)

func event(tenant, key string, actor *tallyv1.Actor) *tallyv1.Envelope {
	return &tallyv1.Envelope{EventId: eventstore.DeterministicID(tenant, key), TenantId: tenant, IdempotencyKey: key,
		OccurredAt: timestamppb.New(sep), Actor: actor}
}

func rule(version uint32, a, b string) *tallyv1.Envelope {
	e := event("acme", "rule/"+a+"/"+b, user("carol"))
	e.Body = &tallyv1.Envelope_AllocationRuleSet{AllocationRuleSet: &tallyv1.AllocationRuleSet{
		RuleId: "r1", Version: version, EffectiveFrom: timestamppb.New(sep), Split: tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE,
		Match:    &tallyv1.AllocationMatch{Provider: "AWS"},
		Shares:   []*tallyv1.CostCenterShare{{CostCenter: "web", Value: a}, {CostCenter: "data", Value: b}},
		Approver: user("dave")}}
	return e
}

func budget(amount string) *tallyv1.Envelope {
	e := event("acme", "budget/"+amount, user("erin"))
	e.Body = &tallyv1.Envelope_BudgetSet{BudgetSet: &tallyv1.BudgetSet{BudgetId: "b1", Name: "web", Amount: amount, Currency: "USD",
		AlertThresholds: []string{"80", "100"}, EffectiveFrom: timestamppb.New(sep)}}
	return e
}

func invoice(tenant, amount string) *tallyv1.Envelope {
	e := event(tenant, "invoice/"+amount, user("ap-clerk"))
	e.Body = &tallyv1.Envelope_InvoiceRecorded{InvoiceRecorded: &tallyv1.InvoiceRecorded{InvoiceId: "INV-1", Amount: amount, Currency: "USD",
		Scope: &tallyv1.BillScope{Provider: "AWS", BillingAccountId: "123", BillingPeriodStart: timestamppb.New(sep)}}}
	return e
}

func fx(rate string) *tallyv1.Envelope {
	e := event("acme", "fx/"+rate, &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "ecb-import"})
	e.Body = &tallyv1.Envelope_FxRateRecorded{FxRateRecorded: &tallyv1.FxRateRecorded{FromCurrency: "EUR", ToCurrency: "USD",
		Rate: rate, Date: "2024-09-02", Source: "ECB"}}
	return e
}

func tags(key string, set []*tallyv1.KeyValue, removed ...string) *tallyv1.Envelope {
	e := event("acme", "tags/"+key, user("cmdb"))
	e.Body = &tallyv1.Envelope_ResourceTagged{ResourceTagged: &tallyv1.ResourceTagged{Provider: "AWS", ResourceId: "i-1",
		Tags: set, RemovedKeys: removed, EffectiveFrom: timestamppb.New(sep)}}
	return e
}

// history appends acme's configuration history (and a usage reading and another tenant's
// invoice, which must not show) one event per append, so each has its own recorded_at, and
// returns acme's events in order.
func history(t *testing.T, store *eventstore.Store) []*tallyv1.Envelope {
	usage := event("acme", "usage", user("meter"))
	usage.Body = &tallyv1.Envelope_UsageRecorded{UsageRecorded: &tallyv1.UsageRecorded{Provider: "AWS", ResourceId: "i-1", Metric: "cpu", Quantity: "1"}}
	retire := event("acme", "retire", user("carol"))
	retire.Body = &tallyv1.Envelope_AllocationRuleRetired{AllocationRuleRetired: &tallyv1.AllocationRuleRetired{RuleId: "r1",
		EffectiveTo: timestamppb.New(sep.AddDate(0, 2, 0)), Reason: "team merged", Approver: user("dave")}}
	closed := event("acme", "close", user("alice"))
	closed.Body = &tallyv1.Envelope_PeriodClosed{PeriodClosed: &tallyv1.PeriodClosed{Period: "2024-09", Approver: user("bob"),
		PackageSha256: "ab", ChainHead: "cd", ChainHeadSeq: 7}}
	acme := []*tallyv1.Envelope{
		rule(1, "60", "40"), budget("500"), usage, invoice("acme", "100.00"),
		tags("1", []*tallyv1.KeyValue{{Key: "env", Value: "prod"}, {Key: "team", Value: "web"}}),
		rule(2, "70", "30"), budget("650"), fx("1.08"), invoice("acme", "98.5"),
		tags("2", []*tallyv1.KeyValue{{Key: "team", Value: "data"}}, "env"), fx("1.0812"), retire, closed,
	}
	for i, e := range acme {
		_, err := store.Append(ctxT(t), "acme", []*tallyv1.Envelope{e})
		require.NoError(t, err, "event %d", i)
		if i == 3 {
			_, err := store.Append(ctxT(t), "globex", []*tallyv1.Envelope{invoice("globex", "1")})
			require.NoError(t, err)
		}
	}
	return acme
}

func all(t *testing.T, q *changelog.Queries, lq changelog.ListQuery) []changelog.Change {
	t.Helper()
	var out []changelog.Change
	for {
		p, err := q.List(ctxT(t), lq)
		require.NoError(t, err)
		out = append(out, p.Changes...)
		if p.Next == "" {
			return out
		}
		lq.PageToken = p.Next
	}
}

func diffOf(c changelog.Change) map[string][2]string {
	out := map[string][2]string{}
	for _, f := range c.Diff {
		out[f.Field] = [2]string{string(f.Before), string(f.After)}
	}
	return out
}

func TestChangeLog(t *testing.T) {
	store := natstest.Run(t, natstest.NoSyncAlways()).Store()
	evs := history(t, store)
	q, _ := fold(t, store, 1000)

	got := all(t, q, changelog.ListQuery{Tenant: "acme"})
	require.Len(t, got, len(evs)-1, "every configuration event, not the usage reading")
	// Newest first.
	for i := 1; i < len(got); i++ {
		require.Greater(t, got[i-1].TenantSeq, got[i].TenantSeq)
	}
	bySeq := map[uint64]changelog.Change{}
	for _, c := range got {
		bySeq[c.TenantSeq] = c
	}
	at := func(i int) changelog.Change { // acme's i-th event (from 0)
		c, ok := bySeq[evs[i].GetTenantSeq()]
		require.True(t, ok, "event %d", i)
		require.Equal(t, evs[i].GetEventId(), c.EventID)
		return c
	}

	// The first version of a rule: no before, the whole rule after, approval recorded.
	r1 := at(0)
	require.Equal(t, "allocation_rule_set", r1.Kind)
	require.Equal(t, changelog.ItemAllocationRule, r1.Item)
	require.Equal(t, "r1", r1.Key)
	require.Equal(t, "USER:carol", r1.Actor.String())
	require.Equal(t, "USER:dave", r1.Approver.String())
	require.Equal(t, "null", string(r1.Before))
	require.JSONEq(t, `{"rule_id":"r1","version":1,"effective_from":"2024-09-01T00:00:00Z","split":"SPLIT_KIND_PERCENTAGE",
		"match":{"provider":"AWS"},"shares":[{"cost_center":"web","value":"60"},{"cost_center":"data","value":"40"}]}`, string(r1.After))
	require.Equal(t, evs[0].GetRecordedAt().AsTime().Truncate(time.Microsecond), r1.RecordedAt)
	require.Equal(t, sep, r1.OccurredAt)

	// Version 2: only what changed.
	require.Equal(t, map[string][2]string{
		"version":         {"1", "2"},
		"shares[0].value": {`"60"`, `"70"`},
		"shares[1].value": {`"40"`, `"30"`},
	}, diffOf(at(5)))
	require.JSONEq(t, string(r1.After), string(at(5).Before))

	require.Equal(t, map[string][2]string{"amount": {`"500"`, `"650"`}}, diffOf(at(6)))
	require.Equal(t, "", at(6).Approver.String(), "a budget set without approval")
	// The corrected invoice: same provider and id, another amount (as written: "98.5").
	inv := at(8)
	require.Equal(t, "AWS/INV-1", inv.Key)
	require.Equal(t, map[string][2]string{"amount": {`"100.00"`, `"98.5"`}}, diffOf(inv))
	// FX: one rate a pair and day.
	require.Equal(t, "EUR/USD/2024-09-02", at(10).Key)
	require.Equal(t, map[string][2]string{"rate": {`"1.08"`, `"1.0812"`}}, diffOf(at(10)))
	require.Equal(t, "SERVICE:ecb-import", at(10).Actor.String())
	// Tags merge: team changed, env removed.
	tg := at(9)
	require.Equal(t, "AWS/i-1", tg.Key)
	require.Equal(t, map[string][2]string{"tags.env": {`"prod"`, "null"}, "tags.team": {`"web"`, `"data"`}}, diffOf(tg))
	require.JSONEq(t, `{"provider":"AWS","resource_id":"i-1","effective_from":"2024-09-01T00:00:00Z","tags":{"team":"data"}}`, string(tg.After))
	// Retirement keeps the rule and adds the retirement.
	rt := at(11)
	require.Equal(t, "r1", rt.Key)
	require.Equal(t, map[string][2]string{"retired.effective_to": {"null", `"2024-11-01T00:00:00Z"`}, "retired.reason": {"null", `"team merged"`}}, diffOf(rt))
	require.Equal(t, "USER:dave", rt.Approver.String())
	// A close: actor and approver.
	cl := at(12)
	require.Equal(t, changelog.ItemPeriodClose, cl.Item)
	require.Equal(t, "2024-09", cl.Key)
	require.Equal(t, "USER:alice", cl.Actor.String())
	require.Equal(t, "USER:bob", cl.Approver.String())
	require.Contains(t, diffOf(cl), "package_sha256")

	// Other tenants' changes never show.
	g := all(t, q, changelog.ListQuery{Tenant: "globex"})
	require.Len(t, g, 1)
	require.Equal(t, "null", string(g[0].Before), "globex's invoice has its own history")

	// The same rows whatever the batch cut: one event a batch.
	q1, _ := fold(t, store, 1)
	require.Equal(t, got, all(t, q1, changelog.ListQuery{Tenant: "acme"}))

	// Filters: kinds, the time window, pages.
	budgets := all(t, q, changelog.ListQuery{Tenant: "acme", Kinds: []string{"budget_set", "fx_rate_recorded"}})
	require.Len(t, budgets, 4)
	from := evs[6].GetRecordedAt().AsTime()
	to := evs[9].GetRecordedAt().AsTime()
	window := all(t, q, changelog.ListQuery{Tenant: "acme", From: from, To: to})
	require.Equal(t, []uint64{evs[8].GetTenantSeq(), evs[7].GetTenantSeq(), evs[6].GetTenantSeq()}, seqs(window))
	week := all(t, q, changelog.ListQuery{Tenant: "acme", From: time.Now().AddDate(0, 0, -7)})
	require.Len(t, week, len(got))
	require.Empty(t, all(t, q, changelog.ListQuery{Tenant: "acme", From: time.Now().Add(time.Hour)}))
	p1, err := q.List(ctxT(t), changelog.ListQuery{Tenant: "acme", Limit: 5})
	require.NoError(t, err)
	require.Len(t, p1.Changes, 5)
	require.NotEmpty(t, p1.Next)
	require.Equal(t, got, all(t, q, changelog.ListQuery{Tenant: "acme", Limit: 5}), "pages of 5 give the same changes")
}

func seqs(cs []changelog.Change) []uint64 {
	out := make([]uint64, len(cs))
	for i, c := range cs {
		out[i] = c.TenantSeq
	}
	return out
}

func TestChangeLogCSV(t *testing.T) {
	store := natstest.Run(t, natstest.NoSyncAlways()).Store()
	evs := history(t, store)
	q, _ := fold(t, store, 3)

	var buf bytes.Buffer
	require.NoError(t, q.WriteCSV(ctxT(t), &buf, "acme", evs[0].GetRecordedAt().AsTime().Format("2006-01")))
	rows, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Equal(t, changelog.CSVHeader, rows[0])
	require.Len(t, rows, len(evs)) // header + every change but the usage reading
	first := rows[1]
	require.Equal(t, "1", first[0])
	require.Equal(t, "allocation_rule_set", first[3])
	require.Equal(t, "USER:carol", first[6])
	require.Equal(t, "USER:dave", first[7])
	require.Equal(t, "null", first[10])
	budget2 := rows[6] // log order: rule, budget, invoice, tags, rule, budget
	require.Equal(t, "budget_set", budget2[3])
	require.Equal(t, "amount", budget2[9])
	var diff []changelog.FieldChange
	require.NoError(t, json.Unmarshal([]byte(budget2[12]), &diff))
	require.Equal(t, `"650"`, string(diff[0].After))

	buf.Reset()
	require.NoError(t, q.WriteCSV(ctxT(t), &buf, "acme", "2001-01"))
	rows, err = csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 1, "a month with no changes: the header only")
}

func TestChangeLogBadQueries(t *testing.T) {
	pool, _ := pgtest.NewDB(t)
	// The tables exist (a runner sets them up) but no log is needed to query them.
	r, err := projections.NewRunner(pool, nil, projections.Options{}, changelog.New())
	require.NoError(t, err)
	require.NoError(t, r.Setup(ctxT(t)))
	q := changelog.NewQueries(pool)
	now := time.Now()
	for _, tc := range []struct {
		name string
		lq   changelog.ListQuery
		want string
	}{
		{"no tenant", changelog.ListQuery{}, "tenant"},
		{"bad tenant", changelog.ListQuery{Tenant: "Acme Corp"}, "tenant"},
		{"bad kind", changelog.ListQuery{Tenant: "acme", Kinds: []string{"cost_line_recorded"}}, `kind "cost_line_recorded"`},
		{"window backwards", changelog.ListQuery{Tenant: "acme", From: now, To: now.Add(-time.Hour)}, "must be after from"},
		{"forged token", changelog.ListQuery{Tenant: "acme", PageToken: "seq=5"}, "page token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := q.List(ctxT(t), tc.lq)
			require.ErrorIs(t, err, changelog.ErrInvalid)
			require.ErrorContains(t, err, tc.want)
		})
	}
	err = q.WriteCSV(ctxT(t), &bytes.Buffer{}, "acme", "2024-9")
	require.ErrorIs(t, err, changelog.ErrInvalid)
	require.ErrorContains(t, err, "period")
}
