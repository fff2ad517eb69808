package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/ingest"
)

func TestConnectError(t *testing.T) {
	secret := errors.New("dial tcp 10.0.0.7:5432: password authentication failed for user tally")
	for _, tc := range []struct {
		name string
		err  error
		code connect.Code
		msg  string // substring of the message sent; "" to skip
	}{
		{"field", fieldErr("usage.quantity", `"x" is not a decimal`), connect.CodeInvalidArgument, `usage.quantity "x" is not a decimal`},
		{"wrapped field", fmt.Errorf("push: %w", fieldErr("tenant_id", "is required")), connect.CodeInvalidArgument, "tenant_id is required"},
		{"invalid tenant", fmt.Errorf("%w: %q", eventstore.ErrInvalidTenant, "A.B"), connect.CodeInvalidArgument, "invalid tenant id"},
		{"invalid event", fmt.Errorf("%w: no body", eventstore.ErrInvalidEvent), connect.CodeInvalidArgument, "no body"},
		{"file rejected", fmt.Errorf("%w: 3 of 10 rows", ingest.ErrRejected), connect.CodeInvalidArgument, "3 of 10 rows"},
		{"unreadable file", &focus.Error{File: "f.csv", Rule: focus.RuleFormat, Msg: "not CSV"}, connect.CodeInvalidArgument, "f.csv: not CSV"},
		{"duplicate", fmt.Errorf("%w: id x", eventstore.ErrDuplicate), connect.CodeAlreadyExists, "idempotency key"},
		{"missing FX rate", fmt.Errorf("query: %w", &ledger.MissingRateError{Tenant: "acme", From: "EUR", To: "USD", Day: "2026-01-03"}),
			connect.CodeFailedPrecondition, "RecordFxRate"},
		{"conflict", &eventstore.ConflictError{Tenant: "acme", Expected: 1, Actual: 2}, connect.CodeAborted, "expected head at event 1"},
		{"unavailable", fmt.Errorf("%w: %w", eventstore.ErrUnavailable, secret), connect.CodeUnavailable, "retrying"},
		{"caller canceled", fmt.Errorf("%w: %w", eventstore.ErrUnavailable, context.Canceled), connect.CodeCanceled, ""},
		{"caller's deadline", context.DeadlineExceeded, connect.CodeDeadlineExceeded, ""},
		// The event log's own request timeout while NATS is down, with the caller still
		// waiting: an outage, not the caller's deadline.
		{"log's own deadline", fmt.Errorf("%w: append: %w", eventstore.ErrUnavailable, context.DeadlineExceeded), connect.CodeUnavailable, "event log did not answer"},
		{"database down", fmt.Errorf("fold appended changes: %w", pgconn.ErrConnClosed), connect.CodeUnavailable, "database did not answer"},
		{"database restarting", fmt.Errorf("ingest: %w", &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}), connect.CodeUnavailable, "database did not answer"},
		{"connect error kept", connect.NewError(connect.CodeResourceExhausted, errors.New("too big")), connect.CodeResourceExhausted, "too big"},
		{"unknown", secret, connect.CodeInternal, "internal error (request id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if strings.HasPrefix(tc.name, "caller") {
				// The caller went away: its context is done.
				c, cancel := context.WithCancel(ctx)
				cancel()
				ctx = c
			}
			err := connectError(ctx, slog.New(slog.DiscardHandler), tc.err)
			require.Equal(t, tc.code, connect.CodeOf(err))
			require.Contains(t, err.Message(), tc.msg)
			if tc.code != connect.CodeInternal && tc.code != connect.CodeUnavailable {
				return
			}
			require.NotContains(t, err.Error(), "password", "an internal cause must never reach the client")
		})
	}
	require.Nil(t, connectError(context.Background(), slog.Default(), nil))
}

func TestParseDecimal(t *testing.T) {
	for in, want := range map[string]string{
		"12.3400": "12.3400", "+5": "5", " -0.5 ": "-0.5", "1.5E-7": "0.00000015", "2e3": "2000",
	} {
		got, _, err := parseDecimal("f", in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "abc", "1,5", "NaN", "Inf", "1e", "1e99999", "1E-100", "0x10", "1.2.3", "--1", "."} {
		_, _, err := parseDecimal("f", in)
		require.Error(t, err, in)
	}
}
