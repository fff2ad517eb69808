package allocation

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tally-ledger/tally/eventstore"
)

const (
	// Name of the projection and of its live PostgreSQL schema.
	Name = "allocation"
	// Version of the fold and tables; bump it to rebuild on deploy.
	Version = 2
)

//go:embed schema.sql
var schemaSQL string

// Projection folds cost line and allocation rule events into the allocation tables (see the
// package documentation, "The read model"). The zero value is ready and logs with
// slog.Default().
type Projection struct {
	// Log receives a warning for each day whose allocation failed; nil is slog.Default().
	Log *slog.Logger
}

// New returns the allocation projection.
func New() *Projection { return &Projection{} }

// Name implements projections.Projection.
func (*Projection) Name() string { return Name }

// Version implements projections.Projection.
func (*Projection) Version() int { return Version }

// Kinds implements projections.Projection.
func (*Projection) Kinds() []string {
	return []string{"cost_line_recorded", "cost_line_restated", "cost_line_retracted",
		"allocation_rule_set", "allocation_rule_retired"}
}

// Setup implements projections.Projection: it creates the tables in schema.
func (*Projection) Setup(ctx context.Context, tx pgx.Tx, schema string) error {
	if _, err := tx.Exec(ctx, inSchema(schemaSQL, schema)); err != nil {
		return fmt.Errorf("create allocation tables: %w", err)
	}
	return nil
}

// Apply implements projections.Projection.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, schema string, events []eventstore.Event) error {
	b, err := plan(events)
	if err != nil {
		return err
	}
	return p.apply(ctx, tx, schema, b)
}

// Prepare implements projections.Preparer: it decodes the batch into rows, with no database.
func (*Projection) Prepare(events []eventstore.Event) (any, error) { return plan(events) }

// ApplyPrepared implements projections.Preparer.
func (p *Projection) ApplyPrepared(ctx context.Context, tx pgx.Tx, schema string, prepared any) error {
	b, ok := prepared.(*batch)
	if !ok {
		return fmt.Errorf("allocation: prepared batch of type %T", prepared)
	}
	return p.apply(ctx, tx, schema, b)
}

func (p *Projection) logger() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

// inSchema puts sql's tables in schema.
func inSchema(sql, schema string) string {
	return strings.ReplaceAll(sql, "allocation_schema.", pgx.Identifier{schema}.Sanitize()+".")
}
