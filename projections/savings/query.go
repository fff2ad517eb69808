package savings

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tally-ledger/tally/eventstore"
)

// ErrInvalid: a query the caller must fix (bad tenant, period, status or action id). The
// gateway validates first and names the field; this is the read model's own guard.
var ErrInvalid = errors.New("invalid savings query")

// ErrNotFound: no action with that id for the tenant.
var ErrNotFound = errors.New("savings action not found")

// Querier is what the queries need of a database: a pool, or a transaction such as the
// tenant-scoped one storage.ReadAsTenant gives (the gateway reads that way, so row-level
// security backs the tenant filter every query has). Each query is one statement, so it reads
// one snapshot even at READ COMMITTED.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Queries reads the live savings tables.
type Queries struct {
	db     Querier
	schema string
}

// NewQueries returns queries over the live schema through db.
func NewQueries(db Querier) *Queries { return &Queries{db: db, schema: Name} }

// NewQueriesIn returns queries over schema (a rebuild's copy, in tests).
func NewQueriesIn(db Querier, schema string) *Queries { return &Queries{db: db, schema: schema} }

// Window is one of an action's windows: inclusive UTC days.
type Window struct {
	Start, End string // YYYY-MM-DD
	Days       int
}

// Action is a remediation action and its current figures.
type Action struct {
	Tenant, ActionID                       string
	Provider, BillingAccountID, ResourceID string
	// Kind in lower case: stop, delete, resize, commitment_purchase, schedule, other.
	Kind, Tool, Description string
	// ActorKind (ACTOR_KIND_USER, ...) and ActorID of the remediation event.
	ActorKind, ActorID string
	// ExpectedDailySavings as the tool stated it ("" when it did not), in ExpectedCurrency.
	ExpectedDailySavings, ExpectedCurrency string
	ExecutedAt                             *time.Time
	// Period is the UTC month of the action day, YYYY-MM ("" without an execution time).
	Period                                 string
	BaselineDays, GapDays, MeasurementDays int
	// Baseline and Measurement are nil when the action has no execution time.
	Baseline, Measurement *Window
	// EventID and TenantSeq of the remediation event that defines the action (the last one).
	EventID   string
	TenantSeq uint64
	Figures
	// Revision counts the action's history rows; UpdatedEventID and UpdatedTenantSeq name the
	// event of the last one.
	Revision         int
	UpdatedEventID   string
	UpdatedTenantSeq uint64
	// MonthlyMultiplier used for RealizedMonthly.
	MonthlyMultiplier string
}

// Revision is one row of an action's history: its figures after the event that changed them.
type Revision struct {
	Revision  int
	EventID   string
	TenantSeq uint64
	EventKind string
	Figures
}

// EvidenceLine is a cost line of an action's resource dated in one of its windows.
type EvidenceLine struct {
	// Window is "baseline" or "measurement".
	Window                     string
	Provider, BillingAccountID string
	BillingPeriodStart         time.Time
	LineKey, ResourceID        string
	Day                        string // YYYY-MM-DD, UTC day of the charge period start
	Currency                   string
	EffectiveCost              string
	// Final: the line's bill is finalized, so the line counts in the figures. A preliminary
	// line is listed but not counted (and keeps the action pending).
	Final bool
	// EventID and TenantSeq of the event that last set the line.
	EventID   string
	TenantSeq uint64
}

// Filter selects actions; empty fields select everything.
type Filter struct {
	Tenant string // required
	// Period is the UTC month of the action day, YYYY-MM.
	Period string
	// Status is one of Statuses.
	Status     string
	ResourceID string
}

func checkTenant(tenant string) error {
	if err := eventstore.ValidateTenant(tenant); err != nil {
		return fmt.Errorf("%w: tenant: %w", ErrInvalid, err)
	}
	return nil
}

// CheckPeriod validates a YYYY-MM month.
func CheckPeriod(period string) error {
	if _, err := time.Parse("2006-01", period); err != nil || len(period) != 7 {
		return fmt.Errorf("%w: period %q is not YYYY-MM", ErrInvalid, period)
	}
	return nil
}

func (f Filter) check() error {
	if err := checkTenant(f.Tenant); err != nil {
		return err
	}
	if f.Period != "" {
		if err := CheckPeriod(f.Period); err != nil {
			return err
		}
	}
	if f.Status != "" && !slices.Contains(Statuses, f.Status) {
		return fmt.Errorf("%w: status %q: use one of %s", ErrInvalid, f.Status, strings.Join(Statuses, ", "))
	}
	return nil
}

func (q *Queries) sql(s string) string { return inSchema(s, q.schema) }

// List returns the actions f selects, ordered by execution time and action id.
//
// Errors: ErrInvalid; database errors.
func (q *Queries) List(ctx context.Context, f Filter) ([]Action, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	rows, err := q.db.Query(ctx, q.sql(`SELECT `+actionCols+` FROM savings_schema.actions
WHERE tenant_id = $1 AND ($2 = '' OR period = $2) AND ($3 = '' OR status = $3) AND ($4 = '' OR resource_id = $4)
ORDER BY executed_at NULLS LAST, action_id`), f.Tenant, f.Period, f.Status, f.ResourceID)
	if err != nil {
		return nil, fmt.Errorf("savings: list actions: %w", err)
	}
	stored, err := pgx.CollectRows(rows, scanAction)
	if err != nil {
		return nil, fmt.Errorf("savings: list actions: %w", err)
	}
	out := make([]Action, len(stored))
	for i, a := range stored {
		out[i] = a.view()
	}
	return out, nil
}

func checkAction(tenant, actionID string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if actionID == "" {
		return fmt.Errorf("%w: action id is required", ErrInvalid)
	}
	return nil
}

// qualifiedActionCols is actionCols of the table aliased a.
var qualifiedActionCols = "a." + strings.Join(actionColumns, ", a.")

// Get returns one action and its history, oldest revision first (one statement: one
// snapshot).
//
// Errors: ErrInvalid; ErrNotFound; database errors.
func (q *Queries) Get(ctx context.Context, tenant, actionID string) (*Action, []Revision, error) {
	if err := checkAction(tenant, actionID); err != nil {
		return nil, nil, err
	}
	rows, err := q.db.Query(ctx, q.sql(`
SELECT `+qualifiedActionCols+`, h.revision, h.event_id, h.tenant_seq, h.event_kind, h.status, h.reason, h.currency,
    h.baseline_total::text, h.measurement_total::text, h.baseline_lines, h.measurement_lines, h.baseline_daily::text,
    h.measurement_daily::text, h.realized_daily::text, h.realized_monthly::text
FROM savings_schema.actions a
LEFT JOIN savings_schema.history h ON h.tenant_id = a.tenant_id AND h.action_id = a.action_id
WHERE a.tenant_id = $1 AND a.action_id = $2
ORDER BY h.revision`), tenant, actionID)
	if err != nil {
		return nil, nil, fmt.Errorf("savings: get action: %w", err)
	}
	defer rows.Close()
	var stored *action
	var hist []Revision
	for rows.Next() {
		var s actionScan
		var rev, bl, ml *int32
		var id *uuid.UUID
		var seq *int64
		var kind, status, reason, cur *string
		var amounts [6]*string
		dest := append(s.dest(), &rev, &id, &seq, &kind, &status, &reason, &cur, &amounts[0], &amounts[1], &bl, &ml,
			&amounts[2], &amounts[3], &amounts[4], &amounts[5])
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, fmt.Errorf("savings: get action: %w", err)
		}
		if stored == nil {
			if stored, err = s.finish(); err != nil {
				return nil, nil, err
			}
		}
		if rev == nil {
			continue
		}
		r := Revision{Revision: int(*rev), EventID: id.String(), TenantSeq: uint64(*seq), EventKind: *kind,
			Figures: Figures{Status: *status, Reason: *reason, Currency: *cur, BaselineLines: int(*bl), MeasurementLines: int(*ml)}}
		for i, to := range []*string{&r.BaselineTotal, &r.MeasurementTotal, &r.BaselineDaily, &r.MeasurementDaily, &r.RealizedDaily, &r.RealizedMonthly} {
			if amounts[i] != nil {
				*to = canonical(*amounts[i])
			}
		}
		hist = append(hist, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("savings: get action: %w", err)
	}
	if stored == nil {
		return nil, nil, fmt.Errorf("%w: %q for tenant %s", ErrNotFound, actionID, tenant)
	}
	v := stored.view()
	return &v, hist, nil
}

// Evidence returns an action and every line of its resource (of its billing account, when
// it names one) dated in its windows: baseline first, then by day, account, bill and line key
// (one statement: one snapshot). The final lines of a window sum to the window's total.
//
// Errors: ErrInvalid; ErrNotFound; database errors.
func (q *Queries) Evidence(ctx context.Context, tenant, actionID string) (*Action, []EvidenceLine, error) {
	if err := checkAction(tenant, actionID); err != nil {
		return nil, nil, err
	}
	rows, err := q.db.Query(ctx, q.sql(`
SELECT `+qualifiedActionCols+`, CASE WHEN l.day <= a.baseline_end THEN 'baseline' ELSE 'measurement' END,
    l.provider, l.billing_account_id, l.billing_period_start, l.line_key, l.resource_id, l.day, l.billing_currency,
    l.effective_cost::text, f.tenant_id IS NOT NULL, l.last_event_id, l.last_tenant_seq
FROM savings_schema.actions a
LEFT JOIN savings_schema.lines l ON l.tenant_id = a.tenant_id AND l.provider = a.provider AND l.resource_id = a.resource_id
    AND (a.billing_account_id = '' OR l.billing_account_id = a.billing_account_id)
    AND (l.day BETWEEN a.baseline_start AND a.baseline_end OR l.day BETWEEN a.measurement_start AND a.measurement_end)
LEFT JOIN savings_schema.finalized f ON f.tenant_id = l.tenant_id AND f.provider = l.provider
    AND f.billing_account_id = l.billing_account_id AND f.billing_period_start = l.billing_period_start
WHERE a.tenant_id = $1 AND a.action_id = $2
ORDER BY l.day, l.billing_account_id, l.billing_period_start, l.line_key`), tenant, actionID)
	if err != nil {
		return nil, nil, fmt.Errorf("savings: evidence: %w", err)
	}
	defer rows.Close()
	var stored *action
	var lines []EvidenceLine
	for rows.Next() {
		var s actionScan
		var win, prov, acct, key, res, cur, eff *string
		var start, d *time.Time
		var final bool
		var id *uuid.UUID
		var seq *int64
		if err := rows.Scan(append(s.dest(), &win, &prov, &acct, &start, &key, &res, &d, &cur, &eff, &final, &id, &seq)...); err != nil {
			return nil, nil, fmt.Errorf("savings: evidence: %w", err)
		}
		if stored == nil {
			if stored, err = s.finish(); err != nil {
				return nil, nil, err
			}
		}
		if key == nil {
			continue // the action, with no line
		}
		lines = append(lines, EvidenceLine{Window: *win, Provider: *prov, BillingAccountID: *acct,
			BillingPeriodStart: start.UTC(), LineKey: *key, ResourceID: *res, Day: d.Format(time.DateOnly), Currency: *cur,
			EffectiveCost: *eff, Final: final, EventID: id.String(), TenantSeq: uint64(*seq)})
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("savings: evidence: %w", err)
	}
	if stored == nil {
		return nil, nil, fmt.Errorf("%w: %q for tenant %s", ErrNotFound, actionID, tenant)
	}
	v := stored.view()
	return &v, lines, nil
}

// view is the stored action as queries return it.
func (a *action) view() Action {
	v := Action{Tenant: a.key.tenant, ActionID: a.key.id, Provider: a.provider, BillingAccountID: a.account,
		ResourceID: a.resource, Kind: a.kind, Tool: a.tool, Description: a.description, ActorKind: a.actorKind,
		ActorID: a.actorID, ExpectedCurrency: a.expectedCurrency, ExecutedAt: a.executedAt, Period: a.period(),
		BaselineDays: a.baselineDays, GapDays: a.gapDays, MeasurementDays: a.measurementDays,
		EventID: uuid.UUID(a.eventID).String(), TenantSeq: uint64(a.tenantSeq), Figures: a.fig, Revision: a.revision,
		UpdatedEventID: uuid.UUID(a.updatedID).String(), UpdatedTenantSeq: uint64(a.updatedSeq),
		MonthlyMultiplier: MonthlyMultiplier.String()}
	if a.expected != nil {
		v.ExpectedDailySavings = a.expected.String()
	}
	if a.executedAt != nil && a.baselineDays <= MaxWindowDays && a.gapDays <= MaxWindowDays && a.measurementDays <= MaxWindowDays {
		w := a.windows
		v.Baseline = &Window{Start: w.BaselineStart.String(), End: w.BaselineEnd.String(), Days: a.baselineDays}
		v.Measurement = &Window{Start: w.MeasurementStart.String(), End: w.MeasurementEnd.String(), Days: a.measurementDays}
	}
	return v
}
