package storage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/storage"
	"github.com/tally-ledger/tally/storage/pgtest"
)

func TestIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"a statement's error", &pgconn.PgError{Code: "23505", Message: "duplicate key"}, false},
		{"syntax", fmt.Errorf("fold: %w", &pgconn.PgError{Code: "42601"}), false},
		{"plain", errors.New("boom"), false},
		{"connection exception", fmt.Errorf("fold: %w", &pgconn.PgError{Code: "08006"}), true},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"crash shutdown", &pgconn.PgError{Code: "57P02"}, true},
		{"starting up", fmt.Errorf("x: %w", &pgconn.PgError{Code: "57P03"}), true},
		{"conn closed", fmt.Errorf("fold appended changes: %w", pgconn.ErrConnClosed), true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, storage.IsUnavailable(tc.err))
		})
	}
}

// TestIsUnavailableRealErrors: the errors pgx really gives for a server that refuses
// connections, and for a connection the server terminated, are outages; a bad statement on
// a live server is not.
func TestIsUnavailableRealErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// Nothing listens on port 1.
	_, err := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=5")
	require.Error(t, err)
	require.True(t, storage.IsUnavailable(err), "%v", err)

	pool, _ := pgtest.NewDB(t)
	_, err = pool.Exec(ctx, "SELEC 1")
	require.Error(t, err)
	require.False(t, storage.IsUnavailable(err), "%v", err)

	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	var pid int
	require.NoError(t, conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	_, err = pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "SELECT 1")
	require.Error(t, err)
	require.True(t, storage.IsUnavailable(err), "%v", err)
}
