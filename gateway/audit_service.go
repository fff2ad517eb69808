package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// Problems VerifyChain lists: by default, and at most (what
// eventstore.Verify keeps).
const (
	defaultMaxProblems = 10
	maxMaxProblems     = 100
)

// AuditServer serves tally.v1.AuditService: a tenant's events straight from
// the log, and a check of its hash chain. It reads the log only; no read
// model is involved, so an auditor sees what was recorded, not what a
// projection made of it.
//
// Tenant scoping: the request's tenant_id is required and was checked
// against the token by the auth interceptor. The system tenant ("_system")
// passes that check only for a token for every tenant, since no token can be
// scoped to it.
type AuditServer struct {
	store *eventstore.Store
	log   *slog.Logger
}

var _ tallyv1connect.AuditServiceHandler = (*AuditServer)(nil)

// NewAuditServer reads cfg's store.
func NewAuditServer(cfg Config) *AuditServer {
	return &AuditServer{store: cfg.Store, log: cfg.Logger}
}

// checkAuditTenant accepts a tenant id or the system tenant.
func checkAuditTenant(field, id string) error {
	if id == eventstore.SystemTenant {
		return nil
	}
	return checkTenant(field, id)
}

// replayFilter validates a replay request and turns it into a read filter.
func replayFilter(m *tallyv1.ReplayEventsRequest) (eventstore.ReadFilter, error) {
	f := eventstore.ReadFilter{Tenant: m.GetTenantId(), FromStreamSeq: m.GetFromStreamSeq(), FromTenantSeq: m.GetFromTenantSeq()}
	if err := checkAuditTenant("tenant_id", f.Tenant); err != nil {
		return f, err
	}
	for i, k := range m.GetKinds() {
		if !eventstore.IsKind(k) {
			return f, fieldErr(fmt.Sprintf("kinds[%d]", i), "%s is not an event kind: use one of the snake_case body names, such as \"cost_line_recorded\"", quote(clip(k, maxIDLen)))
		}
		f.Kinds = append(f.Kinds, k)
	}
	if m.FromTime != nil {
		if err := m.GetFromTime().CheckValid(); err != nil {
			return f, fieldErr("from_time", "is not a valid timestamp: %v", err)
		}
		f.FromTime = m.GetFromTime().AsTime()
	}
	if m.ToTime != nil {
		if err := m.GetToTime().CheckValid(); err != nil {
			return f, fieldErr("to_time", "is not a valid timestamp: %v", err)
		}
		if m.FromTime != nil && !m.GetToTime().AsTime().After(f.FromTime) {
			return f, fieldErr("to_time", "(%s) must be after from_time (%s)",
				m.GetToTime().AsTime().Format("2006-01-02T15:04:05Z07:00"), f.FromTime.Format("2006-01-02T15:04:05Z07:00"))
		}
	}
	return f, nil
}

func (s *AuditServer) ReplayEvents(ctx context.Context, req *connect.Request[tallyv1.ReplayEventsRequest], stream *connect.ServerStream[tallyv1.ReplayEventsResponse]) error {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	f, err := replayFilter(m)
	if err != nil {
		return fail(ctx, s.store, s.log, c, err)
	}
	var to int64
	if m.ToTime != nil {
		to = m.GetToTime().AsTime().UnixNano()
	}
	raw := m.GetIncludeEnvelopeBytes()
	// Each event is sent as it is decoded: Read holds a few log messages at
	// a time, so memory does not grow with the log.
	err = s.store.Read(ctx, f, func(ev eventstore.Event) error {
		env := ev.Envelope
		if to != 0 && env.GetRecordedAt().AsTime().UnixNano() >= to {
			return nil
		}
		resp := &tallyv1.ReplayEventsResponse{
			StreamSeq: ev.StreamSeq,
			Index:     uint32(ev.Index),
			TenantSeq: env.GetTenantSeq(),
			Kind:      eventstore.Kind(env),
			Hash:      hex.EncodeToString(ev.Hash[:]),
			PrevHash:  hex.EncodeToString(env.GetPrevHash()),
			Envelope:  env,
		}
		if raw {
			resp.EnvelopeBytes = ev.Raw
		}
		if err := stream.Send(resp); err != nil {
			return &sendError{err}
		}
		return nil
	})
	if se := (*sendError)(nil); errors.As(err, &se) {
		// The client went away or the connection broke: nothing to tell it.
		return se.err
	}
	if err != nil {
		return fail(ctx, s.store, s.log, c, err)
	}
	return nil
}

// sendError is a failure to send to the client, which is returned as it is.
type sendError struct{ err error }

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

func (s *AuditServer) VerifyChain(ctx context.Context, req *connect.Request[tallyv1.VerifyChainRequest]) (*connect.Response[tallyv1.VerifyChainResponse], error) {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	if err := checkAuditTenant("tenant_id", m.GetTenantId()); err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	limit := int(m.GetMaxProblems())
	if limit == 0 {
		limit = defaultMaxProblems
	}
	limit = min(limit, maxMaxProblems)
	rep, err := s.store.Verify(ctx, m.GetTenantId())
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	resp := &tallyv1.VerifyChainResponse{
		TenantId:      rep.Tenant,
		Events:        rep.Events,
		HeadTenantSeq: rep.Head.Seq,
		HeadHash:      hex.EncodeToString(rep.Head.Hash[:]),
		HeadStreamSeq: rep.Head.StreamSeq,
		Ok:            rep.OK(),
	}
	if p := rep.FirstBad(); p != nil {
		resp.FirstProblem = chainProblem(*p)
	}
	for i, p := range rep.Problems {
		if i == limit {
			resp.ProblemsTruncated = true
			break
		}
		resp.Problems = append(resp.Problems, chainProblem(p))
	}
	return connect.NewResponse(resp), nil
}

func chainProblem(p eventstore.Problem) *tallyv1.ChainProblem {
	return &tallyv1.ChainProblem{TenantSeq: p.TenantSeq, EventId: p.EventID, StreamSeq: p.StreamSeq, Reason: p.Reason}
}
