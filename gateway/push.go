package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// IngestServer serves tally.v1.IngestService: event pushes and FOCUS file
// uploads.
type IngestServer struct {
	cfg   Config
	store *eventstore.Store
	log   *slog.Logger
}

var _ tallyv1connect.IngestServiceHandler = (*IngestServer)(nil)

// NewIngestServer serves pushes and uploads over cfg's store and pool.
func NewIngestServer(cfg Config) *IngestServer {
	return &IngestServer{cfg: cfg, store: cfg.Store, log: cfg.Logger}
}

// pushed is what every push answers.
type pushed struct {
	eventID   string
	tenantSeq uint64
	duplicate bool
}

// push validates the tenant and key, then the body (validate, which sets
// the body on env and returns occurred_at), and appends one event with an id
// derived from the idempotency key.
func (s *IngestServer) push(ctx context.Context, c call, key string, body proto.Message,
	validate func() (*timestamppb.Timestamp, error), set func(*tallyv1.Envelope)) (pushed, error) {
	if err := checkTenant("tenant_id", c.tenant); err != nil {
		return pushed{}, fail(ctx, s.store, s.log, c, err)
	}
	if err := checkText("idempotency_key", key, maxIDLen); err != nil {
		return pushed{}, fail(ctx, s.store, s.log, c, err)
	}
	occurred, err := validate()
	if err != nil {
		return pushed{}, fail(ctx, s.store, s.log, c, err)
	}
	if key == "" {
		key, err = contentKey(c.procedure, body)
		if err != nil {
			return pushed{}, fail(ctx, s.store, s.log, c, err)
		}
	}
	id := RequestID(ctx)
	env := &tallyv1.Envelope{
		EventId:        eventstore.DeterministicID(c.tenant, key),
		TenantId:       c.tenant,
		OccurredAt:     occurred,
		Actor:          requestActor(ctx),
		Source:         &tallyv1.Source{Adapter: "api", BatchId: id},
		CorrelationId:  id,
		IdempotencyKey: key,
	}
	set(env)
	res, err := s.store.Append(ctx, c.tenant, []*tallyv1.Envelope{env})
	if err != nil {
		return pushed{}, fail(ctx, s.store, s.log, c, err)
	}
	p := pushed{eventID: env.GetEventId(), duplicate: res.Duplicates > 0}
	if res.Appended > 0 {
		p.tenantSeq = res.FirstSeq
	}
	s.log.DebugContext(ctx, "event pushed", slog.String("request_id", id), slog.String("procedure", c.procedure),
		slog.String("tenant", c.tenant), slog.String("event_id", p.eventID), slog.Bool("duplicate", p.duplicate))
	return p, nil
}

// contentKey is the idempotency key of a push that gave none: the procedure
// and the canonical body bytes, so resending the same fact appends nothing.
// The body is validated (and its lists sorted) first.
func contentKey(procedure string, body proto.Message) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(append([]byte(procedure+"\x00"), b...))
	return "content:" + hex.EncodeToString(sum[:]), nil
}

func (s *IngestServer) RecordUsage(ctx context.Context, req *connect.Request[tallyv1.RecordUsageRequest]) (*connect.Response[tallyv1.RecordUsageResponse], error) {
	m := req.Msg
	p, err := s.push(ctx, callOf(req.Spec(), req.Peer(), m.GetTenantId()), m.GetIdempotencyKey(), m.GetUsage(),
		func() (*timestamppb.Timestamp, error) { return validateUsage("usage", m.GetUsage()) },
		func(e *tallyv1.Envelope) { e.Body = &tallyv1.Envelope_UsageRecorded{UsageRecorded: m.GetUsage()} })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tallyv1.RecordUsageResponse{EventId: p.eventID, TenantSeq: p.tenantSeq, Duplicate: p.duplicate}), nil
}

func (s *IngestServer) RecordRemediation(ctx context.Context, req *connect.Request[tallyv1.RecordRemediationRequest]) (*connect.Response[tallyv1.RecordRemediationResponse], error) {
	m := req.Msg
	p, err := s.push(ctx, callOf(req.Spec(), req.Peer(), m.GetTenantId()), m.GetIdempotencyKey(), m.GetRemediation(),
		func() (*timestamppb.Timestamp, error) { return validateRemediation("remediation", m.GetRemediation()) },
		func(e *tallyv1.Envelope) {
			e.Body = &tallyv1.Envelope_RemediationExecuted{RemediationExecuted: m.GetRemediation()}
		})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tallyv1.RecordRemediationResponse{EventId: p.eventID, TenantSeq: p.tenantSeq, Duplicate: p.duplicate}), nil
}

func (s *IngestServer) TagResource(ctx context.Context, req *connect.Request[tallyv1.TagResourceRequest]) (*connect.Response[tallyv1.TagResourceResponse], error) {
	m := req.Msg
	p, err := s.push(ctx, callOf(req.Spec(), req.Peer(), m.GetTenantId()), m.GetIdempotencyKey(), m.GetTagged(),
		func() (*timestamppb.Timestamp, error) { return validateTagged("tagged", m.GetTagged()) },
		func(e *tallyv1.Envelope) { e.Body = &tallyv1.Envelope_ResourceTagged{ResourceTagged: m.GetTagged()} })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tallyv1.TagResourceResponse{EventId: p.eventID, TenantSeq: p.tenantSeq, Duplicate: p.duplicate}), nil
}

func (s *IngestServer) SetAllocationRule(ctx context.Context, req *connect.Request[tallyv1.SetAllocationRuleRequest]) (*connect.Response[tallyv1.SetAllocationRuleResponse], error) {
	m := req.Msg
	p, err := s.push(ctx, callOf(req.Spec(), req.Peer(), m.GetTenantId()), m.GetIdempotencyKey(), m.GetRule(),
		func() (*timestamppb.Timestamp, error) { return validateRule("rule", m.GetRule()) },
		func(e *tallyv1.Envelope) {
			e.Body = &tallyv1.Envelope_AllocationRuleSet{AllocationRuleSet: m.GetRule()}
		})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tallyv1.SetAllocationRuleResponse{EventId: p.eventID, TenantSeq: p.tenantSeq, Duplicate: p.duplicate}), nil
}

func (s *IngestServer) RetireAllocationRule(ctx context.Context, req *connect.Request[tallyv1.RetireAllocationRuleRequest]) (*connect.Response[tallyv1.RetireAllocationRuleResponse], error) {
	m := req.Msg
	p, err := s.push(ctx, callOf(req.Spec(), req.Peer(), m.GetTenantId()), m.GetIdempotencyKey(), m.GetRetired(),
		func() (*timestamppb.Timestamp, error) { return validateRetired("retired", m.GetRetired()) },
		func(e *tallyv1.Envelope) {
			e.Body = &tallyv1.Envelope_AllocationRuleRetired{AllocationRuleRetired: m.GetRetired()}
		})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tallyv1.RetireAllocationRuleResponse{EventId: p.eventID, TenantSeq: p.tenantSeq, Duplicate: p.duplicate}), nil
}

func (s *IngestServer) RecordInvoice(ctx context.Context, req *connect.Request[tallyv1.RecordInvoiceRequest]) (*connect.Response[tallyv1.RecordInvoiceResponse], error) {
	m := req.Msg
	p, err := s.push(ctx, callOf(req.Spec(), req.Peer(), m.GetTenantId()), m.GetIdempotencyKey(), m.GetInvoice(),
		func() (*timestamppb.Timestamp, error) { return validateInvoice("invoice", m.GetInvoice()) },
		func(e *tallyv1.Envelope) { e.Body = &tallyv1.Envelope_InvoiceRecorded{InvoiceRecorded: m.GetInvoice()} })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tallyv1.RecordInvoiceResponse{EventId: p.eventID, TenantSeq: p.tenantSeq, Duplicate: p.duplicate}), nil
}

func (s *IngestServer) RecordFxRate(ctx context.Context, req *connect.Request[tallyv1.RecordFxRateRequest]) (*connect.Response[tallyv1.RecordFxRateResponse], error) {
	m := req.Msg
	p, err := s.push(ctx, callOf(req.Spec(), req.Peer(), m.GetTenantId()), m.GetIdempotencyKey(), m.GetFxRate(),
		func() (*timestamppb.Timestamp, error) { return validateFxRate("fx_rate", m.GetFxRate()) },
		func(e *tallyv1.Envelope) { e.Body = &tallyv1.Envelope_FxRateRecorded{FxRateRecorded: m.GetFxRate()} })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tallyv1.RecordFxRateResponse{EventId: p.eventID, TenantSeq: p.tenantSeq, Duplicate: p.duplicate}), nil
}

func (s *IngestServer) SetBudget(ctx context.Context, req *connect.Request[tallyv1.SetBudgetRequest]) (*connect.Response[tallyv1.SetBudgetResponse], error) {
	m := req.Msg
	p, err := s.push(ctx, callOf(req.Spec(), req.Peer(), m.GetTenantId()), m.GetIdempotencyKey(), m.GetBudget(),
		func() (*timestamppb.Timestamp, error) { return validateBudget("budget", m.GetBudget()) },
		func(e *tallyv1.Envelope) { e.Body = &tallyv1.Envelope_BudgetSet{BudgetSet: m.GetBudget()} })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tallyv1.SetBudgetResponse{EventId: p.eventID, TenantSeq: p.tenantSeq, Duplicate: p.duplicate}), nil
}
