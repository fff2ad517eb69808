package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/tally-ledger/tally/migrations"
	"github.com/tally-ledger/tally/storage"
)

// DefaultDatabase prefixes the database Tally creates and uses on a
// PostgreSQL server it found itself (no database-url); see DatabaseName.
const DefaultDatabase = "tally"

// ResolveDatabase finds the PostgreSQL database Tally uses for dataDir:
// databaseURL as it is, else (on the local server, or on a private cluster it
// starts under dataDir/postgres) the database DatabaseName(dataDir), created if
// missing. stop stops a private cluster it started. serve and the CLI commands
// that open the database directly both call it, so they always agree.
func ResolveDatabase(ctx context.Context, log *slog.Logger, dataDir, databaseURL string) (url string, stop func() error, err error) {
	url, stop, err = storage.Resolve(ctx, storage.Config{URL: databaseURL, DataDir: dataDir, Logger: log})
	if err != nil {
		return "", nil, fmt.Errorf("find PostgreSQL: %w", err)
	}
	if databaseURL == "" {
		// On a server Tally found for itself, keep to a database of our own
		// rather than the server's maintenance database.
		if url, err = storage.EnsureDatabase(ctx, url, DatabaseName(dataDir)); err != nil {
			_ = stop()
			return "", nil, err
		}
	}
	return url, stop, nil
}

// DatabaseName is the database used with no database-url: one per data
// directory ("tally_" and 10 hex digits of its path's SHA-256), so that two
// data directories (two event logs) never share read models on the local
// server. The CLI commands that open the database directly use it too.
func DatabaseName(dataDir string) string {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	sum := sha256.Sum256([]byte(abs))
	return DefaultDatabase + "_" + hex.EncodeToString(sum[:5])
}

// openPostgres finds PostgreSQL (database-url, else the local server, else a
// private cluster in DataDir/postgres), opens the pool and migrates.
func (a *App) openPostgres(ctx context.Context) error {
	url, stop, err := ResolveDatabase(ctx, a.log, a.cfg.DataDir, a.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	a.onClose("private PostgreSQL", stop)
	if a.pool, err = storage.Open(ctx, url); err != nil {
		return err
	}
	a.onClose("PostgreSQL pool", func() error { a.pool.Close(); return nil })
	if err := migrations.Up(ctx, a.pool); err != nil {
		return fmt.Errorf("migrate PostgreSQL: %w", err)
	}
	// storage.Resolve has logged which server it chose and why.
	a.log.InfoContext(ctx, "read models: PostgreSQL", slog.String("url", maskDatabaseURL(url)))
	return nil
}
