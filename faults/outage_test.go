package faults

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
)

// outageHold is how long a dependency stays down: long enough for several
// rounds of health checks and retries.
const outageHold = 4 * time.Second

// TestDependencyOutages runs tally serve on an external nats-server and a
// private PostgreSQL, both separate processes, and takes each down in the
// middle of an ingest: nats-server killed with SIGKILL and started again on
// the same port and store; PostgreSQL stopped in immediate mode (a crash) and
// started again on the same port. Tally must report each outage on /healthz,
// in tally_dependency_up and in its log, keep running, recover by itself once
// the dependency is back, and end with the exact totals of the input files.
func TestDependencyOutages(t *testing.T) {
	sz := suiteSize(t)
	rng := seeded(t)
	began := time.Now()
	ctx := t.Context()

	pg := newPGCluster(t)
	pg.start()
	dbURL := pg.createDatabase("tally_faults")
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()

	ns := newNATSServer(t, natsConfig{name: "nats", storeDir: filepath.Join(tempDir(t, "tally-faults-js-"), "jetstream"), port: freePort(t)})
	ns.start()
	s := newTallyServe(t, dbURL, "--nats-url", ns.url)
	s.start()

	nc, err := nats.Connect(ns.url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	head := func() uint64 {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "TALLY")
		require.NoError(t, err)
		return st.CachedInfo().State.LastSeq
	}

	files := newBills(t, sz.outageRows)
	exp := newExpectedLedger()
	before := head()
	s.ingestOK(files.get(0))
	exp.ingested(t, files.get(0))
	messages := head() - before

	o := &outages{t: t, s: s, rng: rng, head: head, messages: messages, runs: 2} // the first bill and the last
	next := 1
	var natsOut, pgOut []outage
	for range sz.outageRounds {
		natsOut = append(natsOut, o.run("nats", files.get(next), ns.kill, ns.start,
			`msg="disconnected from NATS; reconnecting"`, `msg="reconnected to NATS"`))
		exp.ingested(t, files.get(next))
		pgOut = append(pgOut, o.run("postgres", files.get(next+1), pg.crash, pg.start,
			`component=projections`, `msg="dependency is up again" dependency=postgres`))
		exp.ingested(t, files.get(next+1))
		next += 2
	}
	// And a bill after the outages, on the connections Tally re-established.
	s.ingestOK(files.get(next))
	exp.ingested(t, files.get(next))

	waitProjected(t, pool, head())
	lines := checkLedger(t, s, pool, exp)
	store, err := eventstore.Open(ctx, nc, eventstore.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer func() { require.NoError(t, store.Close()) }()
	facts := checkLog(t, store, pool)
	require.Equal(t, 1, s.starts, "tally serve was started once and recovered by itself")
	s.stop()

	t.Logf("faults: TestDependencyOutages (%s): nats-server killed (SIGKILL) and restarted %d times (%s); "+
		"PostgreSQL crashed (stop -m immediate) and restarted %d times (%s); tally serve never restarted; "+
		"%d bills of %d rows ingested (%d ingest runs), %d events in %d log messages, %d ledger lines, exact totals; %s",
		sz.name, len(natsOut), summarize(natsOut), len(pgOut), summarize(pgOut),
		exp.files, sz.outageRows, o.runs, facts.events, facts.messages, lines, time.Since(began).Round(time.Second))
}

type outages struct {
	t        *testing.T
	s        *tallyServe
	rng      *rand.Rand
	head     func() uint64
	messages uint64 // messages of a fresh bill
	runs     int    // tally ingest runs
}

// summarize describes outages: how long the dependency was down, how long
// Tally took to be healthy again, and what became of the ingests cut off.
func summarize(os []outage) string {
	var down, recovered time.Duration
	failed, warnings := 0, 0
	for _, o := range os {
		down, recovered = max(down, o.down), max(recovered, o.recovered)
		if o.failed {
			failed++
		}
		warnings += o.warnings
	}
	return fmt.Sprintf("down up to %s each, healthy again at most %s after it came back, %d of %d ingests in flight failed and were run again, %d warnings logged",
		down.Round(time.Millisecond), recovered.Round(time.Millisecond), failed, len(os), warnings)
}

type outage struct {
	down, recovered time.Duration
	ingest          string // what happened to the ingest running when it went down
	failed          bool
	warnings        int
}

// run ingests b, takes dependency dep down (stop) once part of b is in the
// log, checks that Tally reports it and keeps running, brings it back (start),
// waits for Tally to be healthy again with no help, and ingests b again to
// the end. downLog and upLog are lines Tally must log about the outage.
func (o *outages) run(dep string, b *bill, stop, start func(), downLog, upLog string) outage {
	t, s := o.t, o.s
	t.Helper()
	var out outage
	mark := s.log.mark()
	before := o.head()
	run := s.ingest(b)
	o.runs += 2 // and the re-run below
	n := before + 1 + o.rng.Uint64N(max(o.messages-1, 1))
	for !run.finished() && o.head() < n {
		time.Sleep(time.Millisecond)
	}
	stop()
	downAt := time.Now()

	// Reported: /healthz answers 503 naming the dependency, the gauge is 0,
	// and the log says so.
	code, rep := s.waitHealth("/healthz to report "+dep+" down", time.Minute, func(code int, rep healthReport) bool {
		return code == http.StatusServiceUnavailable && rep.Dependencies[dep].Status == "error"
	})
	require.Equal(t, "unavailable", rep.Status)
	t.Logf("%s down: /healthz %d, %s: %s", dep, code, dep, rep.Dependencies[dep].Error)
	require.Equal(t, "0", s.metric(`tally_dependency_up{dependency="`+dep+`"}`))
	wctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	require.GreaterOrEqual(t, s.log.wait(wctx, nil, mark, `msg="dependency is down"`, "dependency="+dep), 0, "tally logs that %s is down", dep)
	require.GreaterOrEqual(t, s.log.wait(wctx, nil, mark, downLog), 0, "tally logs %s", downLog)

	if d := outageHold - time.Since(downAt); d > 0 {
		time.Sleep(d)
	}
	require.True(t, s.running(), "tally serve keeps running while %s is down", dep)

	start()
	upAt := time.Now()
	out.down = upAt.Sub(downAt)
	s.waitHealth("/healthz to be ok again after "+dep+" came back", 2*time.Minute, func(code int, _ healthReport) bool {
		return code == http.StatusOK
	})
	out.recovered = time.Since(upAt)
	require.Equal(t, "1", s.metric(`tally_dependency_up{dependency="`+dep+`"}`))
	require.GreaterOrEqual(t, s.log.wait(wctx, nil, mark, `msg="dependency is up again"`, "dependency="+dep), 0)
	require.GreaterOrEqual(t, s.log.wait(wctx, nil, mark, upLog), 0, "tally logs %s", upLog)
	out.warnings = s.log.count(mark, "level=WARN") + s.log.count(mark, "level=ERROR")

	// The ingest that was running when the dependency went down ends (it
	// must not hang). If it failed, it must say the service is unavailable
	// (so that a client knows to retry), not report an internal error.
	select {
	case <-run.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("tally ingest still running 2 minutes after the %s outage began", dep)
	}
	out.ingest = "had finished"
	if run.err != nil {
		out.failed = true
		msg := lastLine(run.out.String())
		out.ingest = "failed after " + run.wall.Round(time.Second).String() + ": " + msg
		assert.Contains(t, msg, "unavailable",
			"an ingest cut off by the %s outage must fail with Connect code unavailable (retry later), not another code", dep)
	}
	t.Logf("%s outage: ingest %s; down %s; healthy %s after it came back; %d warnings and errors logged, the first: %s",
		dep, out.ingest, out.down.Round(time.Millisecond), out.recovered.Round(time.Millisecond), out.warnings, firstWarning(s.log, mark))

	// The interrupted ingest, run again, completes the bill.
	s.ingestOK(b)
	return out
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func firstWarning(b *logBook, from int) string {
	i := b.find(from, "level=WARN")
	if i < 0 {
		return "(none)"
	}
	l := b.line(i)
	if j := strings.Index(l, "level="); j >= 0 {
		l = l[j:]
	}
	return l
}
