package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections/changelog"
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
// the log, and a check of its hash chain, which read the log only (no read
// model is involved, so an auditor sees what was recorded, not what a
// projection made of it); and the change log of configuration events,
// which is a read model (projections/changelog).
//
// Tenant scoping: the request's tenant_id is required and was checked
// against the token by the auth interceptor. The system tenant ("_system")
// passes that check only for a token for every tenant, since no token can be
// scoped to it.
type AuditServer struct {
	store *eventstore.Store
	log   *slog.Logger
	// changes reads the change-log read model (ListChanges); nil without a database.
	changes *changelog.Queries
}

var _ tallyv1connect.AuditServiceHandler = (*AuditServer)(nil)

// NewAuditServer reads cfg's store.
func NewAuditServer(cfg Config) *AuditServer {
	s := &AuditServer{store: cfg.Store, log: cfg.Logger}
	if cfg.Pool != nil {
		s.changes = changelog.NewQueries(cfg.Pool)
	}
	return s
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

func (s *AuditServer) ListChanges(ctx context.Context, req *connect.Request[tallyv1.ListChangesRequest]) (*connect.Response[tallyv1.ListChangesResponse], error) {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	q, err := changesQuery(m)
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	if s.changes == nil {
		return nil, fail(ctx, s.store, s.log, c, connect.NewError(connect.CodeUnavailable, errors.New("this server has no database to read the change log from")))
	}
	page, err := s.changes.List(ctx, q)
	if errors.Is(err, changelog.ErrInvalid) {
		// Only the page token is left for the change log to refuse.
		err = fieldErr("page_token", "%s is not a token this server gave: start again without it", quote(clip(m.GetPageToken(), maxIDLen)))
	}
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	resp := &tallyv1.ListChangesResponse{NextPageToken: page.Next}
	for _, ch := range page.Changes {
		resp.Changes = append(resp.Changes, configChange(ch))
	}
	return connect.NewResponse(resp), nil
}

// changesQuery validates a ListChanges request.
func changesQuery(m *tallyv1.ListChangesRequest) (changelog.ListQuery, error) {
	q := changelog.ListQuery{Tenant: m.GetTenantId(), Limit: int(min(m.GetPageSize(), changelog.MaxLimit)), PageToken: m.GetPageToken()}
	if err := checkTenant("tenant_id", q.Tenant); err != nil {
		return q, err
	}
	for i, k := range m.GetKinds() {
		if !changelog.IsKind(k) {
			return q, fieldErr(fmt.Sprintf("kinds[%d]", i), "%s is not a configuration event kind: use one of %s",
				quote(clip(k, maxIDLen)), strings.Join(changelog.Kinds(), ", "))
		}
		q.Kinds = append(q.Kinds, k)
	}
	if m.From != nil {
		if err := m.GetFrom().CheckValid(); err != nil {
			return q, fieldErr("from", "is not a valid timestamp: %v", err)
		}
		q.From = m.GetFrom().AsTime()
	}
	if m.To != nil {
		if err := m.GetTo().CheckValid(); err != nil {
			return q, fieldErr("to", "is not a valid timestamp: %v", err)
		}
		q.To = m.GetTo().AsTime()
		if m.From != nil && !q.To.After(q.From) {
			return q, fieldErr("to", "(%s) must be after from (%s)", q.To.Format(time.RFC3339), q.From.Format(time.RFC3339))
		}
	}
	return q, nil
}

func configChange(c changelog.Change) *tallyv1.ConfigChange {
	out := &tallyv1.ConfigChange{TenantSeq: c.TenantSeq, EventId: c.EventID, Kind: c.Kind, Item: c.Item, Key: c.Key,
		Actor: principalActor(c.Actor), Approver: principalActor(c.Approver), RecordedAt: timestamppb.New(c.RecordedAt),
		BeforeJson: string(c.Before), AfterJson: string(c.After)}
	if !c.OccurredAt.IsZero() {
		out.OccurredAt = timestamppb.New(c.OccurredAt)
	}
	for _, f := range c.Diff {
		out.Diff = append(out.Diff, &tallyv1.FieldChange{Field: f.Field, BeforeJson: string(f.Before), AfterJson: string(f.After)})
	}
	return out
}

// principalActor is a stored principal as an Actor; nil for none.
func principalActor(p changelog.Principal) *tallyv1.Actor {
	if p.ID == "" && p.Kind == "" {
		return nil
	}
	return &tallyv1.Actor{Kind: tallyv1.ActorKind(tallyv1.ActorKind_value[p.Kind]), Id: p.ID}
}
