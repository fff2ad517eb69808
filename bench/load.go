package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-ledger/tally/app"
	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/focusgen"
	"github.com/tally-ledger/tally/services/ingest"
)

// LoadConfig sizes the loopback load tests (cmd tally-load).
type LoadConfig struct {
	// DataDir of the Tally under load: its embedded JetStream store, and its database
	// (app.DatabaseName of the directory) on the local PostgreSQL or DatabaseURL. A ledger
	// built there by an earlier run is reused.
	DataDir     string
	DatabaseURL string
	// Lines of the ledger the queries read, in Months monthly bills of Lines/Months rows
	// each (generated FOCUS 1.3, ingested and projected as `tally ingest` and the projector
	// would), for Tenant.
	Lines, Months int
	Tenant        string
	Logger        *slog.Logger
}

// firstMonth is the first billing period of the generated ledger.
var firstMonth = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// Load is a Tally process serving the gateway on a loopback port, over a prepared ledger.
type Load struct {
	cfg  LoadConfig
	app  *app.App
	run  chan error
	stop context.CancelFunc
	// URL is the gateway's base URL (http://127.0.0.1:port).
	URL string
	// Setup says how the ledger was prepared.
	Setup LoadSetup
}

// LoadSetup is how long preparing the ledger took (zero durations when it was reused).
type LoadSetup struct {
	Lines     int64         `json:"lines"`
	Reused    bool          `json:"reused"`
	Generate  time.Duration `json:"generate_ns"`
	Ingest    time.Duration `json:"ingest_ns"`
	Project   time.Duration `json:"project_ns"`
	DailyRows int64         `json:"daily_rollup_rows"`
}

// StartLoad starts Tally in-process as `tally serve --roles gateway` would (embedded
// JetStream with sync_interval: always, PostgreSQL, migrations, the Connect gateway on
// 127.0.0.1 with a free port), and makes sure cfg.Tenant's ledger holds cfg.Lines lines. The
// projector role is off while measuring, so that no fold competes with the load; the ledger
// is projected before serving, by a runner of its own.
func StartLoad(ctx context.Context, cfg LoadConfig) (*Load, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Months <= 0 {
		cfg.Months = 1
	}
	ac := app.DefaultConfig()
	ac.DataDir, ac.DatabaseURL, ac.Addr = cfg.DataDir, cfg.DatabaseURL, "127.0.0.1:0"
	ac.Roles = app.Roles{app.RoleGateway}
	ac.LogLevel = slog.LevelWarn
	a, err := app.New(ctx, ac, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("start tally: %w", err)
	}
	l := &Load{cfg: cfg, app: a, run: make(chan error, 1), URL: "http://" + a.Addr().String()}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	l.stop = stop
	go func() { l.run <- a.Run(rctx) }()
	if err := l.prepare(ctx); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// Close stops the Tally process.
func (l *Load) Close() error {
	l.stop()
	return <-l.run
}

// Store is the process's event log.
func (l *Load) Store() *eventstore.Store { return l.app.Store() }

// Pool is the process's database pool.
func (l *Load) Pool() *pgxpool.Pool { return l.app.Pool() }

// Token makes a token of role for tenant and returns its secret.
func (l *Load) Token(ctx context.Context, name, tenant string, role tokens.Role) (string, error) {
	_, secret, err := tokens.NewStore(l.Pool()).Create(ctx, tokens.Spec{Name: name, Tenant: tenant, Role: role})
	return secret, err
}

// Month is the start of the i-th generated billing period (modulo Months).
func (l *Load) Month(i int) time.Time { return firstMonth.AddDate(0, i%l.cfg.Months, 0) }

// prepare makes sure the tenant's ledger holds cfg.Lines lines: generated, ingested and
// projected on the first run, reused on later ones.
func (l *Load) prepare(ctx context.Context) error {
	pool, lg := l.Pool(), l.cfg.Logger
	count := func() (int64, error) {
		var n int64
		var exists bool
		if err := pool.QueryRow(ctx, "SELECT to_regclass('ledger.lines') IS NOT NULL").Scan(&exists); err != nil || !exists {
			return 0, err
		}
		err := pool.QueryRow(ctx, "SELECT count(*) FROM ledger.lines WHERE tenant_id = $1", l.cfg.Tenant).Scan(&n)
		return n, err
	}
	have, err := count()
	if err != nil {
		return err
	}
	if have == int64(l.cfg.Lines) {
		// Bring the reused ledger to this build's version first (a version bump rebuilds
		// it), so that the queries measured run on the tables and indexes they are written
		// for.
		start := time.Now()
		r, err := projections.NewRunner(pool, l.Store(), projections.Options{Logger: lg}, ledger.New())
		if err != nil {
			return err
		}
		if err := r.CatchUp(ctx); err != nil {
			return fmt.Errorf("bring the reused ledger up to date: %w", err)
		}
		if _, err := pool.Exec(ctx, "ANALYZE ledger.lines; ANALYZE ledger.daily"); err != nil {
			return err
		}
		l.Setup = LoadSetup{Lines: have, Reused: true, Project: time.Since(start)}
		lg.Info("reusing the ledger", "tenant", l.cfg.Tenant, "lines", have, "caught_up_in", l.Setup.Project)
		return l.rollupRows(ctx)
	}
	if have != 0 {
		return fmt.Errorf("data directory %s holds a ledger of %d lines for tenant %s, not %d: use another data directory",
			l.cfg.DataDir, have, l.cfg.Tenant, l.cfg.Lines)
	}
	tmp, err := os.MkdirTemp(l.cfg.DataDir, "load-bills-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	per := l.cfg.Lines / l.cfg.Months
	for m := range l.cfg.Months {
		rows := per
		if m == l.cfg.Months-1 {
			rows = l.cfg.Lines - per*(l.cfg.Months-1)
		}
		path := filepath.Join(tmp, fmt.Sprintf("bill-%d.csv", m))
		start := time.Now()
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		_, err = focusgen.Generate(ctx, f, focusgen.Params{Seed: uint64(100 + m), Period: l.Month(m), Rows: rows})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("generate bill %d: %w", m, err)
		}
		l.Setup.Generate += time.Since(start)
		start = time.Now()
		r, err := focus.Open(path)
		if err != nil {
			return err
		}
		sum, err := ingest.Ingest(ctx, l.Store(), pool, l.cfg.Tenant, r, ingest.Options{Logger: lg})
		r.Close()
		if err != nil {
			return fmt.Errorf("ingest bill %d: %w", m, err)
		}
		l.Setup.Ingest += time.Since(start)
		_ = os.Remove(path)
		lg.Info("ingested", "bill", m, "rows", rows, "appended", sum.Appended)
	}
	start := time.Now()
	r, err := projections.NewRunner(pool, l.Store(), projections.Options{Logger: lg}, ledger.New())
	if err != nil {
		return err
	}
	if err := r.CatchUp(ctx); err != nil {
		return fmt.Errorf("project the ledger: %w", err)
	}
	// Fresh statistics, as autovacuum would soon have, so that the plans measured are the
	// steady state's.
	if _, err := pool.Exec(ctx, "ANALYZE ledger.lines; ANALYZE ledger.daily"); err != nil {
		return err
	}
	l.Setup.Project = time.Since(start)
	if l.Setup.Lines, err = count(); err != nil {
		return err
	}
	if l.Setup.Lines != int64(l.cfg.Lines) {
		return fmt.Errorf("the ledger holds %d lines of tenant %s after projecting %d generated rows", l.Setup.Lines, l.cfg.Tenant, l.cfg.Lines)
	}
	lg.Info("ledger ready", "lines", l.Setup.Lines, "generate", l.Setup.Generate, "ingest", l.Setup.Ingest, "project", l.Setup.Project)
	return l.rollupRows(ctx)
}

func (l *Load) rollupRows(ctx context.Context) error {
	return l.Pool().QueryRow(ctx, "SELECT count(*) FROM ledger.daily WHERE tenant_id = $1", l.cfg.Tenant).Scan(&l.Setup.DailyRows)
}

// Latency summarizes one kind of request of a load phase. Durations are in milliseconds.
type Latency struct {
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	PerSec     float64 `json:"requests_per_sec"` // a rate, not money
	P50        float64 `json:"p50_ms"`
	P95        float64 `json:"p95_ms"`
	P99        float64 `json:"p99_ms"`
	Max        float64 `json:"max_ms"`
	FirstError string  `json:"first_error,omitempty"`
}

// samples collects one phase's latencies and errors.
type samples struct {
	lat      []time.Duration
	errs     int
	firstErr error
}

func (s *samples) add(d time.Duration, err error) {
	if err != nil {
		s.errs++
		if s.firstErr == nil {
			s.firstErr = err
		}
		return
	}
	s.lat = append(s.lat, d)
}

func (s *samples) merge(o *samples) {
	s.lat = append(s.lat, o.lat...)
	s.errs += o.errs
	if s.firstErr == nil {
		s.firstErr = o.firstErr
	}
}

// summary of the samples taken over elapsed. Percentiles are of the successful requests.
func (s *samples) summary(elapsed time.Duration) Latency {
	lat := slices.Clone(s.lat)
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	at := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return ms(lat[min(len(lat)-1, int(q*float64(len(lat))))])
	}
	out := Latency{Requests: len(lat) + s.errs, Errors: s.errs, P50: at(0.50), P95: at(0.95), P99: at(0.99)}
	if len(lat) > 0 {
		out.Max = ms(lat[len(lat)-1])
	}
	if elapsed > 0 {
		out.PerSec = float64(out.Requests) / elapsed.Seconds()
	}
	if s.firstErr != nil {
		out.FirstError = s.firstErr.Error()
	}
	return out
}

// h2cClient is one client's HTTP/2-without-TLS connection (as gRPC clients speak), sending
// token on every request.
func h2cClient(token string) (*http.Client, func()) {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	return &http.Client{Transport: bearer{token: token, next: tr}}, tr.CloseIdleConnections
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
