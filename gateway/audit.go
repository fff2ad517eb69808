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
	"github.com/tally-ledger/tally/gateway/tokens"
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
	// token the request came with, when one was recognized (a revoked one
	// too); else the context's Principal.
	token *tokens.Token
}

func callOf(spec connect.Spec, peer connect.Peer, tenant string) call {
	return call{procedure: spec.Procedure, peer: peer.Addr, tenant: tenant}
}

// fail maps err to its Connect error and, when that refuses the request,
// records the refusal as a RequestRejected event on the system tenant. It is
// how every handler and the auth interceptor return an error. A refusal
// already recorded (audited) is returned as it is.
func fail(ctx context.Context, store *eventstore.Store, log *slog.Logger, c call, err error) error {
	var au *audited
	if errors.As(err, &au) {
		return au.err
	}
	return refuse(ctx, store, log, c, err)
}

// refuse is fail for an error not yet recorded.
func refuse(ctx context.Context, store *eventstore.Store, log *slog.Logger, c call, err error) *connect.Error {
	ce := connectError(ctx, log, err)
	if !refusal(ce.Code()) {
		return ce
	}
	field := ""
	var fe *FieldError
	var ae *authError
	switch {
	case errors.As(err, &fe):
		field = fe.Field
	case errors.As(err, &ae):
		field = ae.field
	case errors.Is(err, eventstore.ErrInvalidTenant):
		field = "tenant_id"
	}
	if c.token == nil {
		if t, ok := Principal(ctx); ok {
			c.token = &t
		}
	}
	// The token's id, never its secret. RequestRejected has no field for
	// it yet, so the reason carries it; the actor names the token.
	reason, tokenID := ce.Message(), ""
	if c.token != nil {
		tokenID = c.token.ID
		reason = clip(reason, maxTextLen-64) + " [token " + tokenID + "]"
	}
	id := RequestID(ctx)
	env := &tallyv1.Envelope{
		OccurredAt:    timestamppb.Now(),
		Actor:         actorOf(c.token),
		Source:        &tallyv1.Source{Adapter: "api", BatchId: id},
		CorrelationId: id,
		Body: &tallyv1.Envelope_RequestRejected{RequestRejected: &tallyv1.RequestRejected{
			Procedure:     c.procedure,
			Code:          ce.Code().String(),
			Reason:        clip(reason, maxTextLen),
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
		slog.String("code", ce.Code().String()), slog.String("field", field), slog.String("tenant", clip(c.tenant, maxIDLen)),
		slog.String("token_id", tokenID))
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
