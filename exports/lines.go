package exports

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections/ledger"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// ErrInvalid: a tenant or range an export cannot be made for.
var ErrInvalid = errors.New("invalid export request")

// ErrInconsistent: the ledger names an event the log does not hold where the ledger says, or
// an event that is not about the line. Nothing more is written after it.
var ErrInconsistent = errors.New("ledger and log disagree")

// Querier is a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Source is what exports read: the read models through DB, the event log through Log.
type Source struct {
	DB  Querier
	Log *eventstore.Store
	// LedgerSchema is the ledger's schema; "" is the live one (ledger.Name).
	LedgerSchema string
}

// Range selects a tenant's ledger lines by billing period: From <= billing_period_start < To.
type Range struct {
	Tenant   string
	From, To time.Time
}

// MonthRange is the range of billing periods from month from to month to, both "YYYY-MM"
// and inclusive; to "" means from alone.
func MonthRange(tenant, from, to string) (Range, error) {
	start, err := ParseMonth("period", from)
	if err != nil {
		return Range{}, err
	}
	last := start
	if to != "" {
		if last, err = ParseMonth("to_period", to); err != nil {
			return Range{}, err
		}
		if last.Before(start) {
			return Range{}, fmt.Errorf("%w: to_period %s is before period %s", ErrInvalid, to, from)
		}
	}
	r := Range{Tenant: tenant, From: start, To: last.AddDate(0, 1, 0)}
	return r, r.validate()
}

// ParseMonth reads "YYYY-MM" as the first instant of that month in UTC; field names the
// value in the error.
func ParseMonth(field, s string) (time.Time, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil || len(s) != 7 {
		return time.Time{}, fmt.Errorf("%w: %s %q is not a month as YYYY-MM", ErrInvalid, field, s)
	}
	return t, nil
}

func (r Range) validate() error {
	if err := eventstore.ValidateTenant(r.Tenant); err != nil {
		return fmt.Errorf("%w: tenant: %w", ErrInvalid, err)
	}
	if r.From.IsZero() || r.To.IsZero() || !r.From.Before(r.To) {
		return fmt.Errorf("%w: billing period range [%s, %s) is empty", ErrInvalid,
			r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339))
	}
	return nil
}

// record is one ledger line and the cost line of the event that last set it.
type record struct {
	seq     int64
	eventID [16]byte

	provider, account, lineKey, accountName       string
	periodStart, periodEnd                        time.Time
	chargeStart, chargeEnd                        *time.Time
	subID, subName, service, serviceCat           string
	region, zone, resource, sku                   string
	chargeCat, chargeClass, pricingCat            string
	pricingQty, consumedQty                       *string
	pricingUnit, consumedUnit                     string
	billed, effective, list, contracted, currency string
	tags                                          map[string]string
	line                                          *tallyv1.CostLine
}

// lineSQL reads a range's lines ordered by the log position of their last event. Amounts are
// NUMERIC::text: exact, never through a float.
const lineSQL = `SELECT updated_seq, last_event_id, provider, billing_account_id, line_key, billing_account_name,
    billing_period_start, billing_period_end, charge_period_start, charge_period_end,
    sub_account_id, sub_account_name, service_name, service_category, region_id, availability_zone,
    resource_id, sku_id, charge_category, charge_class, pricing_category,
    pricing_quantity::text, consumed_quantity::text, pricing_unit, consumed_unit,
    billed_cost::text, effective_cost::text, list_cost::text, contracted_cost::text, billing_currency, tags
FROM %s
WHERE tenant_id = $1 AND billing_period_start >= $2 AND billing_period_start < $3
ORDER BY updated_seq, last_event_id`

func (r *record) scan(rows pgx.Rows) error {
	return rows.Scan(&r.seq, &r.eventID, &r.provider, &r.account, &r.lineKey, &r.accountName,
		&r.periodStart, &r.periodEnd, &r.chargeStart, &r.chargeEnd,
		&r.subID, &r.subName, &r.service, &r.serviceCat, &r.region, &r.zone,
		&r.resource, &r.sku, &r.chargeCat, &r.chargeClass, &r.pricingCat,
		&r.pricingQty, &r.consumedQty, &r.pricingUnit, &r.consumedUnit,
		&r.billed, &r.effective, &r.list, &r.contracted, &r.currency, &r.tags)
}

// errDone stops the log read once every ledger line has been joined.
var errDone = errors.New("done")

// eachLine calls fn for every ledger line of rng with its event's cost line, in the order of
// the log position of that event. See the package doc for the merge join.
func eachLine(ctx context.Context, src Source, rng Range, fn func(*record) error) (int64, error) {
	if err := rng.validate(); err != nil {
		return 0, err
	}
	if src.DB == nil || src.Log == nil {
		return 0, errors.New("exports: the source needs a database and an event log")
	}
	schema := src.LedgerSchema
	if schema == "" {
		schema = ledger.Name
	}
	rows, err := src.DB.Query(ctx, fmt.Sprintf(lineSQL, pgx.Identifier{schema, "lines"}.Sanitize()),
		rng.Tenant, rng.From, rng.To)
	if err != nil {
		return 0, fmt.Errorf("exports: read ledger lines: %w", err)
	}
	defer rows.Close()

	var (
		n       int64
		next    *record // the next ledger line not yet pending
		pending = map[[16]byte]*record{}
		pendSeq int64
	)
	advance := func() error {
		next = nil
		if !rows.Next() {
			return rows.Err()
		}
		r := &record{}
		if err := r.scan(rows); err != nil {
			return fmt.Errorf("exports: read ledger line: %w", err)
		}
		next = r
		return nil
	}
	if err := advance(); err != nil {
		return 0, err
	}
	if next == nil {
		return 0, nil
	}
	filter := eventstore.ReadFilter{Tenant: rng.Tenant, Kinds: []string{"cost_line_recorded", "cost_line_restated"},
		FromStreamSeq: uint64(next.seq)}
	err = src.Log.Read(ctx, filter, func(ev eventstore.Event) error {
		seq := int64(ev.StreamSeq)
		if seq != pendSeq {
			if len(pending) > 0 {
				return missing(pending)
			}
			if next == nil {
				return errDone
			}
			if next.seq < seq {
				return missing(map[[16]byte]*record{next.eventID: next})
			}
			pendSeq = seq
			for next != nil && next.seq == seq {
				pending[next.eventID] = next
				if err := advance(); err != nil {
					return err
				}
			}
		}
		if len(pending) == 0 {
			return nil
		}
		id, err := uuid.Parse(ev.Envelope.GetEventId())
		if err != nil {
			return nil // not an event any ledger line names
		}
		r, ok := pending[id]
		if !ok {
			return nil
		}
		delete(pending, id)
		if err := r.join(ev); err != nil {
			return err
		}
		n++
		return fn(r)
	})
	if err != nil && !errors.Is(err, errDone) {
		return n, err
	}
	if len(pending) > 0 {
		return n, missing(pending)
	}
	if next != nil {
		return n, missing(map[[16]byte]*record{next.eventID: next})
	}
	return n, rows.Err()
}

// join takes the cost line from ev, the event the ledger says last set r.
func (r *record) join(ev eventstore.Event) error {
	var l *tallyv1.CostLine
	switch b := ev.Envelope.GetBody().(type) {
	case *tallyv1.Envelope_CostLineRecorded:
		l = b.CostLineRecorded.GetLine()
	case *tallyv1.Envelope_CostLineRestated:
		l = b.CostLineRestated.GetLine()
	}
	sc := l.GetScope()
	if l == nil || l.GetLineKey() != r.lineKey || sc.GetProvider() != r.provider || sc.GetBillingAccountId() != r.account ||
		!sc.GetBillingPeriodStart().AsTime().Equal(r.periodStart) {
		return fmt.Errorf("%w: event %s (log message %d) is not about ledger line %s of %s/%s",
			ErrInconsistent, ev.Envelope.GetEventId(), ev.StreamSeq, r.lineKey, r.provider, r.account)
	}
	r.line = l
	return nil
}

// missing reports ledger lines whose last event the log read did not meet.
func missing(pending map[[16]byte]*record) error {
	for id, r := range pending {
		return fmt.Errorf("%w: ledger line %s of %s/%s names event %s in log message %d, which the log does not hold there",
			ErrInconsistent, r.lineKey, r.provider, r.account, uuid.UUID(id), r.seq)
	}
	return nil
}
