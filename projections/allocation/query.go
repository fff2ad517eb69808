package allocation

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage"
)

var (
	// ErrInvalidQuery is wrapped by every *QueryError: a query's arguments are wrong.
	ErrInvalidQuery = errors.New("allocation: invalid query")
	// ErrUnknownRule: a dry run retires a rule the tenant's book does not hold.
	ErrUnknownRule = errors.New("allocation: unknown rule")
)

// QueryError names the argument of a query that is wrong ("tenant", "period", "to", "top",
// "change") and what is wrong with it. It wraps ErrInvalidQuery.
type QueryError struct {
	Field string
	Msg   string
}

func (e *QueryError) Error() string { return ErrInvalidQuery.Error() + ": " + e.Field + " " + e.Msg }

// Unwrap makes errors.Is(err, ErrInvalidQuery) hold.
func (e *QueryError) Unwrap() error { return ErrInvalidQuery }

func queryErr(field, format string, args ...any) error {
	return &QueryError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// DB is what the queries need of a database; *pgxpool.Pool has it.
type DB interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Queries reads the live allocation tables. Every query is scoped to one tenant and reads in
// one repeatable-read snapshot, so a batch committed meanwhile is wholly in it or not at all.
// To include events just appended, wait for the projection first (projections.WaitFor).
type Queries struct {
	db     DB
	schema string
}

// NewQueries returns queries over the live schema of db.
func NewQueries(db DB) *Queries { return &Queries{db: db, schema: Name} }

// NewQueriesIn returns queries over schema (a rebuild's copy, in tests).
func NewQueriesIn(db DB, schema string) *Queries { return &Queries{db: db, schema: schema} }

// read runs fn in one read-only, repeatable-read transaction as storage.ReaderRole with the
// tenant set (storage.ReadAsTenantTx), so that PostgreSQL's row-level security
// (projections.SecureSchema) shows fn only tenant's rows, besides the tenant filter every
// query has, with one snapshot for the queries that read twice.
func (q *Queries) read(ctx context.Context, tenant string, fn func(tx pgx.Tx) error) error {
	return storage.ReadAsTenantTx(ctx, q.db, tenant, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, fn)
}

func (q *Queries) sql(s string) string { return inSchema(s, q.schema) }

// PeriodDays is the range of days of a period "YYYY-MM": its first day and the first day of
// the next month.
func PeriodDays(period string) (from, to time.Time, err error) {
	t, perr := time.Parse("2006-01", period)
	if perr != nil || len(period) != 7 {
		return time.Time{}, time.Time{}, queryErr("period", "%q is not a month written YYYY-MM", period)
	}
	return t, t.AddDate(0, 1, 0), nil
}

func checkRange(tenant string, from, to time.Time) (time.Time, time.Time, error) {
	if err := eventstore.ValidateTenant(tenant); err != nil {
		return from, to, queryErr("tenant", "%q is not a valid tenant id", tenant)
	}
	from, to = Day(from), Day(to)
	if !from.Before(to) {
		return from, to, queryErr("to", "%s must be after from %s", to.Format(time.DateOnly), from.Format(time.DateOnly))
	}
	return from, to, nil
}

// Group says how Allocated groups its sums; combine with |. Rows are always per currency.
type Group int

// Groupings of Allocated.
const (
	ByCostCenter Group = 1 << iota
	ByDay
)

// AllocatedRow is cost allocated in one currency, to one cost center (when grouped by cost
// center) on one day (when grouped by day; else Day is zero).
type AllocatedRow struct {
	Day        time.Time
	CostCenter string
	Currency   string
	Amount     decimal.Decimal
}

// Allocated sums tenant's allocated cost on the days from <= day < to (UTC dates of from and
// to), grouped by, ordered by day, cost center and currency.
//
// Errors: *QueryError (bad tenant or range); database errors.
func (q *Queries) Allocated(ctx context.Context, tenant string, from, to time.Time, by Group) ([]AllocatedRow, error) {
	from, to, err := checkRange(tenant, from, to)
	if err != nil {
		return nil, err
	}
	day, cc := "NULL::date", "''"
	if by&ByDay != 0 {
		day = "day"
	}
	if by&ByCostCenter != 0 {
		cc = "cost_center"
	}
	var out []AllocatedRow
	err = q.read(ctx, tenant, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q.sql(`SELECT `+day+`, `+cc+`, currency, sum(amount)::text
FROM allocation_schema.allocated_daily WHERE tenant_id = $1 AND day >= $2 AND day < $3
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`), tenant, from, to)
		if err != nil {
			return fmt.Errorf("allocation: allocated: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (AllocatedRow, error) {
			var (
				r      AllocatedRow
				d      *time.Time
				amount string
			)
			if err := row.Scan(&d, &r.CostCenter, &r.Currency, &amount); err != nil {
				return r, err
			}
			if d != nil {
				r.Day = Day(*d)
			}
			r.Amount, err = decimal.NewFromString(amount)
			return r, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("allocation: allocated: %w", err)
	}
	return out, nil
}

// ServiceAmount is unallocated cost of one service.
type ServiceAmount struct {
	Service string
	Amount  decimal.Decimal
}

// UnallocatedCurrency is the unallocated cost of one currency: the total, the services with
// the most of it, and the rest (Other, over OtherServices services), so that Top and Other
// sum to Total.
type UnallocatedCurrency struct {
	Currency      string
	Total         decimal.Decimal
	Top           []ServiceAmount
	Other         decimal.Decimal
	OtherServices int
}

// Unallocated is tenant's cost no rule matched on the days from <= day < to, per currency
// (ordered by currency), with its top services, largest amount first (ties by name). top 0
// lists no service; every service's cost is then in Other.
//
// Errors: *QueryError (bad tenant, range or top); database errors.
func (q *Queries) Unallocated(ctx context.Context, tenant string, from, to time.Time, top int) ([]UnallocatedCurrency, error) {
	from, to, err := checkRange(tenant, from, to)
	if err != nil {
		return nil, err
	}
	if top < 0 {
		return nil, queryErr("top", "%d is negative", top)
	}
	type row struct {
		currency string
		ServiceAmount
	}
	var rows []row
	err = q.read(ctx, tenant, func(tx pgx.Tx) error {
		rs, err := tx.Query(ctx, q.sql(`SELECT currency, service_name, sum(amount)::text
FROM allocation_schema.unallocated_daily WHERE tenant_id = $1 AND day >= $2 AND day < $3 GROUP BY 1, 2`), tenant, from, to)
		if err != nil {
			return err
		}
		rows, err = pgx.CollectRows(rs, func(r pgx.CollectableRow) (row, error) {
			var (
				x      row
				amount string
			)
			if err := r.Scan(&x.currency, &x.Service, &amount); err != nil {
				return x, err
			}
			x.Amount, err = decimal.NewFromString(amount)
			return x, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("allocation: unallocated: %w", err)
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.currency != b.currency {
			return a.currency < b.currency
		}
		if c := a.Amount.Cmp(b.Amount); c != 0 {
			return c > 0
		}
		return a.Service < b.Service
	})
	var out []UnallocatedCurrency
	for _, r := range rows {
		if len(out) == 0 || out[len(out)-1].Currency != r.currency {
			out = append(out, UnallocatedCurrency{Currency: r.currency, Total: decimal.Zero, Other: decimal.Zero})
		}
		u := &out[len(out)-1]
		u.Total = u.Total.Add(r.Amount)
		if len(u.Top) < top {
			u.Top = append(u.Top, r.ServiceAmount)
		} else {
			u.Other = u.Other.Add(r.Amount)
			u.OtherServices++
		}
	}
	return out, nil
}

// CoverageRow is one currency's coverage over a period: Percent = Allocated / Total * 100 (4
// decimal places, see Coverage), Defined false when Total is zero.
type CoverageRow struct {
	Currency    string
	Allocated   decimal.Decimal
	Unallocated decimal.Decimal
	Total       decimal.Decimal
	Percent     decimal.Decimal
	Defined     bool
}

// FailedDay is a day whose allocation failed; its cost is all unallocated.
type FailedDay struct {
	Day    time.Time
	Reason string
}

// CoverageReport is Coverage's answer.
type CoverageReport struct {
	Currencies []CoverageRow // ordered by currency
	FailedDays []FailedDay   // ordered by day
}

// Coverage is tenant's allocation coverage over period ("YYYY-MM"), per currency, and the
// days of the period whose allocation failed.
//
// Errors: *QueryError (bad tenant or period); database errors.
func (q *Queries) Coverage(ctx context.Context, tenant, period string) (CoverageReport, error) {
	from, to, err := PeriodDays(period)
	if err != nil {
		return CoverageReport{}, err
	}
	if from, to, err = checkRange(tenant, from, to); err != nil {
		return CoverageReport{}, err
	}
	rep := CoverageReport{Currencies: []CoverageRow{}, FailedDays: []FailedDay{}}
	err = q.read(ctx, tenant, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q.sql(`SELECT currency, sum(a)::text, sum(u)::text FROM (
    SELECT currency, amount AS a, 0 AS u FROM allocation_schema.allocated_daily WHERE tenant_id = $1 AND day >= $2 AND day < $3
    UNION ALL
    SELECT currency, 0, amount FROM allocation_schema.unallocated_daily WHERE tenant_id = $1 AND day >= $2 AND day < $3
) x GROUP BY currency ORDER BY currency`), tenant, from, to)
		if err != nil {
			return err
		}
		rep.Currencies, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (CoverageRow, error) {
			var (
				c    CoverageRow
				a, u string
			)
			if err := row.Scan(&c.Currency, &a, &u); err != nil {
				return c, err
			}
			if c.Allocated, err = decimal.NewFromString(a); err != nil {
				return c, err
			}
			if c.Unallocated, err = decimal.NewFromString(u); err != nil {
				return c, err
			}
			c.Total = c.Allocated.Add(c.Unallocated)
			c.Percent, c.Defined = Coverage(c.Allocated, c.Unallocated)
			return c, nil
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, q.sql(`SELECT day, reason FROM allocation_schema.failed_days
WHERE tenant_id = $1 AND day >= $2 AND day < $3 ORDER BY day`), tenant, from, to)
		if err != nil {
			return err
		}
		rep.FailedDays, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (FailedDay, error) {
			var f FailedDay
			err := row.Scan(&f.Day, &f.Reason)
			f.Day = Day(f.Day)
			return f, err
		})
		return err
	})
	if err != nil {
		return CoverageReport{}, fmt.Errorf("allocation: coverage: %w", err)
	}
	return rep, nil
}

// Change is a proposed rule change: exactly one of a new rule version and a retirement.
type Change struct {
	Set    *tallyv1.AllocationRuleSet
	Retire *tallyv1.AllocationRuleRetired
}

// DryRun shows what change would move over tenant's period ("YYYY-MM") if it were appended
// now: the period's lines are allocated with the rules in force and again with the change
// applied to a copy of the book (see the package function DryRun for the rows). It writes
// nothing.
//
// Errors: *QueryError (bad tenant, period, or not exactly one change); *RuleError (the
// proposed rule is invalid); ErrUnknownRule (a retirement of a rule the book does not hold);
// database errors.
func (q *Queries) DryRun(ctx context.Context, tenant, period string, change Change) ([]Movement, error) {
	from, to, err := PeriodDays(period)
	if err != nil {
		return nil, err
	}
	if from, to, err = checkRange(tenant, from, to); err != nil {
		return nil, err
	}
	if (change.Set == nil) == (change.Retire == nil) {
		return nil, queryErr("change", "must be exactly one of a rule version and a retirement")
	}
	var proposedRule *Rule
	if change.Set != nil {
		if proposedRule, err = NewRule(change.Set); err != nil {
			return nil, err
		}
	} else {
		if change.Retire.GetRuleId() == "" {
			return nil, &RuleError{Field: "rule_id", Msg: "required"}
		}
		if change.Retire.GetEffectiveTo() == nil {
			return nil, &RuleError{Field: "effective_to", Msg: "required"}
		}
	}
	var moves []Movement
	err = q.read(ctx, tenant, func(tx pgx.Tx) error {
		bs, err := loadBooks(ctx, tx, q.schema, []string{tenant})
		if err != nil {
			return err
		}
		current := bs.get(tenant).book
		proposed := current.Clone()
		if proposedRule != nil {
			proposed.Set(proposedRule)
		} else if !proposed.Retire(change.Retire.GetRuleId(), change.Retire.GetEffectiveTo().AsTime()) {
			return fmt.Errorf("%w: tenant %s has no rule %q to retire", ErrUnknownRule, tenant, change.Retire.GetRuleId())
		}
		days := map[time.Time][]CostLine{}
		err = eachDay(ctx, tx, q.sql(rangeLinesSQL), []any{tenant, from, to}, func(_ string, day time.Time, lines []CostLine) {
			days[day] = lines
		})
		if err != nil {
			return err
		}
		moves, err = DryRun(current, proposed, days)
		return err
	})
	if err != nil {
		return nil, err
	}
	return moves, nil
}

// rangeLinesSQL is dayLinesSQL for one tenant's days $2 <= day < $3.
const rangeLinesSQL = `
SELECT tenant_id, day, provider, billing_account_id, service_name, region_id, resource_id, tags, currency, sum(amount)::text
FROM allocation_schema.lines WHERE tenant_id = $1 AND day >= $2 AND day < $3
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
ORDER BY 1, 2`

// RuleVersion is a rule version in force, with the event that set it: what a compliance pack
// records as the rules behind the allocation.
type RuleVersion struct {
	RuleID              string      `json:"rule_id"`
	Version             uint32      `json:"version"`
	Priority            int32       `json:"priority"`
	EffectiveFrom       time.Time   `json:"effective_from"`
	EffectiveTo         *time.Time  `json:"effective_to,omitempty"`
	Split               string      `json:"split"`
	Match               RuleMatch   `json:"match"`
	Shares              []RuleShare `json:"shares"`
	RemainderCostCenter string      `json:"remainder_cost_center,omitempty"`
	Description         string      `json:"description,omitempty"`
	EventID             string      `json:"event_id"`
	TenantSeq           uint64      `json:"tenant_seq"`
	RecordedAt          time.Time   `json:"recorded_at"`
	// Rule is the version itself, for callers that allocate with it.
	Rule *Rule `json:"-"`
}

// RuleMatch is a rule's match in RuleVersion.
type RuleMatch struct {
	Provider          string            `json:"provider,omitempty"`
	BillingAccountID  string            `json:"billing_account_id,omitempty"`
	ServiceName       string            `json:"service_name,omitempty"`
	RegionID          string            `json:"region_id,omitempty"`
	ResourceIDPattern string            `json:"resource_id_pattern,omitempty"`
	Tags              map[string]string `json:"tags,omitempty"`
}

// RuleShare is a cost center of a rule in RuleVersion; Value is empty for direct, even and
// proportional splits.
type RuleShare struct {
	CostCenter string `json:"cost_center"`
	Value      string `json:"value,omitempty"`
}

// RuleVersions is the rules in force for tenant on the UTC day of at, in the order they are
// tried (priority, then rule id), with the events that set them.
//
// Errors: *QueryError (bad tenant); database errors.
func (q *Queries) RuleVersions(ctx context.Context, tenant string, at time.Time) ([]RuleVersion, error) {
	if err := eventstore.ValidateTenant(tenant); err != nil {
		return nil, queryErr("tenant", "%q is not a valid tenant id", tenant)
	}
	var out []RuleVersion
	err := q.read(ctx, tenant, func(tx pgx.Tx) error {
		bs, err := loadBooks(ctx, tx, q.schema, []string{tenant})
		if err != nil {
			return err
		}
		tb := bs.get(tenant)
		out = make([]RuleVersion, 0)
		for _, r := range tb.book.InForce(Day(at)) {
			out = append(out, ruleVersion(r, tb.meta[ruleKey{r.ID, r.Version}]))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func ruleVersion(r *Rule, m ruleMeta) RuleVersion {
	v := RuleVersion{
		RuleID: r.ID, Version: r.Version, Priority: r.Priority, EffectiveFrom: r.EffectiveFrom.UTC(),
		Split: r.Kind.String(), RemainderCostCenter: r.Remainder, Description: r.Description,
		Match: RuleMatch{Provider: r.Match.Provider, BillingAccountID: r.Match.BillingAccountID,
			ServiceName: r.Match.ServiceName, RegionID: r.Match.RegionID,
			ResourceIDPattern: r.Match.ResourceIDPattern, Tags: r.Match.Tags},
		EventID: m.eventID, TenantSeq: m.tenantSeq, RecordedAt: m.recordedAt, Rule: r,
	}
	if !r.EffectiveTo.IsZero() {
		to := r.EffectiveTo.UTC()
		v.EffectiveTo = &to
	}
	for _, s := range r.Shares {
		sh := RuleShare{CostCenter: s.CostCenter}
		if r.Kind == Percentage || r.Kind == FixedAmount {
			sh.Value = s.Value.String()
		}
		v.Shares = append(v.Shares, sh)
	}
	return v
}
