package storage

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/migrations"
)

// TestPrivateCluster proves the fallback for machines with PostgreSQL installed but not
// running: with nothing answering at the local URL, Resolve initialises and starts a cluster
// (as the postgres user when we are root), reuses one left running, and on the next start
// reuses the data directory without a new initdb.
func TestPrivateCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL: initdb takes seconds")
	}
	if _, err := findBinaries(t.Context(), "", ""); errors.Is(err, errNoBinaries) {
		t.Skip("no PostgreSQL binaries on this machine")
	}
	ctx := t.Context()
	cfg := Config{
		LocalURL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres", closedPort(t)),
		// Deep enough that the socket path would not fit: postgres must still start, on TCP.
		DataDir: filepath.Join(tempDataDir(t), strings.Repeat("d", 60)),
	}
	resolve := func(t *testing.T) (string, func() error, string) {
		t.Helper()
		var logs bytes.Buffer
		cfg.Logger = logTo(&logs)
		began := time.Now()
		url, stop, err := Resolve(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = stop() }) // if the test fails half way
		t.Logf("resolve took %v", time.Since(began))
		return url, stop, logs.String()
	}

	// First start: initdb, then start.
	url, stop, logs := resolve(t)
	require.Contains(t, logs, "private PostgreSQL initialised")
	require.Contains(t, logs, "private PostgreSQL started")
	require.Contains(t, logs, "listening on TCP only")

	pool, err := Open(ctx, url)
	require.NoError(t, err)
	require.NoError(t, migrations.Up(ctx, pool))
	_, err = pool.Exec(ctx, "INSERT INTO tally_meta (key, value) VALUES ('stream', 'TALLY')")
	require.NoError(t, err)
	pool.Close()

	// A second process finding the cluster running (the first died without stopping it)
	// adopts it rather than starting another on the same directory.
	again, stopAgain, logs := resolve(t)
	require.Contains(t, logs, "already running; reusing it")
	require.Equal(t, url, again)

	require.NoError(t, stopAgain())
	require.NoError(t, stop(), "stopping a cluster someone else stopped is not an error")
	_, err = Open(ctx, url)
	require.Error(t, err, "the cluster is down")

	// Next start: the data directory is reused, so no initdb and the data is still there.
	url, stop, logs = resolve(t)
	require.NotContains(t, logs, "private PostgreSQL initialised")
	require.Contains(t, logs, "private PostgreSQL started")
	pool, err = Open(ctx, url)
	require.NoError(t, err)
	var stream string
	require.NoError(t, pool.QueryRow(ctx, "SELECT value FROM tally_meta WHERE key = 'stream'").Scan(&stream))
	require.Equal(t, "TALLY", stream)
	pool.Close()
	require.NoError(t, stop())
}
