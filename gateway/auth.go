package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"connectrpc.com/connect"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/gateway/tokens"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// Authenticator finds the token a bearer secret belongs to. *tokens.Store
// is the one Tally uses; it returns tokens.ErrMalformed, ErrUnknown, or
// ErrRevoked with the revoked token, and any other error when it cannot tell.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (tokens.Token, error)
}

// permission is what a procedure needs.
type permission string

const (
	permLedgerRead       permission = "ledger.read"
	permIngest           permission = "ingest.write"
	permAuditRead        permission = "audit.read"
	permProjectionsAdmin permission = "projections.admin"
	permTokensAdmin      permission = "tokens.admin"
	// permPeriodClose closes a month (CloseService/ClosePeriod): a finance act, not an
	// operator's, so only admins hold it.
	permPeriodClose permission = "period.close"
)

// rolePermissions is the role matrix (documented in doc.go). A token
// scoped to a tenant holds its permissions for that tenant only.
var rolePermissions = map[tokens.Role][]permission{
	tokens.RoleViewer:   {permLedgerRead},
	tokens.RoleIngester: {permIngest},
	tokens.RoleAuditor:  {permLedgerRead, permAuditRead},
	tokens.RoleOperator: {permProjectionsAdmin},
	tokens.RoleAdmin:    {permLedgerRead, permIngest, permAuditRead, permProjectionsAdmin, permTokensAdmin, permPeriodClose},
}

// procedurePermissions: what each procedure needs. A procedure missing here
// is refused to every token (TestEveryProcedureHasAPermission keeps it
// complete). Health and reflection are mounted without authentication.
var procedurePermissions = map[string]permission{
	tallyv1connect.IngestServiceUploadFocusFileProcedure:      permIngest,
	tallyv1connect.IngestServiceRecordUsageProcedure:          permIngest,
	tallyv1connect.IngestServiceRecordRemediationProcedure:    permIngest,
	tallyv1connect.IngestServiceTagResourceProcedure:          permIngest,
	tallyv1connect.IngestServiceSetAllocationRuleProcedure:    permIngest,
	tallyv1connect.IngestServiceRetireAllocationRuleProcedure: permIngest,
	tallyv1connect.IngestServiceRecordInvoiceProcedure:        permIngest,
	tallyv1connect.IngestServiceRecordFxRateProcedure:         permIngest,
	tallyv1connect.IngestServiceSetBudgetProcedure:            permIngest,
	tallyv1connect.LedgerServiceGetCostProcedure:              permLedgerRead,
	tallyv1connect.LedgerServiceGetTotalsProcedure:            permLedgerRead,
	tallyv1connect.AuditServiceReplayEventsProcedure:          permAuditRead,
	tallyv1connect.AuditServiceVerifyChainProcedure:           permAuditRead,
	// Exports: FOCUS and close packages are ledger reads; the compliance pack (chain head,
	// checkpoints, rules, change log) is audit evidence, for auditors and admins.
	tallyv1connect.ExportServiceExportFocusProcedure:          permLedgerRead,
	tallyv1connect.ExportServiceExportClosePackageProcedure:   permLedgerRead,
	tallyv1connect.ExportServiceExportCompliancePackProcedure: permAuditRead,
	tallyv1connect.AuditServiceListChangesProcedure:           permAuditRead,
	tallyv1connect.CloseServiceGetClosePackageProcedure:       permLedgerRead,
	tallyv1connect.CloseServiceClosePeriodProcedure:           permPeriodClose,
	// Realized savings are ledger reads.
	tallyv1connect.SavingsServiceListSavingsProcedure:        permLedgerRead,
	tallyv1connect.SavingsServiceGetSavingsProcedure:         permLedgerRead,
	tallyv1connect.SavingsServiceGetSavingsEvidenceProcedure: permLedgerRead,
	// Allocation queries and dry runs are reads; rules change through IngestService pushes.
	tallyv1connect.AllocationServiceGetAllocationProcedure:  permLedgerRead,
	tallyv1connect.AllocationServiceGetUnallocatedProcedure: permLedgerRead,
	tallyv1connect.AllocationServiceGetCoverageProcedure:    permLedgerRead,
	tallyv1connect.AllocationServiceDryRunRuleProcedure:     permLedgerRead,
}

func may(r tokens.Role, p permission) bool {
	for _, q := range rolePermissions[r] {
		if q == p {
			return true
		}
	}
	return false
}

// rolesWith lists the roles holding p, for messages.
func rolesWith(p permission) string {
	var out []string
	for _, r := range tokens.Roles {
		if may(r, p) {
			out = append(out, string(r))
		}
	}
	return strings.Join(out, ", ")
}

// authError is a request refused for who sent it: Unauthenticated (no
// valid token) or PermissionDenied (a valid token that may not do this).
type authError struct {
	code  connect.Code
	msg   string
	field string // the request's field naming the tenant, when that is the cause
}

func (e *authError) Error() string { return e.msg }

func unauthenticated(format string, args ...any) *authError {
	return &authError{code: connect.CodeUnauthenticated, msg: fmt.Sprintf(format, args...)}
}

type principalKey struct{}

func withPrincipal(ctx context.Context, t tokens.Token) context.Context {
	return context.WithValue(ctx, principalKey{}, t)
}

// Principal is the token ctx's request was authenticated with.
func Principal(ctx context.Context) (tokens.Token, bool) {
	t, ok := ctx.Value(principalKey{}).(tokens.Token)
	return t, ok
}

// anonymousActor names the caller of a request refused before any token
// was recognized.
var anonymousActor = &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "api"}

// actorOf is who a token acts as in the events it causes: its name, as a
// person or a service.
func actorOf(t *tokens.Token) *tallyv1.Actor {
	if t == nil {
		return anonymousActor
	}
	kind := tallyv1.ActorKind_ACTOR_KIND_SERVICE
	if t.Kind == tokens.KindUser {
		kind = tallyv1.ActorKind_ACTOR_KIND_USER
	}
	return &tallyv1.Actor{Kind: kind, Id: t.Name}
}

// requestActor is the actor of ctx's request.
func requestActor(ctx context.Context) *tallyv1.Actor {
	if t, ok := Principal(ctx); ok {
		return actorOf(&t)
	}
	return anonymousActor
}

// authInterceptor authenticates every call of the Tally services, checks
// the token's role and tenant against the procedure and the request, and
// puts the token in the context for the handlers (Principal). Each refusal
// is recorded through fail, once.
type authInterceptor struct {
	auth  Authenticator
	store *eventstore.Store
	log   *slog.Logger
}

var _ connect.Interceptor = (*authInterceptor)(nil)

// authenticate returns the request's valid token. A revoked token comes
// back beside the error, so that the refusal names it.
func (a *authInterceptor) authenticate(ctx context.Context, h interface{ Get(string) string }) (*tokens.Token, error) {
	v := h.Get("Authorization")
	if v == "" {
		return nil, unauthenticated("no token: send the header \"Authorization: Bearer <token>\" (tally tokens create makes a token)")
	}
	scheme, secret, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return nil, unauthenticated("the Authorization header is not \"Bearer <token>\"")
	}
	t, err := a.auth.Authenticate(ctx, strings.TrimSpace(secret))
	switch {
	case err == nil:
		return &t, nil
	case errors.Is(err, tokens.ErrRevoked):
		return &t, unauthenticated("token %s (%s) was revoked: ask an admin for a new one", t.ID, t.Name)
	case errors.Is(err, tokens.ErrUnknown), errors.Is(err, tokens.ErrMalformed):
		return nil, unauthenticated("the bearer token is not a valid Tally token: check it, or ask an admin for one (tally tokens create)")
	}
	return nil, fmt.Errorf("authenticate: %w", err)
}

// authorizeRole checks that t may call procedure.
func authorizeRole(t *tokens.Token, procedure string) error {
	p, ok := procedurePermissions[procedure]
	if !ok {
		return &authError{code: connect.CodePermissionDenied, msg: fmt.Sprintf("no token may call %s", procedure)}
	}
	if !may(t.Role, p) {
		return &authError{code: connect.CodePermissionDenied, msg: fmt.Sprintf(
			"token %q has role %s, which may not call %s: it needs one of the roles %s", t.Name, t.Role, procedure, rolesWith(p))}
	}
	return nil
}

// authorizeTenant checks that t may act for the tenant the request names
// (in field). A token scoped to a tenant may only make requests naming
// that tenant, so a request naming none is refused too.
func authorizeTenant(t *tokens.Token, tenant, field string) error {
	if t.AllTenants() || tenant == t.Tenant {
		return nil
	}
	what := fmt.Sprintf("the request names tenant %s", quote(clip(tenant, maxIDLen)))
	if tenant == "" {
		what = "the request names no tenant"
	}
	return &authError{code: connect.CodePermissionDenied, field: field, msg: fmt.Sprintf(
		"token %q may only act for tenant %q, but %s", t.Name, t.Tenant, what)}
}

// claimedTenant is the tenant a request message names, and the field
// naming it: tenant_id, or the header of an upload.
func claimedTenant(msg any) (tenant, field string) {
	switch m := msg.(type) {
	case *tallyv1.UploadFocusFileRequest:
		return m.GetHeader().GetTenantId(), "header.tenant_id"
	case interface{ GetTenantId() string }:
		return m.GetTenantId(), "tenant_id"
	}
	return "", ""
}

func (a *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		tenant, field := claimedTenant(req.Any())
		c := callOf(req.Spec(), req.Peer(), tenant)
		t, err := a.authenticate(ctx, req.Header())
		if err == nil {
			err = authorizeRole(t, c.procedure)
		}
		if err == nil {
			err = authorizeTenant(t, tenant, field)
		}
		if err != nil {
			c.token = t
			return nil, fail(ctx, a.store, a.log, c, err)
		}
		return next(withPrincipal(ctx, *t), req)
	}
}

func (a *authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler checks the token and role before the handler runs,
// and the tenant when the handler receives the first message, which names
// it (an upload's header).
func (a *authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		c := callOf(conn.Spec(), conn.Peer(), "")
		t, err := a.authenticate(ctx, conn.RequestHeader())
		if err == nil {
			err = authorizeRole(t, c.procedure)
		}
		if err != nil {
			c.token = t
			return fail(ctx, a.store, a.log, c, err)
		}
		ctx = withPrincipal(ctx, *t)
		if t.AllTenants() {
			return next(ctx, conn)
		}
		return next(ctx, &tenantCheckedConn{StreamingHandlerConn: conn, check: func(msg any) error {
			tenant, field := claimedTenant(msg)
			if err := authorizeTenant(t, tenant, field); err != nil {
				c.tenant, c.token = tenant, t
				return &audited{refuse(ctx, a.store, a.log, c, err)}
			}
			return nil
		}})
	}
}

// tenantCheckedConn refuses a stream whose first message names a tenant
// the token may not act for; every later Receive returns the same refusal.
type tenantCheckedConn struct {
	connect.StreamingHandlerConn
	check   func(msg any) error
	checked bool
	err     error
}

func (c *tenantCheckedConn) Receive(msg any) error {
	if c.err != nil {
		return c.err
	}
	if err := c.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	if !c.checked {
		c.checked = true
		c.err = c.check(msg)
	}
	return c.err
}

// audited is a refusal already recorded: fail returns it without
// recording it again when a handler passes it on.
type audited struct{ err *connect.Error }

func (a *audited) Error() string { return a.err.Error() }
func (a *audited) Unwrap() error { return a.err }
