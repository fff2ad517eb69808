package savings_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/savings"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type env struct {
	store *eventstore.Store
	pool  *pgxpool.Pool
	q     *savings.Queries
}

func newEnv(t testing.TB) env {
	t.Helper()
	srv := natstest.Run(t, natstest.NoSyncAlways())
	pool, _ := pgtest.NewDB(t)
	return env{store: srv.Store(), pool: pool, q: savings.NewQueries(pool)}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// catchUp folds the whole log into the savings schema with a runner of its own.
func (e env) catchUp(t testing.TB, batch int) {
	t.Helper()
	r, err := projections.NewRunner(e.pool, e.store, projections.Options{BatchEvents: batch}, savings.New())
	require.NoError(t, err)
	require.NoError(t, r.CatchUp(ctxT(t)))
}

// add appends events for tenant, one log message per event kind run.
func (e env) add(t testing.TB, tenant string, events ...*tallyv1.Envelope) {
	t.Helper()
	for _, ev := range events {
		ev.TenantId = tenant
		if ev.EventId == "" {
			ev.EventId = eventstore.DeterministicID(tenant, ev.GetIdempotencyKey())
		}
	}
	_, err := e.store.Append(ctxT(t), tenant, events)
	require.NoError(t, err)
}

func (e env) get(t testing.TB, tenant, id string) (*savings.Action, []savings.Revision) {
	t.Helper()
	a, h, err := e.q.Get(ctxT(t), tenant, id)
	require.NoError(t, err)
	return a, h
}

const (
	provider = "AWS"
	account  = "111111111111"
)

var sep = time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)

func month(m time.Time) *tallyv1.BillScope {
	return &tallyv1.BillScope{Provider: provider, BillingAccountId: account,
		BillingPeriodStart: timestamppb.New(m), BillingPeriodEnd: timestamppb.New(m.AddDate(0, 1, 0))}
}

// costLine is a line of resource on a UTC day, in the bill of bill (a month), of effective
// cost eff (billed cost twice that, to show it is not the one measured).
func costLine(bill time.Time, resource string, on time.Time, eff, key string) *tallyv1.CostLine {
	return &tallyv1.CostLine{
		LineKey: key, Scope: month(bill), ResourceId: resource, ServiceName: "Amazon EC2", ChargeCategory: "Usage",
		ChargePeriodStart: timestamppb.New(on), ChargePeriodEnd: timestamppb.New(on.Add(24 * time.Hour)),
		BilledCost: "999", EffectiveCost: eff, BillingCurrency: "USD",
	}
}

func day(d int) time.Time { return sep.AddDate(0, 0, d-1) } // day d of September 2024

func recorded(l *tallyv1.CostLine) *tallyv1.Envelope {
	return &tallyv1.Envelope{IdempotencyKey: "recorded/" + l.GetLineKey(), OccurredAt: l.GetChargePeriodStart(),
		Body: &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: l}}}
}

func restated(l *tallyv1.CostLine, version int) *tallyv1.Envelope {
	return &tallyv1.Envelope{IdempotencyKey: fmt.Sprintf("restated/%s/%d", l.GetLineKey(), version), OccurredAt: l.GetChargePeriodStart(),
		Body: &tallyv1.Envelope_CostLineRestated{CostLineRestated: &tallyv1.CostLineRestated{Line: l,
			Delta: &tallyv1.CostDelta{BillingCurrency: "USD"}}}}
}

func retracted(l *tallyv1.CostLine) *tallyv1.Envelope {
	return &tallyv1.Envelope{IdempotencyKey: "retracted/" + l.GetLineKey(), OccurredAt: l.GetChargePeriodStart(),
		Body: &tallyv1.Envelope_CostLineRetracted{CostLineRetracted: &tallyv1.CostLineRetracted{Scope: l.GetScope(), LineKey: l.GetLineKey(),
			Delta: &tallyv1.CostDelta{BillingCurrency: "USD"}}}}
}

func finalized(bill time.Time) *tallyv1.Envelope {
	return &tallyv1.Envelope{IdempotencyKey: "finalized/" + bill.Format("2006-01"), OccurredAt: timestamppb.New(bill.AddDate(0, 1, 3)),
		Body: &tallyv1.Envelope_BillingPeriodFinalized{BillingPeriodFinalized: &tallyv1.BillingPeriodFinalized{Scope: month(bill)}}}
}

func remediation(r *tallyv1.RemediationExecuted) *tallyv1.Envelope {
	if r.Provider == "" {
		r.Provider = provider
	}
	return &tallyv1.Envelope{IdempotencyKey: "remediation/" + r.GetActionId() + "/" + r.GetDescription(), OccurredAt: r.GetExecutedAt(),
		Actor: &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "optimizer"},
		Body:  &tallyv1.Envelope_RemediationExecuted{RemediationExecuted: r}}
}

// daily lines of resource, one a day from first to last (days of September), each of eff.
func daily(resource string, first, last int, eff string) []*tallyv1.Envelope {
	var out []*tallyv1.Envelope
	for d := first; d <= last; d++ {
		out = append(out, recorded(costLine(sep, resource, day(d), eff, fmt.Sprintf("%s-%02d", resource, d))))
	}
	return out
}

// dump is every row of the savings tables of schema, as text, in key order.
func dump(t testing.TB, pool *pgxpool.Pool, schema string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for table, order := range map[string]string{
		"lines": "tenant_id, provider, billing_account_id, billing_period_start, line_key", "finalized": "tenant_id, provider, billing_account_id, billing_period_start",
		"actions": "tenant_id, action_id", "history": "tenant_id, action_id, revision",
	} {
		rows, err := pool.Query(ctxT(t), fmt.Sprintf("SELECT t::text FROM %s t ORDER BY %s", pgx.Identifier{schema, table}.Sanitize(), order))
		require.NoError(t, err)
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		out[table] = got
	}
	return out
}

// foldDirect folds events into a fresh schema with Apply, cut into batches of size n (0: all
// at once), each batch in its own transaction.
func foldDirect(t testing.TB, pool *pgxpool.Pool, schema string, events []eventstore.Event, n int) {
	t.Helper()
	ctx := ctxT(t)
	p := savings.New()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize())
	require.NoError(t, err)
	require.NoError(t, p.Setup(ctx, tx, schema))
	require.NoError(t, tx.Commit(ctx))
	if n <= 0 {
		n = len(events)
	}
	for i := 0; i < len(events); i += n {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, p.Apply(ctx, tx, schema, events[i:min(i+n, len(events))]))
		require.NoError(t, tx.Commit(ctx))
	}
}

// logEvents reads every event of the log.
func logEvents(t testing.TB, st *eventstore.Store) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	require.NoError(t, st.Read(ctxT(t), eventstore.ReadFilter{Kinds: savings.New().Kinds()}, func(ev eventstore.Event) error {
		out = append(out, ev)
		return nil
	}))
	return out
}

func statuses(h []savings.Revision) string {
	var s []string
	for _, r := range h {
		s = append(s, r.Status+":"+r.RealizedDaily)
	}
	return strings.Join(s, " ")
}
