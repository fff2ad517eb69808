package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/gateway"
	"github.com/tally-ledger/tally/gateway/tokens"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// auditGateway serves a gateway over a fresh log holding 12 events of
// tenant acme (every third one a usage reading, the others cost lines), and
// returns its URL, an environment with an auditor token for acme, and the
// NATS server.
func auditGateway(t *testing.T) (string, map[string]string, *natstest.Server) {
	t.Helper()
	srv := natstest.Run(t)
	pool, _ := pgtest.NewDB(t)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	mux := http.NewServeMux()
	gateway.New(gateway.Config{Store: srv.Store(), Pool: pool, TempDir: t.TempDir(), Logger: logger}).Mount(mux)
	ts := httptest.NewUnstartedServer(mux)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	ts.Config.Protocols = &p
	ts.Start()
	t.Cleanup(ts.Close)

	var evs []*tallyv1.Envelope
	for n := 1; n <= 12; n++ {
		key := fmt.Sprintf("event-%02d", n)
		env := &tallyv1.Envelope{
			EventId: eventstore.DeterministicID("acme", key), TenantId: "acme", IdempotencyKey: key,
			OccurredAt: timestamppb.New(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)),
			Actor:      &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "test"},
			Body: &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: &tallyv1.CostLine{
				LineKey: key, ServiceName: "Amazon EC2", BilledCost: fmt.Sprintf("%d.50", n), BillingCurrency: "USD"}}},
		}
		if n%3 == 0 {
			env.Body = &tallyv1.Envelope_UsageRecorded{UsageRecorded: &tallyv1.UsageRecorded{
				Provider: "AWS", BillingAccountId: "123456789012", ResourceId: key, Metric: "cpu_hours",
				Quantity: "1", Unit: "Hours",
				PeriodStart: timestamppb.New(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)),
				PeriodEnd:   timestamppb.New(time.Date(2026, 10, 1, 1, 0, 0, 0, time.UTC))}}
		}
		evs = append(evs, env)
	}
	_, err := srv.Store().Append(t.Context(), "acme", evs)
	require.NoError(t, err)
	env := map[string]string{"TALLY_TOKEN": newToken(t, pool, tokens.Spec{Name: "cli-auditor", Role: tokens.RoleAuditor, Tenant: "acme"})}
	return ts.URL, env, srv
}

func TestAuditReplayCommand(t *testing.T) {
	url, env, _ := auditGateway(t)

	// Table: a header, then one line per event in chain order.
	_, out, _, err := execute(t, env, "audit", "replay", "--tenant", "acme", "--server", url)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 13, "%s", out)
	require.Regexp(t, `^SEQ\s+LOG_SEQ\s+KIND\s+EVENT_ID\s+RECORDED_AT\s+HASH$`, lines[0])
	require.Regexp(t, `^1\s+\d+\s+cost_line_recorded\s+`+eventstore.DeterministicID("acme", "event-01")+`\s+\S+\s+[0-9a-f]{64}$`, lines[1])
	require.Regexp(t, `^3\s+\d+\s+usage_recorded\s`, lines[3])

	// JSON lines, filtered by kind and chain position.
	_, out, _, err = execute(t, with(env, "TALLY_SERVER", url), "audit", "replay", "--tenant", "acme",
		"--kind", "usage_recorded", "--from-seq", "5", "--output", "json")
	require.NoError(t, err)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, "%s", out)
	for i, want := range []uint64{6, 9, 12} {
		var ev tallyv1.ReplayEventsResponse
		require.NoError(t, protojson.Unmarshal([]byte(lines[i]), &ev), lines[i])
		require.Equal(t, want, ev.GetTenantSeq())
		require.Equal(t, "usage_recorded", ev.GetKind())
		require.NotNil(t, ev.GetEnvelope().GetUsageRecorded())
		require.True(t, json.Valid([]byte(lines[i])))
	}

	// Refusals.
	_, _, _, err = execute(t, env, "audit", "replay", "--server", url)
	require.ErrorContains(t, err, "--tenant is required")
	_, _, _, err = execute(t, env, "audit", "replay", "--tenant", "acme", "--server", url, "--kind", "colour")
	require.ErrorContains(t, err, `refused: kinds[0] "colour" is not an event kind`)
	_, _, _, err = execute(t, env, "audit", "replay", "--tenant", "globex", "--server", url)
	require.ErrorContains(t, err, "not allowed:")
	_, _, _, err = execute(t, env, "audit", "replay", "--tenant", "acme", "--server", url, "--output", "yaml")
	require.ErrorContains(t, err, `--output "yaml"`)
}

func TestAuditVerifyCommand(t *testing.T) {
	url, env, srv := auditGateway(t)

	_, out, _, err := execute(t, env, "audit", "verify", "--tenant", "acme", "--server", url)
	require.NoError(t, err)
	require.Regexp(t, `^OK tenant acme: 12 events, head 12 [0-9a-f]{64} \(log message \d+\)\n$`, out)

	// Re-publish event 5, altered, straight to the stream.
	var victim eventstore.Event
	require.NoError(t, srv.Store().Read(t.Context(), eventstore.ReadFilter{Tenant: "acme"}, func(ev eventstore.Event) error {
		if ev.Envelope.GetTenantSeq() == 5 {
			victim = ev
		}
		return nil
	}))
	forged := proto.Clone(victim.Envelope).(*tallyv1.Envelope)
	forged.GetCostLineRecorded().Line.BilledCost = "0.01"
	raw, err := proto.Marshal(forged)
	require.NoError(t, err)
	payload, err := proto.Marshal(&tallyv1.EventBatch{Events: []*tallyv1.StoredEvent{{Envelope: raw, Hash: victim.Hash[:]}}})
	require.NoError(t, err)
	msg, err := srv.Conn().Request("tally.acme.cost_line_recorded", payload, 5*time.Second)
	require.NoError(t, err)
	require.NotContains(t, string(msg.Data), "error")

	_, out, _, err = execute(t, env, "audit", "verify", "--tenant", "acme", "--server", url)
	require.ErrorIs(t, err, errChainBroken, "tally exits with status 1")
	require.Contains(t, out, "BROKEN tenant acme: 13 events read")
	require.Contains(t, out, fmt.Sprintf("first bad event: 5 (id %s, log message ", victim.Envelope.GetEventId()))
	require.Contains(t, out, "re-published or forged")
}
