package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/gateway"
	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// served is a gateway on loopback (HTTP/1 and h2c, as tally serve listens) beside a runner
// folding some read models, over a test's own JetStream and database: what the CLI's
// commands talk to in tests.
type served struct {
	url    string
	store  *eventstore.Store
	pool   *pgxpool.Pool
	dbURL  string
	runner *projections.Runner
	names  []string
}

// serve starts a runner folding projs and a gateway over it, both stopped when the test ends.
func serve(t *testing.T, projs ...projections.Projection) *served {
	t.Helper()
	srv := natstest.Run(t)
	pool, dbURL := pgtest.NewDB(t)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	runner, err := projections.NewRunner(pool, srv.Store(), projections.Options{PollInterval: 20 * time.Millisecond, Logger: logger}, projs...)
	require.NoError(t, err)
	require.NoError(t, runner.Setup(t.Context()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = runner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	mux := http.NewServeMux()
	gateway.New(gateway.Config{Store: srv.Store(), Pool: pool, TempDir: t.TempDir(), Logger: logger, Runner: runner}).Mount(mux)
	ts := httptest.NewUnstartedServer(mux)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	ts.Config.Protocols = &p
	ts.Start()
	t.Cleanup(ts.Close)
	s := &served{url: ts.URL, store: srv.Store(), pool: pool, dbURL: dbURL, runner: runner}
	for _, p := range projs {
		s.names = append(s.names, p.Name())
	}
	return s
}

// token creates a token and returns its secret.
func (s *served) token(t *testing.T, spec tokens.Spec) string {
	t.Helper()
	return newToken(t, s.pool, spec)
}

// caughtUp waits until every read model has folded the whole log.
func (s *served) caughtUp(t *testing.T) {
	t.Helper()
	seq, err := s.store.LastSeq(t.Context())
	require.NoError(t, err)
	for _, name := range s.names {
		require.NoError(t, s.runner.WaitFor(t.Context(), name, seq), name)
	}
}
