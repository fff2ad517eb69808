package eventstore_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// tamper rewrites event number seq of the tenant with one field changed and
// returns the message payload holding it, as an attacker would build it.
// When rehash is true the attacker also recomputes that event's stored hash.
func tamper(t *testing.T, st *eventstore.Store, tenant string, seq uint64, rehash bool) (subject string, payload []byte, eventID string) {
	t.Helper()
	evs := readAll(t, st, eventstore.ReadFilter{Tenant: tenant})
	var batch tallyv1.EventBatch
	for _, ev := range evs {
		if ev.Envelope.GetTenantSeq() != seq {
			continue
		}
		env := proto.Clone(ev.Envelope).(*tallyv1.Envelope)
		env.GetCostLineRecorded().Line.BilledCost = "0.01"
		raw, err := proto.Marshal(env)
		require.NoError(t, err)
		hash := ev.Hash
		if rehash {
			var prev eventstore.Hash
			copy(prev[:], env.GetPrevHash())
			hash = eventstore.ChainHash(prev, raw)
		}
		batch.Events = append(batch.Events, &tallyv1.StoredEvent{Envelope: raw, Hash: hash[:]})
		eventID = env.GetEventId()
	}
	require.NotEmpty(t, eventID)
	payload, err := proto.Marshal(&batch)
	require.NoError(t, err)
	return "tally." + tenant + ".cost_line_recorded", payload, eventID
}

func TestVerifyHonestChain(t *testing.T) {
	srv := natstest.Run(t)
	st := srv.Store()
	ctx := ctxT(t)
	_, err := st.Append(ctx, "acme", costLines("acme", 0, 50))
	require.NoError(t, err)
	_, err = st.Append(ctx, "globex", costLines("globex", 0, 5))
	require.NoError(t, err)
	rep, err := st.Verify(ctx, "acme")
	require.NoError(t, err)
	require.True(t, rep.OK())
	require.Nil(t, rep.FirstBad())
	require.Equal(t, uint64(50), rep.Events)

	empty, err := st.Verify(ctx, "initech")
	require.NoError(t, err)
	require.True(t, empty.OK())
	require.Equal(t, eventstore.ZeroHash, empty.Head.Hash)
}

func TestVerifyNamesTamperedEvent(t *testing.T) {
	tests := []struct {
		name        string
		rehash      bool
		deleteFirst bool
		wantReason  string
	}{
		{"re-published copy, stale hash", false, false, "re-published or forged"},
		{"re-published copy, recomputed hash", true, false, "re-published or forged"},
		{"original deleted, copy re-published", false, true, "missing"},
		{"original deleted, copy re-published with recomputed hash", true, true, "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := natstest.Run(t)
			st := srv.Store(func(o *eventstore.Options) {
				o.AllowDelete = tt.deleteFirst
				o.MaxMessageBytes = 2 << 10 // a few events a message
			})
			ctx := ctxT(t)
			_, err := st.Append(ctx, "acme", costLines("acme", 0, 40))
			require.NoError(t, err)

			const victim = 17
			subject, payload, id := tamper(t, st, "acme", victim, tt.rehash)
			if tt.deleteFirst {
				var streamSeq uint64
				for _, ev := range readAll(t, st, eventstore.ReadFilter{Tenant: "acme"}) {
					if ev.Envelope.GetTenantSeq() == victim {
						streamSeq = ev.StreamSeq
					}
				}
				stream, err := st.JetStream().Stream(ctx, st.StreamName())
				require.NoError(t, err)
				// The attacker deletes the whole message holding the victim and
				// re-publishes only the altered event.
				require.NoError(t, stream.DeleteMsg(ctx, streamSeq))
			}
			publishRaw(t, srv.Conn(), subject, payload)

			rep, err := st.Verify(ctx, "acme")
			require.NoError(t, err)
			require.False(t, rep.OK())
			first := rep.FirstBad()
			require.NotNil(t, first)
			require.Contains(t, first.Reason, tt.wantReason)
			if tt.deleteFirst {
				require.LessOrEqual(t, first.TenantSeq, uint64(victim), "the first problem is at or before the victim: %s", first)
				found := false
				for _, p := range rep.Problems {
					if p.EventID == id && p.TenantSeq == victim {
						found = true
					}
				}
				require.True(t, found, "the altered copy is named: %v", rep.Problems)
			} else {
				require.Equal(t, uint64(victim), first.TenantSeq, "%s", first)
				require.Equal(t, id, first.EventID)
			}
			if !tt.rehash {
				found := false
				for _, p := range rep.Problems {
					if p.TenantSeq == victim && p.EventID == id {
						require.Contains(t, p.Reason, "altered")
						found = true
					}
				}
				require.True(t, found, "%v", rep.Problems)
			}
		})
	}
}

func TestVerifyCatchesInPlaceEdit(t *testing.T) {
	// A chain whose event 5 was altered in place (the attacker rewrote the
	// message with an intact stored hash for the new content) breaks at
	// event 6, whose prev_hash no longer matches: the verifier names 5.
	srv := natstest.Run(t)
	st := srv.Store(func(o *eventstore.Options) { o.AllowDelete = true })
	ctx := ctxT(t)
	_, err := st.Append(ctx, "acme", costLines("acme", 0, 10))
	require.NoError(t, err)
	stream, err := st.JetStream().Stream(ctx, st.StreamName())
	require.NoError(t, err)

	evs := readAll(t, st, eventstore.ReadFilter{Tenant: "acme"})
	// Rebuild the whole message with event 5 altered and re-hashed, then
	// replace the original message.
	var batch tallyv1.EventBatch
	for _, ev := range evs {
		raw, hash := ev.Raw, ev.Hash
		if ev.Envelope.GetTenantSeq() == 5 {
			env := proto.Clone(ev.Envelope).(*tallyv1.Envelope)
			env.GetCostLineRecorded().Line.ServiceName = "Free Lunch"
			raw, err = proto.Marshal(env)
			require.NoError(t, err)
			var prev eventstore.Hash
			copy(prev[:], env.GetPrevHash())
			hash = eventstore.ChainHash(prev, raw)
		}
		batch.Events = append(batch.Events, &tallyv1.StoredEvent{Envelope: raw, Hash: hash[:]})
	}
	payload, err := proto.Marshal(&batch)
	require.NoError(t, err)
	require.NoError(t, stream.DeleteMsg(ctx, evs[0].StreamSeq))
	publishRaw(t, srv.Conn(), "tally.acme.cost_line_recorded", payload)

	rep, err := st.Verify(ctx, "acme")
	require.NoError(t, err)
	require.False(t, rep.OK())
	first := rep.FirstBad()
	require.Equal(t, uint64(6), first.TenantSeq)
	require.Contains(t, first.Reason, "event 5 was altered or replaced")
}
