package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Status is where one projection stands.
type Status struct {
	Name string
	// Version of the running code; StoredVersion of the live read model (0 if none yet).
	Version, StoredVersion int
	// State: "live"; "stale" (stored version or partition layout is not the code's: a
	// rebuild is due or running; queries see the old read model); "new" (not set up yet).
	State string
	// Checkpoint is the lowest checkpoint over the partitions; Lag = Head - Checkpoint, in log
	// messages.
	Checkpoint, Head, Lag uint64
	Partitions            []PartitionStatus
	// Rebuild is set while a rebuild is building the next copy.
	Rebuild *PartitionStatus
	// NoHead: the log was not asked (CheckpointStatus), so Head and every Lag are unknown
	// and left 0.
	NoHead bool
}

// PartitionStatus is one checkpoint row.
type PartitionStatus struct {
	Checkpoint string
	Seq, Lag   uint64
	UpdatedAt  time.Time
}

// Status reports every projection of the runner, and updates the gauges.
func (r *Runner) Status(ctx context.Context) ([]Status, error) {
	head, err := r.log.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(r.projs))
	for _, p := range r.projs {
		s, err := r.status(ctx, p, head)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// CheckpointStatus is Status from the database alone, for a process that cannot reach the
// log: checkpoints, versions and states, with NoHead set and the lags unknown. It leaves the
// gauges alone.
func (r *Runner) CheckpointStatus(ctx context.Context) ([]Status, error) {
	out := make([]Status, 0, len(r.projs))
	for _, p := range r.projs {
		s, err := r.readStatus(ctx, p, 0)
		if err != nil {
			return nil, err
		}
		s.NoHead, s.Lag = true, 0
		for i := range s.Partitions {
			s.Partitions[i].Lag = 0
		}
		if s.Rebuild != nil {
			s.Rebuild.Lag = 0
		}
		out = append(out, s)
	}
	return out, nil
}

// StoredPartitions is the number of partitions projection name's live checkpoints are laid
// out in (1 when it is not partitioned or not set up yet), so that a tool can match the
// projectors' layout without being told.
func StoredPartitions(ctx context.Context, db querier, name string) (int, error) {
	rows, err := liveRows(ctx, db, name, false)
	if err != nil {
		return 0, err
	}
	parts := 1
	for _, row := range rows {
		_, layout, ok := strings.Cut(row.name, "#")
		if !ok {
			continue
		}
		_, n, _ := strings.Cut(layout, "/")
		if v, err := strconv.Atoi(n); err == nil && v > parts {
			parts = v
		}
	}
	return parts, nil
}

func (r *Runner) status(ctx context.Context, p Projection, head uint64) (Status, error) {
	s, err := r.readStatus(ctx, p, head)
	if err != nil {
		return s, err
	}
	r.lagGauge.WithLabelValues(p.Name()).Set(float64(s.Lag))
	r.cpGauge.WithLabelValues(p.Name()).Set(float64(s.Checkpoint))
	return s, nil
}

func (r *Runner) readStatus(ctx context.Context, p Projection, head uint64) (Status, error) {
	s := Status{Name: p.Name(), Version: p.Version(), Head: head, State: "new"}
	rows, err := liveRows(ctx, r.pool, p.Name(), false)
	if err != nil {
		return s, err
	}
	exists, err := schemaExists(ctx, r.pool, p.Name())
	if err != nil {
		return s, err
	}
	for i, row := range rows {
		if i == 0 || row.seq < s.Checkpoint {
			s.Checkpoint = row.seq
		}
		s.StoredVersion = row.version
		s.Partitions = append(s.Partitions, PartitionStatus{Checkpoint: row.name, Seq: row.seq, Lag: lag(head, row.seq), UpdatedAt: row.updatedAt})
	}
	if len(rows) > 0 {
		s.State = "live"
		if isStale(p, r.opts.Partitions, rows, exists) {
			s.State = "stale"
		}
	}
	s.Lag = lag(head, s.Checkpoint)
	var next PartitionStatus
	var seq int64
	err = r.pool.QueryRow(ctx, "SELECT name, last_seq, updated_at FROM projection_checkpoints WHERE name = $1",
		nextSchema(p.Name())).Scan(&next.Checkpoint, &seq, &next.UpdatedAt)
	switch {
	case err == nil:
		next.Seq = uint64(seq)
		next.Lag = lag(head, next.Seq)
		s.Rebuild = &next
	case !errors.Is(err, pgx.ErrNoRows):
		return s, err
	}
	return s, nil
}

func lag(head, seq uint64) uint64 {
	if head <= seq {
		return 0
	}
	return head - seq
}

// refreshMetrics keeps the gauges current while the runner runs.
func (r *Runner) refreshMetrics(ctx context.Context) {
	for sleep(ctx, time.Second) {
		if _, err := r.Status(ctx); err != nil && ctx.Err() == nil {
			r.lg.WarnContext(ctx, "projection status", "err", err)
		}
	}
}

// Checkpoint is the stream sequence projection name has folded up to: the lowest over its
// partitions. It needs only the database, so a gateway that runs no projector can ask.
func Checkpoint(ctx context.Context, db querier, name string) (uint64, error) {
	var seq *int64
	err := db.QueryRow(ctx, `SELECT min(last_seq) FROM projection_checkpoints
		WHERE name = $1 OR left(name, length($1) + 1) = $1 || '#'`, name).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("checkpoint of %s: %w", name, err)
	}
	if seq == nil {
		return 0, fmt.Errorf("%w: %q has no checkpoint", ErrUnknownProjection, name)
	}
	return uint64(*seq), nil
}

// WaitFor returns once projection name has folded stream sequence seq (read-your-writes: pass
// the sequence an append returned), or with ctx's error.
// A projection of this runner that is not set up yet counts as not there yet.
func (r *Runner) WaitFor(ctx context.Context, name string, seq uint64) error {
	if _, err := r.projection(name); err != nil {
		return err
	}
	return waitFor(ctx, r.pool, name, seq, r.opts.PollInterval, r.changedCh)
}

// WaitFor is Runner.WaitFor for a process that runs no projector: it polls the database.
func WaitFor(ctx context.Context, db querier, name string, seq uint64, poll time.Duration) error {
	return waitFor(ctx, db, name, seq, poll, nil)
}

func waitFor(ctx context.Context, db querier, name string, seq uint64, poll time.Duration, changed func() <-chan struct{}) error {
	for {
		var ch <-chan struct{}
		if changed != nil {
			ch = changed()
		}
		cp, err := Checkpoint(ctx, db, name)
		if err != nil && (changed == nil || !errors.Is(err, ErrUnknownProjection)) {
			return err
		}
		if err == nil && cp >= seq {
			return nil
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}
