package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tally-ledger/tally/migrations"
	"github.com/tally-ledger/tally/storage"
)

// DefaultDatabase is the database Tally creates and uses on a PostgreSQL
// server it found itself (no database-url).
const DefaultDatabase = "tally"

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
		if url, err = storage.EnsureDatabase(ctx, url, DefaultDatabase); err != nil {
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
