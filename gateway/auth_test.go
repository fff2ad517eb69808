package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/gateway/tokens"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// clients of both services, sending one token.
type clients struct {
	ingest  tallyv1connect.IngestServiceClient
	ledger  tallyv1connect.LedgerServiceClient
	savings tallyv1connect.SavingsServiceClient
	alloc   tallyv1connect.AllocationServiceClient
	export  tallyv1connect.ExportServiceClient
	close   tallyv1connect.CloseServiceClient
	audit   tallyv1connect.AuditServiceClient
}

func clientsFor(t *testing.T, e *env, token string) clients {
	h := h2cClient(t, token)
	return clients{ingest: tallyv1connect.NewIngestServiceClient(h, e.url), ledger: tallyv1connect.NewLedgerServiceClient(h, e.url),
		savings: tallyv1connect.NewSavingsServiceClient(h, e.url), alloc: tallyv1connect.NewAllocationServiceClient(h, e.url),
		export: tallyv1connect.NewExportServiceClient(h, e.url),
		close:  tallyv1connect.NewCloseServiceClient(h, e.url), audit: tallyv1connect.NewAuditServiceClient(h, e.url)}
}

// rpc is one procedure called with a valid request for a tenant.
type rpc struct {
	name string
	call func(ctx context.Context, c clients, tenant string) error
}

// smallFile is the sample's header and first rows: a valid FOCUS file.
func smallFile(t *testing.T) []byte {
	lines := strings.SplitAfter(string(readSample(t)), "\n")
	return []byte(strings.Join(lines[:6], ""))
}

func rpcs(t *testing.T) []rpc {
	file := smallFile(t)
	day := ts("2024-09-01T00:00:00Z")
	return []rpc{
		{"UploadFocusFile", func(ctx context.Context, c clients, tenant string) error {
			stream := c.ingest.UploadFocusFile(ctx)
			err := stream.Send(&tallyv1.UploadFocusFileRequest{Part: &tallyv1.UploadFocusFileRequest_Header{
				Header: &tallyv1.UploadFocusFileHeader{TenantId: tenant, FileName: "small.csv"}}})
			if err == nil {
				_ = stream.Send(&tallyv1.UploadFocusFileRequest{Part: &tallyv1.UploadFocusFileRequest_Chunk{Chunk: file}})
			}
			_, err = stream.CloseAndReceive()
			return err
		}},
		{"RecordUsage", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.ingest.RecordUsage(ctx, connect.NewRequest(&tallyv1.RecordUsageRequest{TenantId: tenant, Usage: usage()}))
			return err
		}},
		{"RecordRemediation", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.ingest.RecordRemediation(ctx, connect.NewRequest(&tallyv1.RecordRemediationRequest{TenantId: tenant,
				Remediation: &tallyv1.RemediationExecuted{ActionId: "a1", Provider: "AWS", ResourceId: "i-1",
					Kind: tallyv1.RemediationKind_REMEDIATION_KIND_STOP, ExecutedAt: day}}))
			return err
		}},
		{"TagResource", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.ingest.TagResource(ctx, connect.NewRequest(&tallyv1.TagResourceRequest{TenantId: tenant,
				Tagged: &tallyv1.ResourceTagged{Provider: "AWS", ResourceId: "i-1", EffectiveFrom: day,
					Tags: []*tallyv1.KeyValue{{Key: "team", Value: "web"}}}}))
			return err
		}},
		{"SetAllocationRule", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.ingest.SetAllocationRule(ctx, connect.NewRequest(&tallyv1.SetAllocationRuleRequest{TenantId: tenant,
				Rule: &tallyv1.AllocationRuleSet{RuleId: "r1", Version: 1, EffectiveFrom: day, Split: tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE,
					Shares: []*tallyv1.CostCenterShare{{CostCenter: "a", Value: "60"}, {CostCenter: "b", Value: "40"}}}}))
			return err
		}},
		{"RetireAllocationRule", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.ingest.RetireAllocationRule(ctx, connect.NewRequest(&tallyv1.RetireAllocationRuleRequest{TenantId: tenant,
				Retired: &tallyv1.AllocationRuleRetired{RuleId: "r1", EffectiveTo: day}}))
			return err
		}},
		{"RecordInvoice", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.ingest.RecordInvoice(ctx, connect.NewRequest(&tallyv1.RecordInvoiceRequest{TenantId: tenant, Invoice: invoice()}))
			return err
		}},
		{"RecordFxRate", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.ingest.RecordFxRate(ctx, connect.NewRequest(&tallyv1.RecordFxRateRequest{TenantId: tenant,
				FxRate: &tallyv1.FxRateRecorded{FromCurrency: "EUR", ToCurrency: "USD", Rate: "1.08", Date: "2024-09-01"}}))
			return err
		}},
		{"SetBudget", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.ingest.SetBudget(ctx, connect.NewRequest(&tallyv1.SetBudgetRequest{TenantId: tenant,
				Budget: &tallyv1.BudgetSet{BudgetId: "b1", Amount: "500", Currency: "USD", EffectiveFrom: day}}))
			return err
		}},
		{"GetCost", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.ledger.GetCost(ctx, connect.NewRequest(&tallyv1.GetCostRequest{TenantId: tenant,
				From: ts("2024-09-01T00:00:00Z"), To: ts("2024-10-01T00:00:00Z")}))
			return err
		}},
		{"GetTotals", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.ledger.GetTotals(ctx, connect.NewRequest(&tallyv1.GetTotalsRequest{TenantId: tenant,
				From: ts("2024-09-01T00:00:00Z"), To: ts("2024-10-01T00:00:00Z")}))
			return err
		}},
		{"ListSavings", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.savings.ListSavings(ctx, connect.NewRequest(&tallyv1.ListSavingsRequest{TenantId: tenant, Period: "2024-09"}))
			return err
		}},
		// An action nobody recorded: NotFound means the call was let through and answered.
		{"GetSavings", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.savings.GetSavings(ctx, connect.NewRequest(&tallyv1.GetSavingsRequest{TenantId: tenant, ActionId: "a-none"}))
			if connect.CodeOf(err) == connect.CodeNotFound {
				return nil
			}
			return err
		}},
		{"GetSavingsEvidence", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.savings.GetSavingsEvidence(ctx, connect.NewRequest(&tallyv1.GetSavingsEvidenceRequest{TenantId: tenant, ActionId: "a-none"}))
			if connect.CodeOf(err) == connect.CodeNotFound {
				return nil
			}
			return err
		}},
		{"GetAllocation", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.alloc.GetAllocation(ctx, connect.NewRequest(&tallyv1.GetAllocationRequest{TenantId: tenant, Period: "2024-09"}))
			return err
		}},
		{"GetUnallocated", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.alloc.GetUnallocated(ctx, connect.NewRequest(&tallyv1.GetUnallocatedRequest{TenantId: tenant, Period: "2024-09"}))
			return err
		}},
		{"GetCoverage", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.alloc.GetCoverage(ctx, connect.NewRequest(&tallyv1.GetCoverageRequest{TenantId: tenant, Period: "2024-09"}))
			return err
		}},
		{"DryRunRule", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.alloc.DryRunRule(ctx, connect.NewRequest(&tallyv1.DryRunRuleRequest{TenantId: tenant, Period: "2024-09",
				Change: &tallyv1.DryRunRuleRequest_Rule{Rule: &tallyv1.AllocationRuleSet{RuleId: "r1", Version: 1, EffectiveFrom: day,
					Split: tallyv1.SplitKind_SPLIT_KIND_DIRECT, Shares: []*tallyv1.CostCenterShare{{CostCenter: "a"}}}}}))
			return err
		}},
		// Exports stream chunks: the refusal (or the answer) comes with the stream.
		{"ExportFocus", func(ctx context.Context, c clients, tenant string) error {
			s, err := c.export.ExportFocus(ctx, connect.NewRequest(&tallyv1.ExportFocusRequest{TenantId: tenant, Period: "2024-09"}))
			if err != nil {
				return err
			}
			for s.Receive() {
			}
			return s.Err()
		}},
		{"ExportClosePackage", func(ctx context.Context, c clients, tenant string) error {
			s, err := c.export.ExportClosePackage(ctx, connect.NewRequest(&tallyv1.ExportClosePackageRequest{TenantId: tenant, Period: "2024-09"}))
			if err != nil {
				return err
			}
			for s.Receive() {
			}
			return s.Err()
		}},
		{"GetClosePackage", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.close.GetClosePackage(ctx, connect.NewRequest(&tallyv1.GetClosePackageRequest{TenantId: tenant, Period: "2024-09"}))
			return err
		}},
		// Forced (the package has no lines): each tenant is closed once, by its one allowed call.
		{"ClosePeriod", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.close.ClosePeriod(ctx, connect.NewRequest(&tallyv1.ClosePeriodRequest{TenantId: tenant, Period: "2024-09",
				Approver: "matrix-approver", Force: true, Reason: "security matrix"}))
			return err
		}},
		{"ListChanges", func(ctx context.Context, c clients, tenant string) error {
			_, err := c.audit.ListChanges(ctx, connect.NewRequest(&tallyv1.ListChangesRequest{TenantId: tenant}))
			return err
		}},
		{"ExportCompliancePack", func(ctx context.Context, c clients, tenant string) error {
			s, err := c.export.ExportCompliancePack(ctx, connect.NewRequest(&tallyv1.ExportCompliancePackRequest{TenantId: tenant, Period: "2024-09"}))
			if err != nil {
				return err
			}
			for s.Receive() {
			}
			return s.Err()
		}},
	}
}

func procedure(name string) string {
	svc := tallyv1connect.IngestServiceName
	if strings.HasPrefix(name, "Get") {
		svc = tallyv1connect.LedgerServiceName
	}
	if strings.Contains(name, "Savings") {
		svc = tallyv1connect.SavingsServiceName
	}
	if strings.HasPrefix(name, "Export") {
		svc = tallyv1connect.ExportServiceName
	}
	switch name {
	case "GetAllocation", "GetUnallocated", "GetCoverage", "DryRunRule":
		svc = tallyv1connect.AllocationServiceName
	case "GetClosePackage", "ClosePeriod":
		svc = tallyv1connect.CloseServiceName
	case "ListChanges":
		svc = tallyv1connect.AuditServiceName
	}
	return "/" + svc + "/" + name
}

// expected is the role matrix as gateway/doc.go documents it, written out
// here so that a change to the code's matrix must change this test too.
var expected = map[tokens.Role][]string{
	tokens.RoleViewer:   {"GetCost", "GetTotals", "ListSavings", "GetSavings", "GetSavingsEvidence", "GetAllocation", "GetUnallocated", "GetCoverage", "DryRunRule", "ExportFocus", "ExportClosePackage", "GetClosePackage"},
	tokens.RoleIngester: {"UploadFocusFile", "RecordUsage", "RecordRemediation", "TagResource", "SetAllocationRule", "RetireAllocationRule", "RecordInvoice", "RecordFxRate", "SetBudget"},
	tokens.RoleAuditor: {"GetCost", "GetTotals", "ListSavings", "GetSavings", "GetSavingsEvidence", "GetAllocation", "GetUnallocated", "GetCoverage", "DryRunRule", "ExportFocus", "ExportClosePackage", "ExportCompliancePack",
		"GetClosePackage", "ListChanges"},
	tokens.RoleOperator: {},
	tokens.RoleAdmin: {"UploadFocusFile", "RecordUsage", "RecordRemediation", "TagResource", "SetAllocationRule", "RetireAllocationRule", "RecordInvoice", "RecordFxRate", "SetBudget",
		"GetCost", "GetTotals", "ListSavings", "GetSavings", "GetSavingsEvidence", "GetAllocation", "GetUnallocated", "GetCoverage", "DryRunRule",
		"ExportFocus", "ExportClosePackage", "ExportCompliancePack", "GetClosePackage", "ClosePeriod", "ListChanges"},
}

func allowed(r tokens.Role, name string) bool {
	for _, n := range expected[r] {
		if n == name {
			return true
		}
	}
	return false
}

// TestSecurityMatrix calls every RPC for tenant acme with no token, a bad
// token, a revoked token, another tenant's token and a token of every role
// too weak for it: each is refused with the right code, leaves exactly one
// RequestRejected event (naming the token by id, never by secret) and
// appends nothing to any tenant. Every role allowed the RPC succeeds, and
// the events it appends name the token as their actor.
func TestSecurityMatrix(t *testing.T) {
	e := newLedgerEnv(t, true)
	st := tokens.NewStore(e.pool)
	ctx := ctxT(t)
	mk := func(name string, role tokens.Role, tenant string) (tokens.Token, string) {
		tok, secret, err := st.Create(ctx, tokens.Spec{Name: name, Role: role, Tenant: tenant})
		require.NoError(t, err)
		return tok, secret
	}
	revoked, revokedSecret := mk("old-admin", tokens.RoleAdmin, "acme")
	_, err := st.Revoke(ctx, revoked.ID)
	require.NoError(t, err)
	bogus, _ := tokens.NewSecret()

	type principal struct {
		tok    tokens.Token
		secret string
	}
	// One token per role for acme (operator tokens are for every tenant),
	// and for globex.
	acme, globex := map[tokens.Role]principal{}, map[tokens.Role]principal{}
	for _, r := range tokens.Roles {
		tenant := "acme"
		if r == tokens.RoleOperator {
			tenant = ""
		}
		tok, s := mk("acme-"+string(r), r, tenant)
		acme[r] = principal{tok, s}
		if r != tokens.RoleOperator {
			tok, s = mk("globex-"+string(r), r, "globex")
			globex[r] = principal{tok, s}
		}
	}
	secrets := []string{e.token, revokedSecret, bogus}
	for _, p := range acme {
		secrets = append(secrets, p.secret)
	}
	for _, p := range globex {
		secrets = append(secrets, p.secret)
	}

	type refusal struct {
		name    string
		secret  string
		code    connect.Code
		tokenID string // "" when no token was recognized
		field   string
	}
	appended := func() int { return len(e.events(t, "acme")) + len(e.events(t, "globex")) }
	for _, r := range rpcs(t) {
		t.Run(r.name, func(t *testing.T) {
			cases := []refusal{
				{"no token", "", connect.CodeUnauthenticated, "", ""},
				{"bad token", bogus, connect.CodeUnauthenticated, "", ""},
				{"garbage token", "hunter2", connect.CodeUnauthenticated, "", ""},
				{"revoked token", revokedSecret, connect.CodeUnauthenticated, revoked.ID, ""},
			}
			field := "tenant_id"
			if r.name == "UploadFocusFile" {
				field = "header.tenant_id"
			}
			for _, role := range tokens.Roles {
				p, ok := globex[role]
				if ok && allowed(role, r.name) {
					cases = append(cases, refusal{"other tenant's " + string(role), p.secret, connect.CodePermissionDenied, p.tok.ID, field})
				}
				if p := acme[role]; !allowed(role, r.name) {
					cases = append(cases, refusal{"too weak: " + string(role), p.secret, connect.CodePermissionDenied, p.tok.ID, ""})
				}
			}
			for _, tc := range cases {
				before, events := len(e.rejections(t)), appended()
				err := r.call(ctx, clientsFor(t, e.env, tc.secret), "acme")
				require.Equal(t, tc.code, connect.CodeOf(err), "%s: %v", tc.name, err)
				rej := e.rejections(t)
				require.Len(t, rej, before+1, "%s: exactly one audit event", tc.name)
				last := rej[len(rej)-1]
				require.Equal(t, procedure(r.name), last.GetProcedure(), tc.name)
				require.Equal(t, tc.code.String(), last.GetCode(), tc.name)
				require.Equal(t, tc.field, last.GetField(), tc.name)
				require.NotEmpty(t, last.GetReason(), tc.name)
				if tc.tokenID != "" {
					require.Contains(t, last.GetReason(), tc.tokenID, "%s: the audit names the token", tc.name)
				}
				// A stream refused before its first message is read (no token, a role
				// that may not call it) cannot tell which tenant it was for.
				streamed := r.name == "UploadFocusFile" || strings.HasPrefix(r.name, "Export")
				if !streamed || tc.field != "" {
					require.Equal(t, "acme", last.GetClaimedTenant(), tc.name)
				}
				require.Equal(t, events, appended(), "%s: nothing appended to a tenant", tc.name)
			}
			// The allowed: every role that may, for acme, and an admin for
			// every tenant.
			for _, role := range tokens.Roles {
				if !allowed(role, r.name) {
					continue
				}
				before := len(e.rejections(t))
				require.NoError(t, r.call(ctx, clientsFor(t, e.env, acme[role].secret), "acme"), "%s", role)
				require.Len(t, e.rejections(t), before, "%s: an allowed call is not audited", role)
			}
			require.NoError(t, r.call(ctx, clientsFor(t, e.env, e.token), "globex"), "admin for every tenant")
		})
	}

	// No secret is ever recorded.
	for _, env := range e.events(t, eventstore.SystemTenant) {
		b, err := protojson.Marshal(env)
		require.NoError(t, err)
		for _, s := range secrets {
			require.False(t, bytes.Contains(b, []byte(s)), "the audit holds a token secret: %s", b)
		}
	}

	// Appended events name the token that caused them.
	evs := append(e.events(t, "acme"), e.events(t, "globex")...)
	require.NotEmpty(t, evs)
	actors := map[string]bool{}
	for _, ev := range evs {
		a := ev.GetActor()
		actors[fmt.Sprintf("%s/%s", a.GetKind(), a.GetId())] = true
	}
	require.True(t, actors["ACTOR_KIND_SERVICE/acme-ingester"], "%v", actors)
	require.True(t, actors["ACTOR_KIND_USER/test-admin"], "%v", actors)
	require.False(t, actors["ACTOR_KIND_SERVICE/api"], "no event is anonymous: %v", actors)
}

// TestScopedTokenNamesItsTenant: a tenant's token is refused for a request
// naming no tenant (PermissionDenied, not a validation error), and the
// refusal of an upload after its header is recorded once.
func TestScopedTokenNamesItsTenant(t *testing.T) {
	e := newEnv(t)
	secret := newToken(t, e.pool, tokens.Spec{Name: "acme-pipeline", Role: tokens.RoleIngester, Tenant: "acme"})
	c := clientsFor(t, e, secret)
	_, err := c.ingest.RecordUsage(ctxT(t), connect.NewRequest(&tallyv1.RecordUsageRequest{Usage: usage()}))
	require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "%v", err)
	require.Contains(t, err.Error(), "names no tenant")

	// An upload whose first message is a chunk names no tenant either.
	stream := c.ingest.UploadFocusFile(ctxT(t))
	_ = stream.Send(&tallyv1.UploadFocusFileRequest{Part: &tallyv1.UploadFocusFileRequest_Chunk{Chunk: []byte("a,b\n")}})
	_, err = stream.CloseAndReceive()
	require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "%v", err)
	rej := e.rejections(t)
	require.Len(t, rej, 2)
	require.Equal(t, "header.tenant_id", rej[1].GetField())
	require.Empty(t, e.events(t, "acme"))
}

// TestHealthAndReflectionOpen: no token is needed for health and
// reflection.
func TestHealthAndReflectionOpen(t *testing.T) {
	e := newEnv(t)
	res, err := h2cClient(t, "").Post(e.url+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, 200, res.StatusCode)
	res, err = h2cClient(t, "").Post(e.url+"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "application/connect+json", strings.NewReader(""))
	require.NoError(t, err)
	res.Body.Close()
	require.NotEqual(t, 401, res.StatusCode)
	require.Empty(t, e.rejections(t))
}
