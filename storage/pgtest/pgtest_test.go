package pgtest_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/storage"
	"github.com/tally-ledger/tally/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestNewDB(t *testing.T) {
	var name, url string
	t.Run("inside a test", func(t *testing.T) {
		var pool *pgxpool.Pool
		pool, url = pgtest.NewDB(t)
		require.NoError(t, pool.QueryRow(t.Context(), "SELECT current_database()").Scan(&name))
		require.Regexp(t, `^tally_test_[0-9a-f]{16}$`, name)
		require.Contains(t, url, name)

		var tables int
		require.NoError(t, pool.QueryRow(t.Context(),
			`SELECT count(*) FROM information_schema.tables
			 WHERE table_schema = current_schema() AND table_name IN ('tally_meta', 'projection_checkpoints')`).Scan(&tables))
		require.Equal(t, 2, tables, "migrated")

		// A connection the test forgets to close must not stop the drop.
		leaked, err := pgx.Connect(t.Context(), url)
		require.NoError(t, err)
		_ = leaked

		other, _ := pgtest.NewDB(t)
		var otherName string
		require.NoError(t, other.QueryRow(t.Context(), "SELECT current_database()").Scan(&otherName))
		require.NotEqual(t, name, otherName, "each call gets its own database")
	})

	// The subtest's cleanup has run: its database is gone.
	_, err := storage.Open(t.Context(), url)
	require.ErrorContains(t, err, "does not exist", "database %s dropped at cleanup", name)
}

func TestNewEmptyDB(t *testing.T) {
	pool, _ := pgtest.NewEmptyDB(t)
	var tables int
	require.NoError(t, pool.QueryRow(t.Context(),
		"SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()").Scan(&tables))
	require.Zero(t, tables)
}

func TestParallel(t *testing.T) {
	for _, name := range []string{"a", "b", "c", "d"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pool, _ := pgtest.NewDB(t)
			_, err := pool.Exec(t.Context(), "INSERT INTO tally_meta (key, value) VALUES ('k', $1)", name)
			require.NoError(t, err)
		})
	}
}
