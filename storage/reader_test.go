package storage_test

import (
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/migrations"
	"github.com/tally-ledger/tally/storage"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// TestReaderRoleRace: roles belong to the whole server, and every test database (every Tally
// database) runs migration 00004, which creates the role if it is missing. Two migrations
// that both see it missing race: the second's CREATE ROLE waits for the first's transaction
// and then fails with unique_violation, which the migration must take for "it exists now".
// The migration's block is run here with a fresh role name, so the race really happens.
func TestReaderRoleRace(t *testing.T) {
	ctx := t.Context()
	pool, _ := pgtest.NewDB(t)
	body, err := fs.ReadFile(migrations.Files(), "00004_tenant_reader.sql")
	require.NoError(t, err)
	src := string(body)
	begin, end := strings.Index(src, "-- +goose StatementBegin"), strings.Index(src, "-- +goose StatementEnd")
	require.True(t, begin >= 0 && end > begin)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	role := "tally_race_" + hex.EncodeToString(b)
	block := strings.ReplaceAll(src[begin:end], storage.ReaderRole, role)
	require.Contains(t, block, "CREATE ROLE "+role)
	t.Cleanup(func() { _, _ = pool.Exec(ctx, "DROP ROLE IF EXISTS "+role) })

	first, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = first.Rollback(ctx) }()
	_, err = first.Exec(ctx, block)
	require.NoError(t, err, "the first migration creates the role")

	second := make(chan error, 1)
	go func() {
		tx, err := pool.Begin(ctx)
		if err != nil {
			second <- err
			return
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, block); err != nil {
			second <- err
			return
		}
		second <- tx.Commit(ctx)
	}()
	// Wait until the second is blocked behind the first's uncommitted role (no timing
	// assertion: it only orders the two).
	for {
		var waiting bool
		require.NoError(t, pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%')`, role).Scan(&waiting))
		if waiting {
			break
		}
		select {
		case err := <-second:
			t.Fatalf("the second migration ran before the first committed: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	require.NoError(t, first.Commit(ctx))
	require.NoError(t, <-second, "the second migration takes the race it lost for success")

	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1 AND NOT rolcanlogin", role).Scan(&n))
	require.Equal(t, 1, n, "one role, which cannot log in")
}

// TestReaderRoleExists: after the migrations, the role Tally connects as may switch to the
// reader role, and the reader cannot log in.
func TestReaderRoleExists(t *testing.T) {
	ctx := t.Context()
	pool, _ := pgtest.NewDB(t)
	var canLogin, member bool
	require.NoError(t, pool.QueryRow(ctx, "SELECT rolcanlogin, pg_has_role(current_user, rolname, 'MEMBER') FROM pg_roles WHERE rolname = $1",
		storage.ReaderRole).Scan(&canLogin, &member))
	require.False(t, canLogin)
	require.True(t, member)
	var user string
	require.NoError(t, storage.ReadAsTenant(ctx, pool, "acme", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT current_user::text").Scan(&user)
	}))
	require.Equal(t, storage.ReaderRole, user)
}

// TestReadAsTenantTx: the options reach the transaction (a repeatable read sees one
// snapshot), except the access mode, which stays read-only.
func TestReadAsTenantTx(t *testing.T) {
	ctx := t.Context()
	pool, _ := pgtest.NewDB(t)
	_, err := pool.Exec(ctx, `CREATE SCHEMA rm; CREATE TABLE rm.facts (tenant_id text NOT NULL, n int NOT NULL);
		ALTER TABLE rm.facts ENABLE ROW LEVEL SECURITY;
		CREATE POLICY `+storage.TenantPolicy+` ON rm.facts USING (`+storage.TenantPolicyUsing+`);
		GRANT USAGE ON SCHEMA rm TO tally_reader; GRANT SELECT ON rm.facts TO tally_reader;
		INSERT INTO rm.facts VALUES ('acme', 1), ('globex', 2)`)
	require.NoError(t, err)
	count := func(tx pgx.Tx) int {
		var n int
		require.NoError(t, tx.QueryRow(ctx, "SELECT count(*) FROM rm.facts").Scan(&n))
		return n
	}
	for _, c := range []struct {
		iso        pgx.TxIsoLevel
		before, at int
	}{
		{pgx.RepeatableRead, 1, 1}, // one snapshot: the row added meanwhile is not seen
		{pgx.ReadCommitted, 1, 2},  // each statement its own snapshot
	} {
		_, err := pool.Exec(ctx, "DELETE FROM rm.facts WHERE n = 3")
		require.NoError(t, err)
		require.NoError(t, storage.ReadAsTenantTx(ctx, pool, "acme", pgx.TxOptions{IsoLevel: c.iso}, func(tx pgx.Tx) error {
			require.Equal(t, c.before, count(tx))
			_, err := pool.Exec(ctx, "INSERT INTO rm.facts VALUES ('acme', 3), ('globex', 3)")
			require.NoError(t, err)
			require.Equal(t, c.at, count(tx), "%s", c.iso)
			return nil
		}))
	}
	err = storage.ReadAsTenantTx(ctx, pool, "acme", pgx.TxOptions{AccessMode: pgx.ReadWrite}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT 1 FROM rm.facts FOR UPDATE")
		return err
	})
	require.ErrorContains(t, err, "read-only transaction")
}
