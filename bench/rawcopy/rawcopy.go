// Package rawcopy is the yardstick of the projection benchmarks: pgx CopyFrom of the rows the
// ledger fold writes into its lines table, into a table of exactly that shape. It must never be
// imported by production code.
package rawcopy

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections/ledger"
)

// The table is a schema set up by the ledger's own Setup (the same columns, primary key, day
// index and monthly partitions), and the rows are typed as pgx encodes fastest
// (pgtype.Numeric amounts, [16]byte ids, time.Time) and built before the clock starts. It is what the machine does when it only has to load the
// rows; the fold must also read and decode the log, write each event's history row and keep
// the daily rollup.

// Columns are the lines table's columns, in the order of Lines' values.
var Columns = []string{"tenant_id", "provider", "billing_account_id", "billing_period_start", "line_key", "billing_period_end",
	"billing_account_name", "charge_period_start", "charge_period_end", "sub_account_id", "sub_account_name", "service_name",
	"service_category", "region_id", "availability_zone", "resource_id", "sku_id", "charge_category", "charge_class",
	"pricing_category", "pricing_quantity", "pricing_unit", "consumed_quantity", "consumed_unit", "billed_cost", "effective_cost",
	"list_cost", "contracted_cost", "billing_currency", "tags", "final", "post_close", "last_event_id", "updated_seq"}

// Lines holds the lines rows of cost_line_recorded events, as the fold writes a line it has
// not seen (final false: the benchmarks finalize nothing), and the first instants of the
// billing-period months they fall in. The zero value is ready.
type Lines struct {
	Rows   [][]any
	Months []time.Time
	seen   map[time.Time]bool
}

// Add adds ev's row; events of other kinds are passed over.
func (r *Lines) Add(ev eventstore.Event) error {
	rec := ev.Envelope.GetCostLineRecorded()
	if rec == nil {
		return nil
	}
	l, s := rec.GetLine(), rec.GetLine().GetScope()
	id, err := uuid.Parse(ev.Envelope.GetEventId())
	if err != nil {
		return err
	}
	var amounts [6]any
	for i, v := range []string{l.GetPricingQuantity(), l.GetConsumedQuantity(), l.GetBilledCost(), l.GetEffectiveCost(), l.GetListCost(), l.GetContractedCost()} {
		if v == "" && i < 2 {
			continue // a quantity may be absent: NULL
		}
		if v == "" {
			v = "0"
		}
		var n pgtype.Numeric
		if err := n.Scan(v); err != nil {
			return fmt.Errorf("amount %q: %w", v, err)
		}
		amounts[i] = n
	}
	tags := make(map[string]string, len(l.GetTags()))
	for _, kv := range l.GetTags() {
		tags[kv.GetKey()] = kv.GetValue()
	}
	tj, err := json.Marshal(tags)
	if err != nil {
		return err
	}
	start := s.GetBillingPeriodStart().AsTime()
	if m := time.Date(start.Year(), start.Month(), 1, 0, 0, 0, 0, time.UTC); !r.seen[m] {
		if r.seen == nil {
			r.seen = map[time.Time]bool{}
		}
		r.seen[m] = true
		r.Months = append(r.Months, m)
	}
	r.Rows = append(r.Rows, []any{ev.Envelope.GetTenantId(), s.GetProvider(), s.GetBillingAccountId(), start,
		l.GetLineKey(), s.GetBillingPeriodEnd().AsTime(), l.GetBillingAccountName(), optTime(l.GetChargePeriodStart() != nil, l.GetChargePeriodStart().AsTime()),
		optTime(l.GetChargePeriodEnd() != nil, l.GetChargePeriodEnd().AsTime()), l.GetSubAccountId(), l.GetSubAccountName(),
		l.GetServiceName(), l.GetServiceCategory(), l.GetRegionId(), l.GetAvailabilityZone(), l.GetResourceId(), l.GetSkuId(),
		l.GetChargeCategory(), l.GetChargeClass(), l.GetPricingCategory(), amounts[0], l.GetPricingUnit(), amounts[1],
		l.GetConsumedUnit(), amounts[2], amounts[3], amounts[4], amounts[5], l.GetBillingCurrency(), string(tj),
		false, rec.GetPostClose(), [16]byte(id), int64(ev.StreamSeq)})
	return nil
}

func optTime(ok bool, t time.Time) any {
	if !ok {
		return nil
	}
	return t
}

// CopyLines sets schema up as a ledger (with the partitions of r's months) and times one pgx
// CopyFrom of r's rows into its lines table, in one transaction.
func (r *Lines) CopyLines(ctx context.Context, pool *pgxpool.Pool, schema string) (time.Duration, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return 0, err
	}
	if err := ledger.New().Setup(ctx, tx, schema); err != nil {
		return 0, err
	}
	for _, m := range r.Months {
		name := fmt.Sprintf("lines_%04d%02d", m.Year(), int(m.Month()))
		if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TABLE %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')",
			pgx.Identifier{schema, name}.Sanitize(), pgx.Identifier{schema, "lines"}.Sanitize(),
			m.Format(time.RFC3339), m.AddDate(0, 1, 0).Format(time.RFC3339))); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	Settle(ctx, pool)
	start := time.Now()
	tx, err = pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{schema, "lines"}, Columns, pgx.CopyFromRows(r.Rows))
	if err != nil {
		return 0, fmt.Errorf("raw copy: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	d := time.Since(start)
	if n != int64(len(r.Rows)) {
		return d, fmt.Errorf("raw copy wrote %d rows of %d", n, len(r.Rows))
	}
	return d, nil
}

// Settle writes PostgreSQL's dirty pages out before a measured stage, so that one stage's
// writes are not charged to the next. It needs the right to CHECKPOINT; without it, nothing.
func Settle(ctx context.Context, pool *pgxpool.Pool) {
	_, _ = pool.Exec(ctx, "CHECKPOINT")
}
