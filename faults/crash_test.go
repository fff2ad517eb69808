package faults

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// killMode is the phase a kill aims at.
type killMode int

const (
	// killAppending: after the server has received the file and is
	// diffing and appending it (it has logged "ingesting uploaded file").
	killAppending killMode = iota
	// killProjecting: after `tally ingest` returned, while the read models
	// fold what it appended.
	killProjecting
)

// crashStats are the counts the test reports.
type crashStats struct {
	kills, restarts                  int
	midAppend, beforeAppend, postAck int // kills by what they interrupted
	withLag                          int // kills with the read models behind the log
	ingestRuns, interrupted          int
	// Of the bills interrupted with part of their events in the log: those
	// whose re-run appended the rest, and those with nothing left to append.
	resumed, complete int
	bills             int
}

// rerun accounts for the successful run of a bill, interrupted before with
// some of its events in the log when partial.
func (st *crashStats) rerun(partial bool, r *ingestRun) {
	switch {
	case partial && r.events > 0:
		st.resumed++
	case partial:
		st.complete++
	}
}

// TestKill9Serve kills tally serve with SIGKILL at seeded random moments while
// FOCUS files are ingested and projected, restarts it, and runs the
// interrupted ingest again (which may itself be killed). At the end the ledger
// must equal the totals recomputed from the files, and the log must hold each
// event once with every chain intact.
func TestKill9Serve(t *testing.T) {
	sz := suiteSize(t)
	rng := seeded(t)
	began := time.Now()
	pool, dbURL := pgtest.NewDB(t)
	natsPort := freePort(t)
	s := newTallyServe(t, dbURL, "--nats-listen", "127.0.0.1:"+strconv.Itoa(natsPort))
	files := newBills(t, sz.rows)
	exp := newExpectedLedger()
	s.start()

	// The test watches the log through the embedded server's listener; the
	// connection rides out the kills.
	nc, err := nats.Connect("nats://127.0.0.1:"+strconv.Itoa(natsPort), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	head := func() uint64 {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "TALLY")
		require.NoError(t, err)
		return st.CachedInfo().State.LastSeq
	}

	// appended polls the log until the ingest has n messages in it (true), or
	// until the ingest has ended (false).
	appended := func(before uint64, n uint64, run *ingestRun) bool {
		for !run.finished() {
			if head() >= before+n {
				return true
			}
			time.Sleep(time.Millisecond)
		}
		return false
	}

	// A first bill, with no kill, tells how many log messages a fresh bill takes.
	var st crashStats
	b0 := files.get(0)
	before := head()
	run := s.ingest(b0)
	appended(before, 1, run)
	appendBegan := time.Now()
	<-run.done
	require.NoError(t, run.err, "ingest %s:\n%s", b0.name, run.out.String())
	appendSpan := time.Since(appendBegan)
	messages := head() - before // a fresh bill's messages: revised bills take more
	exp.ingested(t, b0)
	st.ingestRuns++
	t.Logf("bill %s: %d events appended in %d messages, %s (server side %s, of which appending about %s)", b0.name, run.events,
		messages, run.wall.Round(time.Millisecond), run.server.Round(time.Millisecond), appendSpan.Round(time.Millisecond))

	next := 1
	partial := false // the bill at next was interrupted with some of its events in the log
	for k := range sz.kills {
		b := files.get(next)
		mode := killMode(k % 2)
		before := head()
		run := s.ingest(b)
		st.ingestRuns++
		var delay time.Duration
		switch mode {
		case killAppending:
			// Kill once a random number of the ingest's messages are in the
			// log, fewer than a fresh bill takes, and a little later.
			if appended(before, 1+rng.Uint64N(max(messages-1, 1)), run) {
				delay = randDuration(rng, 20*time.Millisecond)
			}
		case killProjecting:
			<-run.done
			require.NoError(t, run.err, "ingest %s:\n%s", b.name, run.out.String())
			delay = randDuration(rng, 300*time.Millisecond)
		}
		time.Sleep(delay)
		behind := head() > checkpoint(t.Context(), pool)
		s.kill()
		st.kills++
		<-run.done
		ok := run.err == nil

		s.start()
		st.restarts++
		after := head()
		switch {
		case ok:
			st.postAck++
		case after > before:
			st.midAppend++
		default:
			st.beforeAppend++
		}
		if behind {
			st.withLag++
		}
		outcome := "was interrupted"
		if ok {
			outcome = "had returned"
		}
		t.Logf("kill %d (%s, after %s): ingest of %s %s; log %d -> %d messages; read models behind: %v",
			k+1, []string{"appending", "projecting"}[mode], delay.Round(time.Millisecond), b.name, outcome, before, after, behind)
		if ok {
			st.rerun(partial, run)
			exp.ingested(t, b)
			next++
			partial = false
		} else {
			st.interrupted++ // run again by the next round, or below
			partial = partial || after > before
		}
	}
	// Run the last interrupted ingest again, then one more bill, with no kill.
	for range 2 {
		b := files.get(next)
		before := head()
		r := s.ingestOK(b)
		st.ingestRuns++
		st.rerun(partial, r)
		partial = false
		exp.ingested(t, b)
		next++
		t.Logf("bill %s after the kills: %d events appended in %d messages", b.name, r.events, head()-before)
	}
	st.bills = next
	// A bill ingested again appends nothing: the log already has every line.
	again := s.ingestOK(files.get(next - 1))
	st.ingestRuns++
	require.Zero(t, again.events, "re-ingesting an unchanged bill appends nothing:\n%s", again.out.String())

	waitProjected(t, pool, head())
	lines := checkLedger(t, s, pool, exp)
	sctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	sinfo, err := js.Stream(sctx, "TALLY")
	cancel()
	require.NoError(t, err)
	var dbBytes int64
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT pg_database_size(current_database())").Scan(&dbBytes))
	s.stop()
	nc.Close()

	// The log, read on its own (tally stopped): an embedded server on the
	// store directory tally serve used.
	e, err := eventstore.StartEmbedded(t.Context(), eventstore.EmbeddedConfig{StoreDir: filepath.Join(s.dataDir, "nats"), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer e.Shutdown()
	lnc, err := e.Connect()
	require.NoError(t, err)
	defer lnc.Close()
	store, err := eventstore.Open(t.Context(), lnc, eventstore.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer func() { require.NoError(t, store.Close()) }()
	facts := checkLog(t, store, pool)
	logBytes := sinfo.CachedInfo().State.Bytes
	t.Logf("sizing: %d events take %d bytes of log (%d a event) and the database %d bytes (%d a ledger line, with history and rollups)",
		facts.events, logBytes, logBytes/uint64(max(facts.events, 1)), dbBytes, dbBytes/max(lines, 1))

	require.Equal(t, sz.kills, st.kills)
	require.Positive(t, st.midAppend+st.beforeAppend, "some kills interrupted an ingest")
	require.Positive(t, st.midAppend, "some kills landed once the ingest had begun appending")
	require.Positive(t, st.postAck, "some kills came after an acknowledged ingest")
	t.Logf("faults: TestKill9Serve (%s): %d kill -9 of tally serve (%d mid-append, %d before appending, %d after the ingest returned; %d with the read models behind the log), "+
		"%d restarts, %d ingest runs (%d interrupted and run again; %d re-runs appended the rest of a partly appended bill, %d found it all there), %d bills of %d rows, %d events in %d log messages, %d ledger lines, exact totals; %s",
		sz.name, st.kills, st.midAppend, st.beforeAppend, st.postAck, st.withLag, st.restarts, st.ingestRuns, st.interrupted, st.resumed, st.complete,
		st.bills, sz.rows, facts.events, facts.messages, lines, time.Since(began).Round(time.Second))
}

// randDuration is uniform in [0, d).
func randDuration(rng *rand.Rand, d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rng.Int64N(int64(d)))
}
