// Package migrations owns the PostgreSQL schema: numbered goose SQL files under sql/, embedded
// in the binary and applied on start. Read models add their tables here (one file per change,
// never an edit to an applied file). It must never import storage, read models or the gateway:
// they depend on it, not the other way round.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed sql/*.sql
var embedded embed.FS

// Files returns the migration files with sql/ stripped, as goose expects them.
func Files() fs.FS {
	sub, err := fs.Sub(embedded, "sql")
	if err != nil {
		// fs.Sub only fails on an invalid path, and "sql" is a constant.
		panic(err)
	}
	return sub
}

// NewProvider returns a goose provider over db for the embedded migrations. Up uses it; tests
// and operator commands use it directly to step, roll back or report status.
//
// Migrations run under a PostgreSQL session advisory lock, so several processes starting at
// once against one database apply each migration exactly once; the others wait (polling every
// second, up to five minutes) and then find nothing pending.
func NewProvider(db *sql.DB) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, fmt.Errorf("create migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, Files(),
		goose.WithSessionLocker(locker),
		// Go migrations registered in goose's global registry by some other package must never
		// run against Tally's schema.
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("create migration provider: %w", err)
	}
	return p, nil
}

// Up applies every pending migration to the database behind pool. With nothing pending it
// changes nothing, so it is safe to call on every start.
func Up(ctx context.Context, pool *pgxpool.Pool) error {
	// Closing this *sql.DB does not close the pool; it only releases what goose borrowed.
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()

	p, err := NewProvider(db)
	if err != nil {
		return err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range results {
		slog.InfoContext(ctx, "migration applied",
			slog.Int64("version", r.Source.Version),
			slog.String("file", path.Base(r.Source.Path)),
			slog.Duration("duration", r.Duration))
	}
	return nil
}
