package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/ingest"
	"github.com/tally-ledger/tally/storage"
)

// FieldError is a request field that is missing or wrong. Field is the
// field's path in the request as a client spells it in JSON-less proto
// names ("usage.quantity", "invoice.scope.billing_account_id").
type FieldError struct {
	Field string
	// Msg follows the field name: `"XXX" is not an ISO 4217 code`.
	Msg string
}

func (e *FieldError) Error() string { return e.Field + " " + e.Msg }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// connectError is the one place where an error becomes a Connect error.
// Causes a client can act on keep their message; anything unexpected
// becomes Internal with the request id, and the cause is logged, never sent.
func connectError(ctx context.Context, log *slog.Logger, err error) *connect.Error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	// Context first: an unavailable log that gave up because the caller
	// went away is the caller's cancellation, not an outage. A deadline of
	// the server's own (the event log's request timeout while NATS is down)
	// is not the caller's: it falls through to Unavailable below.
	if ctx.Err() != nil {
		switch {
		case errors.Is(err, context.Canceled):
			return connect.NewError(connect.CodeCanceled, errors.New("the request was canceled"))
		case errors.Is(err, context.DeadlineExceeded):
			return connect.NewError(connect.CodeDeadlineExceeded, errors.New("the request's deadline passed before it completed; retry with the same idempotency key"))
		}
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		e := connect.NewError(connect.CodeInvalidArgument, fe)
		if d, derr := connect.NewErrorDetail(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: fe.Field, Description: fe.Msg},
		}}); derr == nil {
			e.AddDetail(d)
		}
		return e
	}
	var ae *authError
	if errors.As(err, &ae) {
		return connect.NewError(ae.code, ae)
	}
	var fileErr *focus.Error
	switch {
	case errors.Is(err, eventstore.ErrInvalidTenant),
		errors.Is(err, eventstore.ErrInvalidEvent),
		errors.Is(err, ingest.ErrRejected),
		errors.As(err, &fileErr):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, ledger.ErrMissingRate):
		return connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("%w: record the rate (IngestService/RecordFxRate) and ask again", err))
	case errors.Is(err, eventstore.ErrDuplicate):
		return connect.NewError(connect.CodeAlreadyExists,
			fmt.Errorf("the idempotency key was already used for a different fact: %w", err))
	case errors.Is(err, eventstore.ErrConflict):
		return connect.NewError(connect.CodeAborted, fmt.Errorf("%w; retry the request", err))
	case errors.Is(err, eventstore.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		log.WarnContext(ctx, "event log unavailable", slog.Any("err", err), slog.String("request_id", RequestID(ctx)))
		return connect.NewError(connect.CodeUnavailable,
			errors.New("the event log did not answer; retrying the same request is safe"))
	case storage.IsUnavailable(err):
		log.WarnContext(ctx, "database unavailable", slog.Any("err", err), slog.String("request_id", RequestID(ctx)))
		return connect.NewError(connect.CodeUnavailable,
			errors.New("the database did not answer; retrying the same request is safe"))
	}
	id := RequestID(ctx)
	log.ErrorContext(ctx, "request failed", slog.Any("err", err), slog.String("request_id", id))
	return connect.NewError(connect.CodeInternal, fmt.Errorf("internal error (request id %s)", id))
}

// refusal reports whether a code means the request itself was refused (as
// opposed to the server failing): those are audited.
func refusal(code connect.Code) bool {
	switch code {
	case connect.CodeInvalidArgument, connect.CodeAlreadyExists, connect.CodeFailedPrecondition,
		connect.CodePermissionDenied, connect.CodeUnauthenticated, connect.CodeOutOfRange,
		connect.CodeResourceExhausted:
		return true
	}
	return false
}
