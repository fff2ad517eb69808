package allocation

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"
	"google.golang.org/protobuf/proto"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// Line operations in the stage table.
const (
	opRecorded  = 1
	opRestated  = 2
	opRetracted = 3
)

// batch is a batch of events turned into rows: line events for the stage, rule events for the
// rules table, and the (tenant, rule, version, first day) each valid rule event may change.
// lines are the stage rows of recorded and restated lines, whose rule is filled in at apply
// time (matching needs the tenant's rules, which are in the database); tenants are the
// batch's tenants.
type batch struct {
	stage, rules, touches [][]any
	lines                 []stagedLine
	tenants               []string
	seen                  map[string]bool
}

// stagedLine is a recorded or restated line of the stage, to be matched.
type stagedLine struct {
	row    []any
	tenant string
	day    time.Time
	line   Line
}

var (
	stageColumns = []string{"ord", "op", "tenant_id", "provider", "billing_account_id", "billing_period_start", "line_key",
		"day", "service_name", "region_id", "resource_id", "tags", "currency", "amount", "rule_id", "rule_version"}
	ruleColumns = []string{"tenant_id", "tenant_seq", "op", "rule_id", "version", "from_day", "body", "event_id",
		"recorded_at", "invalid"}
	touchColumns       = []string{"tenant_id", "rule_id", "version", "from_day"}
	movesColumns       = []string{"tenant_id", "day", "currency", "rule_id", "rule_version", "service_name", "scale", "amount", "lines"}
	allocatedColumns   = []string{"tenant_id", "day", "cost_center", "currency", "rule_id", "rule_version", "amount"}
	unallocatedColumns = []string{"tenant_id", "day", "currency", "service_name", "amount"}
)

// Where the rule columns are in a stage row.
const (
	stageRuleID = 14
	stageRuleV  = 15
)

func plan(events []eventstore.Event) (*batch, error) {
	b := &batch{seen: map[string]bool{}}
	for i, ev := range events {
		if err := b.add(i, ev); err != nil {
			env := ev.Envelope
			return nil, fmt.Errorf("allocation: event %s (tenant %s seq %d): %w", env.GetEventId(), env.GetTenantId(), env.GetTenantSeq(), err)
		}
	}
	sort.Strings(b.tenants)
	return b, nil
}

func (b *batch) tenant(t string) {
	if !b.seen[t] {
		b.seen[t] = true
		b.tenants = append(b.tenants, t)
	}
}

func (b *batch) add(ord int, ev eventstore.Event) error {
	env := ev.Envelope
	tenant := env.GetTenantId()
	line := func(op int16, l *tallyv1.CostLine) error {
		cl, day, err := FromCostLine(l)
		if err != nil {
			return err
		}
		tags, err := json.Marshal(cl.Tags)
		if err != nil {
			return err
		}
		if cl.Tags == nil {
			tags = []byte("{}")
		}
		s := l.GetScope()
		row := []any{int32(ord), op, tenant, s.GetProvider(), s.GetBillingAccountId(),
			s.GetBillingPeriodStart().AsTime(), l.GetLineKey(), day, cl.ServiceName, cl.RegionID, cl.ResourceID,
			string(tags), cl.Currency, numeric(cl.Amount), "", int64(0)}
		b.stage = append(b.stage, row)
		b.lines = append(b.lines, stagedLine{row: row, tenant: tenant, day: day, line: cl.Line})
		b.tenant(tenant)
		return nil
	}
	switch body := env.GetBody().(type) {
	case *tallyv1.Envelope_CostLineRecorded:
		return line(opRecorded, body.CostLineRecorded.GetLine())
	case *tallyv1.Envelope_CostLineRestated:
		return line(opRestated, body.CostLineRestated.GetLine())
	case *tallyv1.Envelope_CostLineRetracted:
		r := body.CostLineRetracted
		s := r.GetScope()
		b.stage = append(b.stage, []any{int32(ord), int16(opRetracted), tenant, s.GetProvider(), s.GetBillingAccountId(),
			s.GetBillingPeriodStart().AsTime(), r.GetLineKey(), nil, "", "", "", "{}", "", nil, "", int64(0)})
		b.tenant(tenant)
	case *tallyv1.Envelope_AllocationRuleSet:
		b.tenant(tenant)
		return b.rule(env, "set", body.AllocationRuleSet)
	case *tallyv1.Envelope_AllocationRuleRetired:
		b.tenant(tenant)
		return b.rule(env, "retired", body.AllocationRuleRetired)
	}
	return nil
}

// rule adds a rule event. A set event NewRule refuses, or a retirement without a rule id or an
// end, is kept with the reason in invalid and changes no day: refusing it here would stop the
// projection for every tenant on one bad event, and skipping it silently would hide it.
func (b *batch) rule(env *tallyv1.Envelope, op string, msg proto.Message) error {
	id, err := uuid.Parse(env.GetEventId())
	if err != nil {
		return fmt.Errorf("event id: %w", err)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode rule: %w", err)
	}
	var (
		ruleID  string
		version uint32
		from    time.Time
		invalid string
	)
	switch m := msg.(type) {
	case *tallyv1.AllocationRuleSet:
		ruleID, version = m.GetRuleId(), m.GetVersion()
		if m.GetEffectiveFrom() != nil {
			from = m.GetEffectiveFrom().AsTime()
		}
		if _, err := NewRule(m); err != nil {
			invalid = err.Error()
		}
	case *tallyv1.AllocationRuleRetired:
		ruleID = m.GetRuleId()
		switch {
		case ruleID == "":
			invalid = "rule_id: required"
		case m.GetEffectiveTo() == nil:
			invalid = "effective_to: required"
		default:
			from = m.GetEffectiveTo().AsTime()
		}
	}
	var recorded any
	if env.GetRecordedAt() != nil {
		recorded = env.GetRecordedAt().AsTime()
	}
	tenant := env.GetTenantId()
	b.rules = append(b.rules, []any{tenant, int64(env.GetTenantSeq()), op, ruleID, int64(version), Day(from), body,
		[16]byte(id), recorded, invalid})
	if invalid == "" {
		b.touches = append(b.touches, []any{tenant, ruleID, int64(version), Day(from)})
	}
	return nil
}

// stageDDL creates the batch's temporary tables (dropped first, in case one transaction folds
// two batches, as a rebuild's swap may).
const stageDDL = `
DROP TABLE IF EXISTS pg_temp.alloc_stage, pg_temp.alloc_touched, pg_temp.alloc_last, pg_temp.alloc_delta,
    pg_temp.alloc_rule_touch, pg_temp.alloc_rematch, pg_temp.alloc_moves, pg_temp.alloc_days;
CREATE TEMP TABLE alloc_stage (
    ord int, op smallint, tenant_id text, provider text, billing_account_id text, billing_period_start timestamptz,
    line_key text, day date, service_name text, region_id text, resource_id text, tags jsonb, currency text, amount numeric,
    rule_id text, rule_version bigint
) ON COMMIT DROP;
CREATE TEMP TABLE alloc_touched (tenant_id text, day date) ON COMMIT DROP`

const lineKeys = "tenant_id, billing_period_start, provider, billing_account_id, line_key"

// totalsKey is the key of pool_totals.
const totalsKey = "tenant_id, day, currency, rule_id, rule_version, service_name, scale"

// linesSQL folds the staged line events (each with the rule that selects it, matched in Go):
// it keeps the last event of each line in the batch; turns the lines' state before (as
// stored) and after (the last event, unless a retraction) into deltas of pool_totals, summed
// per row; removes retracted lines and upserts the others; applies the deltas, removing the
// rows left with no line; and marks the days whose totals changed. The cost is the batch's:
// the lines of the batch and the totals rows they move, never the rest of their days. The
// stored lines are looked up through a LATERAL subquery that cannot be flattened (OFFSET 0),
// so one primary-key probe per line (and retracted lines deleted by row id): as a join, the
// planner hashes a scan of every line once the lines table outgrows a batch by a few times,
// and the fold becomes quadratic again.
const linesSQL = `
CREATE TEMP TABLE alloc_last ON COMMIT DROP AS
    SELECT DISTINCT ON (` + lineKeys + `) * FROM alloc_stage ORDER BY ` + lineKeys + `, ord DESC;
CREATE TEMP TABLE alloc_delta ON COMMIT DROP AS
    SELECT ` + totalsKey + `, sum(amount) AS amount, sum(lines)::bigint AS lines FROM (
        SELECT l.tenant_id, l.day, l.currency, l.rule_id, l.rule_version, l.service_name, scale(l.amount) AS scale,
            -l.amount AS amount, -1 AS lines
        FROM alloc_last x CROSS JOIN LATERAL (
            SELECT * FROM allocation_schema.lines l
            WHERE l.tenant_id = x.tenant_id AND l.billing_period_start = x.billing_period_start
                AND l.provider = x.provider AND l.billing_account_id = x.billing_account_id AND l.line_key = x.line_key
            OFFSET 0) l
        UNION ALL
        SELECT tenant_id, day, currency, rule_id, rule_version, service_name, scale(amount), amount, 1 FROM alloc_last WHERE op <> 3
    ) d GROUP BY ` + totalsKey + `
    HAVING sum(amount) <> 0 OR sum(lines) <> 0;
DELETE FROM allocation_schema.lines WHERE ctid = ANY(ARRAY(
    SELECT l.ctid FROM alloc_last x CROSS JOIN LATERAL (
        SELECT ctid FROM allocation_schema.lines l
        WHERE l.tenant_id = x.tenant_id AND l.billing_period_start = x.billing_period_start
            AND l.provider = x.provider AND l.billing_account_id = x.billing_account_id AND l.line_key = x.line_key
        OFFSET 0) l
    WHERE x.op = 3));
INSERT INTO allocation_schema.lines (` + lineKeys + `, day, service_name, region_id, resource_id, tags, currency, amount,
    rule_id, rule_version)
SELECT ` + lineKeys + `, day, service_name, region_id, resource_id, tags, currency, amount, rule_id, rule_version
FROM alloc_last WHERE op <> 3
ON CONFLICT (` + lineKeys + `) DO UPDATE SET
    day = excluded.day, service_name = excluded.service_name, region_id = excluded.region_id,
    resource_id = excluded.resource_id, tags = excluded.tags, currency = excluded.currency, amount = excluded.amount,
    rule_id = excluded.rule_id, rule_version = excluded.rule_version;
INSERT INTO allocation_schema.pool_totals AS t (` + totalsKey + `, amount, lines)
SELECT ` + totalsKey + `, amount, lines FROM alloc_delta
ON CONFLICT (` + totalsKey + `) DO UPDATE SET amount = t.amount + excluded.amount, lines = t.lines + excluded.lines;
DELETE FROM allocation_schema.pool_totals t USING alloc_delta d
WHERE t.lines = 0 AND t.tenant_id = d.tenant_id AND t.day = d.day AND t.currency = d.currency AND t.rule_id = d.rule_id
    AND t.rule_version = d.rule_version AND t.service_name = d.service_name AND t.scale = d.scale;
INSERT INTO alloc_touched SELECT DISTINCT tenant_id, day FROM alloc_delta`

// rematchDaysSQL lists the days the batch's rule events may change: per tenant, every day with
// a line from the earliest first day of its rule events on. A version that replaces the same
// (rule, version) also reaches back to the first day of the version it replaces. The days with
// lines are the days with pool_totals rows (the batch's lines are in them already), so the
// small table is scanned, not the lines. Every such day is split again (a rule's shares may
// have changed where the lines it selects did not).
const rematchDaysSQL = `
CREATE TEMP TABLE alloc_rematch ON COMMIT DROP AS
WITH froms AS (
    SELECT tenant_id, min(from_day) AS from_day FROM (
        SELECT tenant_id, from_day FROM alloc_rule_touch
        UNION ALL
        SELECT r.tenant_id, r.from_day FROM allocation_schema.rules r
        JOIN alloc_rule_touch t ON r.tenant_id = t.tenant_id AND r.rule_id = t.rule_id AND r.version = t.version
        WHERE t.version > 0 AND r.op = 'set' AND r.invalid = ''
    ) x GROUP BY tenant_id)
SELECT DISTINCT p.tenant_id, p.day FROM allocation_schema.pool_totals p
JOIN froms f ON p.tenant_id = f.tenant_id AND p.day >= f.from_day;
ANALYZE alloc_rematch;
INSERT INTO alloc_touched SELECT tenant_id, day FROM alloc_rematch`

// rematchLinesSQL is the lines of the days to re-match, one row per set of lines that no rule
// can tell apart (same day and match fields) and that add to the same pool_totals row (same
// currency, scale and stored rule), with their sum, number and row ids (ctid: the rows are
// updated by id in the same transaction, before anything else can move them).
const rematchLinesSQL = `
SELECT l.tenant_id, l.day, l.provider, l.billing_account_id, l.service_name, l.region_id, l.resource_id, l.tags::text,
    l.currency, scale(l.amount), l.rule_id, l.rule_version, sum(l.amount)::text, array_agg(l.ctid)
FROM allocation_schema.lines l JOIN alloc_rematch d ON l.tenant_id = d.tenant_id AND l.day = d.day
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12`

// rematchRuleSQL stores a new rule on re-matched lines, by row id.
const rematchRuleSQL = `UPDATE allocation_schema.lines SET rule_id = $1, rule_version = $2 WHERE ctid = ANY($3)`

// movesSQL moves the sums of the re-matched lines whose rule changed between the pool_totals
// rows of their old and new rules (alloc_moves), removing the rows left with no line.
const movesSQL = `
INSERT INTO allocation_schema.pool_totals AS t (` + totalsKey + `, amount, lines)
SELECT ` + totalsKey + `, sum(amount), sum(lines) FROM alloc_moves GROUP BY ` + totalsKey + `
ON CONFLICT (` + totalsKey + `) DO UPDATE SET amount = t.amount + excluded.amount, lines = t.lines + excluded.lines;
DELETE FROM allocation_schema.pool_totals t USING alloc_moves d
WHERE t.lines = 0 AND t.tenant_id = d.tenant_id AND t.day = d.day AND t.currency = d.currency AND t.rule_id = d.rule_id
    AND t.rule_version = d.rule_version AND t.service_name = d.service_name AND t.scale = d.scale`

// replaceSQL removes the rows of every marked day; the recomputed rows are copied in after.
const replaceSQL = `
CREATE TEMP TABLE alloc_days ON COMMIT DROP AS SELECT DISTINCT tenant_id, day FROM alloc_touched;
DELETE FROM allocation_schema.allocated_daily a USING alloc_days d WHERE a.tenant_id = d.tenant_id AND a.day = d.day;
DELETE FROM allocation_schema.unallocated_daily u USING alloc_days d WHERE u.tenant_id = d.tenant_id AND u.day = d.day;
DELETE FROM allocation_schema.failed_days f USING alloc_days d WHERE f.tenant_id = d.tenant_id AND f.day = d.day`

// dayTotalsSQL is the pool_totals of the marked days, each (tenant, day) in one run.
const dayTotalsSQL = `
SELECT t.tenant_id, t.day, t.currency, t.rule_id, t.rule_version, t.service_name, t.amount::text
FROM allocation_schema.pool_totals t JOIN alloc_days d ON t.tenant_id = d.tenant_id AND t.day = d.day
ORDER BY 1, 2`

func (p *Projection) apply(ctx context.Context, tx pgx.Tx, schema string, b *batch) error {
	if len(b.stage) == 0 && len(b.rules) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, stageDDL); err != nil {
		return fmt.Errorf("allocation: create stage: %w", err)
	}
	// The rules first: the batch's lines are matched with the rules as they stand after it.
	if len(b.rules) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{schema, "rules"}, ruleColumns, pgx.CopyFromRows(b.rules)); err != nil {
			return fmt.Errorf("allocation: copy rules: %w", err)
		}
	}
	bs, err := loadBooks(ctx, tx, schema, b.tenants)
	if err != nil {
		return err
	}
	m := &matcher{books: bs, inForce: map[tenantDay][]*Rule{}}
	if len(b.stage) > 0 {
		for _, l := range b.lines {
			if r := SelectFrom(m.rules(l.tenant, l.day), l.line); r != nil {
				l.row[stageRuleID], l.row[stageRuleV] = r.ID, int64(r.Version)
			}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"alloc_stage"}, stageColumns, pgx.CopyFromRows(b.stage)); err != nil {
			return fmt.Errorf("allocation: copy stage: %w", err)
		}
		if _, err := tx.Exec(ctx, inSchema(linesSQL, schema)); err != nil {
			return fmt.Errorf("allocation: fold lines: %w", err)
		}
	}
	if len(b.touches) > 0 {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE alloc_rule_touch (tenant_id text, rule_id text, version bigint,
    from_day date) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("allocation: create rule stage: %w", err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"alloc_rule_touch"}, touchColumns, pgx.CopyFromRows(b.touches)); err != nil {
			return fmt.Errorf("allocation: copy rule changes: %w", err)
		}
		if err := rematch(ctx, tx, schema, m); err != nil {
			return err
		}
	}
	return p.recompute(ctx, tx, schema, m)
}

// tenantDay names a tenant's day.
type tenantDay struct {
	tenant string
	day    time.Time
}

// matcher is the batch's books with the rules in force per day, computed once per day.
type matcher struct {
	books   books
	inForce map[tenantDay][]*Rule
}

func (m *matcher) rules(tenant string, day time.Time) []*Rule {
	k := tenantDay{tenant, day}
	rs, ok := m.inForce[k]
	if !ok {
		rs = m.books.get(tenant).book.InForce(day)
		m.inForce[k] = rs
	}
	return rs
}

// rematch matches again the lines of the days the batch's rule events may change, stores the
// rule of those whose rule changed and moves their cost between the pool_totals rows of their
// old and new rules. Its cost is that of the lines of those days: rule events are rare. The
// lines are grouped by hashing, in memory (sorting them on a dozen text columns, or spilling
// to disk, costs several times more; both settings are reset after the query), and updated by
// row id (a join on the match fields would scan a day's lines once per group, quadratic in a
// day's lines).
func rematch(ctx context.Context, tx pgx.Tx, schema string, m *matcher) error {
	if _, err := tx.Exec(ctx, inSchema(rematchDaysSQL, schema)); err != nil {
		return fmt.Errorf("allocation: days of the rule changes: %w", err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL enable_sort = off; SET LOCAL work_mem = '64MB'"); err != nil {
		return fmt.Errorf("allocation: lines to match: %w", err)
	}
	rows, err := tx.Query(ctx, inSchema(rematchLinesSQL, schema))
	if err != nil {
		return fmt.Errorf("allocation: lines to match: %w", err)
	}
	var moves [][]any
	ids := map[ruleKey][]pgtype.TID{}
	for rows.Next() {
		var (
			tenant, tags, currency, oldID, sum string
			day                                time.Time
			l                                  Line
			scale                              int32
			oldVersion                         int64
			tids                               []pgtype.TID
		)
		if err := rows.Scan(&tenant, &day, &l.Provider, &l.BillingAccountID, &l.ServiceName, &l.RegionID, &l.ResourceID,
			&tags, &currency, &scale, &oldID, &oldVersion, &sum, &tids); err != nil {
			rows.Close()
			return fmt.Errorf("allocation: lines to match: %w", err)
		}
		day = Day(day)
		if err := json.Unmarshal([]byte(tags), &l.Tags); err != nil {
			rows.Close()
			return fmt.Errorf("allocation: tags %s: %w", tags, err)
		}
		var k ruleKey
		if r := SelectFrom(m.rules(tenant, day), l); r != nil {
			k = ruleKey{r.ID, r.Version}
		}
		if k.id == oldID && int64(k.version) == oldVersion {
			continue
		}
		amount, err := decimal.NewFromString(sum)
		if err != nil {
			rows.Close()
			return fmt.Errorf("allocation: sum %q: %w", sum, err)
		}
		ids[k] = append(ids[k], tids...)
		n := int64(len(tids))
		moves = append(moves,
			[]any{tenant, day, currency, oldID, oldVersion, l.ServiceName, scale, numeric(amount.Neg()), -n},
			[]any{tenant, day, currency, k.id, int64(k.version), l.ServiceName, scale, numeric(amount), n})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("allocation: lines to match: %w", err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL enable_sort TO DEFAULT; SET LOCAL work_mem TO DEFAULT"); err != nil {
		return fmt.Errorf("allocation: lines to match: %w", err)
	}
	if len(moves) == 0 {
		return nil
	}
	keys := make([]ruleKey, 0, len(ids))
	for k := range ids {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].id != keys[j].id {
			return keys[i].id < keys[j].id
		}
		return keys[i].version < keys[j].version
	})
	for _, k := range keys {
		if _, err := tx.Exec(ctx, inSchema(rematchRuleSQL, schema), k.id, int64(k.version), ids[k]); err != nil {
			return fmt.Errorf("allocation: store re-matched lines: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE alloc_moves (tenant_id text, day date, currency text, rule_id text,
    rule_version bigint, service_name text, scale int, amount numeric, lines bigint) ON COMMIT DROP`); err != nil {
		return fmt.Errorf("allocation: create moves: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"alloc_moves"}, movesColumns, pgx.CopyFromRows(moves)); err != nil {
		return fmt.Errorf("allocation: copy moves: %w", err)
	}
	if _, err := tx.Exec(ctx, inSchema(movesSQL, schema)); err != nil {
		return fmt.Errorf("allocation: move totals: %w", err)
	}
	return nil
}

// recompute splits the pools of every marked day with the book of rules as it stands after
// the batch, from the day's pool_totals (a few rows per rule and service, whatever the
// number of lines), and replaces the day's rows.
func (p *Projection) recompute(ctx context.Context, tx pgx.Tx, schema string, m *matcher) error {
	if _, err := tx.Exec(ctx, inSchema(replaceSQL, schema)); err != nil {
		return fmt.Errorf("allocation: clear days: %w", err)
	}
	out := &dayRows{}
	err := eachDayTotals(ctx, tx, inSchema(dayTotalsSQL, schema), m, func(tenant string, day time.Time, pools *dayPools) {
		res, err := pools.split()
		if err != nil {
			p.logger().WarnContext(ctx, "allocation of a day failed; its cost is left unallocated",
				"tenant", tenant, "day", day.Format(time.DateOnly), "err", err)
			out.failed = append(out.failed, []any{tenant, day, err.Error()})
			res = pools.failed()
		}
		out.add(tenant, day, res)
	})
	if err != nil {
		return err
	}
	for _, t := range []struct {
		table string
		cols  []string
		rows  [][]any
	}{
		{"allocated_daily", allocatedColumns, out.allocated},
		{"unallocated_daily", unallocatedColumns, out.unallocated},
		{"failed_days", []string{"tenant_id", "day", "reason"}, out.failed},
	} {
		if len(t.rows) == 0 {
			continue
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{schema, t.table}, t.cols, pgx.CopyFromRows(t.rows)); err != nil {
			return fmt.Errorf("allocation: copy %s: %w", t.table, err)
		}
	}
	return nil
}

// eachDayTotals runs sql (rows of dayTotalsSQL's shape) and calls fn once per (tenant, day)
// with the day's pools: each pool_totals row counted into the pool of its rule version, which
// must be in force that day (the fold keeps every line's rule so), or as unallocated.
func eachDayTotals(ctx context.Context, tx pgx.Tx, sql string, m *matcher, fn func(tenant string, day time.Time, pools *dayPools)) error {
	rows, err := tx.Query(ctx, sql)
	if err != nil {
		return fmt.Errorf("allocation: totals of the days: %w", err)
	}
	defer rows.Close()
	var (
		cur   tenantDay
		pools *dayPools
		rules map[ruleKey]*Rule
	)
	for rows.Next() {
		var (
			tenant, currency, ruleID, service, amount string
			day                                       time.Time
			version                                   int64
		)
		if err := rows.Scan(&tenant, &day, &currency, &ruleID, &version, &service, &amount); err != nil {
			return fmt.Errorf("allocation: totals of the days: %w", err)
		}
		a, err := decimal.NewFromString(amount)
		if err != nil {
			return fmt.Errorf("allocation: total %q: %w", amount, err)
		}
		day = Day(day)
		if pools == nil || tenant != cur.tenant || !day.Equal(cur.day) {
			if pools != nil {
				fn(cur.tenant, cur.day, pools)
			}
			cur, pools, rules = tenantDay{tenant, day}, newDayPools(), map[ruleKey]*Rule{}
			for _, r := range m.rules(tenant, day) {
				rules[ruleKey{r.ID, r.Version}] = r
			}
		}
		var r *Rule
		if ruleID != "" {
			if r = rules[ruleKey{ruleID, uint32(version)}]; r == nil {
				return fmt.Errorf("allocation: tenant %s, %s: lines of rule %s v%d, which is not in force that day",
					tenant, day.Format(time.DateOnly), ruleID, version)
			}
		}
		pools.add(r, currency, service, a)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("allocation: totals of the days: %w", err)
	}
	if pools != nil {
		fn(cur.tenant, cur.day, pools)
	}
	return nil
}

// dayRows are the recomputed rows of a batch.
type dayRows struct {
	allocated, unallocated, failed [][]any
}

func (o *dayRows) add(tenant string, day time.Time, r DayResult) {
	for _, a := range r.Allocated {
		o.allocated = append(o.allocated, []any{tenant, day, a.CostCenter, a.Currency, a.RuleID, int64(a.RuleVersion), numeric(a.Amount)})
	}
	for _, u := range r.Unallocated {
		o.unallocated = append(o.unallocated, []any{tenant, day, u.Currency, u.ServiceName, numeric(u.Amount)})
	}
}

// eachDay runs sql (tenant, day, the match fields, tags, currency and amount as text, ordered
// by tenant and day) and calls fn once per (tenant, day) with its lines. Only one day's lines
// are held at a time.
func eachDay(ctx context.Context, tx pgx.Tx, sql string, args []any, fn func(tenant string, day time.Time, lines []CostLine)) error {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("allocation: lines of the days: %w", err)
	}
	defer rows.Close()
	var (
		curTenant string
		curDay    time.Time
		lines     []CostLine
	)
	for rows.Next() {
		var (
			tenant, amount string
			day            time.Time
			l              CostLine
		)
		if err := rows.Scan(&tenant, &day, &l.Provider, &l.BillingAccountID, &l.ServiceName, &l.RegionID,
			&l.ResourceID, &l.Tags, &l.Currency, &amount); err != nil {
			return fmt.Errorf("allocation: lines of the days: %w", err)
		}
		if l.Amount, err = decimal.NewFromString(amount); err != nil {
			return fmt.Errorf("allocation: line amount %q: %w", amount, err)
		}
		day = Day(day)
		if len(lines) > 0 && (tenant != curTenant || !day.Equal(curDay)) {
			fn(curTenant, curDay, lines)
			lines = nil
		}
		curTenant, curDay = tenant, day
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("allocation: lines of the days: %w", err)
	}
	if len(lines) > 0 {
		fn(curTenant, curDay, lines)
	}
	return nil
}

// numeric is d as a PostgreSQL numeric, digits unchanged.
func numeric(d decimal.Decimal) pgtype.Numeric {
	return pgtype.Numeric{Int: d.Coefficient(), Exp: d.Exponent(), Valid: true}
}
