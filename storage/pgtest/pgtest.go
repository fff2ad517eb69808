// Package pgtest gives a test a fresh PostgreSQL database of its own in two lines:
//
//	pool, url := pgtest.NewDB(t)
//	// pool is connected to a new, migrated database, dropped when the test ends
//
// The server is DATABASE_URL when set, else the local server at 127.0.0.1:5432, else a
// private cluster started once per test binary under a temp dir. To stop that cluster when the
// tests end, a package that may run where no server is installed calls Main from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// Without it the private cluster outlives the test binary.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/migrations"
	"github.com/tally-ledger/tally/storage"
)

// resolveTimeout covers initdb and the first start of a private cluster, a few seconds each.
const resolveTimeout = 2 * time.Minute

// localURL is the server tried when DATABASE_URL is unset; a var so a test can point it where
// nothing answers.
var localURL = storage.DefaultLocalURL

// server is shared by every test in the binary: resolving it may mean an initdb, which is far
// too slow to repeat per test.
var server struct {
	once        sync.Once
	url         string
	stop        func() error
	dir         string
	private     bool
	err         error
	mainRunning bool
	warned      sync.Once
}

// NewDB creates a uniquely named database on the test server, applies every migration, and
// returns a pool connected to it and its URL. When the test ends the pool is closed and the
// database dropped, even if something still holds a connection to it.
func NewDB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	pool, dbURL := NewEmptyDB(t)
	require.NoError(t, migrations.Up(t.Context(), pool), "migrate test database")
	return pool, dbURL
}

// NewEmptyDB is NewDB without the migrations, for testing the migrations themselves.
func NewEmptyDB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	adminURL := serverURL(t)
	name := "tally_test_" + randomHex(t, 8)

	ctx := t.Context()
	admin, err := pgx.Connect(ctx, adminURL)
	require.NoError(t, err, "connect to the test server")
	defer admin.Close(context.WithoutCancel(ctx))
	_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	require.NoError(t, err, "create test database")

	dbURL, err := withDatabase(adminURL, name)
	require.NoError(t, err)
	pool, err := storage.Open(ctx, dbURL)
	if err != nil {
		dropDB(t, adminURL, name)
		require.NoError(t, err, "open test database")
	}
	t.Cleanup(func() {
		pool.Close()
		dropDB(t, adminURL, name)
	})
	return pool, dbURL
}

// Main runs the tests, then stops the private cluster if this binary started one. Call it from
// TestMain; it does not return.
func Main(m *testing.M) {
	server.mainRunning = true
	code := m.Run()
	if err := Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// Stop stops the private cluster, if this binary started one, and removes its directory. Main
// calls it; call it yourself only from a TestMain that cannot use Main.
func Stop() error {
	if server.stop == nil {
		return nil
	}
	err := server.stop()
	if err == nil && server.dir != "" {
		err = os.RemoveAll(server.dir)
	}
	return err
}

func serverURL(t testing.TB) string {
	t.Helper()
	server.once.Do(func() {
		server.url, server.err = resolve()
	})
	require.NoError(t, server.err, "find a PostgreSQL server for tests")
	if server.private && !server.mainRunning {
		server.warned.Do(func() {
			t.Logf("pgtest: started a private PostgreSQL in %s that will outlive this test binary: call pgtest.Main(m) from TestMain", server.dir)
		})
	}
	return server.url
}

func resolve() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "tally-pgtest-")
	if err != nil {
		return "", fmt.Errorf("create a directory for a private cluster: %w", err)
	}
	// MkdirTemp makes it 0700; when we run as root the cluster runs as the postgres user,
	// which must be able to pass through.
	if err := os.Chmod(dir, 0o755); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("open the private cluster's directory to the postgres user: %w", err)
	}
	resolved, stop, err := storage.Resolve(ctx, storage.Config{
		URL:      os.Getenv("DATABASE_URL"),
		LocalURL: localURL,
		DataDir:  dir,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	server.stop = stop
	if entries, _ := os.ReadDir(dir); len(entries) == 0 {
		// An existing server answered: the directory was not needed.
		_ = os.RemoveAll(dir)
	} else {
		server.dir, server.private = dir, true
	}
	return resolved, nil
}

// dropDB drops the test database; FORCE ends any session a test left open, so one leaked
// connection does not leak a database.
func dropDB(t testing.TB, adminURL, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Errorf("pgtest: connect to drop %s: %v", name, err)
		return
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Errorf("pgtest: drop %s: %v", name, err)
	}
}

// withDatabase returns connString pointing at database name instead, in either the URL or the
// keyword/value form (where a later key overrides an earlier one).
func withDatabase(connString, name string) (string, error) {
	if !strings.HasPrefix(connString, "postgres://") && !strings.HasPrefix(connString, "postgresql://") {
		return connString + " dbname=" + name, nil
	}
	u, err := url.Parse(connString)
	if err != nil {
		return "", fmt.Errorf("parse test server URL: %w", err)
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}
