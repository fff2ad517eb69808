package projections_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/closepkg"
	"github.com/tally-ledger/tally/projections/ledger"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage"
	"github.com/tally-ledger/tally/storage/pgtest"
)

var tenants = []string{"acme", "globex"}

// mustHaveRows are the read-model tables the events of tenantEvents fill for each tenant: the
// wall is checked on every tenant table, and these must not pass for want of rows.
var mustHaveRows = []string{
	"ledger.lines", "ledger.line_history", "ledger.daily", "ledger.finalized_scopes", "ledger.fx_rates",
	"closepkg.line_events", "closepkg.finalized", "closepkg.invoices", "closepkg.closes",
	"probe.notes",
}

// TestTenantWall: as storage.ReaderRole, with tally.tenant set, a SELECT * of every read-model
// table with a tenant_id column returns exactly that tenant's rows and none of the other's;
// with no tenant set it returns none; tables without tenant_id, partitions and Tally's own
// tables are refused outright. The wall survives a rebuild's schema swap, and a read model the
// runner has never seen before (probe) gets it without doing anything.
func TestTenantWall(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	srv := natstest.Run(t, natstest.NoSyncAlways())
	pool, _ := pgtest.NewDB(t)
	for _, tenant := range tenants {
		_, err := srv.Store().Append(ctx, tenant, tenantEvents(tenant))
		require.NoError(t, err)
	}
	r, err := projections.NewRunner(pool, srv.Store(), projections.Options{}, ledger.New(), closepkg.New(), probe{})
	require.NoError(t, err)
	require.NoError(t, r.CatchUp(ctx))
	checkWall(t, ctx, pool)

	for _, name := range []string{ledger.Name, closepkg.Name, "probe"} {
		before := schemaOID(t, ctx, pool, name)
		require.NoError(t, r.Rebuild(ctx, name, nil))
		require.NotEqual(t, before, schemaOID(t, ctx, pool, name), "%s: the rebuild swapped in a new schema", name)
	}
	checkWall(t, ctx, pool)

	// A live schema set up before the wall existed gets it when the runner starts.
	_, err = pool.Exec(ctx, `DROP POLICY tenant_isolation ON ledger.daily;
		ALTER TABLE ledger.daily DISABLE ROW LEVEL SECURITY;
		REVOKE SELECT ON ledger.daily FROM tally_reader; REVOKE USAGE ON SCHEMA ledger FROM tally_reader`)
	require.NoError(t, err)
	var n int
	require.Error(t, storage.ReadAsTenant(ctx, pool, "acme", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT count(*) FROM ledger.daily").Scan(&n)
	}), "no grant: refused")
	require.NoError(t, r.Setup(ctx))
	checkWall(t, ctx, pool)
}

func TestReadAsTenantNeedsATenant(t *testing.T) {
	pool, _ := pgtest.NewDB(t)
	called := false
	err := storage.ReadAsTenant(t.Context(), pool, "", func(pgx.Tx) error { called = true; return nil })
	require.ErrorIs(t, err, storage.ErrNoTenant)
	require.False(t, called)
}

// checkWall checks the wall on every tenant table of every projection schema.
func checkWall(t *testing.T, ctx context.Context, pool *pgxpool.Pool) {
	t.Helper()
	tables := tenantTables(t, ctx, pool)
	for _, want := range mustHaveRows {
		require.Contains(t, tables, want)
	}
	for _, table := range tables {
		owner := map[string]int{} // what the owner, who is not subject to the policies, sees
		for _, tenant := range tenants {
			var n int
			require.NoError(t, pool.QueryRow(ctx, "SELECT count(*)::int FROM "+table+" WHERE tenant_id = $1", tenant).Scan(&n))
			owner[tenant] = n
		}
		if slices.Contains(mustHaveRows, table) {
			require.Positive(t, owner["acme"], "%s has rows of acme", table)
			require.Positive(t, owner["globex"], "%s has rows of globex", table)
		}
		for _, tenant := range tenants {
			var seen []string
			var other int
			err := storage.ReadAsTenant(ctx, pool, tenant, func(tx pgx.Tx) error {
				rows, err := tx.Query(ctx, "SELECT * FROM "+table)
				if err != nil {
					return err
				}
				maps, err := pgx.CollectRows(rows, pgx.RowToMap)
				if err != nil {
					return err
				}
				for _, m := range maps {
					seen = append(seen, m["tenant_id"].(string))
				}
				return tx.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE tenant_id <> $1", tenant).Scan(&other)
			})
			require.NoError(t, err, "%s as %s", table, tenant)
			require.Len(t, seen, owner[tenant], "%s as %s: every row of the tenant", table, tenant)
			for _, s := range seen {
				require.Equal(t, tenant, s, "%s as %s", table, tenant)
			}
			require.Zero(t, other, "%s as %s: no row of another tenant, even when asked for", table, tenant)
		}

		// The role with no tenant set sees nothing.
		tx, err := pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		require.NoError(t, err)
		_, err = tx.Exec(ctx, "SET LOCAL ROLE "+storage.ReaderRole)
		require.NoError(t, err)
		var n int
		require.NoError(t, tx.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n))
		require.Zero(t, n, "%s with no tenant set", table)
		require.NoError(t, tx.Rollback(ctx))
	}

	// Refused outright: a table without tenant_id, a partition read directly (reads go
	// through the partitioned table and its policy), Tally's own tables, and writes.
	partition := ""
	require.NoError(t, pool.QueryRow(ctx, `SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'ledger.lines'::regclass LIMIT 1`).Scan(&partition))
	for _, sql := range []string{
		"SELECT * FROM probe.settings",
		"SELECT * FROM " + partition,
		"SELECT * FROM public.tokens",
		"SELECT * FROM public.ingest_lines",
		"SELECT * FROM public.projection_checkpoints",
		"INSERT INTO probe.notes VALUES ('acme', 'x')",
	} {
		err := storage.ReadAsTenant(ctx, pool, "acme", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, sql)
			return err
		})
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr, sql)
		require.Contains(t, []string{"42501", "25006"}, pgErr.Code, "%s: permission denied or read-only: %v", sql, err)
	}
	// The role and the tenant end with the transaction: the pooled connection is the owner
	// again.
	for range 8 {
		var user, tenant string
		require.NoError(t, pool.QueryRow(ctx, "SELECT current_user::text, coalesce(current_setting('tally.tenant', true), '')").Scan(&user, &tenant))
		require.NotEqual(t, storage.ReaderRole, user)
		require.Empty(t, tenant)
	}
}

// tenantTables lists schema.table of every table with a tenant_id column in the projections'
// schemas, partitions left out.
func tenantTables(t *testing.T, ctx context.Context, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT n.nspname || '.' || c.relname
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
		WHERE n.nspname IN ('ledger', 'closepkg', 'probe') AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		ORDER BY 1`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

func schemaOID(t *testing.T, ctx context.Context, pool *pgxpool.Pool, schema string) uint32 {
	t.Helper()
	var oid uint32
	require.NoError(t, pool.QueryRow(ctx, "SELECT oid FROM pg_namespace WHERE nspname = $1", schema).Scan(&oid))
	return oid
}

// probe is a read model the runner knows nothing about: one table with tenant_id, one without.
type probe struct{}

func (probe) Name() string    { return "probe" }
func (probe) Version() int    { return 1 }
func (probe) Kinds() []string { return []string{"cost_line_recorded"} }
func (probe) Setup(ctx context.Context, tx pgx.Tx, schema string) error {
	s := pgx.Identifier{schema}.Sanitize()
	_, err := tx.Exec(ctx, `CREATE TABLE `+s+`.notes (tenant_id text NOT NULL, note text NOT NULL);
		CREATE TABLE `+s+`.settings (key text PRIMARY KEY, value text NOT NULL);
		INSERT INTO `+s+`.settings VALUES ('shared', 'by every tenant')`)
	return err
}

func (probe) Apply(ctx context.Context, tx pgx.Tx, schema string, events []eventstore.Event) error {
	var tenantIDs, notes []string
	for _, ev := range events {
		tenantIDs = append(tenantIDs, ev.Envelope.GetTenantId())
		notes = append(notes, ev.Envelope.GetCostLineRecorded().GetLine().GetLineKey())
	}
	_, err := tx.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "notes"}.Sanitize()+` SELECT * FROM unnest($1::text[], $2::text[])`, tenantIDs, notes)
	if err != nil {
		return errors.Join(fmt.Errorf("probe fold"), err)
	}
	return nil
}

var jan = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// tenantEvents fills every table of the ledger and the close package for tenant: lines in
// two months (two partitions), a restatement, a finalized bill, an FX rate, an invoice and a
// close.
func tenantEvents(tenant string) []*tallyv1.Envelope {
	scope := func(m time.Time) *tallyv1.BillScope {
		return &tallyv1.BillScope{Provider: "AWS", BillingAccountId: "acct-" + tenant,
			BillingPeriodStart: timestamppb.New(m), BillingPeriodEnd: timestamppb.New(m.AddDate(0, 1, 0))}
	}
	line := func(m time.Time, key, billed string) *tallyv1.CostLine {
		return &tallyv1.CostLine{LineKey: key, Scope: scope(m), ServiceName: "EC2", RegionId: "us-east-1", ChargeCategory: "Usage",
			ChargePeriodStart: timestamppb.New(m), ChargePeriodEnd: timestamppb.New(m.Add(24 * time.Hour)),
			BilledCost: billed, EffectiveCost: billed, ListCost: billed, ContractedCost: billed, ConsumedQuantity: "1",
			BillingCurrency: "EUR", Tags: []*tallyv1.KeyValue{{Key: "team", Value: tenant}}}
	}
	env := func(key string) *tallyv1.Envelope {
		return &tallyv1.Envelope{EventId: eventstore.DeterministicID(tenant, key), TenantId: tenant, IdempotencyKey: key,
			OccurredAt: timestamppb.New(jan), Actor: &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_USER, Id: "clerk"}}
	}
	var out []*tallyv1.Envelope
	for i, m := range []time.Time{jan, jan.AddDate(0, 1, 0)} {
		e := env(fmt.Sprint("rec/", i))
		e.Body = &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: line(m, fmt.Sprint("line-", i), "10.00")}}
		out = append(out, e)
	}
	e := env("res/0")
	e.Body = &tallyv1.Envelope_CostLineRestated{CostLineRestated: &tallyv1.CostLineRestated{Line: line(jan, "line-0", "12.00"),
		PreviousEventId: out[0].GetEventId(),
		Delta:           &tallyv1.CostDelta{BilledCost: "2.00", EffectiveCost: "2.00", ListCost: "2.00", ContractedCost: "2.00", BillingCurrency: "EUR"}}}
	out = append(out, e)
	e = env("fin")
	e.Body = &tallyv1.Envelope_BillingPeriodFinalized{BillingPeriodFinalized: &tallyv1.BillingPeriodFinalized{Scope: scope(jan)}}
	out = append(out, e)
	e = env("fx")
	e.Body = &tallyv1.Envelope_FxRateRecorded{FxRateRecorded: &tallyv1.FxRateRecorded{FromCurrency: "EUR", ToCurrency: "USD",
		Rate: "1.08", Date: "2026-01-01", Source: "test"}}
	out = append(out, e)
	e = env("inv")
	e.Body = &tallyv1.Envelope_InvoiceRecorded{InvoiceRecorded: &tallyv1.InvoiceRecorded{InvoiceId: "INV-" + tenant, Amount: "12.00",
		Currency: "EUR", IssuedAt: timestamppb.New(jan.AddDate(0, 1, 2)), Scope: scope(jan)}}
	out = append(out, e)
	e = env("close")
	e.Body = &tallyv1.Envelope_PeriodClosed{PeriodClosed: &tallyv1.PeriodClosed{Period: "2026-01",
		Approver: &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_USER, Id: "controller"}}}
	out = append(out, e)
	return out
}
