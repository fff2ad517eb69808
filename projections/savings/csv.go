package savings

import (
	"context"
	"encoding/csv"
	"io"
	"strconv"
	"time"
)

// CSVHeader is the header of WriteCSV: one action a row.
var CSVHeader = []string{"action_id", "provider", "billing_account_id", "resource_id", "kind", "tool", "actor",
	"executed_at", "baseline_start", "baseline_end", "measurement_start", "measurement_end", "status", "reason",
	"currency", "baseline_total", "measurement_total", "baseline_lines", "measurement_lines", "baseline_daily",
	"measurement_daily", "realized_daily", "realized_monthly", "monthly_multiplier", "expected_daily_savings",
	"expected_currency", "revision", "updated_event_id", "updated_tenant_seq"}

// EvidenceCSVHeader is the header of WriteEvidenceCSV: one line of a window a row.
var EvidenceCSVHeader = []string{"action_id", "window", "window_start", "window_end", "provider", "billing_account_id",
	"billing_period_start", "line_key", "resource_id", "day", "currency", "effective_cost", "final", "event_id", "tenant_seq"}

// WriteCSV writes the actions of tenant executed in period (YYYY-MM; "" for every period)
// with their figures, as CSV (CSVHeader first). Amounts are exact decimal strings; a pending
// action has empty amounts.
//
// Errors: ErrInvalid; database and write errors.
func (q *Queries) WriteCSV(ctx context.Context, w io.Writer, tenant, period string) error {
	actions, err := q.List(ctx, Filter{Tenant: tenant, Period: period})
	if err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	_ = cw.Write(CSVHeader)
	for _, a := range actions {
		var executed string
		if a.ExecutedAt != nil {
			executed = a.ExecutedAt.UTC().Format(time.RFC3339)
		}
		var win [4]string
		if a.Baseline != nil {
			win = [4]string{a.Baseline.Start, a.Baseline.End, a.Measurement.Start, a.Measurement.End}
		}
		_ = cw.Write([]string{a.ActionID, a.Provider, a.BillingAccountID, a.ResourceID, a.Kind, a.Tool,
			a.ActorKind + ":" + a.ActorID, executed, win[0], win[1], win[2], win[3], a.Status, a.Reason, a.Currency,
			a.BaselineTotal, a.MeasurementTotal, strconv.Itoa(a.BaselineLines), strconv.Itoa(a.MeasurementLines),
			a.BaselineDaily, a.MeasurementDaily, a.RealizedDaily, a.RealizedMonthly, a.MonthlyMultiplier,
			a.ExpectedDailySavings, a.ExpectedCurrency, strconv.Itoa(a.Revision), a.UpdatedEventID,
			strconv.FormatUint(a.UpdatedTenantSeq, 10)})
	}
	cw.Flush()
	return cw.Error()
}

// WriteEvidenceCSV writes the evidence of one action (Queries.Evidence) as CSV
// (EvidenceCSVHeader first): every line of its resource in its windows, with the window's
// days, whether the line is final (only final lines count) and the event that last set it.
//
// Errors: ErrInvalid; ErrNotFound; database and write errors.
func (q *Queries) WriteEvidenceCSV(ctx context.Context, w io.Writer, tenant, actionID string) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(EvidenceCSVHeader)
	if err := q.writeEvidence(ctx, cw, tenant, actionID); err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

// WritePeriodEvidenceCSV writes the evidence of every action of tenant executed in period
// (YYYY-MM; "" for every period), action by action in WriteCSV's order, as one CSV
// (EvidenceCSVHeader first): the compliance pack's savings evidence.
//
// Errors: ErrInvalid; database and write errors.
func (q *Queries) WritePeriodEvidenceCSV(ctx context.Context, w io.Writer, tenant, period string) error {
	actions, err := q.List(ctx, Filter{Tenant: tenant, Period: period})
	if err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	_ = cw.Write(EvidenceCSVHeader)
	for _, a := range actions {
		if err := q.writeEvidence(ctx, cw, tenant, a.ActionID); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// writeEvidence writes the evidence rows of one action.
func (q *Queries) writeEvidence(ctx context.Context, cw *csv.Writer, tenant, actionID string) error {
	a, lines, err := q.Evidence(ctx, tenant, actionID)
	if err != nil {
		return err
	}
	for _, l := range lines {
		win := a.Baseline
		if l.Window == "measurement" {
			win = a.Measurement
		}
		_ = cw.Write([]string{a.ActionID, l.Window, win.Start, win.End, l.Provider, l.BillingAccountID,
			l.BillingPeriodStart.Format(time.RFC3339), l.LineKey, l.ResourceID, l.Day, l.Currency, l.EffectiveCost,
			strconv.FormatBool(l.Final), l.EventID, strconv.FormatUint(l.TenantSeq, 10)})
	}
	return cw.Error()
}
