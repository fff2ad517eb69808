package gateway

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// auditTimeout bounds recording a refusal, which must not hang a request
// when the log is down.
const auditTimeout = 5 * time.Second

// call is what the gateway knows about the request being served, for
// events and audit records.
type call struct {
	procedure string
	peer      string
	tenant    string // as claimed, unvalidated
}

func callOf(spec connect.Spec, peer connect.Peer, tenant string) call {
	return call{procedure: spec.Procedure, peer: peer.Addr, tenant: tenant}
}

// apiActor is who pushed an event. Until tokens exist every caller is the
// anonymous API client; with auth it becomes the token's principal.
var apiActor = &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "api"}

// fail maps err to its Connect error and, when that refuses the request,
// records the refusal as a RequestRejected event on the system tenant. It is
// how every handler returns an error.
func fail(ctx context.Context, store *eventstore.Store, log *slog.Logger, c call, err error) error {
	ce := connectError(ctx, log, err)
	if !refusal(ce.Code()) {
		return ce
	}
	field := ""
	var fe *FieldError
	switch {
	case errors.As(err, &fe):
		field = fe.Field
	case errors.Is(err, eventstore.ErrInvalidTenant):
		field = "tenant_id"
	}
	id := RequestID(ctx)
	env := &tallyv1.Envelope{
		OccurredAt:    timestamppb.Now(),
		Actor:         apiActor,
		Source:        &tallyv1.Source{Adapter: "api", BatchId: id},
		CorrelationId: id,
		Body: &tallyv1.Envelope_RequestRejected{RequestRejected: &tallyv1.RequestRejected{
			Procedure:     c.procedure,
			Code:          ce.Code().String(),
			Reason:        clip(ce.Message(), maxTextLen),
			Field:         field,
			ClaimedTenant: clip(c.tenant, maxIDLen),
			RequestId:     id,
			RemoteAddr:    c.peer,
		}},
	}
	// The refusal stands even if it cannot be recorded; the log says so.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if _, aerr := store.AppendSystem(actx, []*tallyv1.Envelope{env}); aerr != nil {
		log.ErrorContext(ctx, "could not record a refused request", slog.Any("err", aerr),
			slog.String("request_id", id), slog.String("procedure", c.procedure))
	}
	log.InfoContext(ctx, "request refused", slog.String("request_id", id), slog.String("procedure", c.procedure),
		slog.String("code", ce.Code().String()), slog.String("field", field), slog.String("tenant", clip(c.tenant, maxIDLen)))
	return ce
}

// clip cuts s to at most n bytes on a rune boundary, as valid UTF-8.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n]
}
