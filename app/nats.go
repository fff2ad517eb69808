package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tally-ledger/tally/eventstore"
)

// NATS client settings.
const (
	natsConnectTimeout = 5 * time.Second
	// With 3 pings outstanding, a dead server is noticed in about 30 s
	// rather than the client default's 4 minutes.
	natsPingInterval = 10 * time.Second
	// natsDrainTimeout bounds flushing pending publishes and consumer acks
	// at shutdown.
	natsDrainTimeout = 15 * time.Second
)

// openEventLog starts the embedded NATS server or connects to the external
// one, then opens the event store over the connection.
func (a *App) openEventLog(ctx context.Context) (err error) {
	if a.cfg.NATSURL == "" {
		a.nc, err = a.startEmbeddedNATS(ctx)
	} else {
		a.nc, err = a.connectExternalNATS(ctx)
	}
	if err != nil {
		return err
	}
	// The id index lives beside the log's data: on disk, in bounded memory,
	// and kept across restarts (it is a cache of the log).
	indexDir := filepath.Join(a.cfg.DataDir, "eventindex")
	if a.store, err = eventstore.Open(ctx, a.nc, eventstore.Options{Logger: a.log, Replicas: a.cfg.Replicas, IndexDir: indexDir}); err != nil {
		return fmt.Errorf("open the event store: %w", err)
	}
	a.onClose("event store", a.store.Close)
	return nil
}

func (a *App) startEmbeddedNATS(ctx context.Context) (*nats.Conn, error) {
	storeDir := filepath.Join(a.cfg.DataDir, "nats")
	if err := os.MkdirAll(storeDir, 0o700); err != nil {
		return nil, fmt.Errorf("create the NATS store directory: %w", err)
	}
	e, err := eventstore.StartEmbedded(ctx, eventstore.EmbeddedConfig{
		StoreDir:     storeDir,
		Listen:       embeddedListen(a.cfg.NATSListen),
		NoSyncAlways: a.cfg.NoSyncAlways,
		Logger:       a.log,
	})
	if err != nil {
		return nil, err
	}
	a.onClose("embedded NATS server", func() error { e.Shutdown(); return nil })
	listen := e.ClientURL()
	if listen == "" {
		listen = "in-process only"
	}
	a.log.InfoContext(ctx, "event log: embedded NATS",
		slog.String("store_dir", storeDir), slog.String("listen", listen), slog.Bool("sync_always", !a.cfg.NoSyncAlways))
	if a.cfg.NoSyncAlways {
		a.log.WarnContext(ctx, "fsync of every write is off (no-sync-always): acknowledged events can be lost on power loss")
	}
	return a.dial(e.Connect)
}

// embeddedListen maps port 0 ("pick a free port", as for addr) to
// nats-server's -1; its 0 means the default port 4222.
func embeddedListen(addr string) string {
	if host, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		return net.JoinHostPort(host, "-1")
	}
	return addr
}

func (a *App) connectExternalNATS(ctx context.Context) (*nats.Conn, error) {
	nc, err := a.dial(func(opts ...nats.Option) (*nats.Conn, error) { return nats.Connect(a.cfg.NATSURL, opts...) })
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", maskNATSURL(a.cfg.NATSURL), err)
	}
	a.log.InfoContext(ctx, "event log: external NATS",
		slog.String("url", maskNATSURL(a.cfg.NATSURL)),
		slog.String("connected_to", nc.ConnectedUrlRedacted()),
		slog.String("server_version", nc.ConnectedServerVersion()))
	if a.cfg.NoSyncAlways {
		a.log.WarnContext(ctx, "no-sync-always applies to the embedded server only: the external server's own configuration decides when it fsyncs")
	}
	return nc, nil
}

// dial connects with Tally's client options and registers the drain on
// shutdown.
func (a *App) dial(connect func(...nats.Option) (*nats.Conn, error)) (*nats.Conn, error) {
	log := a.log.With(slog.String("component", "nats-client"))
	closed := make(chan struct{})
	nc, err := connect(
		nats.Name("tally"),
		nats.Timeout(natsConnectTimeout),
		nats.PingInterval(natsPingInterval),
		nats.MaxPingsOutstanding(3),
		// Once started, keep trying: an outage of the log is reported by
		// /healthz, and appends fail with eventstore.ErrUnavailable meanwhile.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.DrainTimeout(natsDrainTimeout),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS; reconnecting", slog.Any("err", err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", slog.String("url", nc.ConnectedUrlRedacted()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("NATS error", slog.String("subject", subject), slog.Any("err", err))
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
	)
	if err != nil {
		return nil, err
	}
	a.onClose("NATS connection", func() error {
		// Drain lets consumers finish the messages they hold and flushes
		// what is still buffered, then closes.
		if err := nc.Drain(); err != nil {
			nc.Close()
			if errors.Is(err, nats.ErrConnectionClosed) {
				return nil
			}
			return err
		}
		<-closed
		if err := nc.LastError(); errors.Is(err, nats.ErrDrainTimeout) {
			return err
		}
		return nil
	})
	return nc, nil
}

// checkNATS reports whether the log answers: the connection is up and the
// stream's info comes back.
func (a *App) checkNATS(ctx context.Context) error {
	if s := a.nc.Status(); s != nats.CONNECTED {
		return fmt.Errorf("NATS connection is %s", s)
	}
	return a.store.Ping(ctx)
}
