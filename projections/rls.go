package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tally-ledger/tally/storage"
)

// SecureSchema puts the second tenant wall on the read model in schema: every table of the
// schema with a tenant_id column gets row-level security enabled and the policy
// storage.TenantPolicy (tenant_id = current_setting('tally.tenant', true)), and
// storage.ReaderRole may SELECT from it and use the schema. A read through
// storage.ReadAsTenant then sees only its tenant's rows, whatever its SQL says.
//
// The runner calls it right after a projection's Setup, for the live schema and for a
// rebuild's copy (the policies and grants belong to the tables, so the swap's renames keep
// them), and on start for a schema set up before the wall existed; projections need do
// nothing. It changes only what is missing, so calling it again is cheap.
//
// What it leaves out, on purpose: tables without a tenant_id column (the reader gets no
// privilege on them, so a tenant read that touches one fails instead of seeing every
// tenant's rows); partitions (reads go through the partitioned table, whose policy applies;
// a partition read directly is refused); views and materialized views (a view reads as its
// owner, who is not subject to the policies). The owner of the tables, which folds them, is
// not subject to the policies either: row-level security is enabled, not forced.
func SecureSchema(ctx context.Context, tx pgx.Tx, schema string) error {
	rows, err := tx.Query(ctx, `SELECT c.relname::text,
    c.relrowsecurity,
    EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $3),
    has_table_privilege($2, c.oid, 'SELECT')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY 1`, schema, storage.ReaderRole, storage.TenantPolicy)
	if err != nil {
		return fmt.Errorf("find tenant tables of schema %s: %w", schema, err)
	}
	type table struct {
		name                  string
		rls, policy, readable bool
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
		var t table
		err := r.Scan(&t.name, &t.rls, &t.policy, &t.readable)
		return t, err
	})
	if err != nil {
		return fmt.Errorf("find tenant tables of schema %s: %w", schema, err)
	}
	var usable bool
	if err := tx.QueryRow(ctx, "SELECT has_schema_privilege($2, $1, 'USAGE')", schema, storage.ReaderRole).Scan(&usable); err != nil {
		return fmt.Errorf("check %s's use of schema %s: %w", storage.ReaderRole, schema, err)
	}
	role := pgx.Identifier{storage.ReaderRole}.Sanitize()
	var stmts []string
	if !usable {
		stmts = append(stmts, "GRANT USAGE ON SCHEMA "+pgx.Identifier{schema}.Sanitize()+" TO "+role)
	}
	for _, t := range tables {
		id := pgx.Identifier{schema, t.name}.Sanitize()
		if !t.rls {
			stmts = append(stmts, "ALTER TABLE "+id+" ENABLE ROW LEVEL SECURITY")
		}
		if !t.policy {
			stmts = append(stmts, "CREATE POLICY "+pgx.Identifier{storage.TenantPolicy}.Sanitize()+" ON "+id+
				" USING ("+storage.TenantPolicyUsing+")")
		}
		if !t.readable {
			stmts = append(stmts, "GRANT SELECT ON "+id+" TO "+role)
		}
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("secure schema %s: %s: %w", schema, s, err)
		}
	}
	return nil
}
