package migrations_test

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/migrations"
	"github.com/tally-ledger/tally/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// step checks one migration, in the manner of formancehq/ledger's TestMigrations: before runs
// on the schema just below the version, after on the schema at it. Add one for each migration
// that moves or reshapes data, with rows written in before and read back in after.
type step struct {
	before func(t *testing.T, ctx context.Context, pool *pgxpool.Pool)
	after  func(t *testing.T, ctx context.Context, pool *pgxpool.Pool)
}

var steps = map[int64]step{
	1: {
		after: func(t *testing.T, ctx context.Context, pool *pgxpool.Pool) {
			require.ElementsMatch(t, []string{"tally_meta", "projection_checkpoints"}, tables(t, ctx, pool))

			_, err := pool.Exec(ctx, "INSERT INTO projection_checkpoints (name, version) VALUES ('ledger', 1)")
			require.NoError(t, err)
			var seq int64
			var state string
			require.NoError(t, pool.QueryRow(ctx,
				"SELECT last_seq, state FROM projection_checkpoints WHERE name = 'ledger'").Scan(&seq, &state))
			require.Equal(t, int64(0), seq, "a new projection starts before the first event")
			require.Equal(t, "live", state)

			_, err = pool.Exec(ctx, "INSERT INTO projection_checkpoints (name, version) VALUES ('ledger', 2)")
			require.Error(t, err, "one checkpoint per projection")
			_, err = pool.Exec(ctx, "INSERT INTO tally_meta (key) VALUES ('stream')")
			require.Error(t, err, "a meta key needs a value")
		},
	},
}

// TestMigrations applies the migrations one at a time on a fresh database, running each step's
// checks, then rolls all the way down and up again, and requires the same schema both times.
func TestMigrations(t *testing.T) {
	pool, _ := pgtest.NewEmptyDB(t)
	ctx := t.Context()
	p := provider(t, pool)

	sources := p.ListSources()
	require.NotEmpty(t, sources)
	for v := range steps {
		require.True(t, slices.ContainsFunc(sources, func(s *goose.Source) bool { return s.Version == v }),
			"checks for migration %d, which does not exist", v)
	}
	for _, src := range sources {
		t.Run(fmt.Sprintf("%05d up", src.Version), func(t *testing.T) {
			s := steps[src.Version]
			if s.before != nil {
				s.before(t, ctx, pool)
			}
			res, err := p.UpByOne(ctx)
			require.NoError(t, err)
			require.Equal(t, src.Version, res.Source.Version)
			if s.after != nil {
				s.after(t, ctx, pool)
			}
		})
	}
	first := schema(t, ctx, pool)
	require.NotEmpty(t, first)

	_, err := p.DownTo(ctx, 0)
	require.NoError(t, err, "every migration rolls back")
	require.Empty(t, tables(t, ctx, pool), "rolling all the way down leaves no table behind")

	_, err = p.Up(ctx)
	require.NoError(t, err)
	require.Equal(t, first, schema(t, ctx, pool), "down then up gives the same schema")
}

func TestUpTwiceIsNoOp(t *testing.T) {
	pool, _ := pgtest.NewEmptyDB(t)
	ctx := t.Context()
	require.NoError(t, migrations.Up(ctx, pool))
	before := schema(t, ctx, pool)

	require.NoError(t, migrations.Up(ctx, pool))
	require.Equal(t, before, schema(t, ctx, pool))
	pending, err := provider(t, pool).HasPending(ctx)
	require.NoError(t, err)
	require.False(t, pending)
}

// TestConcurrentUp is several processes starting at once on a fresh database: the advisory
// lock lets one apply the migrations and the others find nothing to do.
func TestConcurrentUp(t *testing.T) {
	if testing.Short() {
		t.Skip("the losers wait a second for the migration lock")
	}
	pool, url := pgtest.NewEmptyDB(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() {
			// A pool each, as separate processes would have.
			p, err := pgxpool.New(ctx, url)
			if err != nil {
				errs[i] = err
				return
			}
			defer p.Close()
			errs[i] = migrations.Up(ctx, p)
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	var applied int
	require.NoError(t, pool.QueryRow(ctx,
		"SELECT count(*) FROM goose_db_version WHERE version_id > 0").Scan(&applied))
	require.Equal(t, len(provider(t, pool).ListSources()), applied, "each migration recorded once")
}

// TestFiles guards what goose would accept but we would regret: gaps in the numbering (two
// branches each adding a migration) and migrations that cannot be rolled back.
func TestFiles(t *testing.T) {
	entries, err := fs.ReadDir(migrations.Files(), ".")
	require.NoError(t, err)
	require.NotEmpty(t, entries)
	for i, e := range entries {
		require.True(t, strings.HasPrefix(e.Name(), fmt.Sprintf("%05d_", i+1)),
			"%s: migrations are numbered 00001, 00002, ... with no gap", e.Name())
		require.True(t, strings.HasSuffix(e.Name(), ".sql"), e.Name())
		body, err := fs.ReadFile(migrations.Files(), e.Name())
		require.NoError(t, err)
		require.Contains(t, string(body), "-- +goose Up", e.Name())
		require.Contains(t, string(body), "-- +goose Down", "%s: every migration says how to roll it back", e.Name())
	}
}

// provider is a goose provider over pool, for stepping and rolling back.
func provider(t *testing.T, pool *pgxpool.Pool) *goose.Provider {
	t.Helper()
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { _ = db.Close() })
	p, err := migrations.NewProvider(db)
	require.NoError(t, err)
	return p
}

// tables lists Tally's tables in the current schema, leaving out goose's own.
func tables(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []string {
	t.Helper()
	return queryStrings(t, ctx, pool, `SELECT table_name::text FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_name <> 'goose_db_version' ORDER BY 1`)
}

// schema describes every column, constraint and index of the current schema, one line each,
// so two states of the schema can be compared with Equal.
func schema(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []string {
	t.Helper()
	return queryStrings(t, ctx, pool, `
		SELECT format('column %s.%s %s null=%s default=%s', table_name, column_name, data_type,
		              is_nullable, coalesce(column_default, '-'))
		FROM information_schema.columns WHERE table_schema = current_schema()
		UNION ALL
		SELECT format('constraint %s %s', conrelid::regclass, pg_get_constraintdef(oid))
		FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
		UNION ALL
		SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = current_schema()
		ORDER BY 1`)
}

func queryStrings(t *testing.T, ctx context.Context, pool *pgxpool.Pool, query string) []string {
	t.Helper()
	rows, err := pool.Query(ctx, query)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}
