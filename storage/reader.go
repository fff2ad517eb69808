package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The tenant wall in PostgreSQL. Every read-model table with a tenant_id column has row-level
// security enabled and the policy TenantPolicy (projections.SecureSchema puts them there), and
// ReaderRole may SELECT from it. A read for one tenant runs as ReaderRole with TenantSetting set
// to the tenant (ReadAsTenant), so that even a query that forgot its tenant filter sees none of
// another tenant's rows. The owner of the tables (the role Tally connects as, which folds the
// read models) is not subject to the policies: row-level security is enabled, not forced.
const (
	// ReaderRole is the NOLOGIN role tenant-scoped reads switch to inside their transaction.
	// Migration 00004 creates it (roles are cluster-wide: one role serves every Tally database
	// on a server) and grants it to the role Tally connects as.
	ReaderRole = "tally_reader"
	// TenantSetting is the transaction-local setting the policies compare tenant_id with.
	TenantSetting = "tally.tenant"
	// TenantPolicy is the name of the policy on every tenant table of a read model.
	TenantPolicy = "tenant_isolation"
	// TenantPolicyUsing is the policy's expression. With TenantSetting unset,
	// current_setting(..., true) is NULL (or '' once set earlier in the session) and no row
	// matches: a read that forgot to name its tenant sees nothing.
	TenantPolicyUsing = "tenant_id = current_setting('" + TenantSetting + "', true)"
)

// ErrNoTenant is returned by ReadAsTenant for an empty tenant.
var ErrNoTenant = errors.New("a tenant-scoped read needs a tenant")

// TxBeginner is a pool or a connection.
type TxBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// ReadAsTenant runs fn in a read-only transaction as ReaderRole with TenantSetting set to
// tenant, so row-level security shows fn only tenant's rows of the read models (and no table
// without a tenant_id column at all: ReaderRole holds no privilege on them). The role and the
// setting are local to the transaction, which is always ended (committed when fn succeeds,
// rolled back otherwise) before ReadAsTenant returns, so the connection goes back to the pool
// as the owner again. fn must not keep tx.
//
// Cost: one round trip more than a bare query in a transaction (both settings are set by one
// statement); measured with BenchmarkQueryMonthByServiceRLS in projections/ledger.
func ReadAsTenant(ctx context.Context, db TxBeginner, tenant string, fn func(tx pgx.Tx) error) error {
	return ReadAsTenantTx(ctx, db, tenant, pgx.TxOptions{}, fn)
}

// ReadAsTenantTx is ReadAsTenant with the transaction's options (such as IsoLevel
// pgx.RepeatableRead, for a read that must see one snapshot across several queries). The
// transaction is read-only whatever opts.AccessMode says.
func ReadAsTenantTx(ctx context.Context, db TxBeginner, tenant string, opts pgx.TxOptions, fn func(tx pgx.Tx) error) (err error) {
	if tenant == "" {
		return ErrNoTenant
	}
	opts.AccessMode = pgx.ReadOnly
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin read for tenant %q: %w", tenant, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	// set_config('role', ...) is SET LOCAL ROLE as a function, so that both settings travel
	// in one statement with the tenant as a parameter.
	if _, err := tx.Exec(ctx, "SELECT set_config('role', $1, true), set_config($2, $3, true)",
		ReaderRole, TenantSetting, tenant); err != nil {
		return fmt.Errorf("switch to role %s for tenant %q (is migration 00004 applied, and %s granted to the role Tally connects as?): %w",
			ReaderRole, tenant, ReaderRole, err)
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("end read for tenant %q: %w", tenant, err)
	}
	return nil
}
