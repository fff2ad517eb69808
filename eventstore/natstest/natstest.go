// Package natstest gives a test a real, private JetStream server in one
// line: an embedded nats-server v2 with its own temporary store directory and
// a random loopback port, stopped when the test ends.
package natstest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
)

// Server is a running test server.
type Server struct {
	*eventstore.Embedded
	Dir string
	t   testing.TB
	cfg eventstore.EmbeddedConfig
}

// Option adjusts the server config.
type Option func(*eventstore.EmbeddedConfig)

// NoSyncAlways runs the server with JetStream's default fsync interval.
func NoSyncAlways() Option { return func(c *eventstore.EmbeddedConfig) { c.NoSyncAlways = true } }

// Run starts a server with a store under t.TempDir().
func Run(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return RunIn(t, t.TempDir(), opts...)
}

// RunIn starts a server on an existing store directory (to restart one).
func RunIn(t testing.TB, dir string, opts ...Option) *Server {
	t.Helper()
	cfg := eventstore.EmbeddedConfig{
		StoreDir: dir,
		Listen:   "127.0.0.1:-1",
		Logger:   slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := eventstore.StartEmbedded(ctx, cfg)
	require.NoError(t, err)
	s := &Server{Embedded: e, Dir: dir, t: t, cfg: cfg}
	t.Cleanup(s.Shutdown)
	return s
}

// Restart shuts the server down cleanly and starts a new one on the same
// store directory. Clients must reconnect to ClientURL (the port changes).
func (s *Server) Restart() *Server {
	s.t.Helper()
	s.Shutdown()
	return RunIn(s.t, s.Dir, func(c *eventstore.EmbeddedConfig) { *c = s.cfg })
}

// Conn connects a new client, closed when the test ends.
func (s *Server) Conn() *nats.Conn {
	s.t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.Name(s.t.Name()))
	require.NoError(s.t, err)
	s.t.Cleanup(nc.Close)
	return nc
}

// Store opens an event store over a new connection, closed when the test
// ends (before the server stops).
func (s *Server) Store(opts ...func(*eventstore.Options)) *eventstore.Store {
	s.t.Helper()
	o := eventstore.Options{Logger: slog.New(slog.DiscardHandler)}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := eventstore.Open(ctx, s.Conn(), o)
	require.NoError(s.t, err)
	s.t.Cleanup(func() { require.NoError(s.t, st.Close()) })
	return st
}
