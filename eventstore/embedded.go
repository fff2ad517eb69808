package eventstore

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures the in-process nats-server that `tally serve`
// starts when no NATS_URL is given.
type EmbeddedConfig struct {
	// StoreDir holds the JetStream file store. Required.
	StoreDir string
	// Listen is "host:port" for other processes to connect to; empty keeps
	// the server in-process only (no TCP listener). Port -1 picks a free one.
	Listen string
	// NoSyncAlways turns off fsync on every write. The default (false) is
	// the durable one: an acknowledged append is on disk. The Jepsen analysis
	// of NATS 2.12 showed that the default 2-minute fsync interval loses
	// acknowledged writes on power loss.
	NoSyncAlways bool
	// MaxPayload is the largest message in bytes (default 8 MiB): larger
	// messages mean fewer fsyncs per event.
	MaxPayload int32
	Logger     *slog.Logger
}

// DefaultMaxPayload of the embedded server. nats-server warns above 8 MiB.
const DefaultMaxPayload = 8 << 20

// Embedded is a running in-process nats-server.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts nats-server in-process with JetStream on
// cfg.StoreDir, and waits until it accepts connections.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("embedded nats: StoreDir is required")
	}
	opts := &server.Options{
		ServerName: "tally-embedded",
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: !cfg.NoSyncAlways,
		MaxPayload: cfg.MaxPayload,
		NoSigs:     true,
		// The default 2 s is too short for large group-commit messages on a
		// loaded machine.
		WriteDeadline: 10 * time.Second,
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen address %q: %w", cfg.Listen, err)
		}
		opts.Host, opts.Port = host, port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	srv.SetLoggerV2(&natsLogger{l: logger.With("component", "nats-server")}, false, false, false)
	srv.Start()
	deadline := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		deadline = time.Until(d)
	}
	if !srv.ReadyForConnections(deadline) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after %s (store %s)", deadline, cfg.StoreDir)
	}
	return &Embedded{srv: srv}, nil
}

// Connect opens a client connection to the embedded server (in-process when
// it has no listener).
func (e *Embedded) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(e.srv), nats.Name("tally")}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded nats: %w", err)
	}
	return nc, nil
}

// ClientURL is the server's nats:// address, or "" when it does not listen.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Server exposes the underlying server for tests that need to stop it hard.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits until it has flushed and closed its
// store.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

type natsLogger struct{ l *slog.Logger }

func (n *natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Errorf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Debugf(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Tracef(format string, v ...any)  {}
