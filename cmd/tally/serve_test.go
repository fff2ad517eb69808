package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// TestServeKeepsEventsAcrossRestart runs the real binary: it appends 100
// events through the embedded NATS server's listener, stops tally with
// SIGTERM, starts it again on the same data directory and reads back exactly
// those events with their hash chain intact.
func TestServeKeepsEventsAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the tally binary")
	}
	bin := buildTally(t)
	_, dbURL := pgtest.NewDB(t)
	dataDir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	first := startServe(t, bin, dataDir, dbURL)
	st := openStore(t, first.natsURL)
	var head eventstore.Head
	for batch := range 10 {
		res, err := st.Append(ctx, "acme", costLines("acme", batch*10, 10))
		require.NoError(t, err)
		require.Equal(t, 10, res.Appended)
		head = res.Head
	}
	require.Equal(t, uint64(100), head.Seq)
	// The first start wrote an admin token, for its owner's eyes only.
	tokenPath := filepath.Join(dataDir, "admin.token")
	fi, err := os.Stat(tokenPath)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	adminToken, err := os.ReadFile(tokenPath)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(adminToken), "tly_"))
	first.stop(t)

	second := startServe(t, bin, dataDir, dbURL)
	again, err := os.ReadFile(tokenPath)
	require.NoError(t, err)
	require.Equal(t, string(adminToken), string(again), "a restart reuses the admin token")
	st = openStore(t, second.natsURL)
	var keys []string
	require.NoError(t, st.Read(ctx, eventstore.ReadFilter{}, func(ev eventstore.Event) error {
		require.Equal(t, uint64(len(keys)+1), ev.Envelope.GetTenantSeq())
		keys = append(keys, ev.Envelope.GetIdempotencyKey())
		return nil
	}))
	require.Equal(t, lineKeys(0, 100), keys, "exactly the 100 appended events, in order")
	rep, err := st.Verify(ctx, "acme")
	require.NoError(t, err)
	require.True(t, rep.OK(), "chain problems: %v", rep.Problems)
	require.Equal(t, uint64(100), rep.Events)
	require.Equal(t, head.Hash, rep.Head.Hash, "the chain head after restart is the one the last append returned")
	second.stop(t)
}

// buildTally builds this package's binary into a temporary directory.
func buildTally(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	require.NoError(t, err, "the go command builds the binary under test")
	bin := filepath.Join(t.TempDir(), "tally")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// serveProc is a running `tally serve`.
type serveProc struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	waitErr error         // cmd.Wait's result, set before done is closed
	logs    *logLines
	addr    string // HTTP host:port
	natsURL string
}

// startServe starts tally serve on free ports, with NATS listening on
// loopback, and waits until /healthz answers 200.
func startServe(t *testing.T, bin, dataDir, dbURL string) *serveProc {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--data-dir", dataDir, "--addr", "127.0.0.1:0",
		"--nats-listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug")
	cmd.Env = append(cleanEnv(), "DATABASE_URL="+dbURL)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &serveProc{cmd: cmd, done: make(chan struct{}), logs: &logLines{}}
	go p.logs.collect(stderr, func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	})
	t.Cleanup(func() {
		if !p.exited() {
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("tally serve logs:\n%s", p.logs)
		}
	})

	require.Eventually(t, func() bool {
		p.addr = p.logs.attr("tally is ready", "addr")
		p.natsURL = p.logs.attr("event log: embedded NATS", "listen")
		return p.exited() || (p.addr != "" && p.natsURL != "")
	}, time.Minute, 20*time.Millisecond, "tally serve did not log that it is ready")
	require.False(t, p.exited(), "tally serve exited before it was ready: %v\n%s", p.waitErr, p.logs)
	require.True(t, strings.HasPrefix(p.natsURL, "nats://127.0.0.1:"), p.natsURL)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + p.addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "/healthz did not answer 200")
	return p
}

// stop sends SIGTERM and requires a clean exit (status 0, "tally stopped").
func (p *serveProc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, p.exited, time.Minute, 20*time.Millisecond, "tally serve did not exit after SIGTERM")
	require.NoError(t, p.waitErr, "exit status")
	require.Equal(t, 0, p.cmd.ProcessState.ExitCode())
	require.True(t, p.logs.has("tally stopped"), "no 'tally stopped' log line:\n%s", p.logs)
}

func (p *serveProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// cleanEnv is the test's environment without Tally's settings, so that the
// subprocess runs with what the test gives it only.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, envPrefix) || k == "NATS_URL" || k == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func openStore(t *testing.T, url string) *eventstore.Store {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(t.Name()))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	st, err := eventstore.Open(t.Context(), nc, eventstore.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) }) // before nc.Close: cleanups run last first
	return st
}

// logLines collects the JSON log lines of a subprocess.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   []string
}

// collect reads r to its end, then calls done.
func (l *logLines) collect(r io.Reader, done func()) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		_ = json.Unmarshal(sc.Bytes(), &rec) // a line that is not JSON is kept raw only
		l.mu.Lock()
		l.lines = append(l.lines, rec)
		l.raw = append(l.raw, sc.Text())
		l.mu.Unlock()
	}
	done()
}

// attr is attribute key of the first record with message msg, or "".
func (l *logLines) attr(msg, key string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, rec := range l.lines {
		if rec["msg"] == msg {
			s, _ := rec[key].(string)
			return s
		}
	}
	return ""
}

func (l *logLines) has(msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, rec := range l.lines {
		if rec["msg"] == msg {
			return true
		}
	}
	return false
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.raw, "\n")
}

func lineKeys(from, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("line-%06d", from+i)
	}
	return keys
}

func costLines(tenant string, from, n int) []*tallyv1.Envelope {
	out := make([]*tallyv1.Envelope, n)
	for i, key := range lineKeys(from, n) {
		out[i] = &tallyv1.Envelope{
			EventId:        eventstore.DeterministicID(tenant, key),
			TenantId:       tenant,
			IdempotencyKey: key,
			OccurredAt:     timestamppb.New(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)),
			Actor:          &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "serve-test"},
			Body: &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: &tallyv1.CostLine{
				LineKey:         key,
				ServiceName:     "Amazon EC2",
				BilledCost:      fmt.Sprintf("%d.25", from+i),
				BillingCurrency: "USD",
			}}},
		}
	}
	return out
}
