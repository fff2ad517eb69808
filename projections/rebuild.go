package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Progress is how far a rebuild has come.
type Progress struct {
	Projection string
	// Seq is the stream sequence folded so far; Head the log's newest.
	Seq, Head uint64
	// Events folded so far, and the rate since the rebuild began.
	Events       int64
	EventsPerSec float64
	// ETA to catch up with Head at the rate so far (0 when unknown).
	ETA time.Duration
	// Swapped is set on the last report, once the new copy serves.
	Swapped bool
}

// catchUpSlack: a rebuild swaps once it is within this many log messages of the head; the
// rest is folded inside the swap transaction, while the live workers wait.
const catchUpSlack = 64

// Rebuild rebuilds projection name with no downtime (see the package doc): it replays the whole
// log into "<name>_next" while the live schema keeps serving and its workers keep folding, then
// swaps the two in one transaction and drops the old copy. progress, if set, hears of each
// committed batch. Only one rebuild of a projection runs at a time across every process; a
// second waits for the first.
func (r *Runner) Rebuild(ctx context.Context, name string, progress func(Progress)) error {
	p, err := r.projection(name)
	if err != nil {
		return err
	}
	return r.rebuild(ctx, p, false, progress)
}

func (r *Runner) rebuild(ctx context.Context, p Projection, onlyIfStale bool, progress func(Progress)) error {
	c, err := r.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := c.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, -1)", lockKey(p.Name())); err != nil {
		return fmt.Errorf("take rebuild lock of %s: %w", p.Name(), err)
	}
	if onlyIfStale {
		// Another process may have rebuilt it while we waited for the lock.
		rows, err := liveRows(ctx, r.pool, p.Name(), false)
		if err != nil {
			return err
		}
		exists, err := schemaExists(ctx, r.pool, p.Name())
		if err != nil {
			return err
		}
		if !isStale(p, r.opts.Partitions, rows, exists) {
			return nil
		}
	}
	next := nextSchema(p.Name())
	r.lg.InfoContext(ctx, "projection rebuild started", "projection", p.Name(), "version", p.Version(), "schema", next)

	// A next copy left by an interrupted rebuild is thrown away: the lock says nobody is
	// building it.
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{next}.Sanitize()+" CASCADE"); err != nil {
		return err
	}
	if err := createSchema(ctx, tx, p, next); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (name, version, last_seq, state)
		VALUES ($1, $2, 0, 'rebuilding')
		ON CONFLICT (name) DO UPDATE SET version = excluded.version, last_seq = 0, state = 'rebuilding', updated_at = now()`,
		next, p.Version()); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}

	t := target{p: p, schema: next, checkpoint: next, parts: 1}
	start := time.Now()
	var pos uint64
	var events int64
	report := func(seq, head uint64, swapped bool) {
		if progress == nil {
			return
		}
		el := time.Since(start).Seconds()
		pr := Progress{Projection: p.Name(), Seq: seq, Head: head, Events: events, Swapped: swapped}
		if el > 0 {
			pr.EventsPerSec = float64(events) / el
			if seq > 0 && head > seq {
				pr.ETA = time.Duration(float64(head-seq) / (float64(seq) / el) * float64(time.Second))
			}
		}
		progress(pr)
	}
	for {
		head, err := r.log.LastSeq(ctx)
		if err != nil {
			return err
		}
		if head <= pos+catchUpSlack {
			break
		}
		pos, err = r.foldCommitted(ctx, t, pos, func(seq uint64, n int) {
			events += int64(n)
			report(seq, head, false)
		})
		if err != nil {
			return err
		}
	}
	pos, n, err := r.swap(ctx, p, pos)
	if err != nil {
		return err
	}
	events += int64(n)
	report(pos, pos, true)
	r.notify()
	r.lg.InfoContext(ctx, "projection rebuild swapped in", "projection", p.Name(), "seq", pos, "events", events, "duration", time.Since(start))
	old := pgx.Identifier{oldSchema(p.Name())}.Sanitize()
	if _, err := r.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+old+" CASCADE"); err != nil {
		return fmt.Errorf("drop old copy of %s: %w", p.Name(), err)
	}
	return nil
}

// swap folds the last events into the next copy and makes it the live one, in one transaction
// that first locks every live checkpoint row, so no live batch commits in between. It returns
// the final position and the number of events it folded.
func (r *Runner) swap(ctx context.Context, p Projection, pos uint64) (uint64, int, error) {
	next, live, old := nextSchema(p.Name()), p.Name(), oldSchema(p.Name())
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := liveRows(ctx, tx, p.Name(), true); err != nil {
		return 0, 0, err
	}
	var seq int64
	if err := tx.QueryRow(ctx, "SELECT last_seq FROM projection_checkpoints WHERE name = $1 FOR UPDATE", next).Scan(&seq); err != nil {
		return 0, 0, fmt.Errorf("lock rebuild checkpoint: %w", err)
	}
	if uint64(seq) != pos {
		return 0, 0, fmt.Errorf("rebuild checkpoint of %s moved from %d to %d: another rebuild ran", p.Name(), pos, seq)
	}
	t := target{p: p, schema: next, checkpoint: next, parts: 1}
	var n int
	var c collector
	pos, err = r.gather(ctx, t, pos, c.add, func(_, _ uint64, events int) error {
		n += events
		if events == 0 {
			return nil
		}
		defer c.reset()
		return p.Apply(ctx, tx, next, c.events)
	})
	if err != nil {
		return 0, 0, err
	}
	exists, err := schemaExists(ctx, tx, live)
	if err != nil {
		return 0, 0, err
	}
	stmts := []string{"DROP SCHEMA IF EXISTS " + pgx.Identifier{old}.Sanitize() + " CASCADE"}
	if exists {
		stmts = append(stmts, "ALTER SCHEMA "+pgx.Identifier{live}.Sanitize()+" RENAME TO "+pgx.Identifier{old}.Sanitize())
	}
	stmts = append(stmts, "ALTER SCHEMA "+pgx.Identifier{next}.Sanitize()+" RENAME TO "+pgx.Identifier{live}.Sanitize())
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return 0, 0, fmt.Errorf("swap %s: %w", p.Name(), err)
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM projection_checkpoints
		WHERE name = $1 OR name = $2 OR left(name, length($1) + 1) = $1 || '#'`, live, next); err != nil {
		return 0, 0, err
	}
	if err := insertCheckpoints(ctx, tx, p, r.opts.Partitions, pos); err != nil {
		return 0, 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, fmt.Errorf("commit swap of %s: %w", p.Name(), err)
	}
	return pos, n, nil
}
