package storage

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Pool settings used unless the URL sets its own pool_* parameters.
const (
	connectTimeout  = 5 * time.Second
	maxConnLifetime = time.Hour
	// Jitter spreads reconnects so a pool opened at one instant does not recycle all its
	// connections in the same second an hour later.
	maxConnLifetimeJitter = 5 * time.Minute
	maxConnIdleTime       = 5 * time.Minute
	healthCheckPeriod     = 30 * time.Second
)

// Open returns a pool connected to the PostgreSQL at url, after checking that it answers.
// Errors name the host, port and database, never the password.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx masks the password in the text it quotes back.
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	tune(cfg, url)
	at := where(cfg.ConnConfig.Config)

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL pool for %s: %w", at, err)
	}
	// NewWithConfig connects lazily; ping so a wrong URL fails here, at start, and not at the
	// first query.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", at, err)
	}
	return pool, nil
}

// tune applies Tally's pool defaults wherever the URL does not set its own.
func tune(cfg *pgxpool.Config, url string) {
	if !hasParam(url, "pool_max_conns") {
		// Projection workers hold a connection for a whole batch while the gateway answers
		// queries; two per core keeps the CPU busy while some wait on I/O, and stays far
		// below PostgreSQL's default max_connections of 100.
		cfg.MaxConns = int32(max(4, 2*runtime.NumCPU()))
	}
	if !hasParam(url, "pool_max_conn_lifetime") {
		cfg.MaxConnLifetime = maxConnLifetime
	}
	if !hasParam(url, "pool_max_conn_lifetime_jitter") {
		cfg.MaxConnLifetimeJitter = maxConnLifetimeJitter
	}
	if !hasParam(url, "pool_max_conn_idle_time") {
		cfg.MaxConnIdleTime = maxConnIdleTime
	}
	if !hasParam(url, "pool_health_check_period") {
		cfg.HealthCheckPeriod = healthCheckPeriod
	}
	cc := cfg.ConnConfig
	// An explicit connect_timeout=0 (wait forever) is respected; PGCONNECT_TIMEOUT shows up as
	// a non-zero ConnectTimeout.
	if cc.ConnectTimeout == 0 && !hasParam(url, "connect_timeout") {
		// Without it a black-holed host blocks start until the kernel gives up, minutes later.
		cc.ConnectTimeout = connectTimeout
	}
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		// Lets an operator tell Tally's sessions apart in pg_stat_activity.
		cc.RuntimeParams["application_name"] = "tally"
	}
}

// hasParam reports whether a URL or keyword/value connection string sets key. pgx parses the
// value away, so the string is the only place left to ask.
func hasParam(connString, key string) bool {
	return strings.Contains(connString, key+"=") || strings.Contains(connString, key+" =")
}

// where describes the server a config points at, for errors and logs: host:port/database, or
// the socket path. It never includes the password.
func where(c pgconn.Config) string {
	var at string
	if strings.HasPrefix(c.Host, "/") {
		at = c.Host + "/.s.PGSQL." + strconv.Itoa(int(c.Port))
	} else {
		at = net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
	}
	return at + "/" + c.Database
}
