// Package ledger owns the ledger read model: every cost line's current state by tenant, bill,
// charge period and FOCUS dimension, its restatement history, the finalized bills, daily
// rollups for dashboards and the FX rates recorded as events; the fold that builds them from
// cost and FX events, and the queries over them, in billing currency or normalized to one
// currency (normalize.go states the conversion and rounding rules). Its SQL lives beside its
// fold (schema.sql, fold.go, fx.go, query.go). It is run by the projections runner and must
// never import the gateway.
package ledger

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections"
)

const (
	// Name of the projection and of its live PostgreSQL schema.
	Name = "ledger"
	// Version of the fold and tables; bump it to rebuild on deploy. 2: the lines index on the
	// day expression queries use, and planner statistics on daily. 3: fx_rates, folded from
	// fx_rate_recorded events, for normalized amounts. 4: line_history keyed by log position,
	// its line index on line_key alone, both in byte order (schema.sql). 5: the lines index
	// on the day expression written with CASE, usable behind row-level security.
	Version = 5
)

//go:embed schema.sql
var schemaSQL string

// Projection folds cost events into the ledger tables. The zero value is ready.
type Projection struct{}

// New returns the ledger projection.
func New() *Projection { return &Projection{} }

// Name implements projections.Projection.
func (*Projection) Name() string { return Name }

// Version implements projections.Projection.
func (*Projection) Version() int { return Version }

// Kinds implements projections.Projection.
func (*Projection) Kinds() []string {
	return []string{"cost_line_recorded", "cost_line_restated", "cost_line_retracted", "billing_period_finalized", "fx_rate_recorded"}
}

// Setup implements projections.Projection: it creates the tables in schema.
func (*Projection) Setup(ctx context.Context, tx pgx.Tx, schema string) error {
	if _, err := tx.Exec(ctx, inSchema(schemaSQL, schema)); err != nil {
		return fmt.Errorf("create ledger tables: %w", err)
	}
	return nil
}

// Apply implements projections.Projection.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, schema string, events []eventstore.Event) error {
	b, err := p.Prepare(events)
	if err != nil {
		return err
	}
	return p.ApplyPrepared(ctx, tx, schema, b)
}

// Prepare implements projections.Preparer: it turns events into rows, with no database.
func (*Projection) Prepare(events []eventstore.Event) (any, error) {
	b := newPlanner()
	for _, ev := range events {
		if err := b.Add(ev); err != nil {
			return nil, err
		}
	}
	return b.Prepared()
}

// NewBatch implements projections.BatchPreparer: the runner then hands a batch's events over
// one at a time as it reads them, and keeps none of them.
func (*Projection) NewBatch() projections.PreparingBatch { return newPlanner() }

// ApplyPrepared implements projections.Preparer. A batch applied without error gives its
// buffers to a later batch.
func (*Projection) ApplyPrepared(ctx context.Context, tx pgx.Tx, schema string, prepared any) error {
	b, ok := prepared.(*batchPlan)
	if !ok {
		return fmt.Errorf("ledger: prepared batch of type %T", prepared)
	}
	if err := apply(ctx, tx, schema, b); err != nil {
		return err
	}
	b.release()
	return nil
}

// inSchema puts sql's tables in schema.
func inSchema(sql, schema string) string {
	return strings.ReplaceAll(sql, "ledger_schema.", pgx.Identifier{schema}.Sanitize()+".")
}
