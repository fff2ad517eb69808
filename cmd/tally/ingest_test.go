package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	_, out, errOut, err := execute(t, with(env, "TALLY_SERVER", url), "ingest", samplePath, "--tenant", "acme")
	require.NoError(t, err)
	require.Contains(t, out, "focus_sample.csv (FOCUS 1.0")
	require.Regexp(t, `rows read\s+1000`, out)
	require.Regexp(t, `rows/s\s+[\d,]+`, out)
	// Not a terminal: plain lines, the last one once the server answered,
	// counting the rows the client sent.
	require.Regexp(t, `(?m)^uploaded [\d.]+ KiB, 1000 rows \([\d,]+ rows/s\) in \S+; the server answered \S+ later$`, errOut)
	require.NotContains(t, errOut, "\r")
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
	_, out, errOut, err = execute(t, env, "ingest", bad, "--tenant", "acme", "--server", url)
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

// TestIngestCommandGzip: a gzip CSV is counted after decompression; a
// revised bill is summarised as restated and retracted lines.
func TestIngestCommandGzip(t *testing.T) {
	url, env := gatewayURL(t)
	data, err := os.ReadFile(samplePath)
	require.NoError(t, err)
	gzipped := func(name string, b []byte) string {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, err := zw.Write(b)
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		path := filepath.Join(t.TempDir(), name)
		require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o600))
		return path
	}
	_, out, errOut, err := execute(t, env, "ingest", gzipped("bill.csv.gz", data), "--tenant", "acme", "--server", url)
	require.NoError(t, err)
	require.Contains(t, errOut, ", 1000 rows (")
	require.Regexp(t, `recorded\s+\d+`, out)

	// The same bill without its last 10 rows: those lines are retracted,
	// the rest unchanged.
	lines := strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n")
	shorter := strings.Join(lines[:len(lines)-10], "")
	_, out, errOut, err = execute(t, env, "ingest", gzipped("bill2.csv.gz", []byte(shorter)), "--tenant", "acme", "--server", url)
	require.NoError(t, err)
	require.Contains(t, errOut, ", 990 rows (")
	require.Regexp(t, `rows read\s+990\n`, out)
	require.Regexp(t, `restated\s+0\n`, out)
	require.Regexp(t, `retracted\s+([1-9]|10)\n`, out)
	require.Regexp(t, `unchanged\s+\d+\n`, out)
}

// TestCSVRows counts records as the bytes arrive, in chunks of any size.
func TestCSVRows(t *testing.T) {
	for _, tc := range []struct {
		name, csv string
		rows      int64 // records less the header
	}{
		{"plain", "a,b\n1,2\n3,4\n", 2},
		{"no final line end", "a,b\n1,2\n3,4", 2},
		{"CRLF", "a,b\r\n1,2\r\n", 1},
		{"quoted line end", "a,b\n\"x\ny\",2\n3,4\n", 2},
		{"doubled quotes", "a,b\n\"say \"\"hi\"\"\n\",2\n", 1},
		{"header only", "a,b\n", 0},
		{"empty", "", 0},
	} {
		for _, chunk := range []int{1, 3, 1 << 20} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, chunk), func(t *testing.T) {
				c := &rowCounter{}
				for b := []byte(tc.csv); len(b) > 0; {
					n := min(chunk, len(b))
					c.add(b[:n])
					b = b[n:]
				}
				c.close()
				require.Equal(t, tc.rows, c.rows(int64(len(tc.csv))))
			})
		}
	}
}

// TestProgressLines: what a terminal and a log see at a given moment.
func TestProgressLines(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, 4<<20, time.Hour)
	require.False(t, p.tty, "a buffer is not a terminal")
	now := p.began
	p.now = func() time.Time { return now }
	p.rows = &rowCounter{}
	now = now.Add(2 * time.Second)
	chunk := []byte(strings.Repeat("x,y\n", 1<<18)) // 1 MiB, 262,144 records
	p.rows.add(chunk)
	p.sent.Add(int64(len(chunk)))

	require.Equal(t, "sent 1.0 MiB of 4.0 MiB (25%), 262143 rows, 131,072 rows/s, 0.5 MB/s, ETA 6s", p.line())
	require.Equal(t, "[======>                 ]  25% 1.0 MiB/4.0 MiB 262143 rows 131,072 rows/s ETA 6s", p.bar())
	p.print()
	require.Equal(t, p.line()+"\n", buf.String(), "a plain line, no escape codes")

	p.rows.close()
	p.sent.Add(3 << 20)
	p.serverWorking()
	now = now.Add(5 * time.Second)
	require.Equal(t, "uploaded 4.0 MiB, 262143 rows in 2s (131,072 rows/s); server ingesting for 5s", p.line())
	require.Equal(t, "uploaded 4.0 MiB, 262143 rows (131,072 rows/s) in 2s; the server answered 5s later", p.finalLine())
}

func TestIngestCommandServerDown(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	_, _, _, err := execute(t, map[string]string{"TALLY_TOKEN": "tly_x"}, "ingest", samplePath, "--tenant", "acme", "--server", url)
	require.ErrorContains(t, err, "cannot reach Tally at "+url)
}
