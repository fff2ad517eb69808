package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// costLine builds a cost-line event with a deterministic id.
func costLine(tenant string, n int) *tallyv1.Envelope {
	key := fmt.Sprintf("line-%06d", n)
	return &tallyv1.Envelope{
		EventId:        eventstore.DeterministicID(tenant, key),
		TenantId:       tenant,
		IdempotencyKey: key,
		OccurredAt:     timestamppb.New(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)),
		Actor:          &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "test"},
		Body: &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: &tallyv1.CostLine{
			LineKey:         key,
			ServiceName:     "Amazon EC2",
			BilledCost:      fmt.Sprintf("%d.%02d", n, n%100),
			BillingCurrency: "USD",
		}}},
	}
}

func costLines(tenant string, from, n int) []*tallyv1.Envelope {
	out := make([]*tallyv1.Envelope, n)
	for i := range out {
		out[i] = costLine(tenant, from+i)
	}
	return out
}

func readAll(t *testing.T, st *eventstore.Store, f eventstore.ReadFilter) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	require.NoError(t, st.Read(ctxT(t), f, func(ev eventstore.Event) error {
		out = append(out, ev)
		return nil
	}))
	return out
}

func TestAppendReadRoundTrip(t *testing.T) {
	srv := natstest.Run(t)
	st := srv.Store()
	ctx := ctxT(t)

	in := costLines("acme", 0, 10)
	res, err := st.Append(ctx, "acme", in)
	require.NoError(t, err)
	require.Equal(t, 10, res.Appended)
	require.Equal(t, uint64(1), res.FirstSeq)
	require.Equal(t, uint64(10), res.LastSeq)
	require.Equal(t, 1, res.Messages, "one kind, small batch: one message, one fsync")

	got := readAll(t, st, eventstore.ReadFilter{Tenant: "acme"})
	require.Len(t, got, 10)
	prev := eventstore.ZeroHash
	for i, ev := range got {
		env := ev.Envelope
		require.Equal(t, in[i].GetEventId(), env.GetEventId())
		require.Equal(t, uint64(i+1), env.GetTenantSeq())
		require.Equal(t, prev[:], env.GetPrevHash())
		require.Equal(t, eventstore.ChainHash(prev, ev.Raw), ev.Hash)
		require.NotNil(t, env.GetRecordedAt())
		require.True(t, proto.Equal(in[i].GetCostLineRecorded(), env.GetCostLineRecorded()))
		prev = ev.Hash
	}
	require.Equal(t, prev, res.Head.Hash)

	head, err := st.Head(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, res.Head, head)
}

func TestAppendIdempotent(t *testing.T) {
	srv := natstest.Run(t)
	st := srv.Store()
	ctx := ctxT(t)

	res, err := st.Append(ctx, "acme", costLines("acme", 0, 100))
	require.NoError(t, err)
	require.Equal(t, 100, res.Appended)

	// The same batch again, built anew as a retrying client would.
	res, err = st.Append(ctx, "acme", costLines("acme", 0, 100))
	require.NoError(t, err)
	require.Equal(t, 0, res.Appended)
	require.Equal(t, 100, res.Duplicates)

	// A retry from another run carries other request metadata: still the
	// same facts.
	retry := costLines("acme", 0, 100)
	for _, env := range retry {
		env.CorrelationId = "another-run"
		env.Source = &tallyv1.Source{Adapter: "retry", BatchId: "run-2"}
		env.Actor = &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_USER, Id: "someone-else"}
	}
	res, err = st.Append(ctx, "acme", retry)
	require.NoError(t, err)
	require.Equal(t, 0, res.Appended)
	require.Equal(t, 100, res.Duplicates)

	// An overlapping batch appends only what is new.
	res, err = st.Append(ctx, "acme", costLines("acme", 50, 100))
	require.NoError(t, err)
	require.Equal(t, 50, res.Appended)
	require.Equal(t, 50, res.Duplicates)
	require.Equal(t, uint64(101), res.FirstSeq)

	// After a restart of the server and a fresh store (a new process, far
	// beyond any dedupe window) the retry still appends nothing.
	srv = srv.Restart()
	st = srv.Store()
	res, err = st.Append(ctx, "acme", costLines("acme", 0, 150))
	require.NoError(t, err)
	require.Equal(t, 0, res.Appended)
	require.Equal(t, 150, res.Duplicates)
	require.Len(t, readAll(t, st, eventstore.ReadFilter{Tenant: "acme"}), 150)
}

func TestAppendDuplicateIDOtherContent(t *testing.T) {
	srv := natstest.Run(t)
	st := srv.Store()
	ctx := ctxT(t)

	_, err := st.Append(ctx, "acme", costLines("acme", 0, 3))
	require.NoError(t, err)

	forged := costLines("acme", 3, 2)
	changed := costLine("acme", 1) // id of event 2, other amount
	changed.GetCostLineRecorded().Line.BilledCost = "999.99"
	forged = append(forged, changed)
	_, err = st.Append(ctx, "acme", forged)
	require.ErrorIs(t, err, eventstore.ErrDuplicate)
	require.Len(t, readAll(t, st, eventstore.ReadFilter{Tenant: "acme"}), 3, "a refused batch appends nothing")

	// Within one batch too.
	twice := []*tallyv1.Envelope{costLine("acme", 10), costLine("acme", 10)}
	twice[1].GetCostLineRecorded().Line.BilledCost = "1.00"
	_, err = st.Append(ctx, "acme", twice)
	require.ErrorIs(t, err, eventstore.ErrDuplicate)
	require.Len(t, readAll(t, st, eventstore.ReadFilter{Tenant: "acme"}), 3)
}

func TestInvalidInputAppendsNothing(t *testing.T) {
	srv := natstest.Run(t)
	st := srv.Store()
	ctx := ctxT(t)

	noBody := costLine("acme", 1)
	noBody.Body = nil
	badID := costLine("acme", 2)
	badID.EventId = "not-a-uuid"
	otherTenant := costLine("globex", 3)

	tests := []struct {
		name   string
		tenant string
		events []*tallyv1.Envelope
		want   error
	}{
		{"empty tenant", "", costLines("x", 0, 1), eventstore.ErrInvalidTenant},
		{"upper case", "Acme", costLines("Acme", 0, 1), eventstore.ErrInvalidTenant},
		{"dot splits subjects", "ac.me", costLines("ac.me", 0, 1), eventstore.ErrInvalidTenant},
		{"wildcard", "acme>", costLines("acme>", 0, 1), eventstore.ErrInvalidTenant},
		{"star", "*", costLines("*", 0, 1), eventstore.ErrInvalidTenant},
		{"space", "ac me", costLines("ac me", 0, 1), eventstore.ErrInvalidTenant},
		{"system is reserved", eventstore.SystemTenant, costLines(eventstore.SystemTenant, 0, 1), eventstore.ErrInvalidTenant},
		{"too long", string(make([]byte, 64)), nil, eventstore.ErrInvalidTenant},
		{"64 chars", "a123456789012345678901234567890123456789012345678901234567890123", costLines("a", 0, 1), eventstore.ErrInvalidTenant},
		{"no body", "acme", []*tallyv1.Envelope{costLine("acme", 0), noBody}, eventstore.ErrInvalidEvent},
		{"bad event id", "acme", []*tallyv1.Envelope{badID}, eventstore.ErrInvalidEvent},
		{"other tenant in batch", "acme", []*tallyv1.Envelope{costLine("acme", 0), otherTenant}, eventstore.ErrInvalidEvent},
		{"nil event", "acme", []*tallyv1.Envelope{nil}, eventstore.ErrInvalidEvent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := st.Append(ctx, tt.tenant, tt.events)
			require.ErrorIs(t, err, tt.want)
			require.NotEmpty(t, err.Error())
		})
	}
	last, err := st.LastSeq(ctx)
	require.NoError(t, err)
	require.Zero(t, last, "nothing was appended")
}

func TestConcurrentWritersConditional(t *testing.T) {
	srv := natstest.Run(t)
	// Two stores on two connections: two processes as far as the log knows.
	a, b := srv.Store(), srv.Store()
	ctx := ctxT(t)
	_, err := a.Append(ctx, "acme", costLines("acme", 0, 5))
	require.NoError(t, err)
	_, err = b.Head(ctx, "acme") // b has read the same head
	require.NoError(t, err)

	for round := 0; round < 20; round++ {
		head, err := a.Head(ctx, "acme")
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, st := range []*eventstore.Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				base := 1000 + round*100 + i*10
				_, errs[i] = st.Append(ctx, "acme", costLines("acme", base, 3), eventstore.ExpectTenantSeq(head.Seq))
			}()
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			if err == nil {
				wins++
				continue
			}
			require.ErrorIs(t, err, eventstore.ErrConflict)
			var ce *eventstore.ConflictError
			require.True(t, errors.As(err, &ce))
			require.Equal(t, head.Seq, ce.Expected)
			require.Equal(t, head.Seq+3, ce.Actual)
		}
		require.Equal(t, 1, wins, "round %d: exactly one conditional writer wins", round)
	}
	rep, err := a.Verify(ctx, "acme")
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.Equal(t, uint64(5+20*3), rep.Events)
	require.Equal(t, uint64(5+20*3), rep.Head.Seq)
}

func TestConcurrentWritersUnconditionalNoFork(t *testing.T) {
	srv := natstest.Run(t)
	stores := []*eventstore.Store{srv.Store(), srv.Store(), srv.Store()}
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for i, st := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				_, err := st.Append(ctx, "acme", costLines("acme", i*1000+j*10, 10))
				require.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	rep, err := stores[0].Verify(ctx, "acme")
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.Equal(t, uint64(300), rep.Events)
	require.Equal(t, uint64(300), rep.Head.Seq)
}

func TestLargeBatchSpansMessages(t *testing.T) {
	srv := natstest.Run(t)
	st := srv.Store(func(o *eventstore.Options) { o.MaxMessageBytes = 16 << 10 })
	ctx := ctxT(t)
	res, err := st.Append(ctx, "acme", costLines("acme", 0, 2000))
	require.NoError(t, err)
	require.Equal(t, 2000, res.Appended)
	require.Greater(t, res.Messages, 5)
	rep, err := st.Verify(ctx, "acme")
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.Equal(t, uint64(2000), rep.Head.Seq)
}

func TestEventsSurviveRestart(t *testing.T) {
	srv := natstest.Run(t)
	st := srv.Store()
	ctx := ctxT(t)
	res, err := st.Append(ctx, "acme", costLines("acme", 0, 500))
	require.NoError(t, err)

	srv = srv.Restart()
	st = srv.Store()
	got := readAll(t, st, eventstore.ReadFilter{Tenant: "acme"})
	require.Len(t, got, 500)
	rep, err := st.Verify(ctx, "acme")
	require.NoError(t, err)
	require.True(t, rep.OK())
	require.Equal(t, res.Head.Hash, rep.Head.Hash)

	// The chain continues where it stopped.
	res2, err := st.Append(ctx, "acme", costLines("acme", 500, 1))
	require.NoError(t, err)
	require.Equal(t, uint64(501), res2.FirstSeq)
	ev := readAll(t, st, eventstore.ReadFilter{Tenant: "acme", FromTenantSeq: 501})
	require.Len(t, ev, 1)
	require.Equal(t, res.Head.Hash[:], ev[0].Envelope.GetPrevHash())
}

func TestReadFilters(t *testing.T) {
	srv := natstest.Run(t)
	st := srv.Store()
	ctx := ctxT(t)
	_, err := st.Append(ctx, "acme", costLines("acme", 0, 3))
	require.NoError(t, err)
	mid := time.Now()
	time.Sleep(10 * time.Millisecond)
	inv := &tallyv1.Envelope{Body: &tallyv1.Envelope_InvoiceRecorded{InvoiceRecorded: &tallyv1.InvoiceRecorded{
		InvoiceId: "INV-1", Amount: "100.00", Currency: "USD"}}}
	_, err = st.Append(ctx, "acme", []*tallyv1.Envelope{inv})
	require.NoError(t, err)
	_, err = st.Append(ctx, "globex", costLines("globex", 0, 2))
	require.NoError(t, err)

	tests := []struct {
		name string
		f    eventstore.ReadFilter
		want int
	}{
		{"everything", eventstore.ReadFilter{}, 6},
		{"one tenant", eventstore.ReadFilter{Tenant: "acme"}, 4},
		{"other tenant", eventstore.ReadFilter{Tenant: "globex"}, 2},
		{"unknown tenant", eventstore.ReadFilter{Tenant: "initech"}, 0},
		{"kind across tenants", eventstore.ReadFilter{Kinds: []string{"cost_line_recorded"}}, 5},
		{"kind in tenant", eventstore.ReadFilter{Tenant: "acme", Kinds: []string{"invoice_recorded"}}, 1},
		{"two kinds", eventstore.ReadFilter{Tenant: "acme", Kinds: []string{"invoice_recorded", "cost_line_recorded"}}, 4},
		{"from tenant seq", eventstore.ReadFilter{Tenant: "acme", FromTenantSeq: 3}, 2},
		{"from stream seq", eventstore.ReadFilter{FromStreamSeq: 2}, 3},
		{"from time", eventstore.ReadFilter{FromTime: mid}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Len(t, readAll(t, st, tt.f), tt.want)
		})
	}
	err = st.Read(ctx, eventstore.ReadFilter{Kinds: []string{"no_such_kind"}}, func(eventstore.Event) error { return nil })
	require.ErrorIs(t, err, eventstore.ErrInvalidEvent)
	err = st.Read(ctx, eventstore.ReadFilter{Tenant: "a.b"}, func(eventstore.Event) error { return nil })
	require.ErrorIs(t, err, eventstore.ErrInvalidTenant)
}

func TestKindsCoverSchema(t *testing.T) {
	kinds := eventstore.Kinds()
	require.Len(t, kinds, 14)
	for _, k := range kinds {
		require.True(t, eventstore.IsKind(k))
	}
	require.False(t, eventstore.IsKind("mixed"))
}

func TestStreamRefusesDeletes(t *testing.T) {
	srv := natstest.Run(t)
	st := srv.Store()
	ctx := ctxT(t)
	_, err := st.Append(ctx, "acme", costLines("acme", 0, 1))
	require.NoError(t, err)
	stream, err := st.JetStream().Stream(ctx, st.StreamName())
	require.NoError(t, err)
	require.Error(t, stream.DeleteMsg(ctx, 1), "the log is append-only")
	require.Error(t, stream.Purge(ctx))
	require.Len(t, readAll(t, st, eventstore.ReadFilter{}), 1)
}

// publishRaw publishes a payload straight to the stream, as an attacker with
// publish rights would.
func publishRaw(t *testing.T, nc *nats.Conn, subject string, data []byte) {
	t.Helper()
	msg, err := nc.Request(subject, data, 5*time.Second)
	require.NoError(t, err)
	require.NotContains(t, string(msg.Data), "error")
}

func TestLogIDIsStable(t *testing.T) {
	srv := natstest.Run(t)
	st := srv.Store()
	id := st.LogID()
	require.NotEmpty(t, id)
	require.Equal(t, id, srv.Store().LogID(), "a second open keeps the id")
	srv = srv.Restart()
	require.Equal(t, id, srv.Store().LogID(), "the id survives a restart")
	require.NotEqual(t, id, natstest.Run(t).Store().LogID(), "another log has another id")
}
