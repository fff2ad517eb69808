package ingest

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// appender appends changes in batches, each on the condition that the
// tenant's log is where the previous one left it, and folds each appended
// batch into the ingest state with the new checkpoint.
type appender struct {
	in         *run
	expect     uint64 // tenant sequence the next append expects as head
	pending    []*change
	conn       *pgxpool.Conn // holds the applied table
	base       uint64        // the state's checkpoint when the diff was computed
	lastStream uint64        // stream sequence of the last successful append
	finalized  []*tallyv1.Envelope
}

func (a *appender) add(ctx context.Context, c *change) error {
	a.pending = append(a.pending, c)
	if len(a.pending) >= a.in.opts.BatchEvents {
		return a.flush(ctx)
	}
	return nil
}

func (a *appender) flush(ctx context.Context) error {
	if len(a.pending) == 0 {
		return nil
	}
	in := a.in
	envs := make([]*tallyv1.Envelope, len(a.pending))
	for i, c := range a.pending {
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
	if err != nil {
		return fmt.Errorf("append changes of %s for tenant %q: %w", in.file, in.tenant, err)
	}
	for _, c := range a.pending {
		switch c.kind {
		case "recorded":
			in.sum.Recorded++
		case "restated":
			in.sum.Restated++
		case "retracted":
			in.sum.Retracted++
		case "finalized":
			in.sum.Finalized++
		}
		if postClose(c.env) {
			in.sum.PostClose++
		}
	}
	a.expect, a.lastStream = res.Head.Seq, res.Head.StreamSeq
	in.sum.HeadSeq, in.sum.StreamSeq = res.Head.Seq, res.Head.StreamSeq
	t0 = time.Now()
	if err := a.fold(ctx); err != nil {
		return err
	}
	in.sum.Timings.Fold += time.Since(t0)
	if in.opts.Progress != nil {
		in.opts.Progress(Progress{Stage: "append", Rows: in.sum.RowsRead, Events: in.sum.Appended})
	}
	a.pending = a.pending[:0]
	return nil
}

// appliedTable collects the changes appended by this attempt, on the
// appender's own connection (the ingest's connection is streaming the diff).
const appliedTable = "ingest_applied"

var appliedColumns = []string{"scope_key", "line_key", "content_hash", "billed_cost", "effective_cost", "list_cost",
	"contracted_cost", "consumed_qty", "pricing_qty", "billing_currency", "last_event_id", "retracted"}

// fold copies the appended line changes into the applied table: one COPY per
// batch, the state itself is merged once by merge.
func (a *appender) fold(ctx context.Context) error {
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
	rows := make([][]any, 0, len(a.pending))
	for _, c := range a.pending {
		if c.kind == "finalized" {
			a.finalized = append(a.finalized, c.env)
			continue
		}
		ap := c.applied
		hash := ap.hash
		if hash == nil {
			hash = []byte{}
		}
		rows = append(rows, []any{ap.scopeKey, ap.lineKey, hash, ap.amounts[0], ap.amounts[1], ap.amounts[2],
			ap.amounts[3], ap.amounts[4], ap.amounts[5], ap.currency, [16]byte(ap.eventID), ap.retracted})
	}
	if _, err := a.conn.CopyFrom(ctx, pgx.Identifier{appliedTable}, appliedColumns, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("fold appended changes: %w", err)
	}
	return nil
}

// merge folds what this attempt appended into the ingest state and moves
// the checkpoint to the last append, in one transaction. It runs whether the
// attempt succeeded or not: whatever reached the log is folded. If another
// writer moved the state meanwhile, the applied rows may be older than what it
// folded: they are dropped and the state catches up from the log instead,
// in log order. Had merge failed, the next catch-up folds the same events.
func (a *appender) merge(ctx context.Context) error {
	if a.conn == nil {
		return nil
	}
	defer func() { a.conn.Release(); a.conn = nil }()
	in := a.in
	if a.lastStream == 0 {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	t0 := time.Now()
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
	f.b.Queue(setCheckpoint, in.tenant, int64(a.lastStream))
	f.b.Queue("TRUNCATE " + appliedTable)
	tx, err := a.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("merge appended changes into the ingest state: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	cp, err := lockState(ctx, tx, in.tenant)
	if err != nil {
		return err
	}
	if cp != a.base {
		if err := tx.Rollback(ctx); err != nil {
			return err
		}
		if _, err := a.conn.Exec(ctx, "TRUNCATE "+appliedTable); err != nil {
			return err
		}
		_, err := catchUp(ctx, a.conn.Conn(), in.store, in.tenant)
		in.sum.Timings.Fold += time.Since(t0)
		return err
	}
	if err := tx.SendBatch(ctx, f.b).Close(); err != nil {
		return fmt.Errorf("merge appended changes into the ingest state: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("merge appended changes into the ingest state: %w", err)
	}
	in.sum.Timings.Fold += time.Since(t0)
	return nil
}

func postClose(env *tallyv1.Envelope) bool {
	switch b := env.GetBody().(type) {
	case *tallyv1.Envelope_CostLineRecorded:
		return b.CostLineRecorded.GetPostClose()
	case *tallyv1.Envelope_CostLineRestated:
		return b.CostLineRestated.GetPostClose()
	case *tallyv1.Envelope_CostLineRetracted:
		return b.CostLineRetracted.GetPostClose()
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
