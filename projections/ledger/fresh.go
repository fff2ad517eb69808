package ledger

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// Most events of a batch record lines the ledger has never seen. The fold takes those through
// a fast path: their history rows and their lines are COPied straight into the ledger tables,
// their daily rollup is summed in Go (exact decimals) and upserted as a few rows, and nothing
// is staged, joined or sorted in PostgreSQL. Everything else (restatements, retractions,
// finalizations, keys seen twice in the batch) goes through slowSQL. A "new" line that turns
// out to exist (a key recorded again without a retraction in between) makes the COPY fail on
// the primary key; the fast path then rolls back to a savepoint and folds those lines through
// slowSQL, staged from their COPY rows (foldSlow), so the result never depends on which path
// ran.

var historyColumns = []string{"tenant_id", "stream_seq", "event_index", "event_id", "op", "provider", "billing_account_id",
	"billing_period_start", "line_key", "previous_event_id", "post_close", "billing_currency", "billed_cost_delta",
	"effective_cost_delta", "list_cost_delta", "contracted_cost_delta", "consumed_quantity_delta", "pricing_quantity_delta"}

var opNames = [...]string{opRecorded: "recorded", opRestated: "restated", opRetracted: "retracted"}

type lineID struct {
	tenant, provider, account, key string
	period                         int64
}

type scopeID struct {
	tenant, provider, account string
	period                    int64
}

// batchPlan is one batch's events sorted for the two paths, as rows ready to COPY. A planner
// builds it one event at a time, as the runner reads the log, so that no batch of decoded
// events is held: only these rows. Once applied, its buffers go to a later batch (release).
type batchPlan struct {
	history     copyBinary // line_history rows, one per line event
	historyRows int
	slow        [][]any // stage rows for slowSQL
	finals      [][]any // finalized scopes
	fresh       copyBinary
	scratch     []byte
	freshRows   []freshRow
	daily       *dailySums
	months      []time.Time // first instants of the billing-period months the lines fall in
	fx          fxRows      // FX rates recorded (fx.go)

	// The planner's while it builds the plan (empty after), kept to be reused.
	lines     map[lineID]int32 // the batch's lines: index of the line's fresh row, or -1 once staged
	linesRoom int              // the most lines lines held
	undo      []freshUndo      // per fresh row
}

// freshRow is where a fresh line's final flag sits in the COPY data, and its scope.
type freshRow struct {
	scope scopeID
	at    int
}

// freshUndo is what a fresh row added to the daily sums, to take it out should the row be
// dropped (sum is nil once it is).
type freshUndo struct {
	sum     *dailySum
	amounts [3]string // billed, effective, list
}

// lineEvent is what identifies a line event: its kind, scope and key.
func lineEvent(env *tallyv1.Envelope) (op int16, scope *tallyv1.BillScope, key string) {
	switch b := env.GetBody().(type) {
	case *tallyv1.Envelope_CostLineRecorded:
		l := b.CostLineRecorded.GetLine()
		return opRecorded, l.GetScope(), l.GetLineKey()
	case *tallyv1.Envelope_CostLineRestated:
		l := b.CostLineRestated.GetLine()
		return opRestated, l.GetScope(), l.GetLineKey()
	case *tallyv1.Envelope_CostLineRetracted:
		r := b.CostLineRetracted
		return opRetracted, r.GetScope(), r.GetLineKey()
	}
	return 0, nil, ""
}

func scopeOf(tenant string, s *tallyv1.BillScope) scopeID {
	return scopeID{tenant, s.GetProvider(), s.GetBillingAccountId(), s.GetBillingPeriodStart().AsTime().UnixNano()}
}

// spare holds applied plans, whose buffers the next batches reuse: a fold in progress has
// two plans, one committing and one being built. A buffer much larger than its last batch
// needed is not kept (copyBinary.reuse), so a catch-up's large buffers go with the first small
// batches after it.
var spare struct {
	sync.Mutex
	plans []*batchPlan
}

const maxSpare = 2

func newPlan() *batchPlan {
	spare.Lock()
	defer spare.Unlock()
	n := len(spare.plans)
	if n == 0 {
		return &batchPlan{lines: map[lineID]int32{}}
	}
	b := spare.plans[n-1]
	spare.plans[n-1] = nil
	spare.plans = spare.plans[:n-1]
	return b
}

// release hands b's buffers to a later batch. b is not used after it, and must have been
// applied without error: a failed COPY may leave pgx reading its buffer.
func (b *batchPlan) release() {
	clear(b.freshRows) // their strings
	rows, undo := b.freshRows[:0], b.undo[:0]
	if len(b.freshRows) < cap(b.freshRows)/4 {
		rows, undo = nil, nil
	}
	lines, room := b.lines, max(b.linesRoom, b.historyRows)
	if b.historyRows < room/4 {
		lines, room = map[lineID]int32{}, 0
	}
	*b = batchPlan{history: b.history.reuse(), fresh: b.fresh.reuse(), scratch: b.scratch[:0],
		freshRows: rows, lines: lines, linesRoom: room, undo: undo}
	spare.Lock()
	defer spare.Unlock()
	if len(spare.plans) < maxSpare {
		spare.plans = append(spare.plans, b)
	}
}

// planner builds a batchPlan one event at a time (projections.PreparingBatch). Whether a
// recorded line is fresh depends on the rest of the batch (a later event of the same line
// sends it the general way), so every recorded line is taken as fresh until a later event of
// its line drops its fresh row again: that later event is then staged, and is the line's last
// in the stage, so the dropped one needs no stage row (slowSQL folds the last event of each
// line it stages; every event keeps its history row).
type planner struct {
	b         *batchPlan
	ord       int // events added
	dropped   int // fresh rows dropped
	months    map[time.Time]bool
	lastMonth time.Time
}

func newPlanner() *planner {
	b := newPlan()
	b.daily = newDailySums()
	return &planner{b: b, months: map[time.Time]bool{}}
}

// Add implements projections.PreparingBatch: it sorts one event into the plan.
func (p *planner) Add(ev eventstore.Event) error {
	ord := p.ord
	p.ord++
	if err := p.add(ord, ev); err != nil {
		return fmt.Errorf("event %s (seq %d.%d): %w", ev.Envelope.GetEventId(), ev.StreamSeq, ev.Index, err)
	}
	return nil
}

// Prepared implements projections.PreparingBatch.
func (p *planner) Prepared() (any, error) {
	b := p.b
	if p.dropped > 0 {
		p.compactFresh()
	}
	slices.SortFunc(b.months, time.Time.Compare)
	clear(b.lines) // their strings; the map keeps its room
	clear(b.undo)
	b.undo = b.undo[:0]
	p.b = nil
	return b, nil
}

func (p *planner) add(ord int, ev eventstore.Event) error {
	b := p.b
	env := ev.Envelope
	tenant := env.GetTenantId()
	op, scope, key := lineEvent(env)
	if op == 0 {
		if r, ok := env.GetBody().(*tallyv1.Envelope_FxRateRecorded); ok {
			return b.fx.add(ev, r.FxRateRecorded)
		}
		_, final, err := stageRow(ord, ev)
		if final != nil {
			b.finals = append(b.finals, final)
		}
		return err
	}
	period := scope.GetBillingPeriodStart().AsTime()
	if m := time.Date(period.Year(), period.Month(), 1, 0, 0, 0, 0, time.UTC); m != p.lastMonth && !p.months[m] {
		p.months[m] = true
		b.months = append(b.months, m)
		p.lastMonth = m
	}
	uid, err := uuid.Parse(env.GetEventId())
	if err != nil {
		return fmt.Errorf("event id: %w", err)
	}
	id := [16]byte(uid)
	var (
		prev, currency string
		postClose      bool
		deltas         [6]string
		line           *tallyv1.CostLine
	)
	switch body := env.GetBody().(type) {
	case *tallyv1.Envelope_CostLineRecorded:
		line, postClose = body.CostLineRecorded.GetLine(), body.CostLineRecorded.GetPostClose()
		currency = line.GetBillingCurrency()
		// A new line's delta is the line itself.
		deltas = [6]string{line.GetBilledCost(), line.GetEffectiveCost(), line.GetListCost(), line.GetContractedCost(),
			line.GetConsumedQuantity(), line.GetPricingQuantity()}
	case *tallyv1.Envelope_CostLineRestated:
		r := body.CostLineRestated
		prev, postClose, currency, deltas = r.GetPreviousEventId(), r.GetPostClose(), r.GetLine().GetBillingCurrency(), deltaStrings(r.GetDelta())
	case *tallyv1.Envelope_CostLineRetracted:
		r := body.CostLineRetracted
		prev, postClose, currency, deltas = r.GetPreviousEventId(), r.GetPostClose(), r.GetDelta().GetBillingCurrency(), deltaStrings(r.GetDelta())
	}
	if err := writeHistory(&b.history, tenant, ev.StreamSeq, ev.Index, id, op, scope, key, prev, postClose, currency, &deltas); err != nil {
		return err
	}
	b.historyRows++
	lid := lineID{tenant, scope.GetProvider(), scope.GetBillingAccountId(), key, period.UnixNano()}
	i, seen := b.lines[lid]
	if seen && i >= 0 {
		if err := p.drop(i); err != nil {
			return err
		}
	}
	if op != opRecorded || seen {
		b.lines[lid] = -1
		row, _, err := stageRow(ord, ev)
		if err != nil {
			return err
		}
		if len(row) != len(stageColumns) {
			return fmt.Errorf("ledger: stage row of %d values for %d columns", len(row), len(stageColumns))
		}
		b.slow = append(b.slow, row)
		return nil
	}
	at, scratch, err := writeFresh(&b.fresh, tenant, ev.StreamSeq, id, line, postClose, b.scratch)
	b.scratch = scratch
	if err != nil {
		return err
	}
	sc := scopeOf(tenant, scope)
	if n := len(b.freshRows); n > 0 && b.freshRows[n-1].scope == sc {
		sc = b.freshRows[n-1].scope // the same strings, not one copy a row
	}
	sum, err := b.daily.add(sc, line)
	if err != nil {
		return err
	}
	b.lines[lid] = int32(len(b.freshRows))
	b.freshRows = append(b.freshRows, freshRow{scope: sc, at: at})
	b.undo = append(b.undo, freshUndo{sum: sum, amounts: [3]string{line.GetBilledCost(), line.GetEffectiveCost(), line.GetListCost()}})
	return nil
}

// drop takes fresh row i out of the daily sums and marks it for compactFresh.
func (p *planner) drop(i int32) error {
	u := &p.b.undo[i]
	sum := u.sum
	u.sum = nil
	p.dropped++
	return p.b.daily.sub(sum, u.amounts)
}

// compactFresh removes the dropped rows from the fresh COPY data. Row k runs from the end of
// row k-1 (the header, for the first) to its final flag, its last byte.
func (p *planner) compactFresh() {
	b := p.b
	buf := b.fresh.buf
	w := len(copyBinaryHeader)
	start := w
	kept := b.freshRows[:0]
	for k, r := range b.freshRows {
		end := r.at + 1
		if b.undo[k].sum != nil {
			w += copy(buf[w:], buf[start:end])
			r.at = w - 1
			kept = append(kept, r)
		}
		start = end
	}
	clear(b.freshRows[len(kept):])
	b.fresh.buf, b.freshRows = buf[:w], kept
}

func deltaStrings(d *tallyv1.CostDelta) [6]string {
	return [6]string{d.GetBilledCost(), d.GetEffectiveCost(), d.GetListCost(), d.GetContractedCost(), d.GetConsumedQuantity(), d.GetPricingQuantity()}
}

const finalizedOf = `
SELECT i FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) WITH ORDINALITY AS s(t, p, a, b, i)
WHERE EXISTS (SELECT 1 FROM ledger_schema.finalized_scopes f
    WHERE f.tenant_id = s.t AND f.provider = s.p AND f.billing_account_id = s.a AND f.billing_period_start = s.b)`

const dailyUpsert = `
INSERT INTO ledger_schema.daily AS d (` + dailyKeys + `, billed_cost, effective_cost, list_cost, line_count)
SELECT t, day, p, a, s, r, c, cur, f, trim_scale(b), trim_scale(e), trim_scale(l), n
FROM unnest($1::text[], $2::date[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[],
    $10::numeric[], $11::numeric[], $12::numeric[], $13::bigint[]) AS x(t, day, p, a, s, r, c, cur, f, b, e, l, n)
ON CONFLICT (` + dailyKeys + `) DO UPDATE SET
    billed_cost = trim_scale(d.billed_cost + excluded.billed_cost),
    effective_cost = trim_scale(d.effective_cost + excluded.effective_cost),
    list_cost = trim_scale(d.list_cost + excluded.list_cost),
    line_count = d.line_count + excluded.line_count`

// foldFresh writes b's fresh lines by the fast path (see above).
func foldFresh(ctx context.Context, tx pgx.Tx, schema string, b *batchPlan) error {
	final, err := finalizedScopes(ctx, tx, schema, b.freshRows)
	if err != nil {
		return err
	}
	if len(final) > 0 {
		for _, r := range b.freshRows {
			if final[r.scope] {
				b.fresh.buf[r.at] = 1
			}
		}
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT ledger_fresh"); err != nil {
		return err
	}
	err = copyBinaryInto(ctx, tx, pgx.Identifier{schema, "lines"}, freshColumns, &b.fresh)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		// Some "new" line exists already: fold them all the general way, staged from their
		// COPY rows (the batch's decoded events are gone).
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT ledger_fresh"); err != nil {
			return err
		}
		return foldSlow(ctx, tx, schema, nil, nil, &b.fresh)
	}
	if err != nil {
		return fmt.Errorf("copy new lines: %w", err)
	}
	if _, err := tx.Exec(ctx, inSchema(dailyUpsert, schema), b.daily.args(final)...); err != nil {
		return fmt.Errorf("add new lines to daily: %w", err)
	}
	return nil
}

// finalizedScopes reports which of the fresh lines' bill scopes are finalized (the batch's
// own finalizations are in finalized_scopes already: slowSQL ran first).
func finalizedScopes(ctx context.Context, tx pgx.Tx, schema string, fresh []freshRow) (map[scopeID]bool, error) {
	var ids []scopeID
	idx := map[scopeID]bool{}
	var tenants, providers, accounts []string
	var periods []time.Time
	for _, r := range fresh {
		sc := r.scope
		if idx[sc] {
			continue
		}
		idx[sc] = true
		ids = append(ids, sc)
		tenants, providers, accounts = append(tenants, sc.tenant), append(providers, sc.provider), append(accounts, sc.account)
		periods = append(periods, time.Unix(0, sc.period).UTC())
	}
	rows, err := tx.Query(ctx, inSchema(finalizedOf, schema), tenants, providers, accounts, periods)
	if err != nil {
		return nil, fmt.Errorf("finalized scopes: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("finalized scopes: %w", err)
	}
	out := make(map[scopeID]bool, len(found))
	for _, i := range found {
		out[ids[i-1]] = true
	}
	return out, nil
}

type dailyKey struct {
	scope                               scopeID // its tenant, provider and account are daily's
	service, region, category, currency string
	day                                 time.Time
}

type dailySum struct {
	billed, effective, list decimalSum
	lines                   int64
}

// dailySums is the daily rollup of new lines, summed exactly, per bill scope (whether a line
// is final depends on its scope, known only inside the transaction).
type dailySums struct {
	keys []dailyKey
	sums map[dailyKey]*dailySum
	tmp  big.Int
}

func newDailySums() *dailySums { return &dailySums{sums: map[dailyKey]*dailySum{}} }

// add sums new line l into its day: the UTC date of the charge period start, else of the
// billing period start (dayExpr).
func (d *dailySums) add(sc scopeID, l *tallyv1.CostLine) (*dailySum, error) {
	start := time.Unix(0, sc.period).UTC()
	if l.GetChargePeriodStart() != nil {
		start = l.GetChargePeriodStart().AsTime()
	}
	k := dailyKey{scope: sc, service: l.GetServiceName(), region: l.GetRegionId(), category: l.GetChargeCategory(),
		currency: l.GetBillingCurrency(), day: time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, time.UTC)}
	sum := d.sums[k]
	if sum == nil {
		sum = &dailySum{}
		d.sums[k] = sum
		d.keys = append(d.keys, k)
	}
	for _, p := range []struct {
		s   *decimalSum
		amt string
	}{{&sum.billed, l.GetBilledCost()}, {&sum.effective, l.GetEffectiveCost()}, {&sum.list, l.GetListCost()}} {
		exp, err := parseDecimal(p.amt, &d.tmp)
		if err != nil {
			return nil, err
		}
		p.s.add(&d.tmp, exp)
	}
	sum.lines++
	return sum, nil
}

// sub takes a line add added to sum back out: its billed, effective and list amounts.
func (d *dailySums) sub(sum *dailySum, amounts [3]string) error {
	for i, s := range [3]*decimalSum{&sum.billed, &sum.effective, &sum.list} {
		exp, err := parseDecimal(amounts[i], &d.tmp)
		if err != nil {
			return err
		}
		s.add(d.tmp.Neg(&d.tmp), exp)
	}
	sum.lines--
	return nil
}

// args are dailyUpsert's arguments, given which scopes are final.
func (d *dailySums) args(final map[scopeID]bool) []any {
	type key struct {
		tenant, provider, account, service, region, category, currency string
		day                                                            time.Time
		final                                                          bool
	}
	var keys []key
	merged := map[key]*dailySum{}
	for _, k := range d.keys {
		mk := key{k.scope.tenant, k.scope.provider, k.scope.account, k.service, k.region, k.category, k.currency, k.day, final[k.scope]}
		m := merged[mk]
		if m == nil {
			m = &dailySum{}
			merged[mk] = m
			keys = append(keys, mk)
		}
		s := d.sums[k]
		m.billed.add(&s.billed.unscaled, s.billed.exp)
		m.effective.add(&s.effective.unscaled, s.effective.exp)
		m.list.add(&s.list.unscaled, s.list.exp)
		m.lines += s.lines
	}
	// A day whose every new line was dropped again (sub) is exactly zero: it adds nothing.
	keys = slices.DeleteFunc(keys, func(k key) bool { return merged[k].lines == 0 })
	n := len(keys)
	var (
		tenants, providers, accounts, services, regions, categories, currencies = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		days                                                                    = make([]time.Time, n)
		finals                                                                  = make([]bool, n)
		billed, effective, list                                                 = make([]pgtype.Numeric, n), make([]pgtype.Numeric, n), make([]pgtype.Numeric, n)
		lines                                                                   = make([]int64, n)
	)
	for i, k := range keys {
		s := merged[k]
		tenants[i], providers[i], accounts[i], services[i], regions[i], categories[i], currencies[i] =
			k.tenant, k.provider, k.account, k.service, k.region, k.category, k.currency
		days[i], finals[i], lines[i] = k.day, k.final, s.lines
		billed[i], effective[i], list[i] = s.billed.numeric(), s.effective.numeric(), s.list.numeric()
	}
	return []any{tenants, days, providers, accounts, services, regions, categories, currencies, finals, billed, effective, list, lines}
}

// decimalSum adds decimals exactly (unscaled integer and base-10 exponent).
type decimalSum struct {
	unscaled big.Int
	exp      int32
	tmp      big.Int
}

var ten = big.NewInt(10)

// add adds unscaled * 10^exp.
func (s *decimalSum) add(unscaled *big.Int, exp int32) {
	v := unscaled
	switch {
	case exp < s.exp:
		// Rescale the sum down to the addend's exponent.
		s.tmp.Exp(ten, big.NewInt(int64(s.exp-exp)), nil)
		s.unscaled.Mul(&s.unscaled, &s.tmp)
		s.exp = exp
	case exp > s.exp:
		s.tmp.Exp(ten, big.NewInt(int64(exp-s.exp)), nil)
		v = s.tmp.Mul(&s.tmp, unscaled)
	}
	s.unscaled.Add(&s.unscaled, v)
}

func (s *decimalSum) numeric() pgtype.Numeric {
	return pgtype.Numeric{Int: new(big.Int).Set(&s.unscaled), Exp: s.exp, Valid: true}
}
