package storage_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/storage"
	"github.com/tally-ledger/tally/storage/pgtest"
)

func TestEnsureDatabase(t *testing.T) {
	ctx := context.Background()
	_, serverURL := pgtest.NewDB(t) // any database on the test server
	name := fmt.Sprintf("tally_ensure_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, serverURL)
		if err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			conn.Close(ctx)
		}
	})
	for i := 0; i < 2; i++ { // the first call creates it, the second finds it
		u, err := storage.EnsureDatabase(ctx, serverURL, name)
		require.NoError(t, err)
		parsed, err := url.Parse(u)
		require.NoError(t, err)
		require.Equal(t, "/"+name, parsed.Path)
		conn, err := pgx.Connect(ctx, u)
		require.NoError(t, err)
		var db string
		require.NoError(t, conn.QueryRow(ctx, "SELECT current_database()").Scan(&db))
		require.Equal(t, name, db)
		conn.Close(ctx)
	}
	_, err := storage.EnsureDatabase(ctx, "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=2", name)
	require.ErrorContains(t, err, "127.0.0.1:1")
}
