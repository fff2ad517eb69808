package gateway

import (
	"context"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-ledger/tally/exports"
	"github.com/tally-ledger/tally/projections/allocation"
	"github.com/tally-ledger/tally/projections/changelog"
	"github.com/tally-ledger/tally/projections/savings"
	"github.com/tally-ledger/tally/storage"
)

// readModelSections are the compliance pack's files from the finance read models, the
// default Config.PackSections: the period's realized savings and their evidence, the
// allocation (allocated per cost center per day and unallocated) and the tenant's whole change
// log. Each is read in its own read-only transaction as the tenant (storage.ReadAsTenant; the
// allocation and change-log queries do it themselves), behind the row-level-security wall like
// every tenant read.
func readModelSections(pool *pgxpool.Pool) PackSections {
	section := func(tenant, name string, write func(ctx context.Context, tx pgx.Tx, w io.Writer) error) exports.Section {
		return exports.Section{Name: name, Write: func(ctx context.Context, w io.Writer) error {
			return storage.ReadAsTenant(ctx, pool, tenant, func(tx pgx.Tx) error { return write(ctx, tx, w) })
		}}
	}
	return func(tenant, period string) []exports.Section {
		return []exports.Section{
			section(tenant, "savings.csv", func(ctx context.Context, tx pgx.Tx, w io.Writer) error {
				return savings.NewQueries(tx).WriteCSV(ctx, w, tenant, period)
			}),
			section(tenant, "savings-evidence.csv", func(ctx context.Context, tx pgx.Tx, w io.Writer) error {
				return savings.NewQueries(tx).WritePeriodEvidenceCSV(ctx, w, tenant, period)
			}),
			// The allocation and change-log queries read as the tenant themselves.
			{Name: "allocation.csv", Write: func(ctx context.Context, w io.Writer) error {
				return allocation.NewQueries(pool).WriteCSV(ctx, w, tenant, period)
			}},
			// Every change of the tenant, not only those recorded in the period's month: a
			// change recorded at any time may bear on the period (a rule effective from it, an
			// invoice or a close for it, a rate of one of its days).
			{Name: "changelog.csv", Write: func(ctx context.Context, w io.Writer) error {
				return changelog.NewQueries(pool).WriteCSV(ctx, w, tenant, "")
			}},
		}
	}
}
