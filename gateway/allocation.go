package gateway

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/allocation"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// Limits of AllocationService requests.
const (
	defaultTopServices = 10
	maxTopServices     = 1000
)

// AllocationServer serves tally.v1.AllocationService from the allocation
// read model, through its query functions. Every query is limited to the
// request's tenant_id, which the auth interceptor has matched against the
// token's tenant.
type AllocationServer struct {
	store   *eventstore.Store
	log     *slog.Logger
	queries *allocation.Queries
	pool    *pgxpool.Pool
	runner  *projections.Runner
}

var _ tallyv1connect.AllocationServiceHandler = (*AllocationServer)(nil)

// NewAllocationServer reads the allocation read model through cfg's pool;
// refusals are recorded in cfg's store.
func NewAllocationServer(cfg Config) *AllocationServer {
	s := &AllocationServer{store: cfg.Store, log: cfg.Logger, runner: cfg.Runner}
	if cfg.Pool != nil {
		s.queries = allocation.NewQueries(cfg.Pool)
		s.pool = cfg.Pool
	}
	return s
}

func (s *AllocationServer) GetAllocation(ctx context.Context, req *connect.Request[tallyv1.GetAllocationRequest]) (*connect.Response[tallyv1.GetAllocationResponse], error) {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	from, to, err := allocationRange(m.GetTenantId(), m.GetPeriod(), m.GetFrom(), m.GetTo())
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	var by allocation.Group
	switch m.GetGroupBy() {
	case tallyv1.AllocationGrouping_ALLOCATION_GROUPING_UNSPECIFIED, tallyv1.AllocationGrouping_ALLOCATION_GROUPING_COST_CENTER:
		by = allocation.ByCostCenter
	case tallyv1.AllocationGrouping_ALLOCATION_GROUPING_DAY:
		by = allocation.ByDay
	case tallyv1.AllocationGrouping_ALLOCATION_GROUPING_COST_CENTER_DAY:
		by = allocation.ByCostCenter | allocation.ByDay
	default:
		return nil, fail(ctx, s.store, s.log, c, fieldErr("group_by", "%d is not a grouping: use ALLOCATION_GROUPING_COST_CENTER, _DAY or _COST_CENTER_DAY", m.GetGroupBy()))
	}
	if err := s.ready(ctx, m.GetMinSeq()); err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	rows, err := s.queries.Allocated(ctx, m.GetTenantId(), from, to, by)
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, allocationErr(err))
	}
	resp := &tallyv1.GetAllocationResponse{Rows: make([]*tallyv1.AllocationRow, 0, len(rows))}
	for _, r := range rows {
		row := &tallyv1.AllocationRow{CostCenter: r.CostCenter, Currency: r.Currency, Amount: r.Amount.String()}
		if by&allocation.ByDay != 0 {
			row.Day = timestamppb.New(r.Day)
		}
		resp.Rows = append(resp.Rows, row)
	}
	return connect.NewResponse(resp), nil
}

func (s *AllocationServer) GetUnallocated(ctx context.Context, req *connect.Request[tallyv1.GetUnallocatedRequest]) (*connect.Response[tallyv1.GetUnallocatedResponse], error) {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	from, to, err := allocationRange(m.GetTenantId(), m.GetPeriod(), m.GetFrom(), m.GetTo())
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	top := int(m.GetTop())
	switch {
	case top == 0:
		top = defaultTopServices
	case top > maxTopServices:
		return nil, fail(ctx, s.store, s.log, c, fieldErr("top", "%d is over the limit of %d", top, maxTopServices))
	}
	if err := s.ready(ctx, m.GetMinSeq()); err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	us, err := s.queries.Unallocated(ctx, m.GetTenantId(), from, to, top)
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, allocationErr(err))
	}
	resp := &tallyv1.GetUnallocatedResponse{Currencies: make([]*tallyv1.UnallocatedCost, 0, len(us))}
	for _, u := range us {
		uc := &tallyv1.UnallocatedCost{Currency: u.Currency, Total: u.Total.String(), Other: u.Other.String(),
			OtherServices: uint32(u.OtherServices), TopServices: make([]*tallyv1.ServiceAmount, 0, len(u.Top))}
		for _, t := range u.Top {
			uc.TopServices = append(uc.TopServices, &tallyv1.ServiceAmount{ServiceName: t.Service, Amount: t.Amount.String()})
		}
		resp.Currencies = append(resp.Currencies, uc)
	}
	return connect.NewResponse(resp), nil
}

func (s *AllocationServer) GetCoverage(ctx context.Context, req *connect.Request[tallyv1.GetCoverageRequest]) (*connect.Response[tallyv1.GetCoverageResponse], error) {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	if err := checkMonth(m.GetTenantId(), m.GetPeriod()); err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	if err := s.ready(ctx, m.GetMinSeq()); err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	rep, err := s.queries.Coverage(ctx, m.GetTenantId(), m.GetPeriod())
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, allocationErr(err))
	}
	resp := &tallyv1.GetCoverageResponse{Currencies: make([]*tallyv1.CurrencyCoverage, 0, len(rep.Currencies)),
		FailedDays: make([]*tallyv1.FailedAllocationDay, 0, len(rep.FailedDays))}
	for _, r := range rep.Currencies {
		cc := &tallyv1.CurrencyCoverage{Currency: r.Currency, Allocated: r.Allocated.String(),
			Unallocated: r.Unallocated.String(), Total: r.Total.String()}
		if r.Defined {
			cc.Percent = r.Percent.String()
		}
		resp.Currencies = append(resp.Currencies, cc)
	}
	for _, f := range rep.FailedDays {
		resp.FailedDays = append(resp.FailedDays, &tallyv1.FailedAllocationDay{Day: timestamppb.New(f.Day), Reason: f.Reason})
	}
	return connect.NewResponse(resp), nil
}

func (s *AllocationServer) DryRunRule(ctx context.Context, req *connect.Request[tallyv1.DryRunRuleRequest]) (*connect.Response[tallyv1.DryRunRuleResponse], error) {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	if err := checkMonth(m.GetTenantId(), m.GetPeriod()); err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	// Validate a copy: validation canonicalizes decimals and sorts tags, as
	// a push would before appending.
	var change allocation.Change
	switch ch := m.GetChange().(type) {
	case *tallyv1.DryRunRuleRequest_Rule:
		r := proto.Clone(ch.Rule).(*tallyv1.AllocationRuleSet)
		if _, err := validateRule("rule", r); err != nil {
			return nil, fail(ctx, s.store, s.log, c, err)
		}
		change.Set = r
	case *tallyv1.DryRunRuleRequest_Retired:
		r := proto.Clone(ch.Retired).(*tallyv1.AllocationRuleRetired)
		if _, err := validateRetired("retired", r); err != nil {
			return nil, fail(ctx, s.store, s.log, c, err)
		}
		change.Retire = r
	default:
		return nil, fail(ctx, s.store, s.log, c, fieldErr("change", "is required: a rule (a new rule version) or retired (a retirement)"))
	}
	if err := s.ready(ctx, m.GetMinSeq()); err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	moves, err := s.queries.DryRun(ctx, m.GetTenantId(), m.GetPeriod(), change)
	if err != nil {
		var re *allocation.RuleError
		if errors.As(err, &re) {
			prefix := "rule."
			if change.Retire != nil {
				prefix = "retired."
			}
			err = fieldErr(prefix+re.Field, "%s", re.Msg)
		}
		return nil, fail(ctx, s.store, s.log, c, allocationErr(err))
	}
	resp := &tallyv1.DryRunRuleResponse{Movements: make([]*tallyv1.CostCenterMovement, 0, len(moves))}
	for _, mv := range moves {
		resp.Movements = append(resp.Movements, &tallyv1.CostCenterMovement{CostCenter: mv.CostCenter, Currency: mv.Currency,
			Before: mv.Before.String(), After: mv.After.String(), Delta: mv.Delta.String()})
	}
	return connect.NewResponse(resp), nil
}

// allocationRange validates the tenant and the days of a request: a period
// "YYYY-MM", or from and to at 00:00 UTC.
func allocationRange(tenant, period string, from, to *timestamppb.Timestamp) (time.Time, time.Time, error) {
	if err := checkTenant("tenant_id", tenant); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if period != "" {
		if from != nil || to != nil {
			return time.Time{}, time.Time{}, fieldErr("period", "and from/to are both set: give a month or a range of days, not both")
		}
		f, t, err := allocation.PeriodDays(period)
		if err != nil {
			return f, t, fieldErr("period", "%s is not a month written YYYY-MM", quote(period))
		}
		return f, t, nil
	}
	if from == nil && to == nil {
		return time.Time{}, time.Time{}, fieldErr("period", "is required (a month written YYYY-MM), or give from and to")
	}
	if err := checkPeriod("from", "to", from, to); err != nil {
		return time.Time{}, time.Time{}, err
	}
	for _, f := range []struct {
		name string
		ts   *timestamppb.Timestamp
	}{{"from", from}, {"to", to}} {
		if t := f.ts.AsTime(); !t.Equal(allocation.Day(t)) {
			return time.Time{}, time.Time{}, fieldErr(f.name, "(%s) must be a day at 00:00 UTC", t.Format(time.RFC3339))
		}
	}
	return from.AsTime(), to.AsTime(), nil
}

// checkMonth validates the tenant and a required period "YYYY-MM".
func checkMonth(tenant, period string) error {
	if err := checkTenant("tenant_id", tenant); err != nil {
		return err
	}
	if period == "" {
		return fieldErr("period", "is required (a month written YYYY-MM)")
	}
	if _, _, err := allocation.PeriodDays(period); err != nil {
		return fieldErr("period", "%s is not a month written YYYY-MM", quote(period))
	}
	return nil
}

// allocationErr turns the allocation package's errors into what
// connectError maps: a query error names its field; an unknown rule is
// NotFound; a read model not set up yet (no projector has run) is
// Unavailable.
func allocationErr(err error) error {
	var (
		qe *allocation.QueryError
		pe *pgconn.PgError
	)
	switch {
	case errors.As(err, &qe):
		return fieldErr(qe.Field, "%s", qe.Msg)
	case errors.Is(err, allocation.ErrUnknownRule):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.As(err, &pe) && pe.Code == undefinedTable:
		return connect.NewError(connect.CodeUnavailable, errors.New(
			"the allocation read model is not set up yet: is a projector (tally serve with the projector role) running?"))
	}
	return err
}

// ready checks that there is a database and waits for min_seq.
func (s *AllocationServer) ready(ctx context.Context, minSeq uint64) error {
	if s.queries == nil {
		return connect.NewError(connect.CodeUnavailable, errors.New("this server has no database to read allocations from"))
	}
	if minSeq == 0 {
		return nil
	}
	return waitForProjection(ctx, s.runner, s.pool, allocation.Name, "allocation", "min_seq", minSeq)
}

// undefinedTable is PostgreSQL's SQLSTATE undefined_table.
const undefinedTable = "42P01"
