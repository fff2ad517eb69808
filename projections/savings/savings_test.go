package savings_test

import (
	"bytes"
	"encoding/csv"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/projections/savings"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// stopAction stops i-web on 2024-09-10 at 14:00 UTC, with the default windows:
// baseline 09-03..09-09, gap 09-10, measurement 09-11..09-17.
func stopAction() *tallyv1.Envelope {
	return remediation(&tallyv1.RemediationExecuted{ActionId: "act-stop-web", BillingAccountId: account, ResourceId: "i-web",
		Kind: tallyv1.RemediationKind_REMEDIATION_KIND_STOP, ExpectedDailySavings: "10", Currency: "USD",
		ExecutedAt: timestamppb.New(day(10).Add(14 * time.Hour)), Tool: "optimizer", Description: "stop idle web server"})
}

// stopBill is September's lines of i-web (and of a neighbour that must not count):
//
//	09-02         10.00   before the baseline: not counted
//	09-03..09-09  10.00 a day, but 09-06 12.50            baseline: 6 × 10.00 + 12.50 = 72.50
//	09-10          6.00   the action day (the gap): not counted
//	09-11..09-17   0.80 a day (the stopped instance's volume)  measurement: 7 × 0.80 = 5.60
//	09-18..09-30   0.80 a day, after the measurement window: not counted
//	i-db          50.00 a day, 09-01..09-30: another resource, not counted
func stopBill() []*tallyv1.Envelope {
	var evs []*tallyv1.Envelope
	evs = append(evs, daily("i-web", 2, 5, "10.00")...)
	evs = append(evs, recorded(costLine(sep, "i-web", day(6), "12.50", "i-web-06")))
	evs = append(evs, daily("i-web", 7, 9, "10.00")...)
	evs = append(evs, recorded(costLine(sep, "i-web", day(10), "6.00", "i-web-10")))
	evs = append(evs, daily("i-web", 11, 30, "0.80")...)
	evs = append(evs, daily("i-db", 1, 30, "50.00")...)
	return evs
}

// TestStopActionRealizedSaving: a stop action measured from the final bill, then a restatement
// inside its measurement window changes the figure, and the history shows both.
func TestStopActionRealizedSaving(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	const tenant = "acme"
	e.add(t, tenant, stopAction())
	e.add(t, tenant, stopBill()...)
	e.catchUp(t, 10)

	// Lines arrived but the bill is preliminary: pending, no figures.
	a, h := e.get(t, tenant, "act-stop-web")
	require.Equal(t, savings.StatusPending, a.Status)
	require.Contains(t, a.Reason, "14 of 14 window days not covered by a finalized bill")
	require.Empty(t, a.RealizedDaily)
	require.Len(t, h, 1, "the action's own event; lines that leave it pending change nothing")

	e.add(t, tenant, finalized(sep))
	e.catchUp(t, 10)
	a, h = e.get(t, tenant, "act-stop-web")
	// baseline_daily    = 72.50 / 7 = 10.357142857142857... → 10.3571428571 (10 places)
	// measurement_daily =  5.60 / 7 = 0.8
	// realized_daily    = 10.3571428571 − 0.8 = 9.5571428571
	// realized_monthly  = 9.5571428571 × 30.4375 = 290.89553571298125 → 290.895535713
	require.Equal(t, savings.StatusMeasured, a.Status)
	require.Equal(t, "USD", a.Currency)
	require.Equal(t, "72.5", a.BaselineTotal)
	require.Equal(t, "5.6", a.MeasurementTotal)
	require.Equal(t, 7, a.BaselineLines)
	require.Equal(t, 7, a.MeasurementLines)
	require.Equal(t, "10.3571428571", a.BaselineDaily)
	require.Equal(t, "0.8", a.MeasurementDaily)
	require.Equal(t, "9.5571428571", a.RealizedDaily)
	require.Equal(t, "290.895535713", a.RealizedMonthly)
	require.Equal(t, "30.4375", a.MonthlyMultiplier)
	require.Equal(t, &savings.Window{Start: "2024-09-03", End: "2024-09-09", Days: 7}, a.Baseline)
	require.Equal(t, &savings.Window{Start: "2024-09-11", End: "2024-09-17", Days: 7}, a.Measurement)
	require.Equal(t, "10", a.ExpectedDailySavings)
	require.Equal(t, "stop", a.Kind)
	require.Equal(t, "ACTOR_KIND_SERVICE", a.ActorKind)
	require.Equal(t, "optimizer", a.ActorID)
	require.Equal(t, "2024-09", a.Period)
	require.Len(t, h, 2)
	require.Equal(t, "billing_period_finalized", h[1].EventKind)

	// The provider restates 09-12 from 0.80 to 3.60 (after finalization: a change to final
	// data, counted at once):
	// measurement_total = 5.60 − 0.80 + 3.60 = 8.40; measurement_daily = 8.40 / 7 = 1.2
	// realized_daily    = 10.3571428571 − 1.2 = 9.1571428571
	// realized_monthly  = 9.1571428571 × 30.4375 = 278.72053571298125 → 278.720535713
	e.add(t, tenant, restated(costLine(sep, "i-web", day(12), "3.60", "i-web-12"), 1))
	e.catchUp(t, 10)
	a, h = e.get(t, tenant, "act-stop-web")
	require.Equal(t, "8.4", a.MeasurementTotal)
	require.Equal(t, "1.2", a.MeasurementDaily)
	require.Equal(t, "9.1571428571", a.RealizedDaily)
	require.Equal(t, "278.720535713", a.RealizedMonthly)
	require.Equal(t, "pending: measured:9.5571428571 measured:9.1571428571", statuses(h), "the history shows before and after")
	require.Equal(t, "cost_line_restated", h[2].EventKind)
	require.Equal(t, h[2].EventID, a.UpdatedEventID)
	require.Equal(t, 3, a.Revision)
	require.Greater(t, h[2].TenantSeq, h[1].TenantSeq)

	// Evidence: the final lines of each window, which sum to the window totals.
	_, lines, err := e.q.Evidence(ctx, tenant, "act-stop-web")
	require.NoError(t, err)
	require.Len(t, lines, 14)
	sums := map[string]decimal.Decimal{}
	for _, l := range lines {
		require.True(t, l.Final)
		require.Equal(t, "i-web", l.ResourceID)
		sums[l.Window] = sums[l.Window].Add(decimal.RequireFromString(l.EffectiveCost))
	}
	require.Equal(t, "72.5", sums["baseline"].String())
	require.Equal(t, "8.4", sums["measurement"].String())
	require.Equal(t, "2024-09-03", lines[0].Day)
	require.Equal(t, "2024-09-17", lines[13].Day)
	require.Equal(t, "2024-09-12", lines[8].Day)
	require.Equal(t, h[2].EventID, lines[8].EventID, "the line names the restatement that last set it")

	var buf bytes.Buffer
	require.NoError(t, e.q.WriteEvidenceCSV(ctx, &buf, tenant, "act-stop-web"))
	recs, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Equal(t, savings.EvidenceCSVHeader, recs[0])
	require.Len(t, recs, 15)
	require.Equal(t, []string{"act-stop-web", "measurement", "2024-09-11", "2024-09-17", provider, account,
		"2024-09-01T00:00:00Z", "i-web-12", "i-web", "2024-09-12", "USD", "3.60", "true", h[2].EventID, "0"}[:14], recs[9][:14])

	// The period's evidence (the compliance pack's file) is the action's evidence under one
	// header: the only action of September.
	var period bytes.Buffer
	require.NoError(t, e.q.WritePeriodEvidenceCSV(ctx, &period, tenant, "2024-09"))
	precs, err := csv.NewReader(&period).ReadAll()
	require.NoError(t, err)
	require.Equal(t, recs, precs)
	period.Reset()
	require.NoError(t, e.q.WritePeriodEvidenceCSV(ctx, &period, tenant, "2024-10"))
	require.Equal(t, 1, bytes.Count(period.Bytes(), []byte("\n")), "no action in October: the header only")

	buf.Reset()
	require.NoError(t, e.q.WriteCSV(ctx, &buf, tenant, "2024-09"))
	recs, err = csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 2)
	row := map[string]string{}
	for i, h := range savings.CSVHeader {
		row[h] = recs[1][i]
	}
	require.Equal(t, "measured", row["status"])
	require.Equal(t, "9.1571428571", row["realized_daily"])
	require.Equal(t, "278.720535713", row["realized_monthly"])
	require.Equal(t, "2024-09-10T14:00:00Z", row["executed_at"])
	buf.Reset()
	require.NoError(t, e.q.WriteCSV(ctx, &buf, tenant, "2024-10"))
	require.Equal(t, 1, bytes.Count(buf.Bytes(), []byte("\n")), "no action in October: the header only")
}

// TestPreliminaryOnlyStaysPending: lines in both windows but no finalized bill, or a window
// crossing into a bill still open, or a preliminary correction dated in a window: pending.
func TestPreliminaryOnlyStaysPending(t *testing.T) {
	e := newEnv(t)
	const tenant = "acme"
	oct, nov := sep.AddDate(0, 1, 0), sep.AddDate(0, 2, 0)
	// Resize of i-app on 2024-09-28: baseline 09-21..09-27, measurement 09-29..10-05.
	e.add(t, tenant, remediation(&tallyv1.RemediationExecuted{ActionId: "act-resize", BillingAccountId: account, ResourceId: "i-app",
		Kind: tallyv1.RemediationKind_REMEDIATION_KIND_RESIZE, ExecutedAt: timestamppb.New(day(28))}))
	evs := daily("i-app", 21, 27, "4.00")
	evs = append(evs, daily("i-app", 29, 30, "1.00")...)
	for d := 1; d <= 5; d++ {
		evs = append(evs, recorded(costLine(oct, "i-app", oct.AddDate(0, 0, d-1), "1.00", "i-app-oct-"+string(rune('0'+d)))))
	}
	e.add(t, tenant, evs...)
	e.catchUp(t, 3)
	a, _ := e.get(t, tenant, "act-resize")
	require.Equal(t, savings.StatusPending, a.Status, "preliminary only")
	require.Empty(t, a.BaselineTotal)

	// September final, October not: the 5 October days are not covered.
	e.add(t, tenant, finalized(sep))
	e.catchUp(t, 3)
	a, _ = e.get(t, tenant, "act-resize")
	require.Equal(t, savings.StatusPending, a.Status)
	require.Equal(t, `5 of 14 window days not covered by a finalized bill of billing account "111111111111" (first 2024-10-01)`, a.Reason)

	// A credit for 10-02 in November's (open) bill: October final is not enough.
	credit := costLine(nov, "i-app", oct.AddDate(0, 0, 1), "-0.30", "i-app-credit")
	e.add(t, tenant, finalized(oct), recorded(credit))
	e.catchUp(t, 3)
	a, h := e.get(t, tenant, "act-resize")
	require.Equal(t, savings.StatusPending, a.Status)
	require.Equal(t, "1 preliminary lines in the windows (their bill is not finalized)", a.Reason)
	require.Empty(t, a.RealizedDaily)
	// Measured once per event, in log order: October's finalization, before the credit came,
	// completed the windows (baseline 7 × 4.00 = 28, daily 4; measurement 7 × 1.00 = 7, daily 1;
	// realized 4 − 1 = 3); the credit then made them preliminary again.
	require.Equal(t, "pending: measured:3 pending:", statuses(h))
	require.Equal(t, "billing_period_finalized", h[1].EventKind)
	require.Equal(t, "cost_line_recorded", h[2].EventKind)

	// November final: measured.
	// baseline    = 7 × 4.00 = 28.00; daily 4
	// measurement = 7 × 1.00 − 0.30 = 6.70; daily 6.70 / 7 = 0.957142857142857... → 0.9571428571
	// realized    = 4 − 0.9571428571 = 3.0428571429
	// monthly     = 3.0428571429 × 30.4375 = 92.61696428701875 → 92.616964287
	e.add(t, tenant, finalized(nov))
	e.catchUp(t, 3)
	a, h = e.get(t, tenant, "act-resize")
	require.Equal(t, savings.StatusMeasured, a.Status)
	require.Equal(t, "6.7", a.MeasurementTotal)
	require.Equal(t, "0.9571428571", a.MeasurementDaily)
	require.Equal(t, "3.0428571429", a.RealizedDaily)
	require.Equal(t, "92.616964287", a.RealizedMonthly)
	require.Equal(t, "pending: measured:3 pending: measured:3.0428571429", statuses(h),
		"reasons changed while pending (14, then 5 days uncovered), the figures did not: no revision")
}

// TestCostIncreaseReportedNegative: a resize that made the resource dearer is reported as a
// cost increase with negative figures, never clamped; custom windows are honoured; a
// retraction in a window changes the figure.
func TestCostIncreaseReportedNegative(t *testing.T) {
	e := newEnv(t)
	const tenant = "globex"
	// Executed 09-10 with baseline 3, gap 2, measurement 4:
	// baseline 09-07..09-09, gap 09-10..09-11, measurement 09-12..09-15.
	e.add(t, tenant, remediation(&tallyv1.RemediationExecuted{ActionId: "act-up", ResourceId: "db-1",
		Kind: tallyv1.RemediationKind_REMEDIATION_KIND_RESIZE, ExecutedAt: timestamppb.New(day(10).Add(9 * time.Hour)),
		BaselineDays: 3, GapDays: 2, MeasurementDays: 4, ExpectedDailySavings: "1.25", Currency: "USD"}))
	evs := daily("db-1", 1, 9, "2.00")
	evs = append(evs, daily("db-1", 10, 11, "9.99")...)
	evs = append(evs, daily("db-1", 12, 30, "3.50")...)
	e.add(t, tenant, append(evs, finalized(sep))...)
	e.catchUp(t, 1000)

	// baseline    = 3 × 2.00 = 6.00; daily 2
	// measurement = 4 × 3.50 = 14.00; daily 3.5
	// realized    = 2 − 3.5 = −1.5; monthly −1.5 × 30.4375 = −45.65625
	a, _ := e.get(t, tenant, "act-up")
	require.Equal(t, savings.StatusCostIncrease, a.Status)
	require.Equal(t, "6", a.BaselineTotal)
	require.Equal(t, "14", a.MeasurementTotal)
	require.Equal(t, "-1.5", a.RealizedDaily)
	require.Equal(t, "-45.65625", a.RealizedMonthly)
	require.Equal(t, &savings.Window{Start: "2024-09-07", End: "2024-09-09", Days: 3}, a.Baseline)
	require.Equal(t, &savings.Window{Start: "2024-09-12", End: "2024-09-15", Days: 4}, a.Measurement)
	require.Contains(t, a.Reason, "1.5 USD a day more")
	require.Empty(t, a.BillingAccountID, "no account named: the lines' accounts must be final")

	// The provider retracts 09-13's line: measurement = 3 × 3.50 = 10.50; daily 2.625;
	// realized = 2 − 2.625 = −0.625; monthly = −0.625 × 30.4375 = −19.0234375.
	e.add(t, tenant, retracted(costLine(sep, "db-1", day(13), "3.50", "db-1-13")))
	e.catchUp(t, 1000)
	a, h := e.get(t, tenant, "act-up")
	require.Equal(t, savings.StatusCostIncrease, a.Status)
	require.Equal(t, "-0.625", a.RealizedDaily)
	require.Equal(t, "-19.0234375", a.RealizedMonthly)
	require.Equal(t, 3, a.MeasurementLines)
	require.Equal(t, "cost_line_retracted", h[len(h)-1].EventKind)

	list, err := e.q.List(ctxT(t), savings.Filter{Tenant: tenant, Status: savings.StatusCostIncrease})
	require.NoError(t, err)
	require.Len(t, list, 1)
	list, err = e.q.List(ctxT(t), savings.Filter{Tenant: tenant, Status: savings.StatusMeasured})
	require.NoError(t, err)
	require.Empty(t, list)
	list, err = e.q.List(ctxT(t), savings.Filter{Tenant: "acme"})
	require.NoError(t, err)
	require.Empty(t, list, "another tenant sees nothing")
}
