package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shopspring/decimal"

	"github.com/tally-ledger/tally/eventstore"
)

// ErrInvalidQuery: a query names an unknown dimension, has no valid tenant, or a bad range.
var ErrInvalidQuery = errors.New("invalid ledger query")

// Querier is a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Dimension is a column a query can filter or group by.
type Dimension string

// Dimensions of a cost line.
const (
	Provider         Dimension = "provider"
	BillingAccount   Dimension = "billing_account_id"
	SubAccount       Dimension = "sub_account_id"
	Service          Dimension = "service_name"
	ServiceCategory  Dimension = "service_category"
	Region           Dimension = "region_id"
	AvailabilityZone Dimension = "availability_zone"
	Resource         Dimension = "resource_id"
	SKU              Dimension = "sku_id"
	ChargeCategory   Dimension = "charge_category"
	PricingCategory  Dimension = "pricing_category"
)

var lineDimensions = []Dimension{Provider, BillingAccount, SubAccount, Service, ServiceCategory, Region,
	AvailabilityZone, Resource, SKU, ChargeCategory, PricingCategory}

// dailyDimensions are the ones the daily rollup keeps: a query using only these (and no tag)
// reads the rollup instead of the lines.
var dailyDimensions = []Dimension{Provider, BillingAccount, Service, Region, ChargeCategory}

// Granularity of a query's periods.
type Granularity int

const (
	// WholeRange: one period for the whole range.
	WholeRange Granularity = iota
	// ByDay: UTC days of charge period start.
	ByDay
	// ByMonth: UTC months of charge period start.
	ByMonth
)

// Filter selects lines of one tenant. The zero value of each field leaves it open.
type Filter struct {
	// Tenant is required: every query is scoped to one tenant.
	Tenant string
	// From and To bound the charge period start: From <= start < To.
	From, To time.Time
	// Dimensions: a line matches when, for each dimension, its value is one of these.
	Dimensions map[Dimension][]string
	// Tags: a line matches when, for each key, its tag value is one of these.
	Tags map[string][]string
	// Final, when set, keeps only final (true) or preliminary (false) lines.
	Final *bool
}

// Query asks for cost grouped by dimensions, tag keys and period. Amounts are always split by
// billing currency and finality.
type Query struct {
	Filter
	GroupBy     []Dimension
	GroupByTags []string
	Granularity Granularity
	// Normalize, when set to an ISO 4217 code ("USD"), also converts every row's amounts to
	// that currency at the FX rates recorded as events (Row.Normalized), by the rules written
	// in normalize.go. If any line of the answer has no rate, Cost returns a *MissingRateError
	// (errors.Is ErrMissingRate) and no rows.
	Normalize string
}

// Row is one group of a Query's answer.
type Row struct {
	// Period is the start of the day or month (UTC); zero for WholeRange.
	Period time.Time
	// Groups holds the values of GroupBy then GroupByTags, in order ("" for a line without
	// the tag).
	Groups                  []string
	Currency                string
	Final                   bool
	Billed, Effective, List decimal.Decimal
	Lines                   int64
	// Normalized is Billed, Effective and List converted to Query.Normalize; nil when the
	// query did not ask.
	Normalized *Amounts
}

// Queries reads the ledger. Its methods never write.
type Queries struct {
	db     Querier
	schema string
}

// NewQueries reads the live ledger through db.
func NewQueries(db Querier) *Queries { return &Queries{db: db, schema: Name} }

// InSchema reads the copy of the ledger in schema instead (a rebuild's, in tests and checks).
func (q *Queries) InSchema(schema string) *Queries { return &Queries{db: q.db, schema: schema} }

type builder struct {
	args  []any
	where []string
}

func (b *builder) arg(v any) string {
	b.args = append(b.args, v)
	return "$" + strconv.Itoa(len(b.args))
}

func midnight(t time.Time) bool {
	return t.IsZero() || t.Equal(t.UTC().Truncate(24*time.Hour))
}

// Cost answers q, ordered by period, groups, currency and finality.
func (q *Queries) Cost(ctx context.Context, qu Query) ([]Row, error) {
	if err := eventstore.ValidateTenant(qu.Tenant); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	if !qu.From.IsZero() && !qu.To.IsZero() && !qu.From.Before(qu.To) {
		return nil, fmt.Errorf("%w: from %s is not before to %s", ErrInvalidQuery, qu.From, qu.To)
	}
	if qu.Normalize != "" && !isCurrencyCode(qu.Normalize) {
		return nil, fmt.Errorf("%w: normalize to %q: not an ISO 4217 code such as \"USD\"", ErrInvalidQuery, qu.Normalize)
	}
	useDaily := len(qu.Tags) == 0 && len(qu.GroupByTags) == 0 && midnight(qu.From) && midnight(qu.To)
	for d := range qu.Dimensions {
		if !slices.Contains(lineDimensions, d) {
			return nil, fmt.Errorf("%w: unknown dimension %q", ErrInvalidQuery, d)
		}
		useDaily = useDaily && slices.Contains(dailyDimensions, d)
	}
	for _, d := range qu.GroupBy {
		if !slices.Contains(lineDimensions, d) {
			return nil, fmt.Errorf("%w: unknown dimension %q", ErrInvalidQuery, d)
		}
		useDaily = useDaily && slices.Contains(dailyDimensions, d)
	}

	var b builder
	b.where = append(b.where, "l.tenant_id = "+b.arg(qu.Tenant))
	table, day, count := "lines", dayExpr, "count(*)"
	if useDaily {
		table, day, count = "daily", "l.day", "sum(l.line_count)"
		if !qu.From.IsZero() {
			b.where = append(b.where, "l.day >= "+b.arg(qu.From.UTC().Format(time.DateOnly))+"::date")
		}
		if !qu.To.IsZero() {
			b.where = append(b.where, "l.day < "+b.arg(qu.To.UTC().Format(time.DateOnly))+"::date")
		}
	} else {
		// The expression of lines_tenant_start_idx (schema.sql: CASE, not coalesce, so that
		// the index serves reads behind row-level security).
		start := "(CASE WHEN l.charge_period_start IS NULL THEN l.billing_period_start ELSE l.charge_period_start END)"
		if !qu.From.IsZero() {
			b.where = append(b.where, start+" >= "+b.arg(qu.From))
		}
		if !qu.To.IsZero() {
			b.where = append(b.where, start+" < "+b.arg(qu.To))
		}
	}
	for _, d := range sortedKeys(qu.Dimensions) {
		b.where = append(b.where, "l."+string(d)+" = ANY("+b.arg(qu.Dimensions[d])+"::text[])")
	}
	for _, k := range sortedKeys(qu.Tags) {
		b.where = append(b.where, "l.tags->>"+b.arg(k)+"::text = ANY("+b.arg(qu.Tags[k])+"::text[])")
	}
	if qu.Final != nil {
		b.where = append(b.where, "l.final = "+b.arg(*qu.Final))
	}
	period := "NULL::date"
	switch qu.Granularity {
	case ByDay:
		period = day
	case ByMonth:
		period = "date_trunc('month', " + day + ")::date"
	}
	var groups []string
	for _, d := range qu.GroupBy {
		groups = append(groups, "l."+string(d))
	}
	for _, k := range qu.GroupByTags {
		groups = append(groups, "coalesce(l.tags->>"+b.arg(k)+"::text, '')")
	}
	groupArr := "ARRAY[]::text[]"
	if len(groups) > 0 {
		groupArr = "ARRAY[" + strings.Join(groups, ", ") + "]"
	}
	// Grouped by the columns themselves, not by the array built from them: the planner
	// estimates the number of groups from the columns' statistics (and hashes rather than
	// sorts), and compares plain values.
	groupBy := strings.Join(append(append([]string{"1"}, groups...), "l.billing_currency", "l.final"), ", ")
	if qu.Normalize != "" {
		return q.normalized(ctx, qu.Normalize, &b, period, groupArr, groupBy, day, count, table)
	}
	sql := fmt.Sprintf(`SELECT %s AS period, %s AS groups, l.billing_currency, l.final,
    sum(l.billed_cost)::text, sum(l.effective_cost)::text, sum(l.list_cost)::text, %s
FROM %s l WHERE %s
GROUP BY %s ORDER BY 1, 2, 3, 4`, period, groupArr, count,
		pgx.Identifier{q.schema, table}.Sanitize(), strings.Join(b.where, " AND "), groupBy)
	rows, err := q.db.Query(ctx, sql, b.args...)
	if err != nil {
		return nil, fmt.Errorf("ledger cost query: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Row, error) {
		var r Row
		var period *time.Time
		var billed, effective, list string
		if err := row.Scan(&period, &r.Groups, &r.Currency, &r.Final, &billed, &effective, &list, &r.Lines); err != nil {
			return r, err
		}
		if period != nil {
			r.Period = period.UTC()
		}
		return r, r.setAmounts(billed, effective, list)
	})
}

// setAmounts parses a row's amounts.
func (r *Row) setAmounts(billed, effective, list string) error {
	var err error
	if r.Billed, err = decimal.NewFromString(billed); err != nil {
		return err
	}
	if r.Effective, err = decimal.NewFromString(effective); err != nil {
		return err
	}
	r.List, err = decimal.NewFromString(list)
	return err
}

// Total is a currency's total, split into preliminary and final.
type Total struct {
	Currency                       string
	Billed, Effective, List        decimal.Decimal
	PreliminaryBilled, FinalBilled decimal.Decimal
	Lines, FinalLines              int64
	// Normalized is Billed, Effective and List converted to one currency; set by
	// NormalizedTotals only.
	Normalized *Amounts
}

// Totals sums f's lines per currency, ordered by currency.
func (q *Queries) Totals(ctx context.Context, f Filter) ([]Total, error) {
	rows, err := q.Cost(ctx, Query{Filter: f})
	if err != nil {
		return nil, err
	}
	return totalsOf(rows), nil
}

// totalsOf sums Cost rows (ordered by currency among others) per currency.
func totalsOf(rows []Row) []Total {
	var out []Total
	for _, r := range rows {
		if len(out) == 0 || out[len(out)-1].Currency != r.Currency {
			out = append(out, Total{Currency: r.Currency})
		}
		t := &out[len(out)-1]
		t.Billed = t.Billed.Add(r.Billed)
		t.Effective = t.Effective.Add(r.Effective)
		t.List = t.List.Add(r.List)
		t.Lines += r.Lines
		if r.Final {
			t.FinalBilled = t.FinalBilled.Add(r.Billed)
			t.FinalLines += r.Lines
		} else {
			t.PreliminaryBilled = t.PreliminaryBilled.Add(r.Billed)
		}
		if n := r.Normalized; n != nil {
			if t.Normalized == nil {
				t.Normalized = &Amounts{Currency: n.Currency}
			}
			t.Normalized.add(n)
		}
	}
	return out
}

// Change is one entry of a line's history.
type Change struct {
	StreamSeq       uint64
	EventID         string
	Op              string // recorded, restated, retracted
	PreviousEventID string
	PostClose       bool
	Currency        string
	BilledDelta     decimal.Decimal
	EffectiveDelta  decimal.Decimal
}

// History lists every change to tenant's line lineKey, oldest first.
func (q *Queries) History(ctx context.Context, tenant, lineKey string) ([]Change, error) {
	if err := eventstore.ValidateTenant(tenant); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	rows, err := q.db.Query(ctx, `SELECT stream_seq, event_id::text, op, previous_event_id, post_close, billing_currency,
    billed_cost_delta::text, effective_cost_delta::text
FROM `+pgx.Identifier{q.schema, "line_history"}.Sanitize()+`
WHERE tenant_id = $1 AND line_key = $2 ORDER BY stream_seq, event_index`, tenant, lineKey)
	if err != nil {
		return nil, fmt.Errorf("ledger history query: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Change, error) {
		var c Change
		var seq int64
		var billed, effective string
		if err := row.Scan(&seq, &c.EventID, &c.Op, &c.PreviousEventID, &c.PostClose, &c.Currency, &billed, &effective); err != nil {
			return c, err
		}
		c.StreamSeq = uint64(seq)
		var err error
		if c.BilledDelta, err = decimal.NewFromString(billed); err != nil {
			return c, err
		}
		c.EffectiveDelta, err = decimal.NewFromString(effective)
		return c, err
	})
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
