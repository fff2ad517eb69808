package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/closepkg"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// CloseServer serves tally.v1.CloseService: close packages from the closepkg read model, and
// closing a period, which appends a PeriodClosed event built by closepkg.Close.
//
// Tenant scoping: every package is built for the request's tenant_id, which the auth
// interceptor has checked against the token's tenant before the handler runs.
type CloseServer struct {
	store   *eventstore.Store
	log     *slog.Logger
	pool    *pgxpool.Pool
	runner  *projections.Runner
	queries *closepkg.Queries
}

var _ tallyv1connect.CloseServiceHandler = (*CloseServer)(nil)

// NewCloseServer reads packages through cfg's pool and appends closes to cfg's store.
func NewCloseServer(cfg Config) *CloseServer {
	s := &CloseServer{store: cfg.Store, log: cfg.Logger, pool: cfg.Pool, runner: cfg.Runner}
	if cfg.Pool != nil {
		s.queries = closepkg.NewQueries(cfg.Pool)
	}
	return s
}

// packageArgs validates what GetClosePackage and ClosePeriod share.
func packageArgs(tenant, period, provider, tolerance string) (*decimal.Decimal, error) {
	if err := checkTenant("tenant_id", tenant); err != nil {
		return nil, err
	}
	if period == "" {
		return nil, fieldErr("period", "is required (a month, \"YYYY-MM\")")
	}
	if t, err := time.Parse("2006-01", period); err != nil || len(period) != 7 || t.Year() < 1 {
		return nil, fieldErr("period", "%s is not a month: use \"YYYY-MM\", such as \"2024-09\"", quote(period))
	}
	if err := optionalID("provider", provider); err != nil {
		return nil, err
	}
	if strings.TrimSpace(tolerance) == "" {
		return nil, nil
	}
	_, tol, err := parseDecimal("tolerance_pct", tolerance)
	if err != nil {
		return nil, err
	}
	if tol.IsNegative() {
		return nil, fieldErr("tolerance_pct", "%s is negative: give a percentage of the invoice, such as \"1\" or \"0.5\"", quote(tolerance))
	}
	return &tol, nil
}

func (s *CloseServer) GetClosePackage(ctx context.Context, req *connect.Request[tallyv1.GetClosePackageRequest]) (*connect.Response[tallyv1.GetClosePackageResponse], error) {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	tol, err := packageArgs(m.GetTenantId(), m.GetPeriod(), m.GetProvider(), m.GetTolerancePct())
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	if s.queries == nil {
		return nil, fail(ctx, s.store, s.log, c, errNoCloseDatabase)
	}
	if m.GetWaitForHead() {
		if _, err := s.waitForHead(ctx, m.GetTenantId()); err != nil {
			return nil, fail(ctx, s.store, s.log, c, err)
		}
	}
	p, err := s.queries.Package(ctx, m.GetTenantId(), m.GetPeriod(), m.GetProvider(), closepkg.Options{TolerancePct: tol, AsOfSeq: m.GetAsOfSeq()})
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, closeErr(err))
	}
	canon, err := closepkg.Canonical(p)
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	return connect.NewResponse(&tallyv1.GetClosePackageResponse{Package: packageProto(p), CanonicalJson: string(canon), Sha256: p.SHA256}), nil
}

func (s *CloseServer) ClosePeriod(ctx context.Context, req *connect.Request[tallyv1.ClosePeriodRequest]) (*connect.Response[tallyv1.ClosePeriodResponse], error) {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	resp, err := s.closePeriod(ctx, m)
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	return connect.NewResponse(resp), nil
}

func (s *CloseServer) closePeriod(ctx context.Context, m *tallyv1.ClosePeriodRequest) (*tallyv1.ClosePeriodResponse, error) {
	tol, err := packageArgs(m.GetTenantId(), m.GetPeriod(), m.GetProvider(), m.GetTolerancePct())
	if err != nil {
		return nil, err
	}
	if err := requireID("approver", m.GetApprover()); err != nil {
		return nil, err
	}
	if err := checkText("note", m.GetNote(), maxTextLen); err != nil {
		return nil, err
	}
	if err := checkText("reason", m.GetReason(), maxTextLen); err != nil {
		return nil, err
	}
	if m.GetForce() && strings.TrimSpace(m.GetReason()) == "" {
		return nil, fieldErr("reason", "is required with force: say why a blocked package is closed")
	}
	actor := requestActor(ctx)
	approver := &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_USER, Id: strings.TrimSpace(m.GetApprover())}
	// The same name is the same principal whatever its kind: a service token named like a
	// person must not approve that person's close.
	if strings.EqualFold(approver.GetId(), actor.GetId()) {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
			"%w: %q asks to close %s and cannot also approve it; name another person as approver", closepkg.ErrSelfApproval, actor.GetId(), m.GetPeriod()))
	}
	if s.queries == nil {
		return nil, errNoCloseDatabase
	}
	// The package is built from everything the tenant's log holds now, and the close is
	// appended only if the log has not moved since: a concurrent close (or any other event)
	// in between makes this one fail with Aborted rather than close a package it did not see.
	head, err := s.waitForHead(ctx, m.GetTenantId())
	if err != nil {
		return nil, err
	}
	p, err := s.queries.Package(ctx, m.GetTenantId(), m.GetPeriod(), m.GetProvider(), closepkg.Options{TolerancePct: tol, AsOfSeq: head.Seq})
	if err != nil {
		return nil, closeErr(err)
	}
	env, err := closepkg.Close(p, closepkg.CloseRequest{Actor: actor, Approver: approver, Note: m.GetNote(),
		Force: m.GetForce(), Reason: m.GetReason()})
	if err != nil {
		return nil, closeErr(err)
	}
	env.CorrelationId = RequestID(ctx)
	env.Source = &tallyv1.Source{Adapter: "api", BatchId: RequestID(ctx)}
	res, err := s.store.Append(ctx, m.GetTenantId(), []*tallyv1.Envelope{env}, eventstore.ExpectTenantSeq(head.Seq))
	if err != nil {
		return nil, err
	}
	if res.Appended == 0 {
		// The same close (same package, same id) is already in the log: it can only have
		// landed at this head, which the package would have shown as closed.
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("%w: %s", closepkg.ErrAlreadyClosed, m.GetPeriod()))
	}
	s.log.InfoContext(ctx, "period closed", slog.String("tenant", m.GetTenantId()), slog.String("period", m.GetPeriod()),
		slog.String("provider", m.GetProvider()), slog.String("actor", actor.GetId()), slog.String("approver", approver.GetId()),
		slog.String("package_sha256", p.SHA256), slog.String("request_id", RequestID(ctx)))
	pc := env.GetPeriodClosed()
	return &tallyv1.ClosePeriodResponse{EventId: env.GetEventId(), TenantSeq: res.LastSeq, StreamSeq: res.Head.StreamSeq,
		PackageSha256: pc.GetPackageSha256(), ChainHeadSeq: pc.GetChainHeadSeq(), ChainHead: pc.GetChainHead(), Package: packageProto(p)}, nil
}

var errNoCloseDatabase = connect.NewError(connect.CodeUnavailable, errors.New("this server has no database to read close packages from"))

// waitForHead returns the tenant's chain head once the close read model has folded it.
func (s *CloseServer) waitForHead(ctx context.Context, tenant string) (eventstore.Head, error) {
	head, err := s.store.Head(ctx, tenant)
	if err != nil {
		return head, err
	}
	if head.Seq == 0 {
		return head, nil
	}
	return head, waitForProjection(ctx, s.runner, s.pool, closepkg.Name, "close", "the tenant's newest event", head.StreamSeq)
}

// closeErr maps closepkg's errors to Connect codes: a request to fix is InvalidArgument, a
// business rule FailedPrecondition.
func closeErr(err error) error {
	switch {
	case errors.Is(err, closepkg.ErrInvalid):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, closepkg.ErrPrecondition):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return err
}

// packageProto is p as a message.
func packageProto(p *closepkg.Package) *tallyv1.ClosePackage {
	out := &tallyv1.ClosePackage{TenantId: p.Tenant, Period: p.Period, Provider: p.Provider, TolerancePct: p.TolerancePct,
		ChainHeadSeq: p.ChainHead.Seq, ChainHead: p.ChainHead.Hash, Status: p.Status, Reasons: p.Reasons, Closed: p.Closed,
		Lines:        &tallyv1.LineCounts{Final: p.Lines.Final, Preliminary: p.Lines.Preliminary, Total: p.Lines.Total},
		Restatements: changesProto(p.Restatements), PostCloseAdjustments: changesProto(p.PostClose), Sha256: p.SHA256}
	for _, c := range p.Closes {
		out.Closes = append(out.Closes, &tallyv1.PackageClose{Provider: c.Provider, Actor: c.Actor, Approver: c.Approver,
			PackageSha256: c.PackageSHA256, ChainHeadSeq: c.ChainHeadSeq, ChainHead: c.ChainHead, Note: c.Note, TenantSeq: c.Seq})
	}
	for _, t := range p.Totals {
		out.Totals = append(out.Totals, &tallyv1.PackageCurrencyTotal{Currency: t.Currency, Final: t.Final, Preliminary: t.Preliminary,
			Total: t.Total, FinalLines: t.FinalLines, PreliminaryLines: t.PreliminaryLines})
	}
	for _, r := range p.Reconciliation {
		out.Reconciliation = append(out.Reconciliation, &tallyv1.PackageReconciliation{Provider: r.Provider,
			BillingAccountId: r.BillingAccountID, Currency: r.Currency, LedgerFinal: r.LedgerFinal, LedgerPreliminary: r.LedgerPrelim,
			FinalLines: r.FinalLines, PreliminaryLines: r.PreliminaryLines, Invoice: r.Invoice, InvoiceIds: r.InvoiceIDs,
			Variance: r.Variance, VariancePct: r.VariancePct, Status: r.Status})
	}
	return out
}

func changesProto(c closepkg.Changes) *tallyv1.PackageChanges {
	out := &tallyv1.PackageChanges{Count: c.Count, Recorded: c.Recorded, Restated: c.Restated, Retracted: c.Retracted}
	for _, d := range c.ByCurrency {
		out.ByCurrency = append(out.ByCurrency, &tallyv1.PackageCurrencyDelta{Currency: d.Currency, Net: d.Net, Absolute: d.Absolute})
	}
	for _, it := range c.Items {
		out.Items = append(out.Items, &tallyv1.PackageChangeItem{Provider: it.Provider, BillingAccountId: it.BillingAccountID,
			Currency: it.Currency, Op: it.Op, Count: it.Count, Net: it.Net, Absolute: it.Absolute})
	}
	return out
}
