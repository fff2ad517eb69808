package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/savings"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
	"github.com/tally-ledger/tally/storage"
)

// SavingsServer serves tally.v1.SavingsService: realized savings from the savings read model,
// through its query functions.
//
// Tenant scoping, twice: every query names the request's tenant_id (checked against the
// token's by the auth interceptor), and runs through storage.ReadAsTenant, so row-level
// security refuses other tenants' rows whatever the SQL says.
type SavingsServer struct {
	store  *eventstore.Store
	log    *slog.Logger
	pool   *pgxpool.Pool
	runner *projections.Runner
}

var _ tallyv1connect.SavingsServiceHandler = (*SavingsServer)(nil)

// NewSavingsServer reads savings through cfg's pool; refusals are recorded in cfg's store.
func NewSavingsServer(cfg Config) *SavingsServer {
	return &SavingsServer{store: cfg.Store, log: cfg.Logger, pool: cfg.Pool, runner: cfg.Runner}
}

// savingsStatuses maps the API's statuses to the read model's.
var savingsStatuses = map[tallyv1.SavingsStatus]string{
	tallyv1.SavingsStatus_SAVINGS_STATUS_PENDING:       savings.StatusPending,
	tallyv1.SavingsStatus_SAVINGS_STATUS_MEASURED:      savings.StatusMeasured,
	tallyv1.SavingsStatus_SAVINGS_STATUS_COST_INCREASE: savings.StatusCostIncrease,
	tallyv1.SavingsStatus_SAVINGS_STATUS_UNMEASURABLE:  savings.StatusUnmeasurable,
}

func (s *SavingsServer) ListSavings(ctx context.Context, req *connect.Request[tallyv1.ListSavingsRequest]) (*connect.Response[tallyv1.ListSavingsResponse], error) {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	f, err := savingsFilter(m)
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	resp := &tallyv1.ListSavingsResponse{Actions: []*tallyv1.SavingsAction{}}
	err = s.read(ctx, f.Tenant, m.GetMinSeq(), func(q *savings.Queries) error {
		list, err := q.List(ctx, f)
		for i := range list {
			resp.Actions = append(resp.Actions, savingsActionProto(&list[i]))
		}
		return err
	})
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	return connect.NewResponse(resp), nil
}

func (s *SavingsServer) GetSavings(ctx context.Context, req *connect.Request[tallyv1.GetSavingsRequest]) (*connect.Response[tallyv1.GetSavingsResponse], error) {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	if err := actionArgs(m.GetTenantId(), m.GetActionId()); err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	resp := &tallyv1.GetSavingsResponse{History: []*tallyv1.SavingsRevision{}}
	err := s.read(ctx, m.GetTenantId(), m.GetMinSeq(), func(q *savings.Queries) error {
		a, hist, err := q.Get(ctx, m.GetTenantId(), m.GetActionId())
		if err != nil {
			return err
		}
		resp.Action = savingsActionProto(a)
		for _, r := range hist {
			resp.History = append(resp.History, &tallyv1.SavingsRevision{Revision: uint32(r.Revision), EventId: r.EventID,
				TenantSeq: r.TenantSeq, EventKind: r.EventKind, Figures: figuresProto(r.Figures)})
		}
		return nil
	})
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	return connect.NewResponse(resp), nil
}

func (s *SavingsServer) GetSavingsEvidence(ctx context.Context, req *connect.Request[tallyv1.GetSavingsEvidenceRequest]) (*connect.Response[tallyv1.GetSavingsEvidenceResponse], error) {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	if err := actionArgs(m.GetTenantId(), m.GetActionId()); err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	resp := &tallyv1.GetSavingsEvidenceResponse{Lines: []*tallyv1.SavingsEvidenceLine{}}
	err := s.read(ctx, m.GetTenantId(), m.GetMinSeq(), func(q *savings.Queries) error {
		a, lines, err := q.Evidence(ctx, m.GetTenantId(), m.GetActionId())
		if err != nil {
			return err
		}
		resp.Action = savingsActionProto(a)
		for _, l := range lines {
			resp.Lines = append(resp.Lines, &tallyv1.SavingsEvidenceLine{Window: l.Window, Provider: l.Provider,
				BillingAccountId: l.BillingAccountID, BillingPeriodStart: timestamppb.New(l.BillingPeriodStart),
				LineKey: l.LineKey, ResourceId: l.ResourceID, Day: l.Day, Currency: l.Currency, EffectiveCost: l.EffectiveCost,
				Final: l.Final, EventId: l.EventID, TenantSeq: l.TenantSeq})
		}
		return nil
	})
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	return connect.NewResponse(resp), nil
}

// savingsFilter validates a ListSavingsRequest, naming the field that is wrong.
func savingsFilter(m *tallyv1.ListSavingsRequest) (savings.Filter, error) {
	f := savings.Filter{Tenant: m.GetTenantId(), Period: m.GetPeriod(), ResourceID: m.GetResourceId()}
	if err := checkTenant("tenant_id", f.Tenant); err != nil {
		return f, err
	}
	if f.Period != "" {
		if t, err := time.Parse("2006-01", f.Period); err != nil || len(f.Period) != 7 || t.Year() < 1 {
			return f, fieldErr("period", "%s is not a month: use \"YYYY-MM\", such as \"2024-09\"", quote(f.Period))
		}
	}
	if err := optionalID("resource_id", f.ResourceID); err != nil {
		return f, err
	}
	if st := m.GetStatus(); st != tallyv1.SavingsStatus_SAVINGS_STATUS_UNSPECIFIED {
		name, ok := savingsStatuses[st]
		if !ok {
			return f, fieldErr("status", "%d is not a savings status: use SAVINGS_STATUS_PENDING, SAVINGS_STATUS_MEASURED, "+
				"SAVINGS_STATUS_COST_INCREASE or SAVINGS_STATUS_UNMEASURABLE, or leave it unset for all", st)
		}
		f.Status = name
	}
	return f, nil
}

func actionArgs(tenant, actionID string) error {
	if err := checkTenant("tenant_id", tenant); err != nil {
		return err
	}
	return requireID("action_id", actionID)
}

// read waits for minSeq, then runs fn over the savings read model as tenant.
func (s *SavingsServer) read(ctx context.Context, tenant string, minSeq uint64, fn func(*savings.Queries) error) error {
	if s.pool == nil {
		return connect.NewError(connect.CodeUnavailable, errors.New("this server has no database to read savings from"))
	}
	if minSeq > 0 {
		if err := waitForProjection(ctx, s.runner, s.pool, savings.Name, "savings", "min_seq", minSeq); err != nil {
			return err
		}
	}
	err := storage.ReadAsTenant(ctx, s.pool, tenant, func(tx pgx.Tx) error { return fn(savings.NewQueries(tx)) })
	switch {
	case errors.Is(err, savings.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("%w: list the tenant's actions with SavingsService/ListSavings", err))
	case errors.Is(err, savings.ErrInvalid):
		// Validation above should have caught it; the read model's message says what is wrong.
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	return err
}

func savingsActionProto(a *savings.Action) *tallyv1.SavingsAction {
	p := &tallyv1.SavingsAction{ActionId: a.ActionID, Provider: a.Provider, BillingAccountId: a.BillingAccountID,
		ResourceId: a.ResourceID, Kind: savings.KindFromName(a.Kind), Tool: a.Tool, Description: a.Description,
		Actor:                &tallyv1.Actor{Kind: tallyv1.ActorKind(tallyv1.ActorKind_value[a.ActorKind]), Id: a.ActorID},
		ExpectedDailySavings: a.ExpectedDailySavings, ExpectedCurrency: a.ExpectedCurrency, Period: a.Period,
		GapDays: uint32(a.GapDays), Figures: figuresProto(a.Figures), MonthlyMultiplier: a.MonthlyMultiplier,
		Revision: uint32(a.Revision), UpdatedEventId: a.UpdatedEventID, UpdatedTenantSeq: a.UpdatedTenantSeq,
		EventId: a.EventID, TenantSeq: a.TenantSeq}
	if a.ExecutedAt != nil {
		p.ExecutedAt = timestamppb.New(*a.ExecutedAt)
	}
	if a.Baseline != nil {
		p.Baseline = &tallyv1.SavingsWindow{Start: a.Baseline.Start, End: a.Baseline.End, Days: uint32(a.Baseline.Days)}
		p.Measurement = &tallyv1.SavingsWindow{Start: a.Measurement.Start, End: a.Measurement.End, Days: uint32(a.Measurement.Days)}
	}
	return p
}

func figuresProto(f savings.Figures) *tallyv1.SavingsFigures {
	st := tallyv1.SavingsStatus_SAVINGS_STATUS_UNSPECIFIED
	for k, v := range savingsStatuses {
		if v == f.Status {
			st = k
		}
	}
	return &tallyv1.SavingsFigures{Status: st, Reason: f.Reason, Currency: f.Currency,
		BaselineTotal: f.BaselineTotal, MeasurementTotal: f.MeasurementTotal,
		BaselineLines: uint32(f.BaselineLines), MeasurementLines: uint32(f.MeasurementLines),
		BaselineDaily: f.BaselineDaily, MeasurementDaily: f.MeasurementDaily,
		RealizedDaily: f.RealizedDaily, RealizedMonthly: f.RealizedMonthly}
}
