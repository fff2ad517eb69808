package ingest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// appender appends changes in batches, each on the condition that the
// tenant's log is where the previous one left it, and folds each appended
// batch into the ingest state with the new checkpoint.
//
// It is a pipeline: while the diff builds a batch, the one before is being
// appended and the one before that copied into the applied table. Batches
// stay in order in every stage; after the first failure nothing more is
// appended.
type appender struct {
	in      *run
	expect  uint64 // tenant sequence the next append expects as head
	pending []*change
	conn    *pgxpool.Conn // holds the applied table
	base    uint64        // the state's checkpoint when the diff was computed

	started  bool
	blocked  time.Duration // the diff's wait for the pipeline
	toAppend chan []*change
	toFold   chan foldJob
	wg       sync.WaitGroup
	once     sync.Once
	dead     chan struct{} // closed at the first failure
	mu       sync.Mutex
	err      error

	// The fold stage's until wait returns.
	tx        pgx.Tx // holds the tenant's state lock from the first fold to merge
	stale     bool   // another writer moved the state first: fold nothing, catch up
	foldErr   bool   // tx is aborted
	folded    uint64 // stream sequence of the last batch folded in tx
	finalized []*tallyv1.Envelope
}

// foldJob is an appended batch for the applied table.
type foldJob struct {
	fresh     [][]any // lines new to the state, for ingest_lines
	rows      [][]any // other line changes, for the applied table
	finalized []*tallyv1.Envelope
	stream    uint64
}

func (a *appender) add(ctx context.Context, c *change) error {
	a.pending = append(a.pending, c)
	if len(a.pending) >= a.in.opts.BatchEvents {
		return a.flush(ctx)
	}
	return nil
}

// flush hands the pending changes to the pipeline, grouped by kind.
func (a *appender) flush(ctx context.Context) error {
	if len(a.pending) == 0 {
		return a.failure()
	}
	if !a.started {
		a.start(ctx)
	}
	batch := groupByKind(a.pending)
	clear(a.pending) // the batch holds the changes now
	a.pending = a.pending[:0]
	t0 := time.Now()
	defer func() { a.blocked += time.Since(t0) }()
	select {
	case a.toAppend <- batch:
		return nil
	case <-a.dead:
		return a.failure()
	}
}

// changeKind is the kind of a change's event. The constants are in the
// order a batch's events go to the log (groupByKind).
type changeKind uint8

const (
	kindRecorded changeKind = iota
	kindRestated
	kindRetracted
	kindFinalized
	numKinds
)

// groupByKind returns a new slice with the batch's changes grouped by kind,
// in the order of the kind constants, each kind's changes in the order the
// diff emitted them (line key order): a stable counting sort, so the same
// diff always gives the same events in the same order.
//
// A log message holds events of one kind: appended in the diff's order, the
// kinds of a revised bill interleave and nearly every change of kind would
// close a message (one durable write each). Grouped, a batch takes a message
// per kind present (or more when they do not fit in one).
//
// Reordering is safe because the order that matters to the ledger is that of
// one line's events, and a batch never holds two events of one line: the
// diff emits at most one change per (scope, line key), in strictly
// increasing key order, and the finalized events, emitted after every line
// of the diff, stay after them (kindFinalized comes last).
func groupByKind(batch []*change) []*change {
	var start [numKinds + 1]int
	for _, c := range batch {
		start[c.kind+1]++
	}
	for k := 1; k <= int(numKinds); k++ {
		start[k] += start[k-1]
	}
	out := make([]*change, len(batch))
	for _, c := range batch {
		out[start[c.kind]] = c
		start[c.kind]++
	}
	return out
}

// wait closes the pipeline, waits for what was handed over and returns the
// first failure. It may be called more than once.
func (a *appender) wait() error {
	if a.started {
		a.once.Do(func() { close(a.toAppend) })
		a.wg.Wait()
	}
	return a.failure()
}

func (a *appender) failure() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *appender) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err == nil {
		a.err = err
		close(a.dead)
	}
}

func (a *appender) start(ctx context.Context) {
	a.started = true
	a.toAppend, a.toFold, a.dead = make(chan []*change), make(chan foldJob), make(chan struct{})
	a.wg.Add(2)
	go func() { defer a.wg.Done(); defer close(a.toFold); a.appendLoop(ctx) }()
	go func() { defer a.wg.Done(); a.foldLoop(ctx) }()
}

func (a *appender) appendLoop(ctx context.Context) {
	in := a.in
	for batch := range a.toAppend {
		if a.failure() != nil {
			continue // drain
		}
		envs := make([]*tallyv1.Envelope, len(batch))
		for i, c := range batch {
			envs[i] = c.env
		}
		t0 := time.Now()
		res, err := in.store.Append(ctx, in.tenant, envs, eventstore.ExpectTenantSeq(a.expect))
		in.sum.Timings.Append += time.Since(t0)
		if res.Appended > 0 {
			if in.sum.FirstSeq == 0 {
				in.sum.FirstSeq = res.FirstSeq
			}
			in.sum.LastSeq = res.LastSeq
		}
		in.sum.Appended += int64(res.Appended)
		in.sum.Duplicates += int64(res.Duplicates)
		in.sum.Messages += int64(res.Messages)
		if err != nil {
			a.fail(fmt.Errorf("append changes of %s for tenant %q: %w", in.file, in.tenant, err))
			continue
		}
		job := foldJob{stream: res.Head.StreamSeq}
		for _, c := range batch {
			switch c.kind {
			case kindRecorded:
				in.sum.Recorded++
			case kindRestated:
				in.sum.Restated++
			case kindRetracted:
				in.sum.Retracted++
			case kindFinalized:
				in.sum.Finalized++
				job.finalized = append(job.finalized, c.env)
				continue
			}
			if c.post {
				in.sum.PostClose++
			}
			ap := c.applied
			hash := ap.hash
			if hash == nil {
				hash = []byte{}
			}
			if ap.fresh {
				job.fresh = append(job.fresh, []any{in.tenant, ap.scopeKey, ap.lineKey, hash, ap.amounts[0], ap.amounts[1], ap.amounts[2],
					ap.amounts[3], ap.amounts[4], ap.amounts[5], ap.currency, [16]byte(ap.eventID), ap.retracted})
				continue
			}
			job.rows = append(job.rows, []any{ap.scopeKey, ap.lineKey, hash, ap.amounts[0], ap.amounts[1], ap.amounts[2],
				ap.amounts[3], ap.amounts[4], ap.amounts[5], ap.currency, [16]byte(ap.eventID), ap.retracted})
		}
		a.expect = res.Head.Seq
		in.sum.HeadSeq, in.sum.StreamSeq = res.Head.Seq, res.Head.StreamSeq
		if in.opts.Progress != nil {
			in.opts.Progress(Progress{Stage: "append", Rows: in.sum.RowsRead, Events: in.sum.Appended})
		}
		a.toFold <- job // the fold stage drains until the channel closes
	}
}

func (a *appender) foldLoop(ctx context.Context) {
	for job := range a.toFold {
		if a.failure() != nil {
			continue // drain; what was appended is caught up from the log
		}
		t0 := time.Now()
		err := a.fold(ctx, job)
		a.in.sum.Timings.Fold += time.Since(t0)
		if err != nil {
			a.foldErr = true
			a.fail(err)
			continue
		}
		if !a.stale {
			a.folded = job.stream
		}
	}
}

// appliedTable collects the changes appended by this attempt, on the
// appender's own connection (the ingest's connection is streaming the diff).
const appliedTable = "ingest_applied"

var appliedColumns = []string{"scope_key", "line_key", "content_hash", "billed_cost", "effective_cost", "list_cost",
	"contracted_cost", "consumed_qty", "pricing_qty", "billing_currency", "last_event_id", "retracted"}

var lineColumns = append([]string{"tenant_id"}, appliedColumns...)

// fold writes an appended batch into the ingest state, in one transaction
// that holds the tenant's state lock from the first batch on and commits in
// merge: lines new to the state are copied straight into ingest_lines, the
// other changes into the applied table, merged once at the end. The lock is
// taken only if the state is still at the checkpoint the diff was computed
// from; if not, the batch is left to the next catch-up.
func (a *appender) fold(ctx context.Context, job foldJob) error {
	in := a.in
	if a.conn == nil {
		c, err := in.pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("fold appended changes: %w", err)
		}
		a.conn = c
		if _, err := c.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS `+appliedTable+` (
	scope_key text NOT NULL, line_key text NOT NULL, content_hash bytea NOT NULL, billed_cost numeric NOT NULL,
	effective_cost numeric, list_cost numeric, contracted_cost numeric, consumed_qty numeric, pricing_qty numeric,
	billing_currency text NOT NULL, last_event_id uuid NOT NULL, retracted boolean NOT NULL)`); err != nil {
			return fmt.Errorf("fold appended changes: %w", err)
		}
		if _, err := c.Exec(ctx, "TRUNCATE "+appliedTable); err != nil {
			return fmt.Errorf("fold appended changes: %w", err)
		}
	}
	if a.stale {
		return nil
	}
	if a.tx == nil {
		tx, err := a.conn.Begin(ctx)
		if err != nil {
			return fmt.Errorf("fold appended changes: %w", err)
		}
		cp, err := lockState(ctx, tx, in.tenant)
		if err != nil {
			tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // the error that matters is err
			return err
		}
		if cp != a.base {
			a.stale = true
			return tx.Rollback(ctx)
		}
		a.tx = tx
	}
	if len(job.fresh) > 0 {
		if _, err := a.tx.CopyFrom(ctx, pgx.Identifier{"ingest_lines"}, lineColumns, pgx.CopyFromRows(job.fresh)); err != nil {
			return fmt.Errorf("fold appended changes: %w", err)
		}
	}
	if len(job.rows) > 0 {
		if _, err := a.tx.CopyFrom(ctx, pgx.Identifier{appliedTable}, appliedColumns, pgx.CopyFromRows(job.rows)); err != nil {
			return fmt.Errorf("fold appended changes: %w", err)
		}
	}
	a.finalized = append(a.finalized, job.finalized...)
	return nil
}

// merge ends what fold began, after wait, whether the attempt succeeded or
// not: the applied changes are merged into the state and the checkpoint moves
// to the last folded batch, and the transaction commits. Whatever reached the
// log and was not folded here (a failed fold, a batch after a failed one, or
// all of it when another writer moved the state first) the next catch-up
// folds from the log, in log order; when another writer moved the state,
// merge catches up at once.
func (a *appender) merge(ctx context.Context) error {
	if a.conn == nil {
		return nil
	}
	defer func() { a.conn.Release(); a.conn = nil }()
	in := a.in
	ctx = context.WithoutCancel(ctx)
	t0 := time.Now()
	defer func() { in.sum.Timings.Fold += time.Since(t0) }()
	if a.stale {
		if _, err := a.conn.Exec(ctx, "TRUNCATE "+appliedTable); err != nil {
			return err
		}
		_, err := catchUp(ctx, a.conn.Conn(), in.store, in.tenant)
		return err
	}
	if a.tx == nil {
		return nil
	}
	tx := a.tx
	a.tx = nil
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	if a.foldErr || a.folded == 0 {
		return nil
	}
	f := newFolder(in.tenant)
	for _, k := range sortedKeys(in.scopes) {
		sc := in.scopes[k]
		f.b.Queue(upsertScope, in.tenant, k, sc.Provider, sc.Account, sc.Start, sc.End)
	}
	for _, env := range a.finalized {
		if err := f.fold(env); err != nil {
			return err
		}
	}
	f.b.Queue(`INSERT INTO ingest_lines (tenant_id, scope_key, line_key, content_hash, billed_cost, effective_cost,
	list_cost, contracted_cost, consumed_qty, pricing_qty, billing_currency, last_event_id, retracted)
SELECT $1, scope_key, line_key, content_hash, billed_cost, effective_cost, list_cost, contracted_cost, consumed_qty,
	pricing_qty, billing_currency, last_event_id, retracted FROM `+appliedTable+`
ON CONFLICT (tenant_id, scope_key, line_key) DO UPDATE SET
	content_hash = CASE WHEN EXCLUDED.retracted THEN ingest_lines.content_hash ELSE EXCLUDED.content_hash END,
	billed_cost = EXCLUDED.billed_cost, effective_cost = EXCLUDED.effective_cost, list_cost = EXCLUDED.list_cost,
	contracted_cost = EXCLUDED.contracted_cost, consumed_qty = EXCLUDED.consumed_qty, pricing_qty = EXCLUDED.pricing_qty,
	billing_currency = EXCLUDED.billing_currency, last_event_id = EXCLUDED.last_event_id, retracted = EXCLUDED.retracted`, in.tenant)
	f.b.Queue(setCheckpoint, in.tenant, int64(a.folded))
	f.b.Queue("TRUNCATE " + appliedTable)
	if err := tx.SendBatch(ctx, f.b).Close(); err != nil {
		return fmt.Errorf("merge appended changes into the ingest state: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("merge appended changes into the ingest state: %w", err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
