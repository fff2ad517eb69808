package app

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-ledger/tally/eventstore"
)

// pairWithLog records, on first start, which event log this database's read
// models are folded from, and refuses to start against another log: read
// models and ingest state from one log paired with another would show wrong
// numbers with no error anywhere.
func pairWithLog(ctx context.Context, pool *pgxpool.Pool, store *eventstore.Store) error {
	id := store.LogID()
	if id == "" {
		return fmt.Errorf("event log %s has no %s in its metadata", store.StreamName(), eventstore.MetadataLogID)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO tally_meta (key, value) VALUES ('log_id', $1) ON CONFLICT (key) DO NOTHING`, id); err != nil {
		return fmt.Errorf("record the event log id: %w", err)
	}
	var have string
	if err := pool.QueryRow(ctx, `SELECT value FROM tally_meta WHERE key = 'log_id'`).Scan(&have); err != nil {
		return fmt.Errorf("read the event log id: %w", err)
	}
	if have != id {
		return fmt.Errorf("this PostgreSQL database holds read models folded from event log %s, but stream %s is log %s: "+
			"point DATABASE_URL at this log's database or at an empty one, or use the data directory that database belongs to",
			have, store.StreamName(), id)
	}
	return nil
}
