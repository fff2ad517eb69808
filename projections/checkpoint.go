package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// querier is a pool, a connection or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type checkpointRow struct {
	name      string
	version   int
	seq       uint64
	state     string
	updatedAt time.Time
}

// liveRows are the checkpoint rows of a projection's live schema (its own name, or one per
// partition), ordered by name; forUpdate locks them.
func liveRows(ctx context.Context, q querier, name string, forUpdate bool) ([]checkpointRow, error) {
	sql := `SELECT name, version, last_seq, state, updated_at FROM projection_checkpoints
		WHERE name = $1 OR left(name, length($1) + 1) = $1 || '#' ORDER BY name`
	if forUpdate {
		sql += " FOR UPDATE"
	}
	rows, err := q.Query(ctx, sql, name)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints of %s: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (checkpointRow, error) {
		var c checkpointRow
		var seq int64
		err := row.Scan(&c.name, &c.version, &seq, &c.state, &c.updatedAt)
		c.seq = uint64(seq)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read checkpoints of %s: %w", name, err)
	}
	return out, nil
}

// loadCheckpoint reads one checkpoint row; pgx.ErrNoRows when there is none.
func loadCheckpoint(ctx context.Context, q querier, name string) (seq uint64, version int, err error) {
	var s int64
	err = q.QueryRow(ctx, "SELECT last_seq, version FROM projection_checkpoints WHERE name = $1", name).Scan(&s, &version)
	return uint64(s), version, err
}

// insertCheckpoints writes the live rows of p's partition layout, all at seq.
func insertCheckpoints(ctx context.Context, tx pgx.Tx, p Projection, parts int, seq uint64) error {
	for _, name := range layout(p.Name(), parts) {
		if _, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (name, version, last_seq, state)
			VALUES ($1, $2, $3, 'live')`, name, p.Version(), int64(seq)); err != nil {
			return fmt.Errorf("insert checkpoint %s: %w", name, err)
		}
	}
	return nil
}
