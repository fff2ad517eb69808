package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/storage/pgtest"
)

// TestEnsurePartitionsRace: two folds (runners of different tenant partitions) need the same
// new month at once. The second waits for the first to commit and then finds the partition
// there, instead of failing with 42P07 and retrying its whole batch.
func TestEnsurePartitionsRace(t *testing.T) {
	ctx := context.Background()
	pool, _ := pgtest.NewDB(t)
	_, err := pool.Exec(ctx, `CREATE SCHEMA s;
		CREATE TABLE s.lines (billing_period_start timestamptz NOT NULL) PARTITION BY RANGE (billing_period_start)`)
	require.NoError(t, err)
	oct := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	nov := oct.AddDate(0, 1, 0)

	tx1, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx1.Rollback(ctx) //nolint:errcheck // committed below
	require.NoError(t, ensurePartitions(ctx, tx1, "s", []time.Time{oct}))

	tx2, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx2.Rollback(ctx) //nolint:errcheck // committed below
	var pid int
	require.NoError(t, tx2.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	done := make(chan error, 1)
	go func() { done <- ensurePartitions(ctx, tx2, "s", []time.Time{oct, nov}) }()

	// The second waits on a lock while the first has not committed.
	require.Eventually(t, func() bool {
		var waiting bool
		err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)", pid).Scan(&waiting)
		return err == nil && waiting
	}, 10*time.Second, 10*time.Millisecond, "the second fold waits for the first")
	require.NoError(t, tx1.Commit(ctx))
	require.NoError(t, <-done, "the second fold finds October made and makes November")
	require.NoError(t, tx2.Commit(ctx))

	var parts []string
	rows, err := pool.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 's.lines'::regclass ORDER BY 1`)
	require.NoError(t, err)
	for rows.Next() {
		var p string
		require.NoError(t, rows.Scan(&p))
		parts = append(parts, p)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"lines_202610", "lines_202611"}, parts)
}
