package closepkg_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/closepkg"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/ingest"
	"github.com/tally-ledger/tally/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const samplePath = "../../testdata/focus/FOCUS-1.0/focus_sample.csv"

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

// catchUp folds the whole log into pool's closepkg schema with a runner of its own.
func catchUp(t testing.TB, store *eventstore.Store, pool *pgxpool.Pool, batch int) *projections.Runner {
	t.Helper()
	r, err := projections.NewRunner(pool, store, projections.Options{BatchEvents: batch}, closepkg.New())
	require.NoError(t, err)
	require.NoError(t, r.CatchUp(ctxT(t)))
	return r
}

func ingestSample(t testing.TB, e env, tenant string, opts ingest.Options) ingest.Summary {
	t.Helper()
	r, err := focus.Open(samplePath)
	require.NoError(t, err)
	defer r.Close()
	sum, err := ingest.Ingest(ctxT(t), e.store, e.pool, tenant, r, opts)
	require.NoError(t, err)
	return sum
}

var (
	sep2024 = time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
	user    = func(id string) *tallyv1.Actor { return &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_USER, Id: id} }
)

func envelope(tenant, key string, actor *tallyv1.Actor) *tallyv1.Envelope {
	return &tallyv1.Envelope{EventId: eventstore.DeterministicID(tenant, key), TenantId: tenant, IdempotencyKey: key,
		OccurredAt: timestamppb.New(sep2024.AddDate(0, 1, 5)), Actor: actor}
}

// invoice is an InvoiceRecorded for September 2024; the key includes the amount, so a
// corrected invoice (same id, new amount) is a new event.
func invoice(tenant, provider, account, id, amount string) *tallyv1.Envelope {
	e := envelope(tenant, "invoice/"+provider+"/"+account+"/"+id+"/"+amount, user("ap-clerk"))
	e.Body = &tallyv1.Envelope_InvoiceRecorded{InvoiceRecorded: &tallyv1.InvoiceRecorded{
		InvoiceId: id, Amount: amount, Currency: "USD", IssuedAt: timestamppb.New(sep2024.AddDate(0, 1, 3)),
		Scope: &tallyv1.BillScope{Provider: provider, BillingAccountId: account,
			BillingPeriodStart: timestamppb.New(sep2024), BillingPeriodEnd: timestamppb.New(sep2024.AddDate(0, 1, 0))}}}
	return e
}

func appendEvents(t testing.TB, st *eventstore.Store, tenant string, events ...*tallyv1.Envelope) eventstore.AppendResult {
	t.Helper()
	res, err := st.Append(ctxT(t), tenant, events)
	require.NoError(t, err)
	return res
}

// firstRecorded is the event that recorded the first line of provider in the log.
func firstRecorded(t testing.TB, st *eventstore.Store, tenant, provider string) *tallyv1.Envelope {
	t.Helper()
	var found *tallyv1.Envelope
	require.NoError(t, st.Read(ctxT(t), eventstore.ReadFilter{Tenant: tenant, Kinds: []string{"cost_line_recorded"}}, func(ev eventstore.Event) error {
		if found == nil && ev.Envelope.GetCostLineRecorded().GetLine().GetScope().GetProvider() == provider {
			found = proto.Clone(ev.Envelope).(*tallyv1.Envelope)
		}
		return nil
	}))
	require.NotNil(t, found)
	return found
}
