package storage

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultLocalURL is the server tried when no URL is configured: a local PostgreSQL with trust
// authentication, as a developer machine or CI runner usually has.
const DefaultLocalURL = "postgres://postgres@127.0.0.1:5432/postgres"

const defaultProbeTimeout = 2 * time.Second

// Config says where to find or how to start PostgreSQL.
type Config struct {
	// URL, when set (DATABASE_URL), is used as it is: Resolve neither probes it nor falls back.
	URL string
	// LocalURL is tried when URL is empty. Empty means DefaultLocalURL.
	LocalURL string
	// ProbeTimeout bounds the attempt to reach LocalURL. Zero means 2 s.
	ProbeTimeout time.Duration
	// DataDir is Tally's data directory; a private cluster lives in DataDir/postgres. Empty
	// means there is no fallback: Resolve fails when LocalURL does not answer.
	DataDir string
	// BinDir holds initdb and pg_ctl. Empty means search /usr/lib/postgresql/*/bin,
	// /usr/pgsql-*/bin and PATH, newest version first.
	BinDir string
	// Logger receives what Resolve chose and why. Nil means slog.Default().
	Logger *slog.Logger
}

// Resolve returns the URL of the PostgreSQL server to use: cfg.URL if set; else cfg.LocalURL if
// a server answers there; else a private cluster started (or reused, if already initialised)
// under cfg.DataDir/postgres. stop shuts down a private cluster that Resolve started and is a
// no-op otherwise; it is safe to call more than once.
func Resolve(ctx context.Context, cfg Config) (url string, stop func() error, err error) {
	log := cmp.Or(cfg.Logger, slog.Default())
	noop := func() error { return nil }

	if cfg.URL != "" {
		c, err := pgx.ParseConfig(cfg.URL)
		if err != nil {
			return "", nil, fmt.Errorf("parse database URL: %w", err)
		}
		log.InfoContext(ctx, "using configured PostgreSQL", slog.String("at", where(c.Config)))
		return cfg.URL, noop, nil
	}

	local := cmp.Or(cfg.LocalURL, DefaultLocalURL)
	localCfg, err := pgx.ParseConfig(local)
	if err != nil {
		return "", nil, fmt.Errorf("parse local database URL: %w", err)
	}
	localAt := where(localCfg.Config)
	probeErr := probe(ctx, localCfg, cmp.Or(cfg.ProbeTimeout, defaultProbeTimeout))
	if probeErr == nil {
		log.InfoContext(ctx, "using local PostgreSQL", slog.String("at", localAt))
		return local, noop, nil
	}
	if err := ctx.Err(); err != nil {
		return "", nil, fmt.Errorf("look for local PostgreSQL at %s: %w", localAt, err)
	}
	if cfg.DataDir == "" {
		return "", nil, fmt.Errorf("no PostgreSQL answers at %s and no data directory is set for a private cluster: start PostgreSQL there, set DATABASE_URL, or set a data directory: %w", localAt, probeErr)
	}

	// The reason matters: "connection refused" is the expected case, but "password
	// authentication failed" means a server is there and the operator may prefer DATABASE_URL.
	log.InfoContext(ctx, "no local PostgreSQL answers; starting a private cluster",
		slog.String("at", localAt), slog.String("reason", lastLines([]byte(probeErr.Error()), 3)))
	dir, err := filepath.Abs(filepath.Join(cfg.DataDir, "postgres"))
	if err != nil {
		return "", nil, fmt.Errorf("private PostgreSQL directory: %w", err)
	}
	c, err := startCluster(ctx, clusterConfig{dir: dir, binDir: cfg.BinDir, log: log})
	if err != nil {
		return "", nil, fmt.Errorf("no PostgreSQL answers at %s and the private cluster in %s did not start: %w", localAt, dir, err)
	}
	return c.url, c.stop, nil
}

// probe reports whether a server answers at cfg and accepts us, within timeout.
func probe(ctx context.Context, cfg *pgx.ConnConfig, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}
