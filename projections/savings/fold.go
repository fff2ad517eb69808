package savings

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"
)

// apply folds a batch: a fixed number of bulk statements whatever its size.
//
//  1. Look up the resources of the lines the batch retracts (a retraction does not carry it).
//  2. Load the actions the batch may change: those on a resource a line event names, those the
//     batch redefines, and those whose windows overlap a bill the batch finalizes.
//  3. Load what measuring them needs: their resources' lines over their windows, and the
//     finalized bills of their tenants and providers.
//  4. Replay the batch's events in log order in memory, and after every event re-measure the
//     actions it touched; a changed figure is a new revision, with a history row naming the
//     event. Per event, not per batch: the history is the same however the log is cut.
//  5. Write the lines (COPY and one upsert, one delete), the new finalized bills, the changed
//     actions (COPY and one upsert) and the history rows (COPY).
func (b *batch) apply(ctx context.Context, tx pgx.Tx, schema string) error {
	if len(b.ops) == 0 {
		return nil
	}
	sql := func(q string) string { return inSchema(q, schema) }
	m := newMemory()

	retracted, err := retractedResources(ctx, tx, sql, b.ops)
	if err != nil {
		return err
	}
	if err := m.loadActions(ctx, tx, sql, b.ops, retracted); err != nil {
		return err
	}
	if err := m.loadLines(ctx, tx, sql, b.ops); err != nil {
		return err
	}
	if err := m.loadFinals(ctx, tx, sql); err != nil {
		return err
	}
	w := m.replay(b.ops)
	return w.write(ctx, tx, schema)
}

// memory is the part of the read model a batch can change, and the batch's effect on it.
type memory struct {
	lines    map[lineID]*line
	byRes    map[resKey]map[lineID]*line
	interest map[resKey]bool    // resources whose lines are tracked: those of the actions
	tps      map[[2]string]bool // (tenant, provider) whose finalized bills are loaded
	finals   map[scopeKey]*finalScope
	spans    map[[3]string][]*finalScope // (tenant, provider, account) → finalized bills
	actions  map[actionKey]*action
	onRes    map[resKey]map[actionKey]*action
	onTP     map[[2]string]map[actionKey]*action
}

func newMemory() *memory {
	return &memory{lines: map[lineID]*line{}, byRes: map[resKey]map[lineID]*line{}, interest: map[resKey]bool{},
		tps: map[[2]string]bool{}, finals: map[scopeKey]*finalScope{}, spans: map[[3]string][]*finalScope{},
		actions: map[actionKey]*action{}, onRes: map[resKey]map[actionKey]*action{}, onTP: map[[2]string]map[actionKey]*action{}}
}

func micros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// retractedResources finds the stored resource of each line the batch retracts.
func retractedResources(ctx context.Context, tx pgx.Tx, sql func(string) string, ops []op) (map[lineID]string, error) {
	var t, p, a, k []string
	var s []time.Time
	for _, o := range ops {
		if o.kind == opRetract {
			t, p, a, k = append(t, o.retract.tenant), append(p, o.retract.provider), append(a, o.retract.account), append(k, o.retract.key)
			s = append(s, micros(o.retract.start))
		}
	}
	out := map[lineID]string{}
	if len(t) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, sql(`
SELECT l.tenant_id, l.provider, l.billing_account_id, l.billing_period_start, l.line_key, l.resource_id
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[]) r(t, p, a, s, k)
JOIN savings_schema.lines l ON l.tenant_id = r.t AND l.provider = r.p AND l.billing_account_id = r.a
    AND l.billing_period_start = r.s AND l.line_key = r.k`), t, p, a, s, k)
	if err != nil {
		return nil, fmt.Errorf("savings: retracted lines: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id lineID
		var start time.Time
		var res string
		if err := rows.Scan(&id.tenant, &id.provider, &id.account, &start, &id.key, &res); err != nil {
			return nil, err
		}
		id.start = start.UnixMicro()
		out[id] = res
	}
	return out, rows.Err()
}

const actionCols = `tenant_id, action_id, provider, billing_account_id, resource_id, kind, tool, description,
    actor_kind, actor_id, expected_daily_savings, expected_currency, executed_at, period, baseline_days, gap_days,
    measurement_days, baseline_start, baseline_end, measurement_start, measurement_end, event_id, tenant_seq,
    status, reason, currency, baseline_total, measurement_total, baseline_lines, measurement_lines, baseline_daily,
    measurement_daily, realized_daily, realized_monthly, revision, updated_event_id, updated_tenant_seq`

var actionColumns = func() []string {
	var out []string
	for _, c := range strings.Split(actionCols, ",") {
		out = append(out, strings.TrimSpace(c))
	}
	return out
}()

// loadActions loads the stored actions the batch may change.
func (m *memory) loadActions(ctx context.Context, tx pgx.Tx, sql func(string) string, ops []op, retracted map[lineID]string) error {
	var rt, rp, rr, kt, ki, ft, fp, fa []string
	var fs, fe, fb []time.Time
	seenRes := map[resKey]bool{}
	addRes := func(k resKey) {
		if k.resource != "" && !seenRes[k] {
			seenRes[k] = true
			rt, rp, rr = append(rt, k.tenant), append(rp, k.provider), append(rr, k.resource)
		}
	}
	for _, o := range ops {
		switch o.kind {
		case opLine:
			addRes(resKey{o.tenant, o.line.id.provider, o.line.resource})
		case opRetract:
			addRes(resKey{o.tenant, o.retract.provider, retracted[o.retract]})
		case opFinal:
			ft, fp, fa = append(ft, o.tenant), append(fp, o.final.provider), append(fa, o.final.account)
			fs, fe = append(fs, dayOf(micros(o.final.start)).time()), append(fe, dayOf(micros(o.final.end)).time())
			fb = append(fb, micros(o.final.start))
		case opAction:
			kt, ki = append(kt, o.tenant), append(ki, o.action.key.id)
		}
	}
	rows, err := tx.Query(ctx, sql(`
SELECT `+actionCols+` FROM savings_schema.actions a
    JOIN unnest($1::text[], $2::text[], $3::text[]) r(t, p, res) ON a.tenant_id = r.t AND a.provider = r.p AND a.resource_id = r.res
UNION
SELECT `+actionCols+` FROM savings_schema.actions a
    JOIN unnest($4::text[], $5::text[]) k(t, id) ON a.tenant_id = k.t AND a.action_id = k.id
UNION
SELECT `+actionCols+` FROM savings_schema.actions a
    JOIN unnest($6::text[], $7::text[], $8::text[], $9::date[], $10::date[], $11::timestamptz[]) f(t, p, acc, s, e, bill)
    ON a.tenant_id = f.t AND a.provider = f.p AND (a.billing_account_id = '' OR a.billing_account_id = f.acc)
    AND ((a.baseline_start <= f.e AND a.measurement_end >= f.s)
        OR EXISTS (SELECT 1 FROM savings_schema.lines l WHERE l.tenant_id = a.tenant_id AND l.provider = a.provider
            AND l.resource_id = a.resource_id AND l.day BETWEEN a.baseline_start AND a.measurement_end
            AND l.billing_account_id = f.acc AND l.billing_period_start = f.bill))`), rt, rp, rr, kt, ki, ft, fp, fa, fs, fe, fb)
	if err != nil {
		return fmt.Errorf("savings: load actions: %w", err)
	}
	loaded, err := pgx.CollectRows(rows, scanAction)
	if err != nil {
		return fmt.Errorf("savings: load actions: %w", err)
	}
	for _, a := range loaded {
		m.index(a)
	}
	// The batch's own actions: their resources' lines and their providers' bills are needed
	// from the start, since lines earlier in the batch count for them.
	for _, o := range ops {
		if o.kind == opAction {
			m.interest[o.action.res()] = true
			m.tps[[2]string{o.tenant, o.action.provider}] = true
		}
	}
	return nil
}

// index adds a to the indexes (and its resource and provider to what is tracked).
func (m *memory) index(a *action) {
	m.actions[a.key] = a
	r, tp := a.res(), [2]string{a.key.tenant, a.provider}
	m.interest[r], m.tps[tp] = true, true
	if m.onRes[r] == nil {
		m.onRes[r] = map[actionKey]*action{}
	}
	m.onRes[r][a.key] = a
	if m.onTP[tp] == nil {
		m.onTP[tp] = map[actionKey]*action{}
	}
	m.onTP[tp][a.key] = a
}

func (m *memory) unindex(a *action) {
	delete(m.actions, a.key)
	delete(m.onRes[a.res()], a.key)
	delete(m.onTP[[2]string{a.key.tenant, a.provider}], a.key)
}

// loadLines loads the lines of the tracked resources over the days any of their actions
// measures (stored or defined in the batch).
func (m *memory) loadLines(ctx context.Context, tx pgx.Tx, sql func(string) string, ops []op) error {
	type span struct{ from, to day }
	ranges := map[resKey]*span{}
	widen := func(a *action) {
		if a.invalid != "" {
			return
		}
		r, w := a.res(), a.windows
		if s := ranges[r]; s != nil {
			s.from, s.to = min(s.from, w.BaselineStart), max(s.to, w.MeasurementEnd)
			return
		}
		ranges[r] = &span{w.BaselineStart, w.MeasurementEnd}
	}
	for _, a := range m.actions {
		widen(a)
	}
	for _, o := range ops {
		if o.kind == opAction {
			widen(o.action)
		}
	}
	return m.loadLinesIn(ctx, tx, sql, func(add func(resKey, day, day)) {
		for r, s := range ranges {
			add(r, s.from, s.to)
		}
	})
}

func (m *memory) loadLinesIn(ctx context.Context, tx pgx.Tx, sql func(string) string, each func(add func(resKey, day, day))) error {
	var t, p, r []string
	var from, to []time.Time
	each(func(k resKey, f, e day) {
		t, p, r = append(t, k.tenant), append(p, k.provider), append(r, k.resource)
		from, to = append(from, f.time()), append(to, e.time())
	})
	if len(t) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, sql(`
SELECT l.tenant_id, l.provider, l.billing_account_id, l.billing_period_start, l.line_key, l.resource_id, l.day,
    l.billing_currency, l.effective_cost::text, l.last_event_id, l.last_tenant_seq
FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::date[]) r(t, p, res, f, e)
JOIN savings_schema.lines l ON l.tenant_id = r.t AND l.provider = r.p AND l.resource_id = r.res AND l.day BETWEEN r.f AND r.e`),
		t, p, r, from, to)
	if err != nil {
		return fmt.Errorf("savings: load lines: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		l := &line{}
		var start, d time.Time
		var eff string
		if err := rows.Scan(&l.id.tenant, &l.id.provider, &l.id.account, &start, &l.id.key, &l.resource, &d,
			&l.currency, &eff, &l.eventID, &l.tenantSeq); err != nil {
			return fmt.Errorf("savings: load lines: %w", err)
		}
		l.id.start, l.day = start.UnixMicro(), dayOf(d)
		if l.effective, err = decimal.NewFromString(eff); err != nil {
			return fmt.Errorf("savings: stored amount %q: %w", eff, err)
		}
		m.put(l)
	}
	return rows.Err()
}

// loadFinals loads the finalized bills of the tracked tenants and providers.
func (m *memory) loadFinals(ctx context.Context, tx pgx.Tx, sql func(string) string) error {
	var t, p []string
	for tp := range m.tps {
		t, p = append(t, tp[0]), append(p, tp[1])
	}
	if len(t) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, sql(`
SELECT f.tenant_id, f.provider, f.billing_account_id, f.billing_period_start, f.billing_period_end, f.event_id, f.tenant_seq
FROM unnest($1::text[], $2::text[]) k(t, p) JOIN savings_schema.finalized f ON f.tenant_id = k.t AND f.provider = k.p`), t, p)
	if err != nil {
		return fmt.Errorf("savings: load finalized bills: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		f := &finalScope{}
		var start, end time.Time
		if err := rows.Scan(&f.tenant, &f.provider, &f.account, &start, &end, &f.eventID, &f.tenantSeq); err != nil {
			return fmt.Errorf("savings: load finalized bills: %w", err)
		}
		f.start, f.end = start.UnixMicro(), end.UnixMicro()
		m.addFinal(f)
	}
	return rows.Err()
}

func (m *memory) put(l *line) {
	r := resKey{l.id.tenant, l.id.provider, l.resource}
	m.lines[l.id] = l
	if m.byRes[r] == nil {
		m.byRes[r] = map[lineID]*line{}
	}
	m.byRes[r][l.id] = l
}

func (m *memory) remove(l *line) {
	delete(m.lines, l.id)
	delete(m.byRes[resKey{l.id.tenant, l.id.provider, l.resource}], l.id)
}

func (m *memory) addFinal(f *finalScope) {
	m.finals[f.scopeKey] = f
	k := [3]string{f.tenant, f.provider, f.account}
	m.spans[k] = append(m.spans[k], f)
}

// writes is what a batch changes in the tables.
type writes struct {
	lines       map[lineID]*line // nil: retracted
	lineOrder   []lineID
	retractions int
	finals      []*finalScope
	actions     []*action
	history     [][]any
}

// replay folds ops in order into m, measuring touched actions after every event.
func (m *memory) replay(ops []op) *writes {
	w := &writes{lines: map[lineID]*line{}}
	seenFinal := map[scopeKey]bool{}
	setLine := func(id lineID, l *line) {
		if _, ok := w.lines[id]; !ok {
			w.lineOrder = append(w.lineOrder, id)
		}
		w.lines[id] = l
	}
	var dirty []*action
	for _, o := range ops {
		touched := map[actionKey]*action{}
		touchLine := func(l *line) {
			for k, a := range m.onRes[resKey{l.id.tenant, l.id.provider, l.resource}] {
				if a.invalid == "" && a.windows.which(l.day) != 0 && (a.account == "" || a.account == l.id.account) {
					touched[k] = a
				}
			}
		}
		var forced *action
		switch o.kind {
		case opLine:
			l := o.line
			if l.resource == "" {
				continue // never measured, so never kept
			}
			setLine(l.id, l)
			r := resKey{l.id.tenant, l.id.provider, l.resource}
			if !m.interest[r] {
				continue
			}
			if old := m.lines[l.id]; old != nil {
				m.remove(old)
			}
			m.put(l)
			touchLine(l)
		case opRetract:
			setLine(o.retract, nil)
			if old := m.lines[o.retract]; old != nil {
				m.remove(old)
				touchLine(old)
			}
		case opFinal:
			f := o.final
			if seenFinal[f.scopeKey] || m.finals[f.scopeKey] != nil {
				continue // the first finalization of a bill stands
			}
			seenFinal[f.scopeKey] = true
			w.finals = append(w.finals, f)
			m.addFinal(f)
			from, to := dayOf(micros(f.start)), dayOf(micros(f.end))
			for k, a := range m.onTP[[2]string{f.tenant, f.provider}] {
				if a.invalid == "" && (a.account == "" || a.account == f.account) &&
					(a.windows.BaselineStart <= to && a.windows.MeasurementEnd >= from || m.billInWindows(a, f.scopeKey)) {
					touched[k] = a
				}
			}
		case opAction:
			copied := *o.action // the prepared batch stays as it was
			a := &copied
			if prev := m.actions[a.key]; prev != nil {
				a.fig, a.revision = prev.fig, prev.revision
				m.unindex(prev)
			}
			m.index(a)
			touched[a.key], forced = a, a
		}
		keys := make([]actionKey, 0, len(touched))
		for k := range touched {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(x, y actionKey) int { return strings.Compare(x.tenant+"\x00"+x.id, y.tenant+"\x00"+y.id) })
		for _, k := range keys {
			a := touched[k]
			fig := m.measure(a)
			switch {
			case a == forced || !fig.same(a.fig):
				a.revision++
				a.fig, a.updatedID, a.updatedSeq = fig, o.eventID, o.tenantSeq
				w.history = append(w.history, historyRow(a, o))
			case fig.Reason != a.fig.Reason:
				a.fig.Reason = fig.Reason
			default:
				continue
			}
			if !a.dirty {
				a.dirty = true
				dirty = append(dirty, a)
			}
		}
	}
	// An action redefined in the batch replaced its earlier object: write the current one.
	for _, a := range dirty {
		if cur := m.actions[a.key]; cur == a {
			w.actions = append(w.actions, a)
		}
	}
	return w
}

// billInWindows reports whether bill has a line of a's resource dated in a's windows (a
// correction in a later bill).
func (m *memory) billInWindows(a *action, bill scopeKey) bool {
	for _, l := range m.byRes[a.res()] {
		if l.scope() == bill && a.windows.which(l.day) != 0 {
			return true
		}
	}
	return false
}

// measure evaluates a against the lines and bills in m.
func (m *memory) measure(a *action) Figures {
	lines := make([]*line, 0, len(m.byRes[a.res()]))
	for _, l := range m.byRes[a.res()] {
		lines = append(lines, l)
	}
	return measure(measureInput{
		invalid: a.invalid, windows: a.windows, account: a.account, expectedCurrency: a.expectedCurrency,
		baselineDays: a.baselineDays, measurementDays: a.measurementDays, lines: lines,
		final: func(l *line) bool { return m.finals[l.scope()] != nil },
		covered: func(account string, d day) bool {
			from, to := d.time().UnixMicro(), (d + 1).time().UnixMicro()
			for _, f := range m.spans[[3]string{a.key.tenant, a.provider, account}] {
				if f.start <= from && to <= f.end {
					return true
				}
			}
			return false
		},
	})
}

var historyColumns = []string{"tenant_id", "action_id", "revision", "event_id", "tenant_seq", "event_kind", "status",
	"reason", "currency", "baseline_total", "measurement_total", "baseline_lines", "measurement_lines", "baseline_daily",
	"measurement_daily", "realized_daily", "realized_monthly"}

func historyRow(a *action, o op) []any {
	f := a.fig
	return []any{a.key.tenant, a.key.id, int32(a.revision), o.eventID, o.tenantSeq, o.evKind, f.Status, f.Reason, f.Currency,
		num(f.BaselineTotal), num(f.MeasurementTotal), int32(f.BaselineLines), int32(f.MeasurementLines),
		num(f.BaselineDaily), num(f.MeasurementDaily), num(f.RealizedDaily), num(f.RealizedMonthly)}
}

func actionRow(a *action) []any {
	f := a.fig
	var expected, executed, bs, be, ms, me any
	if a.expected != nil {
		expected = numeric(*a.expected)
	}
	if a.executedAt != nil {
		executed = *a.executedAt
	}
	if a.invalid == "" {
		bs, be, ms, me = a.windows.BaselineStart.time(), a.windows.BaselineEnd.time(), a.windows.MeasurementStart.time(), a.windows.MeasurementEnd.time()
	}
	return []any{a.key.tenant, a.key.id, a.provider, a.account, a.resource, a.kind, a.tool, a.description,
		a.actorKind, a.actorID, expected, a.expectedCurrency, executed, a.period(), int32(a.baselineDays), int32(a.gapDays),
		int32(a.measurementDays), bs, be, ms, me, a.eventID, a.tenantSeq,
		f.Status, f.Reason, f.Currency, num(f.BaselineTotal), num(f.MeasurementTotal), int32(f.BaselineLines), int32(f.MeasurementLines),
		num(f.BaselineDaily), num(f.MeasurementDaily), num(f.RealizedDaily), num(f.RealizedMonthly),
		int32(a.revision), a.updatedID, a.updatedSeq}
}

// scanAction reads a row of actionCols.
func scanAction(row pgx.CollectableRow) (*action, error) {
	var s actionScan
	if err := row.Scan(s.dest()...); err != nil {
		return nil, err
	}
	return s.finish()
}

// actionScan holds a row of actionCols while it is scanned.
type actionScan struct {
	a                                                      action
	expected, bTotal, mTotal, bDaily, mDaily, rDaily, rMon *string
	executed, bs, be, ms, me                               *time.Time
	period                                                 string
	bd, gd, md, bl, ml, rev                                int32
}

func (s *actionScan) dest() []any {
	a := &s.a
	return []any{&a.key.tenant, &a.key.id, &a.provider, &a.account, &a.resource, &a.kind, &a.tool, &a.description,
		&a.actorKind, &a.actorID, &s.expected, &a.expectedCurrency, &s.executed, &s.period, &s.bd, &s.gd, &s.md,
		&s.bs, &s.be, &s.ms, &s.me, &a.eventID, &a.tenantSeq, &a.fig.Status, &a.fig.Reason, &a.fig.Currency,
		&s.bTotal, &s.mTotal, &s.bl, &s.ml, &s.bDaily, &s.mDaily, &s.rDaily, &s.rMon, &s.rev, &a.updatedID, &a.updatedSeq}
}

func (s *actionScan) finish() (*action, error) {
	a := s.a
	a.baselineDays, a.gapDays, a.measurementDays = int(s.bd), int(s.gd), int(s.md)
	a.fig.BaselineLines, a.fig.MeasurementLines, a.revision = int(s.bl), int(s.ml), int(s.rev)
	if s.expected != nil {
		d, err := decimal.NewFromString(*s.expected)
		if err != nil {
			return nil, err
		}
		a.expected = &d
	}
	if s.executed != nil {
		t := s.executed.UTC()
		a.executedAt = &t
	}
	a.setWindows()
	for _, p := range []struct {
		to   *string
		from *string
	}{{&a.fig.BaselineTotal, s.bTotal}, {&a.fig.MeasurementTotal, s.mTotal}, {&a.fig.BaselineDaily, s.bDaily},
		{&a.fig.MeasurementDaily, s.mDaily}, {&a.fig.RealizedDaily, s.rDaily}, {&a.fig.RealizedMonthly, s.rMon}} {
		if p.from != nil {
			*p.to = canonical(*p.from)
		}
	}
	return &a, nil
}

// canonical is a stored amount as decimal.String writes it, so a figure read back compares
// equal to the same figure computed.
func canonical(s string) string {
	d, err := decimal.NewFromString(s)
	if err != nil {
		return s
	}
	return d.String()
}

const stageDDL = `
DROP TABLE IF EXISTS pg_temp.savings_stage_lines, pg_temp.savings_stage_actions;
CREATE TEMP TABLE savings_stage_lines (
    retracted boolean, tenant_id text, provider text, billing_account_id text, billing_period_start timestamptz,
    line_key text, resource_id text, day date, billing_currency text, effective_cost numeric, last_event_id uuid,
    last_tenant_seq bigint
) ON COMMIT DROP;
CREATE TEMP TABLE savings_stage_actions (LIKE savings_schema.actions) ON COMMIT DROP`

var stageLineColumns = []string{"retracted", "tenant_id", "provider", "billing_account_id", "billing_period_start",
	"line_key", "resource_id", "day", "billing_currency", "effective_cost", "last_event_id", "last_tenant_seq"}

const lineKeys = "tenant_id, provider, billing_account_id, billing_period_start, line_key"

func (w *writes) write(ctx context.Context, tx pgx.Tx, schema string) error {
	sql := func(q string) string { return inSchema(q, schema) }
	if len(w.lineOrder) == 0 && len(w.finals) == 0 && len(w.actions) == 0 && len(w.history) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, sql(stageDDL)); err != nil {
		return fmt.Errorf("savings: create stage: %w", err)
	}
	if len(w.lineOrder) > 0 {
		rows := make([][]any, 0, len(w.lineOrder))
		for _, id := range w.lineOrder {
			start := micros(id.start)
			if l := w.lines[id]; l != nil {
				rows = append(rows, []any{false, id.tenant, id.provider, id.account, start, id.key, l.resource, l.day.time(),
					l.currency, numeric(l.effective), l.eventID, l.tenantSeq})
			} else {
				w.retractions++
				rows = append(rows, []any{true, id.tenant, id.provider, id.account, start, id.key, nil, nil, nil, nil, nil, nil})
			}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"savings_stage_lines"}, stageLineColumns, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("savings: copy lines: %w", err)
		}
		// Retractions only when there are some: with none, the delete still joined the stage
		// with every line (a third of a 5,000-line batch's time at 60,000 lines).
		stmts := []string{`
INSERT INTO savings_schema.lines (` + lineKeys + `, resource_id, day, billing_currency, effective_cost, last_event_id, last_tenant_seq)
SELECT ` + lineKeys + `, resource_id, day, billing_currency, effective_cost, last_event_id, last_tenant_seq
FROM savings_stage_lines WHERE NOT retracted
ON CONFLICT (` + lineKeys + `) DO UPDATE SET resource_id = excluded.resource_id, day = excluded.day,
    billing_currency = excluded.billing_currency, effective_cost = excluded.effective_cost,
    last_event_id = excluded.last_event_id, last_tenant_seq = excluded.last_tenant_seq`}
		if w.retractions > 0 {
			stmts = append(stmts, `
DELETE FROM savings_schema.lines l USING savings_stage_lines s
WHERE s.retracted AND l.tenant_id = s.tenant_id AND l.provider = s.provider AND l.billing_account_id = s.billing_account_id
    AND l.billing_period_start = s.billing_period_start AND l.line_key = s.line_key`)
		}
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, sql(q)); err != nil {
				return fmt.Errorf("savings: write lines: %w", err)
			}
		}
	}
	if len(w.finals) > 0 {
		var t, p, a []string
		var s, e []time.Time
		var ids [][16]byte
		var seqs []int64
		for _, f := range w.finals {
			t, p, a = append(t, f.tenant), append(p, f.provider), append(a, f.account)
			s, e = append(s, micros(f.start)), append(e, micros(f.end))
			ids, seqs = append(ids, f.eventID), append(seqs, f.tenantSeq)
		}
		if _, err := tx.Exec(ctx, sql(`
INSERT INTO savings_schema.finalized (tenant_id, provider, billing_account_id, billing_period_start, billing_period_end, event_id, tenant_seq)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::uuid[], $7::bigint[])
ON CONFLICT DO NOTHING`), t, p, a, s, e, ids, seqs); err != nil {
			return fmt.Errorf("savings: write finalized bills: %w", err)
		}
	}
	if len(w.actions) > 0 {
		rows := make([][]any, len(w.actions))
		for i, a := range w.actions {
			rows[i] = actionRow(a)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"savings_stage_actions"}, actionColumns, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("savings: copy actions: %w", err)
		}
		excluded := make([]string, len(actionColumns))
		for i, c := range actionColumns {
			excluded[i] = "excluded." + c
		}
		if _, err := tx.Exec(ctx, sql(`
INSERT INTO savings_schema.actions (`+actionCols+`) SELECT `+actionCols+` FROM savings_stage_actions
ON CONFLICT (tenant_id, action_id) DO UPDATE SET (`+actionCols+`) = ROW(`+strings.Join(excluded, ", ")+`)`)); err != nil {
			return fmt.Errorf("savings: write actions: %w", err)
		}
	}
	if len(w.history) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{schema, "history"}, historyColumns, pgx.CopyFromRows(w.history)); err != nil {
			return fmt.Errorf("savings: copy history: %w", err)
		}
	}
	return nil
}

// numeric is d for pgx.
func numeric(d decimal.Decimal) pgtype.Numeric {
	return pgtype.Numeric{Int: d.Coefficient(), Exp: d.Exponent(), Valid: true}
}

// num is a figure for pgx: NULL when "".
func num(s string) any {
	if s == "" {
		return nil
	}
	return numeric(decimal.RequireFromString(s))
}
