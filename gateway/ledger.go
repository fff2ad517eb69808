package gateway

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/storage"
)

const (
	// maxWait bounds waiting for min_seq when the request has a longer
	// deadline or none: a dashboard should not hold a connection for a
	// projector that is down.
	maxWait = 30 * time.Second
	// waitPoll is how often a gateway without a runner asks the database
	// whether the ledger has moved.
	waitPoll = 50 * time.Millisecond
)

// LedgerServer serves tally.v1.LedgerService: cost and totals from the
// ledger read model, through its query functions.
//
// Tenant scoping, twice: every query is limited to the request's tenant_id,
// which the auth interceptor has checked against the token's tenant before
// the handler runs; and every query runs in a read-only transaction as the
// role storage.ReaderRole with that tenant set (storage.ReadAsTenant), so
// PostgreSQL's row-level security refuses other tenants' rows whatever the
// SQL says.
type LedgerServer struct {
	store  *eventstore.Store
	log    *slog.Logger
	pool   *pgxpool.Pool
	runner *projections.Runner
}

var _ tallyv1connect.LedgerServiceHandler = (*LedgerServer)(nil)

// NewLedgerServer reads the ledger through cfg's pool; refusals are
// recorded in cfg's store.
func NewLedgerServer(cfg Config) *LedgerServer {
	s := &LedgerServer{store: cfg.Store, log: cfg.Logger, runner: cfg.Runner}
	s.pool = cfg.Pool
	return s
}

func (s *LedgerServer) GetCost(ctx context.Context, req *connect.Request[tallyv1.GetCostRequest]) (*connect.Response[tallyv1.GetCostResponse], error) {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	q, groups, err := costQuery(m)
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	rows, err := s.cost(ctx, q, m.GetMinSeq())
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	if groups == nil {
		groups = []string{}
	}
	return connect.NewResponse(&tallyv1.GetCostResponse{Groups: groups, Rows: costRows(rows)}), nil
}

func (s *LedgerServer) GetTotals(ctx context.Context, req *connect.Request[tallyv1.GetTotalsRequest]) (*connect.Response[tallyv1.GetTotalsResponse], error) {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	f, err := ledgerFilter(m)
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	// One row per currency and finality: Cost rather than Totals, whose
	// split covers billed cost only.
	to := strings.ToUpper(strings.TrimSpace(m.GetNormalizeTo()))
	if to != "" && !focus.IsCurrency(to) {
		return nil, fail(ctx, s.store, s.log, c, fieldErr("normalize_to", "%q is not an ISO 4217 code", m.GetNormalizeTo()))
	}
	rows, err := s.cost(ctx, ledger.Query{Filter: f, Normalize: to}, m.GetMinSeq())
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	resp := &tallyv1.GetTotalsResponse{Totals: currencyTotals(rows)}
	if to != "" {
		resp.Normalized = normalizedTotal(to, rows)
	}
	return connect.NewResponse(resp), nil
}

// cost waits for minSeq, then asks the ledger as q's tenant.
func (s *LedgerServer) cost(ctx context.Context, q ledger.Query, minSeq uint64) ([]ledger.Row, error) {
	if s.pool == nil {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("this server has no database to read the ledger from"))
	}
	if minSeq > 0 {
		if err := s.waitFor(ctx, minSeq); err != nil {
			return nil, err
		}
	}
	var rows []ledger.Row
	err := storage.ReadAsTenant(ctx, s.pool, q.Tenant, func(tx pgx.Tx) error {
		var err error
		rows, err = ledger.NewQueries(tx).Cost(ctx, q)
		return err
	})
	if errors.Is(err, ledger.ErrInvalidQuery) || errors.Is(err, storage.ErrNoTenant) {
		// Validation above should have caught it; the ledger's message
		// says what is wrong.
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	return rows, err
}

// waitFor returns once the ledger has folded stream sequence seq, within
// the request's deadline and maxWait.
func (s *LedgerServer) waitFor(ctx context.Context, seq uint64) error {
	return waitForProjection(ctx, s.runner, s.pool, ledger.Name, "ledger", "min_seq", seq)
}
