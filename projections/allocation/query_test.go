package allocation_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/projections/allocation"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage"
)

// monthOfLines: every day of September, a 10.00 team=web line and a 5.00 untagged line, all
// allocated to "shared" by the rule "all".
func monthOfLines(t *testing.T, e env, tenant string) {
	t.Helper()
	events := []*tallyv1.Envelope{ruleSet(tenant, rule("all", 1, 100, 1, direct, "shared", ""))}
	for day := 1; day <= 30; day++ {
		events = append(events,
			recorded(tenant, costLine(fmt.Sprintf("w%02d", day), day, "Amazon EC2", "10.00", "team=web")),
			recorded(tenant, costLine(fmt.Sprintf("o%02d", day), day, "Amazon S3", "5.00")))
	}
	appendAll(t, e.store, tenant, events...)
	catchUp(t, e.store, e.pool, 1000)
}

func moves(ms []allocation.Movement) map[string][3]string {
	out := map[string][3]string{}
	for _, m := range ms {
		out[m.CostCenter] = [3]string{m.Before.String(), m.After.String(), m.Delta.String()}
	}
	return out
}

func TestDryRun(t *testing.T) {
	e := newEnv(t)
	const tenant = "acme"
	monthOfLines(t, e, tenant)
	q := allocation.NewQueries(e.pool)
	before := dump(t, e.pool, "allocation")

	// A rule for team=web from September 15: 16 days (15..30) * 10.00 = 160.00 move from
	// "shared" to "web"; September's total is 30 * 15.00 = 450.00.
	web := rule("web", 1, 10, 15, direct, "web", "")
	web.Match.Tags = []*tallyv1.KeyValue{{Key: "team", Value: "web"}}
	ms, err := q.DryRun(ctxT(t), tenant, "2024-09", allocation.Change{Set: web})
	require.NoError(t, err)
	require.Equal(t, map[string][3]string{
		"shared": {"450", "290", "-160"},
		"web":    {"0", "160", "160"},
	}, moves(ms))

	// Retiring "all" from September 21 leaves 10 days * 15.00 = 150.00 unallocated ("").
	ms, err = q.DryRun(ctxT(t), tenant, "2024-09", allocation.Change{Retire: &tallyv1.AllocationRuleRetired{
		RuleId: "all", EffectiveTo: timestamppb.New(sep(21))}})
	require.NoError(t, err)
	require.Equal(t, map[string][3]string{
		"":       {"0", "150", "150"},
		"shared": {"450", "300", "-150"},
	}, moves(ms))

	// Another period: October has no lines, nothing moves.
	ms, err = q.DryRun(ctxT(t), tenant, "2024-10", allocation.Change{Set: web})
	require.NoError(t, err)
	require.Empty(t, ms)

	require.Equal(t, before, dump(t, e.pool, "allocation"), "dry runs write nothing")
	var n int
	require.NoError(t, e.pool.QueryRow(ctxT(t), `SELECT count(*) FROM allocation.rules`).Scan(&n))
	require.Equal(t, 1, n)

	// Refusals.
	_, err = q.DryRun(ctxT(t), tenant, "2024-09", allocation.Change{Retire: &tallyv1.AllocationRuleRetired{
		RuleId: "nope", EffectiveTo: timestamppb.New(sep(21))}})
	require.ErrorIs(t, err, allocation.ErrUnknownRule)
	bad := rule("web", 1, 10, 15, pct, "web", "60", "data", "30")
	_, err = q.DryRun(ctxT(t), tenant, "2024-09", allocation.Change{Set: bad})
	var re *allocation.RuleError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "shares", re.Field)
	require.ErrorIs(t, err, allocation.ErrInvalidRule)
	for _, c := range []allocation.Change{{}, {Set: web, Retire: &tallyv1.AllocationRuleRetired{RuleId: "all"}}} {
		_, err = q.DryRun(ctxT(t), tenant, "2024-09", c)
		requireField(t, err, "change")
	}
	_, err = q.DryRun(ctxT(t), tenant, "2024-09", allocation.Change{Retire: &tallyv1.AllocationRuleRetired{RuleId: "all"}})
	require.ErrorAs(t, err, &re)
	require.Equal(t, "effective_to", re.Field)
}

func requireField(t *testing.T, err error, field string) {
	t.Helper()
	var qe *allocation.QueryError
	require.True(t, errors.As(err, &qe), "%v", err)
	require.Equal(t, field, qe.Field, "%v", err)
	require.ErrorIs(t, err, allocation.ErrInvalidQuery)
}

func TestQueriesRefuse(t *testing.T) {
	e := newEnv(t)
	q := allocation.NewQueries(e.pool)
	ctx := ctxT(t)
	tests := []struct {
		name, field string
		call        func() error
	}{
		{"bad tenant", "tenant", func() error {
			_, err := q.Allocated(ctx, "Not A Tenant", sep(1), sep(2), allocation.ByCostCenter)
			return err
		}},
		{"empty range", "to", func() error {
			_, err := q.Allocated(ctx, "acme", sep(2), sep(2), allocation.ByCostCenter)
			return err
		}},
		{"reversed range", "to", func() error {
			_, err := q.Unallocated(ctx, "acme", sep(3), sep(2), 5)
			return err
		}},
		{"negative top", "top", func() error {
			_, err := q.Unallocated(ctx, "acme", sep(1), sep(2), -1)
			return err
		}},
		{"period without leading zero", "period", func() error {
			_, err := q.Coverage(ctx, "acme", "2024-9")
			return err
		}},
		{"month 13", "period", func() error {
			_, err := q.Coverage(ctx, "acme", "2024-13")
			return err
		}},
		{"coverage tenant", "tenant", func() error {
			_, err := q.Coverage(ctx, "", "2024-09")
			return err
		}},
		{"csv period", "period", func() error { return q.WriteCSV(ctx, &bytes.Buffer{}, "acme", "September") }},
		{"rule versions tenant", "tenant", func() error {
			_, err := q.RuleVersions(ctx, "_system", time.Now())
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { requireField(t, tt.call(), tt.field) })
	}
}

func TestWriteCSV(t *testing.T) {
	e := newEnv(t)
	const tenant = "acme"
	sixty := rule("ec2", 1, 10, 1, pct, "web", "60", "data", "40")
	sixty.Match.ServiceName = "Amazon EC2"
	appendAll(t, e.store, tenant, ruleSet(tenant, sixty),
		recorded(tenant, costLine("a", 2, "Amazon EC2", "100.00")),
		recorded(tenant, costLine("b", 2, "Amazon S3", "1.25")),
		recorded(tenant, costLine("c", 3, "Amazon EC2", "0.01")),
		recorded(tenant, costLine("d", 3, "Amazon S3", "-0.50")),
		recorded(tenant, costLine("e", 30, "Amazon EC2", "7.00")),
		recorded(tenant, costLine("october", 31, "Amazon EC2", "9.00")))
	catchUp(t, e.store, e.pool, 100)
	var buf bytes.Buffer
	require.NoError(t, allocation.NewQueries(e.pool).WriteCSV(ctxT(t), &buf, tenant, "2024-09"))
	// 0.01 split 60/40: 1 cent, quotas 0.6 and 0.4: the cent goes to the larger remainder (web).
	require.Equal(t, `record,day,cost_center,currency,rule_id,rule_version,service_name,amount
allocated,2024-09-02,data,USD,ec2,1,,40
allocated,2024-09-02,web,USD,ec2,1,,60
allocated,2024-09-03,data,USD,ec2,1,,0
allocated,2024-09-03,web,USD,ec2,1,,0.01
allocated,2024-09-30,data,USD,ec2,1,,2.8
allocated,2024-09-30,web,USD,ec2,1,,4.2
unallocated,2024-09-02,,USD,,,Amazon S3,1.25
unallocated,2024-09-03,,USD,,,Amazon S3,-0.5
`, buf.String())
	// Another tenant's file has the header only.
	buf.Reset()
	require.NoError(t, allocation.NewQueries(e.pool).WriteCSV(ctxT(t), &buf, "globex", "2024-09"))
	require.Equal(t, "record,day,cost_center,currency,rule_id,rule_version,service_name,amount\n", buf.String())
}

// TestTenantIsolation: a tenant's rules never allocate another tenant's lines, and queries
// see only their tenant.
func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	appendAll(t, e.store, "acme", ruleSet("acme", rule("all", 1, 1, 1, direct, "acme-cc", "")),
		recorded("acme", costLine("a", 2, "Amazon EC2", "1.00")))
	appendAll(t, e.store, "globex", recorded("globex", costLine("a", 2, "Amazon EC2", "2.00")))
	catchUp(t, e.store, e.pool, 100)
	q := allocation.NewQueries(e.pool)
	cov, err := q.Coverage(ctxT(t), "globex", "2024-09")
	require.NoError(t, err)
	require.Equal(t, "0", cov.Currencies[0].Allocated.String())
	require.Equal(t, "2", cov.Currencies[0].Unallocated.String())
	cov, err = q.Coverage(ctxT(t), "acme", "2024-09")
	require.NoError(t, err)
	require.Equal(t, "100", cov.Currencies[0].Percent.String())
	require.Equal(t, "1", cov.Currencies[0].Total.String())

	// The second wall: read as globex, a query with no tenant filter sees only globex's rows.
	for table, want := range map[string]int{"lines": 1, "unallocated_daily": 1, "allocated_daily": 0, "rules": 0} {
		var n int
		require.NoError(t, storage.ReadAsTenant(ctxT(t), e.pool, "globex", func(tx pgx.Tx) error {
			return tx.QueryRow(ctxT(t), "SELECT count(*) FROM allocation."+table).Scan(&n)
		}))
		require.Equal(t, want, n, table)
	}
}
