package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/gateway"
	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/storage/pgtest"
)

const samplePath = "../../testdata/focus/FOCUS-1.0/focus_sample.csv"

// gatewayURL serves a gateway (h2c and HTTP/1.1) on a real JetStream and a
// fresh database, and returns an environment holding an admin token
// (TALLY_TOKEN).
func gatewayURL(t *testing.T) (string, map[string]string) {
	t.Helper()
	url, pool := gatewayServer(t)
	return url, map[string]string{"TALLY_TOKEN": newToken(t, pool, tokens.Spec{Name: "cli-test", Role: tokens.RoleAdmin})}
}

// gatewayServer serves a gateway and returns its URL and database.
func gatewayServer(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	srv := natstest.Run(t)
	pool, _ := pgtest.NewDB(t)
	mux := http.NewServeMux()
	gateway.New(gateway.Config{Store: srv.Store(), Pool: pool, TempDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}).Mount(mux)
	ts := httptest.NewUnstartedServer(mux)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	ts.Config.Protocols = &p
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.URL, pool
}

// newToken makes a token in pool and returns its secret.
func newToken(t *testing.T, pool *pgxpool.Pool, spec tokens.Spec) string {
	t.Helper()
	_, secret, err := tokens.NewStore(pool).Create(t.Context(), spec)
	require.NoError(t, err)
	return secret
}

// with is env with more variables.
func with(env map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func TestIngestCommand(t *testing.T) {
	url, env := gatewayURL(t)

	// The server from TALLY_SERVER, the tenant from the flag.
	_, out, _, err := execute(t, with(env, "TALLY_SERVER", url), "ingest", samplePath, "--tenant", "acme")
	require.NoError(t, err)
	require.Contains(t, out, "focus_sample.csv (FOCUS 1.0")
	require.Regexp(t, `rows read\s+1000`, out)
	require.Regexp(t, `rows rejected\s+0`, out)
	require.Regexp(t, `billed USD\s+\d+\.\d+`, out)

	// Again: nothing changes.
	_, out, _, err = execute(t, env, "ingest", samplePath, "--tenant", "acme", "--server", url)
	require.NoError(t, err)
	require.Regexp(t, `events appended\s+0`, out)
	require.Regexp(t, `recorded\s+0`, out)

	// A file with a bad row: refused, reasons on stderr, error returned
	// (non-zero exit).
	data, err := os.ReadFile(samplePath)
	require.NoError(t, err)
	lines := strings.SplitAfter(string(data), "\n")
	bad := filepath.Join(t.TempDir(), "bad.csv")
	require.NoError(t, os.WriteFile(bad, []byte(lines[0]+"garbage,row\n"+strings.Join(lines[1:5], "")), 0o600))
	_, out, errOut, err := execute(t, env, "ingest", bad, "--tenant", "acme", "--server", url)
	require.Error(t, err)
	require.Empty(t, out)
	require.Contains(t, errOut, "refused:")
	require.Contains(t, errOut, "bad.csv:2")

	// Usage errors.
	_, _, _, err = execute(t, env, "ingest", samplePath, "--server", url)
	require.ErrorContains(t, err, "--tenant is required")
	_, _, _, err = execute(t, env, "ingest", samplePath, "--tenant", "acme", "--server", "ftp://x")
	require.ErrorContains(t, err, "--server")
}

func TestIngestCommandServerDown(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	_, _, _, err := execute(t, map[string]string{"TALLY_TOKEN": "tly_x"}, "ingest", samplePath, "--tenant", "acme", "--server", url)
	require.ErrorContains(t, err, "cannot reach Tally at "+url)
}
