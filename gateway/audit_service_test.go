package gateway_test

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/gateway"
	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/projections/changelog"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// auditEnv is a gateway with the NATS server behind it, so that a test can
// tamper with the log as an attacker with access to NATS would.
func auditEnv(t *testing.T) (*env, *natstest.Server) {
	t.Helper()
	srv := natstest.Run(t)
	pool, _ := pgtest.NewDB(t)
	return serveGateway(t, gateway.Config{
		Store: srv.Store(), Pool: pool, TempDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}), srv
}

// auditEvent n (from 1) of a tenant: a usage reading when n is a multiple
// of 3, else a cost line.
func auditEvent(tenant string, n int) *tallyv1.Envelope {
	key := fmt.Sprintf("event-%04d", n)
	env := &tallyv1.Envelope{
		EventId:        eventstore.DeterministicID(tenant, key),
		TenantId:       tenant,
		IdempotencyKey: key,
		OccurredAt:     timestamppb.New(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)),
		Actor:          &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "test"},
	}
	if n%3 == 0 {
		u := usage()
		u.ResourceId = key
		env.Body = &tallyv1.Envelope_UsageRecorded{UsageRecorded: u}
		return env
	}
	env.Body = &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: &tallyv1.CostLine{
		LineKey: key, ServiceName: "Amazon EC2", BilledCost: fmt.Sprintf("%d.25", n), BillingCurrency: "USD",
	}}}
	return env
}

// appendEvents appends events from to to (inclusive) of a tenant in one
// log message.
func appendEvents(t *testing.T, st *eventstore.Store, tenant string, from, to int) {
	t.Helper()
	var evs []*tallyv1.Envelope
	for n := from; n <= to; n++ {
		evs = append(evs, auditEvent(tenant, n))
	}
	_, err := st.Append(ctxT(t), tenant, evs)
	require.NoError(t, err)
}

func auditClient(t *testing.T, e *env, token string) tallyv1connect.AuditServiceClient {
	return tallyv1connect.NewAuditServiceClient(h2cClient(t, token), e.url)
}

func (e *env) auditAdmin(t *testing.T) tallyv1connect.AuditServiceClient {
	return auditClient(t, e, e.token)
}

func replay(t *testing.T, c tallyv1connect.AuditServiceClient, req *tallyv1.ReplayEventsRequest) ([]*tallyv1.ReplayEventsResponse, error) {
	t.Helper()
	stream, err := c.ReplayEvents(ctxT(t), connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	var out []*tallyv1.ReplayEventsResponse
	for stream.Receive() {
		out = append(out, stream.Msg())
	}
	return out, stream.Err()
}

func tenantSeqs(evs []*tallyv1.ReplayEventsResponse) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.GetTenantSeq()
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// TestReplayEvents: an auditor's replay returns exactly the tenant's
// appended events, in order, with hashes that chain; the filters select.
func TestReplayEvents(t *testing.T) {
	e, _ := auditEnv(t)
	appendEvents(t, e.store, "acme", 1, 10)
	appendEvents(t, e.store, "globex", 1, 4)
	appendEvents(t, e.store, "acme", 11, 25)
	auditor := auditClient(t, e, newToken(t, e.pool, tokens.Spec{Name: "acme-auditor", Role: tokens.RoleAuditor, Tenant: "acme"}))

	all, err := replay(t, auditor, &tallyv1.ReplayEventsRequest{TenantId: "acme", IncludeEnvelopeBytes: true})
	require.NoError(t, err)
	require.Equal(t, seqRange(1, 25), tenantSeqs(all))
	prev := eventstore.ZeroHash
	var streamSeqs []uint64
	for i, ev := range all {
		want := auditEvent("acme", i+1)
		env := ev.GetEnvelope()
		require.Equal(t, want.GetEventId(), env.GetEventId())
		require.Equal(t, "acme", env.GetTenantId())
		require.Equal(t, eventstore.Kind(want), ev.GetKind())
		require.True(t, proto.Equal(want.GetCostLineRecorded(), env.GetCostLineRecorded()), "event %d", i+1)
		require.True(t, proto.Equal(want.GetUsageRecorded(), env.GetUsageRecorded()), "event %d", i+1)
		// The chain, recomputed here from the bytes as stored.
		require.Equal(t, hex.EncodeToString(prev[:]), ev.GetPrevHash(), "event %d", i+1)
		hash := eventstore.ChainHash(prev, ev.GetEnvelopeBytes())
		require.Equal(t, hex.EncodeToString(hash[:]), ev.GetHash(), "event %d", i+1)
		var decoded tallyv1.Envelope
		require.NoError(t, proto.Unmarshal(ev.GetEnvelopeBytes(), &decoded))
		require.True(t, proto.Equal(&decoded, env))
		prev = hash
		streamSeqs = append(streamSeqs, ev.GetStreamSeq())
	}
	require.IsNonDecreasing(t, streamSeqs)
	require.Less(t, streamSeqs[9], streamSeqs[10], "globex's append lies between")
	var fromStream []uint64 // events in or after the log message of event 15
	for i, seq := range streamSeqs {
		if seq >= streamSeqs[14] {
			fromStream = append(fromStream, uint64(i+1))
		}
	}

	// Without include_envelope_bytes, no bytes.
	plain, err := replay(t, auditor, &tallyv1.ReplayEventsRequest{TenantId: "acme"})
	require.NoError(t, err)
	require.Len(t, plain, 25)
	require.Empty(t, plain[0].GetEnvelopeBytes())
	require.Equal(t, all[24].GetHash(), plain[24].GetHash())

	filters := []struct {
		name string
		req  *tallyv1.ReplayEventsRequest
		want []uint64
	}{
		{"kind", &tallyv1.ReplayEventsRequest{Kinds: []string{"usage_recorded"}}, []uint64{3, 6, 9, 12, 15, 18, 21, 24}},
		{"kinds", &tallyv1.ReplayEventsRequest{Kinds: []string{"usage_recorded", "cost_line_recorded"}}, seqRange(1, 25)},
		{"tenant seq", &tallyv1.ReplayEventsRequest{FromTenantSeq: 20}, seqRange(20, 25)},
		{"stream seq", &tallyv1.ReplayEventsRequest{FromStreamSeq: streamSeqs[10]}, seqRange(11, 25)},
		{"mid stream seq", &tallyv1.ReplayEventsRequest{FromStreamSeq: streamSeqs[14]}, fromStream},
		{"kind and tenant seq", &tallyv1.ReplayEventsRequest{Kinds: []string{"usage_recorded"}, FromTenantSeq: 10}, []uint64{12, 15, 18, 21, 24}},
		{"to the past", &tallyv1.ReplayEventsRequest{ToTime: timestamppb.New(time.Now().Add(-time.Hour))}, nil},
		{"from the future", &tallyv1.ReplayEventsRequest{FromTime: timestamppb.New(time.Now().Add(time.Hour))}, nil},
		{"time window", &tallyv1.ReplayEventsRequest{FromTime: timestamppb.New(time.Now().Add(-time.Hour)),
			ToTime: timestamppb.New(time.Now().Add(time.Hour))}, seqRange(1, 25)},
	}
	for _, tt := range filters {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.TenantId = "acme"
			got, err := replay(t, auditor, tt.req)
			require.NoError(t, err)
			if tt.want == nil {
				require.Empty(t, got)
				return
			}
			require.Equal(t, tt.want, tenantSeqs(got))
		})
	}

	// The other tenant's events stay apart.
	admin := auditClient(t, e, e.token)
	globex, err := replay(t, admin, &tallyv1.ReplayEventsRequest{TenantId: "globex"})
	require.NoError(t, err)
	require.Equal(t, seqRange(1, 4), tenantSeqs(globex))
}

// TestReplayEventsBadInput: malformed requests are refused naming the
// field, and recorded.
func TestReplayEventsBadInput(t *testing.T) {
	e, _ := auditEnv(t)
	admin := auditClient(t, e, e.token)
	tests := []struct {
		name  string
		req   *tallyv1.ReplayEventsRequest
		field string
	}{
		{"no tenant", &tallyv1.ReplayEventsRequest{}, "tenant_id"},
		{"bad tenant", &tallyv1.ReplayEventsRequest{TenantId: "Acme Corp"}, "tenant_id"},
		{"unknown kind", &tallyv1.ReplayEventsRequest{TenantId: "acme", Kinds: []string{"cost_line_recorded", "colour"}}, "kinds[1]"},
		{"empty window", &tallyv1.ReplayEventsRequest{TenantId: "acme", FromTime: ts("2026-10-02T00:00:00Z"), ToTime: ts("2026-10-01T00:00:00Z")}, "to_time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.rejections(t))
			_, err := replay(t, admin, tt.req)
			require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
			require.Contains(t, err.Error(), tt.field)
			rej := e.rejections(t)
			require.Len(t, rej, before+1)
			require.Equal(t, tt.field, rej[len(rej)-1].GetField())
			require.Equal(t, tallyv1connect.AuditServiceReplayEventsProcedure, rej[len(rej)-1].GetProcedure())
		})
	}
	_, err := admin.VerifyChain(ctxT(t), connect.NewRequest(&tallyv1.VerifyChainRequest{}))
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
}

// TestVerifyChain: an honest log verifies with its head; a copy of an
// event re-published straight to the stream, altered, is named by its
// chain position and id.
func TestVerifyChain(t *testing.T) {
	e, srv := auditEnv(t)
	appendEvents(t, e.store, "acme", 1, 20)
	appendEvents(t, e.store, "acme", 21, 30)
	auditor := auditClient(t, e, newToken(t, e.pool, tokens.Spec{Name: "acme-auditor", Role: tokens.RoleAuditor, Tenant: "acme"}))

	evs, err := replay(t, auditor, &tallyv1.ReplayEventsRequest{TenantId: "acme", IncludeEnvelopeBytes: true})
	require.NoError(t, err)
	require.Len(t, evs, 30)
	resp, err := auditor.VerifyChain(ctxT(t), connect.NewRequest(&tallyv1.VerifyChainRequest{TenantId: "acme"}))
	require.NoError(t, err)
	r := resp.Msg
	require.True(t, r.GetOk(), "%v", r)
	require.Equal(t, "acme", r.GetTenantId())
	require.EqualValues(t, 30, r.GetEvents())
	require.EqualValues(t, 30, r.GetHeadTenantSeq())
	require.Equal(t, evs[29].GetHash(), r.GetHeadHash())
	require.Equal(t, evs[29].GetStreamSeq(), r.GetHeadStreamSeq())
	require.Nil(t, r.GetFirstProblem())
	require.Empty(t, r.GetProblems())

	// An empty tenant's chain is empty and intact.
	resp, err = e.auditAdmin(t).VerifyChain(ctxT(t), connect.NewRequest(&tallyv1.VerifyChainRequest{TenantId: "initech"}))
	require.NoError(t, err)
	require.True(t, resp.Msg.GetOk())
	require.Zero(t, resp.Msg.GetHeadTenantSeq())
	require.Equal(t, hex.EncodeToString(eventstore.ZeroHash[:]), resp.Msg.GetHeadHash())

	// The attacker re-publishes event 17 with a smaller amount, straight to
	// the stream's subject.
	const victim = 17
	v := evs[victim-1]
	env := proto.Clone(v.GetEnvelope()).(*tallyv1.Envelope)
	env.GetCostLineRecorded().Line.BilledCost = "0.01"
	raw, err := proto.Marshal(env)
	require.NoError(t, err)
	hash, err := hex.DecodeString(v.GetHash())
	require.NoError(t, err)
	payload, err := proto.Marshal(&tallyv1.EventBatch{Events: []*tallyv1.StoredEvent{{Envelope: raw, Hash: hash}}})
	require.NoError(t, err)
	publishRaw(t, srv.Conn(), "tally.acme.cost_line_recorded", payload)

	resp, err = auditor.VerifyChain(ctxT(t), connect.NewRequest(&tallyv1.VerifyChainRequest{TenantId: "acme"}))
	require.NoError(t, err)
	r = resp.Msg
	require.False(t, r.GetOk())
	require.EqualValues(t, 31, r.GetEvents())
	first := r.GetFirstProblem()
	require.NotNil(t, first)
	require.EqualValues(t, victim, first.GetTenantSeq(), "%v", first)
	require.Equal(t, v.GetEnvelope().GetEventId(), first.GetEventId())
	require.Greater(t, first.GetStreamSeq(), evs[29].GetStreamSeq(), "the forged copy's log message")
	require.Contains(t, first.GetReason(), "re-published or forged")
	require.NotEmpty(t, r.GetProblems())
	require.True(t, proto.Equal(first, r.GetProblems()[0]))
}

func publishRaw(t *testing.T, nc *nats.Conn, subject string, data []byte) {
	t.Helper()
	msg, err := nc.Request(subject, data, 5*time.Second)
	require.NoError(t, err)
	require.NotContains(t, string(msg.Data), "error")
}

// TestAuditRefusals: only auditors and admins may replay and verify, each
// for the tenants its token covers; every refusal is PermissionDenied and
// recorded. The system tenant needs a token for every tenant.
func TestAuditRefusals(t *testing.T) {
	e, _ := auditEnv(t)
	appendEvents(t, e.store, "acme", 1, 3)
	mk := func(name string, role tokens.Role, tenant string) tallyv1connect.AuditServiceClient {
		return auditClient(t, e, newToken(t, e.pool, tokens.Spec{Name: name, Role: role, Tenant: tenant}))
	}
	calls := map[string]func(c tallyv1connect.AuditServiceClient, tenant string) error{
		"ReplayEvents": func(c tallyv1connect.AuditServiceClient, tenant string) error {
			_, err := replay(t, c, &tallyv1.ReplayEventsRequest{TenantId: tenant})
			return err
		},
		"VerifyChain": func(c tallyv1connect.AuditServiceClient, tenant string) error {
			_, err := c.VerifyChain(ctxT(t), connect.NewRequest(&tallyv1.VerifyChainRequest{TenantId: tenant}))
			return err
		},
	}
	refused := []struct {
		name   string
		client tallyv1connect.AuditServiceClient
		tenant string
		field  string
	}{
		{"viewer", mk("acme-viewer", tokens.RoleViewer, "acme"), "acme", ""},
		{"ingester", mk("acme-ingester", tokens.RoleIngester, "acme"), "acme", ""},
		{"operator for every tenant", mk("ops", tokens.RoleOperator, ""), "acme", ""},
		{"other tenant's auditor", mk("globex-auditor", tokens.RoleAuditor, "globex"), "acme", "tenant_id"},
		{"tenant auditor, system tenant", mk("acme-auditor", tokens.RoleAuditor, "acme"), eventstore.SystemTenant, "tenant_id"},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			for _, tc := range refused {
				before := len(e.rejections(t))
				err := call(tc.client, tc.tenant)
				require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "%s: %v", tc.name, err)
				rej := e.rejections(t)
				require.Len(t, rej, before+1, "%s: one audit event", tc.name)
				last := rej[len(rej)-1]
				require.Equal(t, "/tally.v1.AuditService/"+name, last.GetProcedure(), tc.name)
				require.Equal(t, tc.field, last.GetField(), tc.name)
				// A stream refused for its role is refused before its request
				// is read, so the record names no tenant (as for uploads).
				if name != "ReplayEvents" || tc.field != "" {
					require.Equal(t, tc.tenant, last.GetClaimedTenant(), tc.name)
				}
			}
			err := call(auditClient(t, e, ""), "acme")
			require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), "%v", err)

			// Allowed: an admin and an auditor for every tenant read the
			// system tenant's record of those refusals.
			for _, c := range []tallyv1connect.AuditServiceClient{auditClient(t, e, e.token), mk("auditor-"+name, tokens.RoleAuditor, "")} {
				before := len(e.rejections(t))
				require.NoError(t, call(c, eventstore.SystemTenant))
				require.NoError(t, call(c, "acme"))
				require.Len(t, e.rejections(t), before, "allowed calls are not audited")
			}
		})
	}
	evs, err := replay(t, auditClient(t, e, e.token), &tallyv1.ReplayEventsRequest{TenantId: eventstore.SystemTenant, Kinds: []string{"request_rejected"}})
	require.NoError(t, err)
	require.Len(t, evs, len(e.rejections(t)))
}

// TestListChanges: configuration pushed through the API shows in the change log with its
// actor and the fields changed, filtered by kind and window and paged; bad requests name
// their field.
func TestListChanges(t *testing.T) {
	e := newCloseEnv(t)
	ctx := ctxT(t)
	set := func(amount string) {
		b := &tallyv1.BudgetSet{BudgetId: "b1", Name: "web", Amount: amount, Currency: "USD", EffectiveFrom: ts("2024-09-01T00:00:00Z"),
			AlertThresholds: []string{"80"}}
		_, err := e.connect.SetBudget(ctx, connect.NewRequest(&tallyv1.SetBudgetRequest{TenantId: "acme", Budget: b}))
		require.NoError(t, err)
	}
	set("500")
	set("650.00")
	_, err := e.connect.RecordFxRate(ctx, connect.NewRequest(&tallyv1.RecordFxRateRequest{TenantId: "acme",
		FxRate: &tallyv1.FxRateRecorded{FromCurrency: "EUR", ToCurrency: "USD", Rate: "1.08", Date: "2024-09-01"}}))
	require.NoError(t, err)
	head, err := e.store.Head(ctx, "acme")
	require.NoError(t, err)
	require.NoError(t, e.runner.WaitFor(ctx, changelog.Name, head.StreamSeq))

	auditor := auditClient(t, e.env, newToken(t, e.pool, tokens.Spec{Name: "acme-auditor", Role: tokens.RoleAuditor, Tenant: "acme"}))
	res, err := auditor.ListChanges(ctx, connect.NewRequest(&tallyv1.ListChangesRequest{TenantId: "acme", Kinds: []string{"budget_set"}}))
	require.NoError(t, err)
	chs := res.Msg.GetChanges()
	require.Len(t, chs, 2)
	require.Equal(t, "budget", chs[0].GetItem())
	require.Equal(t, "b1", chs[0].GetKey())
	require.Equal(t, "test-admin", chs[0].GetActor().GetId())
	require.Nil(t, chs[0].GetApprover())
	require.Len(t, chs[0].GetDiff(), 1)
	require.Equal(t, "amount", chs[0].GetDiff()[0].GetField())
	require.Equal(t, `"500"`, chs[0].GetDiff()[0].GetBeforeJson())
	require.Equal(t, `"650.00"`, chs[0].GetDiff()[0].GetAfterJson())
	require.Equal(t, "null", chs[1].GetBeforeJson())
	require.Contains(t, chs[1].GetAfterJson(), `"amount":"500"`)

	// Pages of one, over HTTP GET.
	get := tallyv1connect.NewAuditServiceClient(http1Client(t, e.token), e.url, connect.WithHTTPGet())
	var seqs []uint64
	req := &tallyv1.ListChangesRequest{TenantId: "acme", PageSize: 1, From: timestamppb.New(time.Now().AddDate(0, 0, -7))}
	for {
		res, err := get.ListChanges(ctx, connect.NewRequest(req))
		require.NoError(t, err)
		for _, c := range res.Msg.GetChanges() {
			seqs = append(seqs, c.GetTenantSeq())
		}
		if req.PageToken = res.Msg.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	require.Equal(t, []uint64{3, 2, 1}, seqs)

	for _, tc := range []struct {
		name  string
		req   *tallyv1.ListChangesRequest
		field string
	}{
		{"no tenant", &tallyv1.ListChangesRequest{}, "tenant_id"},
		{"not a configuration kind", &tallyv1.ListChangesRequest{TenantId: "acme", Kinds: []string{"cost_line_recorded"}}, "kinds[0]"},
		{"window backwards", &tallyv1.ListChangesRequest{TenantId: "acme", From: ts("2024-09-02T00:00:00Z"), To: ts("2024-09-01T00:00:00Z")}, "to"},
		{"forged page token", &tallyv1.ListChangesRequest{TenantId: "acme", PageToken: "abc"}, "page_token"},
	} {
		_, err := e.auditAdmin(t).ListChanges(ctx, connect.NewRequest(tc.req))
		require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%s: %v", tc.name, err)
		rej := e.rejections(t)
		require.Equal(t, tc.field, rej[len(rej)-1].GetField(), tc.name)
	}
}
