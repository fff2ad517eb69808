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
	url, stop, err := storage.Resolve(ctx, storage.Config{URL: a.cfg.DatabaseURL, DataDir: a.cfg.DataDir, Logger: a.log})
	if err != nil {
		return fmt.Errorf("find PostgreSQL: %w", err)
	}
	a.onClose("private PostgreSQL", stop)
	source := "private cluster"
	switch {
	case a.cfg.DatabaseURL != "":
		source = "database-url"
	case url == storage.DefaultLocalURL:
		source = "local server"
	}
	if a.cfg.DatabaseURL == "" {
		// On a server Tally found for itself, keep to a database of our own
		// rather than the server's maintenance database.
		if url, err = storage.EnsureDatabase(ctx, url, DatabaseName(a.cfg.DataDir)); err != nil {
			return err
		}
	}
	if a.pool, err = storage.Open(ctx, url); err != nil {
		return err
	}
	a.onClose("PostgreSQL pool", func() error { a.pool.Close(); return nil })
	if err := migrations.Up(ctx, a.pool); err != nil {
		return fmt.Errorf("migrate PostgreSQL: %w", err)
	}
	a.log.InfoContext(ctx, "read models: PostgreSQL", slog.String("source", source), slog.String("url", maskDatabaseURL(url)))
	return nil
}
