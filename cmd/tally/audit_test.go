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

// TestAuditVerifyPeriod: verify --period re-derives the closed package in a scratch database
// from the replayed events: an honest log and read model match; a live read-model row
// changed by SQL is named as the first difference.
func TestAuditVerifyPeriod(t *testing.T) {
	_, env, pool, dbURL, caughtUp := closeGateway(t)
	closeSeptember(t, env)
	caughtUp()
	var recorded string
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT package_sha256 FROM closepkg.closes WHERE tenant_id = 'acme'").Scan(&recorded))
	auditor := with(env, "TALLY_TOKEN", newToken(t, pool, tokens.Spec{Name: "cli-auditor", Role: tokens.RoleAuditor, Tenant: "acme"}))
	scratches := func() int {
		var n int
		require.NoError(t, pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname LIKE 'tally_verify_%'").Scan(&n))
		return n
	}
	before := scratches()

	_, out, _, err := execute(t, auditor, "audit", "verify", "--tenant", "acme", "--period", "2024-09", "--database-url", dbURL)
	require.NoError(t, err, out)
	require.Regexp(t, `^OK tenant acme: \d+ events, head \d+ [0-9a-f]{64} \(log message \d+\)\n`+
		`MATCH close of 2024-09 \(all providers\) at event \d+: sha256 `+recorded+` re-derived from \d+ replayed events in a scratch database; the live package agrees\n$`, out)
	require.Equal(t, before, scratches(), "the scratch database is dropped")

	// A month with no close: its current package is compared.
	_, out, _, err = execute(t, auditor, "audit", "verify", "--tenant", "acme", "--period", "2024-10", "--database-url", dbURL)
	require.NoError(t, err, out)
	require.Contains(t, out, "period 2024-10 (all providers) of acme is not closed")
	require.Contains(t, out, "MATCH package of 2024-10")

	// Someone with access to PostgreSQL edits the live read model: AWS's invoice, still within
	// tolerance, so only the amount and the figures after it change.
	tag, err := pool.Exec(t.Context(), "UPDATE closepkg.invoices SET amount = 18.02 WHERE tenant_id = 'acme' AND invoice_id = 'INV-AWS-0924'")
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected())
	_, out, _, err = execute(t, auditor, "audit", "verify", "--tenant", "acme", "--period", "2024-09", "--database-url", dbURL)
	require.ErrorIs(t, err, errPackageMismatch, "tally exits with status 1")
	require.Contains(t, out, "DIFFERENT close of 2024-09 (all providers) at event ")
	require.Contains(t, out, `first difference at reconciliation[0].invoice: re-derived "18.01", live "18.02"`)
	require.NotContains(t, out, "the close recorded", "the log itself still re-derives to the recorded hash")
	require.Equal(t, before, scratches())

	_, _, _, err = execute(t, auditor, "audit", "verify", "--tenant", "acme", "--period", "September")
	require.ErrorContains(t, err, `--period "September"`)
}

func TestAuditChangesCommand(t *testing.T) {
	_, env, pool, _, caughtUp := closeGateway(t)
	closeSeptember(t, env)
	caughtUp()
	auditor := with(env, "TALLY_TOKEN", newToken(t, pool, tokens.Spec{Name: "cli-auditor", Role: tokens.RoleAuditor, Tenant: "acme"}))

	_, out, _, err := execute(t, auditor, "audit", "changes", "--tenant", "acme", "--since", "7d")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 6, "a header, four invoices and the close, newest first: %s", out)
	require.Regexp(t, `^SEQ\s+RECORDED_AT\s+KIND\s+KEY\s+ACTOR\s+APPROVER\s+CHANGES$`, lines[0])
	require.Regexp(t, `^\d+\s+\S+\s+period_closed\s+2024-09\s+cli-admin\s+bob\s+created$`, lines[1])
	require.Regexp(t, `^\d+\s+\S+\s+invoice_recorded\s+Microsoft/INV-MS-0924\s+cli-admin\s+-\s+amount: "2.016" -> "1.98"`, lines[3])

	_, out, _, err = execute(t, auditor, "audit", "changes", "--tenant", "acme", "--kind", "period_closed", "--output", "json")
	require.NoError(t, err)
	var ch tallyv1.ConfigChange
	require.NoError(t, protojson.Unmarshal([]byte(strings.TrimSpace(out)), &ch))
	require.Equal(t, "bob", ch.GetApprover().GetId())
	require.Equal(t, "period_close", ch.GetItem())

	_, out, _, err = execute(t, auditor, "audit", "changes", "--tenant", "acme", "--limit", "2")
	require.NoError(t, err)
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 3)
	_, out, _, err = execute(t, auditor, "audit", "changes", "--tenant", "acme", "--from", "2001-01-01", "--to", "2001-02-01")
	require.NoError(t, err)
	require.Contains(t, out, "no changes")

	_, _, _, err = execute(t, auditor, "audit", "changes", "--tenant", "acme", "--kind", "colour")
	require.ErrorContains(t, err, `refused: kinds[0] "colour" is not a configuration event kind`)
	_, _, _, err = execute(t, auditor, "audit", "changes", "--tenant", "acme", "--since", "7x")
	require.ErrorContains(t, err, `--since "7x"`)
	_, _, _, err = execute(t, auditor, "audit", "changes", "--tenant", "globex")
	require.ErrorContains(t, err, "not allowed:")
}
