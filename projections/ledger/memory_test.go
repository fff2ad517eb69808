package ledger_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"weak"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// watchedLog is the log, with a weak pointer to every Envelope it hands out: a weak pointer
// turns nil once a garbage collection finds its Envelope unreachable.
type watchedLog struct {
	*eventstore.Store
	mu   sync.Mutex
	envs []watchedEnvelope
}

type watchedEnvelope struct {
	seq uint64
	env weak.Pointer[tallyv1.Envelope]
}

func (w *watchedLog) Read(ctx context.Context, f eventstore.ReadFilter, fn func(eventstore.Event) error) error {
	return w.Store.Read(ctx, f, func(ev eventstore.Event) error {
		w.mu.Lock()
		w.envs = append(w.envs, watchedEnvelope{ev.StreamSeq, weak.Make(ev.Envelope)})
		w.mu.Unlock()
		return fn(ev)
	})
}

// live collects garbage, then counts the Envelopes handed out that something still holds:
// those of log messages up to seq, and all. Read hands out no event meanwhile, so that the
// count does not depend on how far the reader got during the collection.
func (w *watchedLog) live(seq uint64) (upTo, all int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	runtime.GC()
	for _, e := range w.envs {
		if e.env.Value() != nil {
			all++
			if e.seq <= seq {
				upTo++
			}
		}
	}
	return upTo, all
}

// preparerOnly is the ledger as a Preparer that prepares whole batches (no BatchPreparer): the
// runner then holds each batch decoded until it is prepared.
type preparerOnly struct{ p *ledger.Projection }

func (w preparerOnly) Name() string    { return w.p.Name() }
func (w preparerOnly) Version() int    { return w.p.Version() }
func (w preparerOnly) Kinds() []string { return w.p.Kinds() }
func (w preparerOnly) Setup(ctx context.Context, tx pgx.Tx, schema string) error {
	return w.p.Setup(ctx, tx, schema)
}
func (w preparerOnly) Apply(ctx context.Context, tx pgx.Tx, schema string, events []eventstore.Event) error {
	return w.p.Apply(ctx, tx, schema, events)
}
func (w preparerOnly) Prepare(events []eventstore.Event) (any, error) { return w.p.Prepare(events) }
func (w preparerOnly) ApplyPrepared(ctx context.Context, tx pgx.Tx, schema string, prepared any) error {
	return w.p.ApplyPrepared(ctx, tx, schema, prepared)
}

// TestFoldKeepsNoDecodedBatch folds a log of 250-event messages in batches of 1,000 and, at
// every commit (inside the batch's transaction, after its rows were written), collects
// garbage and requires that no decoded event of the batch being committed, or of any batch
// before it, is still reachable: the runner and the projection keep the rows they built,
// never the events. It also bounds how many decoded events are live at all: the ledger
// prepares as the log is read, so at most the message being read (and the one before it, to
// leave room); a whole-batch Preparer, at most the batch being read and a message.
// Retaining a batch's events anywhere (in the job handed to the committer, in the plan for a
// fallback) fails the first check.
func TestFoldKeepsNoDecodedBatch(t *testing.T) {
	e := newEnv(t)
	want := bulk(t, e.store, "acme", 8000)
	const batch, message = 1000, 250
	for _, tc := range []struct {
		name    string
		p       projections.Projection
		maxLive int
	}{
		{"ledger prepares event by event", ledger.New(), 2 * message},
		{"whole-batch preparer", preparerOnly{ledger.New()}, batch + 2*message},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, _ := pgtest.NewDB(t)
			log := &watchedLog{Store: e.store}
			var commits, maxLive int
			r, err := projections.NewRunner(pool, log, projections.Options{BatchEvents: batch,
				BeforeCommit: func(_ context.Context, _ string, seq uint64) error {
					commits++
					upTo, all := log.live(seq)
					maxLive = max(maxLive, all)
					if upTo > 0 {
						return fmt.Errorf("committing up to seq %d: %d decoded events of it or of earlier batches still reachable", seq, upTo)
					}
					if all > tc.maxLive {
						return fmt.Errorf("committing up to seq %d: %d decoded events reachable, want at most %d", seq, all, tc.maxLive)
					}
					return nil
				}}, tc.p)
			require.NoError(t, err)
			require.NoError(t, r.CatchUp(t.Context()))
			require.GreaterOrEqual(t, commits, 8000/(batch+message))
			require.Equal(t, want, billedTotals(t, ledger.NewQueries(pool), "acme"))
			dailyMatchesLines(t, pool, ledger.Name)
			t.Logf("%d commits, at most %d decoded events reachable at one", commits, maxLive)
		})
	}
}

// TestBatchBytesEndsBatches: a batch also ends, at a message boundary, once its events take
// Options.BatchBytes bytes in the log, however far it is from BatchEvents; either way every
// event is folded once.
func TestBatchBytesEndsBatches(t *testing.T) {
	e := newEnv(t)
	want := bulk(t, e.store, "acme", 2000) // 8 messages of 250 events, of about the same size
	var first int                          // bytes of the first message's events
	var firstSeq uint64
	require.NoError(t, e.store.Read(t.Context(), eventstore.ReadFilter{}, func(ev eventstore.Event) error {
		if firstSeq == 0 {
			firstSeq = ev.StreamSeq
		}
		if ev.StreamSeq == firstSeq {
			first += len(ev.Raw)
		}
		return nil
	}))
	for _, tc := range []struct {
		bytes, commits int
	}{
		{1, 8},             // every message ends a batch
		{1 << 30, 1},       // only the end of the log does
		{first * 3 / 2, 4}, // each batch ends after its second message
	} {
		t.Run(fmt.Sprint(tc.bytes, " bytes"), func(t *testing.T) {
			pool, _ := pgtest.NewDB(t)
			commits := 0
			r, err := projections.NewRunner(pool, e.store, projections.Options{BatchEvents: 1 << 30, BatchBytes: tc.bytes,
				BeforeCommit: func(context.Context, string, uint64) error { commits++; return nil }}, ledger.New())
			require.NoError(t, err)
			require.NoError(t, r.CatchUp(t.Context()))
			require.Equal(t, tc.commits, commits)
			require.Equal(t, want, billedTotals(t, ledger.NewQueries(pool), "acme"))
			require.Equal(t, 2000, historyCount(t, env{pool: pool}, "ledger"))
		})
	}
}
