package ledger

import (
	"context"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// Line operations in the stage table.
const (
	opRecorded  = 1
	opRestated  = 2
	opRetracted = 3
)

// The fold works on a whole batch at once: COPY the batch's line events into a temporary
// stage table, then a fixed number of set-based statements, whatever the batch size.
// Daily rollups are kept exact without trusting event deltas: the rollup of every line the
// batch touches is subtracted before the lines change and added back after.
const stageDDL = `
DROP TABLE IF EXISTS pg_temp.ledger_stage, pg_temp.ledger_final, pg_temp.ledger_touched, pg_temp.ledger_last, pg_temp.ledger_dd;
CREATE TEMP TABLE ledger_stage (
    ord int, op smallint, stream_seq bigint, event_index int, event_id uuid, previous_event_id text, post_close boolean,
    tenant_id text, provider text, billing_account_id text, billing_period_start timestamptz, billing_period_end timestamptz,
    line_key text, billing_account_name text, charge_period_start timestamptz, charge_period_end timestamptz,
    sub_account_id text, sub_account_name text, service_name text, service_category text, region_id text,
    availability_zone text, resource_id text, sku_id text, charge_category text, charge_class text, pricing_category text,
    pricing_quantity numeric, pricing_unit text, consumed_quantity numeric, consumed_unit text,
    billed_cost numeric, effective_cost numeric, list_cost numeric, contracted_cost numeric, billing_currency text, tags text,
    d_billed numeric, d_effective numeric, d_list numeric, d_contracted numeric, d_consumed numeric, d_pricing numeric
) ON COMMIT DROP;
CREATE TEMP TABLE ledger_final (
    tenant_id text, provider text, billing_account_id text, billing_period_start timestamptz, billing_period_end timestamptz,
    event_id uuid, stream_seq bigint
) ON COMMIT DROP`

var stageColumns = []string{"ord", "op", "stream_seq", "event_index", "event_id", "previous_event_id", "post_close",
	"tenant_id", "provider", "billing_account_id", "billing_period_start", "billing_period_end",
	"line_key", "billing_account_name", "charge_period_start", "charge_period_end",
	"sub_account_id", "sub_account_name", "service_name", "service_category", "region_id",
	"availability_zone", "resource_id", "sku_id", "charge_category", "charge_class", "pricing_category",
	"pricing_quantity", "pricing_unit", "consumed_quantity", "consumed_unit",
	"billed_cost", "effective_cost", "list_cost", "contracted_cost", "billing_currency", "tags",
	"d_billed", "d_effective", "d_list", "d_contracted", "d_consumed", "d_pricing"}

var finalColumns = []string{"tenant_id", "provider", "billing_account_id", "billing_period_start", "billing_period_end", "event_id", "stream_seq"}

const (
	lineKeys  = "tenant_id, billing_period_start, provider, billing_account_id, line_key"
	dailyKeys = "tenant_id, day, provider, billing_account_id, service_name, region_id, charge_category, billing_currency, final"
	dayExpr   = "(coalesce(l.charge_period_start, l.billing_period_start) AT TIME ZONE 'UTC')::date"
	lineCols  = `tenant_id, provider, billing_account_id, billing_period_start, line_key, billing_period_end,
    billing_account_name, charge_period_start, charge_period_end, sub_account_id, sub_account_name, service_name,
    service_category, region_id, availability_zone, resource_id, sku_id, charge_category, charge_class,
    pricing_category, pricing_quantity, pricing_unit, consumed_quantity, consumed_unit, billed_cost, effective_cost,
    list_cost, contracted_cost, billing_currency`
)

// rollup sums the touched lines into ledger_dd with the given sign.
func rollup(sign string) string {
	return `SELECT l.tenant_id, ` + dayExpr + ` AS day, l.provider, l.billing_account_id, l.service_name, l.region_id,
    l.charge_category, l.billing_currency, l.final,
    ` + sign + `sum(l.billed_cost) AS billed_cost, ` + sign + `sum(l.effective_cost) AS effective_cost,
    ` + sign + `sum(l.list_cost) AS list_cost, ` + sign + `count(*) AS line_count
FROM ledger_schema.lines l JOIN ledger_touched USING (` + lineKeys + `)
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9`
}

// slowSQL folds the stage (line events whose key may already exist, or appears more than once
// in the batch) and the batch's finalizations. It keeps daily exact without trusting event
// deltas: the rollup of every line it touches is subtracted before the lines change and added
// back after. The parts about finalized scopes are left out when the batch has none: with an
// empty ledger_final they would still scan every non-final line.
func slowSQL(finals bool) string {
	touched := `SELECT DISTINCT ` + lineKeys + ` FROM ledger_stage`
	if finals {
		touched += `
    UNION
    SELECT l.tenant_id, l.billing_period_start, l.provider, l.billing_account_id, l.line_key
    FROM ledger_schema.lines l JOIN ledger_final f USING (tenant_id, provider, billing_account_id, billing_period_start)
    WHERE NOT l.final`
	}
	sql := `
ANALYZE ledger_stage;
CREATE TEMP TABLE ledger_touched ON COMMIT DROP AS ` + touched + `;
ANALYZE ledger_touched;
CREATE TEMP TABLE ledger_dd ON COMMIT DROP AS ` + rollup("-") + `;
`
	if finals {
		sql += `
INSERT INTO ledger_schema.finalized_scopes (tenant_id, provider, billing_account_id, billing_period_start, billing_period_end, event_id, stream_seq)
SELECT DISTINCT ON (tenant_id, provider, billing_account_id, billing_period_start) *
FROM ledger_final ORDER BY tenant_id, provider, billing_account_id, billing_period_start, stream_seq
ON CONFLICT DO NOTHING;
`
	}
	sql += `
CREATE TEMP TABLE ledger_last ON COMMIT DROP AS
    SELECT DISTINCT ON (` + lineKeys + `) * FROM ledger_stage ORDER BY ` + lineKeys + `, ord DESC;

DELETE FROM ledger_schema.lines l USING ledger_last x
WHERE x.op = 3 AND l.tenant_id = x.tenant_id AND l.billing_period_start = x.billing_period_start
    AND l.provider = x.provider AND l.billing_account_id = x.billing_account_id AND l.line_key = x.line_key;

INSERT INTO ledger_schema.lines (` + lineCols + `, tags, final, post_close, last_event_id, updated_seq)
SELECT ` + qualified("x", lineCols) + `, x.tags::jsonb, f.tenant_id IS NOT NULL, x.post_close, x.event_id, x.stream_seq
FROM ledger_last x LEFT JOIN ledger_schema.finalized_scopes f USING (tenant_id, provider, billing_account_id, billing_period_start)
WHERE x.op <> 3
ON CONFLICT (` + lineKeys + `) DO UPDATE SET
    billing_period_end = excluded.billing_period_end, billing_account_name = excluded.billing_account_name,
    charge_period_start = excluded.charge_period_start, charge_period_end = excluded.charge_period_end,
    sub_account_id = excluded.sub_account_id, sub_account_name = excluded.sub_account_name,
    service_name = excluded.service_name, service_category = excluded.service_category,
    region_id = excluded.region_id, availability_zone = excluded.availability_zone,
    resource_id = excluded.resource_id, sku_id = excluded.sku_id, charge_category = excluded.charge_category,
    charge_class = excluded.charge_class, pricing_category = excluded.pricing_category,
    pricing_quantity = excluded.pricing_quantity, pricing_unit = excluded.pricing_unit,
    consumed_quantity = excluded.consumed_quantity, consumed_unit = excluded.consumed_unit,
    billed_cost = excluded.billed_cost, effective_cost = excluded.effective_cost, list_cost = excluded.list_cost,
    contracted_cost = excluded.contracted_cost, billing_currency = excluded.billing_currency, tags = excluded.tags,
    final = excluded.final, post_close = excluded.post_close, last_event_id = excluded.last_event_id,
    updated_seq = excluded.updated_seq;
`
	if finals {
		sql += `
UPDATE ledger_schema.lines l SET final = true FROM ledger_final f
WHERE l.tenant_id = f.tenant_id AND l.provider = f.provider AND l.billing_account_id = f.billing_account_id
    AND l.billing_period_start = f.billing_period_start AND NOT l.final;
`
	}
	return sql + `
INSERT INTO ledger_dd ` + rollup("") + `;

INSERT INTO ledger_schema.daily AS d (` + dailyKeys + `, billed_cost, effective_cost, list_cost, line_count)
SELECT ` + dailyKeys + `, trim_scale(sum(billed_cost)), trim_scale(sum(effective_cost)), trim_scale(sum(list_cost)), sum(line_count)
FROM ledger_dd GROUP BY ` + dailyKeys + `
HAVING sum(line_count) <> 0 OR sum(billed_cost) <> 0 OR sum(effective_cost) <> 0 OR sum(list_cost) <> 0
ON CONFLICT (` + dailyKeys + `) DO UPDATE SET
    billed_cost = trim_scale(d.billed_cost + excluded.billed_cost),
    effective_cost = trim_scale(d.effective_cost + excluded.effective_cost),
    list_cost = trim_scale(d.list_cost + excluded.list_cost),
    line_count = d.line_count + excluded.line_count;

DELETE FROM ledger_schema.daily d USING (SELECT DISTINCT ` + dailyKeys + ` FROM ledger_dd) k
WHERE d.line_count = 0 AND d.tenant_id = k.tenant_id AND d.day = k.day AND d.provider = k.provider
    AND d.billing_account_id = k.billing_account_id AND d.service_name = k.service_name AND d.region_id = k.region_id
    AND d.charge_category = k.charge_category AND d.billing_currency = k.billing_currency AND d.final = k.final`
}

var slowSQLs = [2]string{slowSQL(false), slowSQL(true)}

// freshStageDDL is a table for the fast path's COPY rows (freshColumns, typed as in lines),
// and freshToStage stages them as stageRow stages a recorded line: slowSQL reads neither the
// event index nor the deltas, and the lines' keys are distinct (ord only has to be unique).
var (
	freshStageDDL = `
DROP TABLE IF EXISTS pg_temp.ledger_fresh;
CREATE TEMP TABLE ledger_fresh ON COMMIT DROP AS SELECT ` + strings.Join(freshColumns, ", ") + ` FROM ledger_schema.lines WITH NO DATA`
	freshToStage = `
INSERT INTO ledger_stage (ord, op, stream_seq, event_id, previous_event_id, post_close, tags, ` + lineCols + `)
SELECT row_number() OVER (), ` + fmt.Sprint(opRecorded) + `, updated_seq, last_event_id, '', post_close, tags::text, ` + lineCols + `
FROM ledger_fresh`
)

// qualified prefixes every column of a comma-separated list with alias.
func qualified(alias, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

// missingMonths lists the months (first instants, UTC) that have no lines partition. It reads
// pg_class with the statement's snapshot: to_regclass looks names up through the backend's
// catalog cache, which need not have seen another transaction's partition committed since.
const missingMonths = `
SELECT m FROM unnest($2::timestamptz[]) m
WHERE NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname = $1::text AND c.relname = 'lines_' || to_char(m AT TIME ZONE 'UTC', 'YYYYMM'))`

func apply(ctx context.Context, tx pgx.Tx, schema string, b *batchPlan) error {
	if err := b.fx.apply(ctx, tx, schema); err != nil {
		return err
	}
	if b.historyRows == 0 && len(b.finals) == 0 {
		return nil
	}
	if err := ensurePartitions(ctx, tx, schema, b.months); err != nil {
		return err
	}
	if b.historyRows > 0 {
		if err := copyBinaryInto(ctx, tx, pgx.Identifier{schema, "line_history"}, historyColumns, &b.history); err != nil {
			return fmt.Errorf("copy history: %w", err)
		}
	}
	if len(b.slow) > 0 || len(b.finals) > 0 {
		if err := foldSlow(ctx, tx, schema, b.slow, b.finals, nil); err != nil {
			return err
		}
	}
	if len(b.freshRows) > 0 {
		return foldFresh(ctx, tx, schema, b)
	}
	return nil
}

// foldSlow runs the general fold (slowSQL) over stage rows, the recorded lines of fresh (the
// fast path's COPY rows, nil for none) and finalized scopes.
func foldSlow(ctx context.Context, tx pgx.Tx, schema string, stage, finals [][]any, fresh *copyBinary) error {
	if _, err := tx.Exec(ctx, stageDDL); err != nil {
		return fmt.Errorf("create stage: %w", err)
	}
	if len(stage) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ledger_stage"}, stageColumns, pgx.CopyFromRows(stage)); err != nil {
			return fmt.Errorf("copy stage: %w", err)
		}
	}
	if fresh != nil {
		if _, err := tx.Exec(ctx, inSchema(freshStageDDL, schema)); err != nil {
			return fmt.Errorf("create stage of new lines: %w", err)
		}
		if err := copyBinaryInto(ctx, tx, pgx.Identifier{"ledger_fresh"}, freshColumns, fresh); err != nil {
			return fmt.Errorf("copy new lines to stage: %w", err)
		}
		if _, err := tx.Exec(ctx, freshToStage); err != nil {
			return fmt.Errorf("stage new lines: %w", err)
		}
	}
	sql := slowSQLs[0]
	if len(finals) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"ledger_final"}, finalColumns, pgx.CopyFromRows(finals)); err != nil {
			return fmt.Errorf("copy finalized scopes: %w", err)
		}
		sql = slowSQLs[1]
	}
	if _, err := tx.Exec(ctx, inSchema(sql, schema)); err != nil {
		return fmt.Errorf("fold: %w", err)
	}
	return nil
}

// ensurePartitions creates the monthly lines partitions the batch needs.
func ensurePartitions(ctx context.Context, tx pgx.Tx, schema string, months []time.Time) error {
	if len(months) == 0 {
		return nil
	}
	find := func() ([]time.Time, error) {
		rows, err := tx.Query(ctx, missingMonths, schema, months)
		if err != nil {
			return nil, fmt.Errorf("find missing partitions: %w", err)
		}
		missing, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
		if err != nil {
			return nil, fmt.Errorf("find missing partitions: %w", err)
		}
		return missing, nil
	}
	missing, err := find()
	if err != nil || len(missing) == 0 {
		return err
	}
	// Another runner (a partition of the tenants) may be creating the same month: the
	// second CREATE waited for the first and failed with 42P07, and its whole batch was
	// retried. Creators take turns under a lock held to commit, and look again once they
	// hold it (a new statement's snapshot: transactions here are read committed).
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", schema+".lines partitions"); err != nil {
		return fmt.Errorf("lock partition creation: %w", err)
	}
	if missing, err = find(); err != nil {
		return err
	}
	for _, m := range missing {
		m = m.UTC()
		name := fmt.Sprintf("lines_%04d%02d", m.Year(), int(m.Month()))
		sql := fmt.Sprintf("CREATE TABLE %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')",
			pgx.Identifier{schema, name}.Sanitize(), pgx.Identifier{schema, "lines"}.Sanitize(),
			m.Format(time.RFC3339), m.AddDate(0, 1, 0).Format(time.RFC3339))
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("create partition %s: %w", name, err)
		}
	}
	return nil
}

// stageRow turns one event into a stage row or a finalized-scope row (or neither, for kinds
// the ledger ignores).
func stageRow(ord int, ev eventstore.Event) (row, final []any, err error) {
	env := ev.Envelope
	id, err := uuid.Parse(env.GetEventId())
	if err != nil {
		return nil, nil, fmt.Errorf("event id: %w", err)
	}
	eid := [16]byte(id)
	head := func(op int16, prev string, postClose bool, scope *tallyv1.BillScope, key string) []any {
		return []any{int32(ord), op, int64(ev.StreamSeq), int32(ev.Index), eid, prev, postClose,
			env.GetTenantId(), scope.GetProvider(), scope.GetBillingAccountId(),
			ts(scope.GetBillingPeriodStart()), ts(scope.GetBillingPeriodEnd()), key}
	}
	switch b := env.GetBody().(type) {
	case *tallyv1.Envelope_CostLineRecorded:
		l := b.CostLineRecorded.GetLine()
		row = head(opRecorded, "", b.CostLineRecorded.GetPostClose(), l.GetScope(), l.GetLineKey())
		row, err = appendLine(row, l)
		if err != nil {
			return nil, nil, err
		}
		// A new line's delta is the line itself.
		row = append(row, row[31], row[32], row[33], row[34], row[29], row[27])
		return row, nil, nil
	case *tallyv1.Envelope_CostLineRestated:
		l := b.CostLineRestated.GetLine()
		row = head(opRestated, b.CostLineRestated.GetPreviousEventId(), b.CostLineRestated.GetPostClose(), l.GetScope(), l.GetLineKey())
		if row, err = appendLine(row, l); err != nil {
			return nil, nil, err
		}
		row, err = appendDelta(row, b.CostLineRestated.GetDelta())
		return row, nil, err
	case *tallyv1.Envelope_CostLineRetracted:
		r := b.CostLineRetracted
		row = head(opRetracted, r.GetPreviousEventId(), r.GetPostClose(), r.GetScope(), r.GetLineKey())
		// No line values, but the history row's currency.
		row = append(row, "", nil, nil, "", "", "", "", "", "", "", "", "", "", "", nil, "", nil, "",
			nil, nil, nil, nil, r.GetDelta().GetBillingCurrency(), "{}")
		row, err = appendDelta(row, r.GetDelta())
		return row, nil, err
	case *tallyv1.Envelope_BillingPeriodFinalized:
		s := b.BillingPeriodFinalized.GetScope()
		return nil, []any{env.GetTenantId(), s.GetProvider(), s.GetBillingAccountId(),
			ts(s.GetBillingPeriodStart()), ts(s.GetBillingPeriodEnd()), eid, int64(ev.StreamSeq)}, nil
	}
	return nil, nil, nil
}

// appendLine adds a line's columns (billing_account_name .. tags) to a stage row.
func appendLine(row []any, l *tallyv1.CostLine) ([]any, error) {
	amounts := make([]any, 6)
	for i, s := range []string{l.GetPricingQuantity(), l.GetConsumedQuantity(), l.GetBilledCost(), l.GetEffectiveCost(), l.GetListCost(), l.GetContractedCost()} {
		// Quantities may be absent (NULL); costs default to 0.
		v, err := numeric(s, i < 2)
		if err != nil {
			return nil, err
		}
		amounts[i] = v
	}
	tags, err := tagsJSON(l.GetTags())
	if err != nil {
		return nil, err
	}
	return append(row, l.GetBillingAccountName(), tsOrNil(l.GetChargePeriodStart()), tsOrNil(l.GetChargePeriodEnd()),
		l.GetSubAccountId(), l.GetSubAccountName(), l.GetServiceName(), l.GetServiceCategory(), l.GetRegionId(),
		l.GetAvailabilityZone(), l.GetResourceId(), l.GetSkuId(), l.GetChargeCategory(), l.GetChargeClass(),
		l.GetPricingCategory(), amounts[0], l.GetPricingUnit(), amounts[1], l.GetConsumedUnit(),
		amounts[2], amounts[3], amounts[4], amounts[5], l.GetBillingCurrency(), tags), nil
}

func ts(t *timestamppb.Timestamp) time.Time { return t.AsTime() }

func tsOrNil(t *timestamppb.Timestamp) any {
	if t == nil {
		return nil
	}
	return t.AsTime()
}

func appendDelta(row []any, d *tallyv1.CostDelta) ([]any, error) {
	for i, s := range []string{d.GetBilledCost(), d.GetEffectiveCost(), d.GetListCost(), d.GetContractedCost(), d.GetConsumedQuantity(), d.GetPricingQuantity()} {
		v, err := numeric(s, i >= 4)
		if err != nil {
			return nil, fmt.Errorf("delta: %w", err)
		}
		row = append(row, v)
	}
	return row, nil
}

var zero = pgtype.Numeric{Int: big.NewInt(0), Valid: true}

// numeric parses a decimal string; "" is NULL when nullable, else 0.
func numeric(s string, nullable bool) (any, error) {
	if s == "" {
		if nullable {
			return nil, nil
		}
		return zero, nil
	}
	var n pgtype.Numeric
	if err := n.Scan(s); err != nil || n.NaN || n.InfinityModifier != pgtype.Finite {
		return nil, fmt.Errorf("amount %q is not a decimal", s)
	}
	return n, nil
}

func tagsJSON(tags []*tallyv1.KeyValue) (string, error) {
	if len(tags) == 0 {
		return "{}", nil
	}
	return string(appendTagsJSON(nil, tags)), nil
}
