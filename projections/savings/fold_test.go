package savings_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/projections/savings"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage"
)

// history is every scenario of this package's tests in one log, for two tenants, with a
// redefinition of an action (other windows) and lines without a resource.
func history(t *testing.T, e env) {
	t.Helper()
	oct := sep.AddDate(0, 1, 0)
	for _, tenant := range []string{"acme", "globex"} {
		e.add(t, tenant, stopAction())
		e.add(t, tenant, stopBill()...)
		e.add(t, tenant, recorded(costLine(sep, "", day(12), "7.00", "no-resource")))
		e.add(t, tenant, finalized(sep))
		e.add(t, tenant, restated(costLine(sep, "i-web", day(12), "3.60", "i-web-12"), 1),
			restated(costLine(sep, "i-web", day(13), "0.10", "i-web-13"), 1))
		e.add(t, tenant, retracted(costLine(sep, "i-web", day(4), "10.00", "i-web-04")))
		// Redefined: a 3-day baseline this time (04..09 → 07..09).
		redo := stopAction()
		redo.GetRemediationExecuted().BaselineDays = 3
		redo.IdempotencyKey += "/v2"
		e.add(t, tenant, redo)
		e.add(t, tenant, remediation(&tallyv1.RemediationExecuted{ActionId: "act-late", BillingAccountId: account, ResourceId: "i-web",
			Kind: tallyv1.RemediationKind_REMEDIATION_KIND_SCHEDULE, ExecutedAt: timestamppb.New(day(28))}))
		e.add(t, tenant, recorded(costLine(oct, "i-web", oct, "0.50", "i-web-oct-1")), finalized(oct))
	}
}

// TestBatchCutDeterminism: the same log folded one event per batch, all at once, and by the
// runner in batches of whole log messages gives identical rows in every table, history
// included.
func TestBatchCutDeterminism(t *testing.T) {
	e := newEnv(t)
	history(t, e)
	events := logEvents(t, e.store)
	require.Greater(t, len(events), 100)

	foldDirect(t, e.pool, "one_by_one", events, 1)
	foldDirect(t, e.pool, "all_at_once", events, 0)
	foldDirect(t, e.pool, "by_seven", events, 7)
	e.catchUp(t, 1)

	want := dump(t, e.pool, "one_by_one")
	require.NotEmpty(t, want["history"])
	require.NotEmpty(t, want["lines"])
	for _, schema := range []string{"all_at_once", "by_seven", savings.Name} {
		require.Equal(t, want, dump(t, e.pool, schema), schema)
	}

	// The redefined action: revision per remediation event, and its figures from a 3-day
	// baseline after the retraction of 09-04 (outside it now):
	// baseline 09-07..09-09 = 3 × 10.00 = 30, daily 10;
	// measurement 09-11..17 = 0.80 + 3.60 + 0.10 + 4 × 0.80 = 7.70, daily 7.70 / 7 = 1.1;
	// realized 10 − 1.1 = 8.9; monthly 8.9 × 30.4375 = 270.89375.
	a, h := e.get(t, "globex", "act-stop-web")
	require.Equal(t, savings.StatusMeasured, a.Status)
	require.Equal(t, &savings.Window{Start: "2024-09-07", End: "2024-09-09", Days: 3}, a.Baseline)
	require.Equal(t, "30", a.BaselineTotal)
	require.Equal(t, "7.7", a.MeasurementTotal)
	require.Equal(t, "8.9", a.RealizedDaily)
	require.Equal(t, "270.89375", a.RealizedMonthly)
	kinds := []string{}
	for _, r := range h {
		kinds = append(kinds, r.EventKind)
	}
	// Defined (pending), finalized (measured), two restatements (each a revision), the
	// retraction of 09-04 (baseline 72.50 → 62.50), redefined.
	require.Equal(t, []string{"remediation_executed", "billing_period_finalized", "cost_line_restated", "cost_line_restated",
		"cost_line_retracted", "remediation_executed"}, kinds)

	// An action spanning two bills: pending until October is final, measured after.
	// baseline 09-21..27 = 7 × 0.80 = 5.6; measurement 09-29..10-05 = 09-29, 09-30, 10-01 =
	// 0.80 + 0.80 + 0.50 = 2.1; daily 0.8 and 0.3; realized 0.5; monthly 15.21875.
	late, lh := e.get(t, "acme", "act-late")
	require.Equal(t, savings.StatusMeasured, late.Status)
	require.Equal(t, "2.1", late.MeasurementTotal)
	require.Equal(t, "0.5", late.RealizedDaily)
	require.Equal(t, "15.21875", late.RealizedMonthly)
	require.Len(t, lh, 2)
}

// TestTenantWall: read through storage.ReadAsTenant (as the gateway does), a tenant's queries
// see only its own rows even when the SQL is given another tenant.
func TestTenantWall(t *testing.T) {
	e := newEnv(t)
	e.add(t, "acme", stopAction())
	e.add(t, "globex", stopAction())
	e.catchUp(t, 100)
	err := storage.ReadAsTenant(ctxT(t), e.pool, "acme", func(tx pgx.Tx) error {
		q := savings.NewQueries(tx)
		own, err := q.List(ctxT(t), savings.Filter{Tenant: "acme"})
		require.NoError(t, err)
		require.Len(t, own, 1)
		other, err := q.List(ctxT(t), savings.Filter{Tenant: "globex"})
		require.NoError(t, err)
		require.Empty(t, other, "row-level security hides globex's actions")
		_, _, err = q.Get(ctxT(t), "globex", "act-stop-web")
		require.ErrorIs(t, err, savings.ErrNotFound)
		return nil
	})
	require.NoError(t, err)
}

func TestQueriesRefuseBadInput(t *testing.T) {
	e := newEnv(t)
	e.catchUp(t, 100)
	ctx := ctxT(t)
	for _, f := range []savings.Filter{
		{Tenant: ""}, {Tenant: "Acme.*"}, {Tenant: "acme", Period: "2024-13"}, {Tenant: "acme", Period: "2024-9"},
		{Tenant: "acme", Status: "saved"},
	} {
		_, err := e.q.List(ctx, f)
		require.ErrorIs(t, err, savings.ErrInvalid, "%+v", f)
	}
	_, _, err := e.q.Get(ctx, "acme", "")
	require.ErrorIs(t, err, savings.ErrInvalid)
	_, _, err = e.q.Get(ctx, "acme", "nope")
	require.ErrorIs(t, err, savings.ErrNotFound)
	_, _, err = e.q.Evidence(ctx, "acme", "nope")
	require.ErrorIs(t, err, savings.ErrNotFound)
	require.ErrorIs(t, e.q.WriteCSV(ctx, &discard{}, "acme", "24-09"), savings.ErrInvalid)
	require.ErrorIs(t, e.q.WriteEvidenceCSV(ctx, &discard{}, "_system", "x"), savings.ErrInvalid)
}

type discard struct{}

func (*discard) Write(p []byte) (int, error) { return len(p), nil }

// TestUnmeasurable: an action without an execution time, and one whose final lines are in two
// currencies, are unmeasurable, with the reason.
func TestUnmeasurable(t *testing.T) {
	e := newEnv(t)
	e.add(t, "acme", remediation(&tallyv1.RemediationExecuted{ActionId: "no-time", ResourceId: "i-1",
		Kind: tallyv1.RemediationKind_REMEDIATION_KIND_DELETE}))
	e.add(t, "acme", stopAction())
	eur := costLine(sep, "i-web", day(5), "9.00", "i-web-eur")
	eur.BillingCurrency = "EUR"
	e.add(t, "acme", append(stopBill(), recorded(eur), finalized(sep))...)
	e.catchUp(t, 100)
	a, _ := e.get(t, "acme", "no-time")
	require.Equal(t, savings.StatusUnmeasurable, a.Status)
	require.Equal(t, "the action has no executed_at", a.Reason)
	require.Nil(t, a.Baseline)
	a, _ = e.get(t, "acme", "act-stop-web")
	require.Equal(t, savings.StatusUnmeasurable, a.Status)
	require.Equal(t, "final lines in more than one currency: EUR, USD", a.Reason)
}

// TestRealizeRounding: the three rounding places, half away from zero at 10 places.
func TestRealizeRounding(t *testing.T) {
	d := decimal.RequireFromString
	for _, tc := range []struct {
		name           string
		base, meas     string
		bDays, mDays   int
		bd, md, rd, rm string
	}{
		// 10 / 3 = 3.33333333333...; 2 / 3 = 0.6666666666|6... rounds up; 3.3333333333 − 0.6666666667.
		{"thirds", "10", "2", 3, 3, "3.3333333333", "0.6666666667", "2.6666666666", "81.1666666646"},
		// An exact half at the 11th place rounds away from zero, both signs:
		// 0.0000000001 / 2 = 0.00000000005 → 0.0000000001; −0.00000000005 → −0.0000000001.
		{"half up", "0.0000000001", "0", 2, 1, "0.0000000001", "0", "0.0000000001", "0.0000000030"},
		{"half down negative", "0", "0.0000000001", 1, 2, "0", "0.0000000001", "-0.0000000001", "-0.000000003"},
		// A cost increase stays negative: 7 / 7 − 14 / 7 = −1; × 30.4375.
		{"increase", "7", "14", 7, 7, "1", "2", "-1", "-30.4375"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bd, md, rd, rm := savings.Realize(d(tc.base), d(tc.meas), tc.bDays, tc.mDays)
			require.True(t, d(tc.bd).Equal(bd), "baseline daily %s", bd)
			require.True(t, d(tc.md).Equal(md), "measurement daily %s", md)
			require.True(t, d(tc.rd).Equal(rd), "realized daily %s", rd)
			require.True(t, d(tc.rm).Equal(rm), "realized monthly %s", rm)
		})
	}
	// 2.6666666666 × 30.4375 = 81.16666666458... → 81.1666666646.
	require.Equal(t, "81.1666666646", d("2.6666666666").Mul(savings.MonthlyMultiplier).Round(savings.Places).String())
}
