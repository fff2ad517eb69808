package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/gateway"
	"github.com/tally-ledger/tally/projections"
)

// Shutdown bounds. Together they stay under Kubernetes' default 30 s grace
// period in the usual case, where nothing hangs.
const (
	// httpShutdownTimeout is how long in-flight requests (an append waiting
	// for its acknowledgement, an export) get to finish.
	httpShutdownTimeout = 15 * time.Second
	// closeTimeout bounds each later step (drain NATS, stop the embedded
	// server, close the pool, stop a private PostgreSQL).
	closeTimeout = 20 * time.Second
)

// App is an assembled Tally process: its event log, its database and its
// HTTP server. New opens everything; Run serves until its context ends and
// then shuts everything down.
type App struct {
	cfg Config
	log *slog.Logger

	ln     net.Listener
	mux    *http.ServeMux
	srv    *http.Server
	reg    *prometheus.Registry
	health *health

	nc     *nats.Conn
	store  *eventstore.Store
	pool   *pgxpool.Pool
	runner *projections.Runner // nil without the projector role

	// closers in opening order; shutdown runs them in reverse.
	closers []closer
}

type closer struct {
	name string
	fn   func() error
}

// New checks cfg, binds the HTTP address, finds or starts PostgreSQL and
// migrates it, starts or connects to NATS and opens the event store. It
// serves nothing yet: register handlers on Mux and metrics on Registry, then
// call Run, which also releases everything New opened. If New fails it has
// already released what it opened.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (_ *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	a := &App{cfg: cfg, log: cmp.Or(logger, slog.Default()), mux: http.NewServeMux(), reg: newRegistry()}
	defer func() {
		if err != nil {
			if cerr := a.closeAll(context.WithoutCancel(ctx)); cerr != nil {
				a.log.WarnContext(ctx, "releasing what was opened before the failure", slog.Any("err", cerr))
			}
		}
	}()
	a.log.InfoContext(ctx, "starting tally", slog.String("version", Build().Version), slog.Any("config", cfg))

	// The data directory must let the postgres user pass through when a
	// private cluster runs as that user (see storage).
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	// Bind first: a taken port is the cheapest failure to report.
	if a.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("listen on %s (addr): %w", cfg.Addr, err)
	}
	a.onClose("HTTP listener", func() error {
		if err := a.ln.Close(); !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	// PostgreSQL before NATS, so that shutdown, in reverse, stops the log's
	// consumers before the pool they write to.
	if err := a.openPostgres(ctx); err != nil {
		return nil, err
	}
	if err := a.openEventLog(ctx); err != nil {
		return nil, err
	}
	if err := pairWithLog(ctx, a.pool, a.store); err != nil {
		return nil, err
	}

	a.health = newHealth(a.reg, a.log,
		dependency{name: "nats", check: a.checkNATS},
		dependency{name: "postgres", check: a.pool.Ping},
	)
	a.mux.Handle("GET /healthz", a.health)
	a.mux.Handle("GET /metrics", metricsHandler(a.reg, a.health))
	if cfg.Roles.Has(RoleProjector) {
		if a.runner, err = projections.NewRunner(a.pool, a.store, projections.Options{Registerer: a.reg, Logger: a.log}, Projections(a.log)...); err != nil {
			return nil, fmt.Errorf("projections: %w", err)
		}
		// Create or migrate the read models before serving, so that the
		// first query finds their tables.
		if err := a.runner.Setup(ctx); err != nil {
			return nil, fmt.Errorf("projections: %w", err)
		}
	}
	if cfg.Roles.Has(RoleGateway) {
		// The gateway refuses every call without a token: make sure an
		// admin can get one.
		if err := a.ensureAdminToken(ctx); err != nil {
			return nil, err
		}
		gateway.New(gateway.Config{Store: a.store, Pool: a.pool, Logger: a.log,
			TempDir: filepath.Join(cfg.DataDir, "uploads"), Runner: a.runner}).Mount(a.mux)
	}
	// gRPC clients speak HTTP/2 without TLS (prior knowledge); browsers and
	// curl keep HTTP/1.1.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	a.srv = &http.Server{
		Handler:           a.mux,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	return a, nil
}

// Mux is the HTTP router; register handlers before Run (Go 1.22 patterns,
// such as "GET /v1/ledger").
func (a *App) Mux() *http.ServeMux { return a.mux }

// Registry is the process's Prometheus registry, served on /metrics.
func (a *App) Registry() prometheus.Registerer { return a.reg }

// Runner is the projection runner, or nil when this process does not project.
func (a *App) Runner() *projections.Runner { return a.runner }

// Store is the event log.
func (a *App) Store() *eventstore.Store { return a.store }

// Pool is the PostgreSQL pool of the read models, migrated.
func (a *App) Pool() *pgxpool.Pool { return a.pool }

// Addr is the address the HTTP server is bound to (useful with port 0).
func (a *App) Addr() net.Addr { return a.ln.Addr() }

// Config is the configuration the App runs with (DataDir made absolute).
func (a *App) Config() Config { return a.cfg }

// Run serves HTTP until ctx ends or the server fails, then shuts down in
// order: stop taking requests and let in-flight ones finish, drain the NATS
// connection, stop the embedded server (which flushes its store), close the
// pool, stop a private PostgreSQL. It returns nil after a clean shutdown on
// ctx's end. Call it once.
func (a *App) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- a.srv.Serve(a.ln) }()
	projected := make(chan struct{})
	pctx, stopProjections := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProjections()
	go func() {
		defer close(projected)
		if a.runner != nil {
			// The runner retries by itself; it returns when stopped.
			_ = a.runner.Run(pctx)
		}
	}()
	a.log.InfoContext(ctx, "tally is ready", slog.String("addr", a.Addr().String()), slog.String("roles", a.cfg.Roles.String()))

	var err error
	select {
	case <-ctx.Done():
		a.log.InfoContext(ctx, "stopping tally", slog.Any("cause", context.Cause(ctx)))
	case err = <-served:
		err = fmt.Errorf("http server: %w", err)
		a.log.ErrorContext(ctx, "http server failed; stopping tally", slog.Any("err", err))
	}
	ctx = context.WithoutCancel(ctx)
	hctx, cancel := context.WithTimeout(ctx, httpShutdownTimeout)
	defer cancel()
	if serr := a.srv.Shutdown(hctx); serr != nil {
		// Requests still running past the bound are cut off; what they had
		// appended and seen acknowledged is already in the log.
		a.log.WarnContext(ctx, "http requests still running at shutdown were cut off", slog.Any("err", serr))
		_ = a.srv.Close()
	}
	// A batch being folded either commits or rolls back whole: stopping
	// the runner at any point loses nothing.
	stopProjections()
	<-projected
	err = errors.Join(err, a.closeAll(ctx))
	if err != nil {
		a.log.ErrorContext(ctx, "tally stopped with errors", slog.Any("err", err))
		return err
	}
	a.log.InfoContext(ctx, "tally stopped")
	return nil
}

// Run assembles Tally from cfg and runs it until ctx ends. A ctx that ends
// while starting is a clean stop, not an error.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	a, err := New(ctx, cfg, logger)
	if err != nil {
		if ctx.Err() != nil {
			cmp.Or(logger, slog.Default()).InfoContext(ctx, "tally stopped before it was ready", slog.Any("cause", err))
			return nil
		}
		return err
	}
	return a.Run(ctx)
}

func (a *App) onClose(name string, fn func() error) {
	a.closers = append(a.closers, closer{name: name, fn: fn})
}

// closeAll runs the closers in reverse opening order, each bounded by
// closeTimeout, and reports every failure.
func (a *App) closeAll(ctx context.Context) error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		c := a.closers[i]
		done := make(chan error, 1)
		go func() { done <- c.fn() }()
		select {
		case err := <-done:
			if err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", c.name, err))
				continue
			}
			a.log.DebugContext(ctx, "closed", slog.String("what", c.name))
		case <-time.After(closeTimeout):
			errs = append(errs, fmt.Errorf("close %s: still running after %s", c.name, closeTimeout))
		}
	}
	a.closers = nil
	return errors.Join(errs...)
}
