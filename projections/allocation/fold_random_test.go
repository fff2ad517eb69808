package allocation_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections/allocation"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// TestRandomBatchCuts folds random logs (rules set, replaced, superseded and retired between
// lines recorded, restated to other days, services, tags, currencies and amounts of varied
// scale, and retracted; an invalid rule; a fixed amount some days' pools cannot take) cut
// into batches at random, and checks every row of the read model against a from-scratch
// computation: every day of every tenant allocated with AllocateDay, the rules replayed into
// a Book, the lines kept by key; each line's stored rule against Book selection; and
// pool_totals against a sum of the lines. TALLY_ALLOC_SEED picks one seed instead of the
// fixed ones.
func TestRandomBatchCuts(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4}
	if s, err := strconv.ParseUint(os.Getenv("TALLY_ALLOC_SEED"), 10, 64); err == nil {
		seeds = []uint64{s}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			e := newEnv(t)
			rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
			gen := &logGen{rng: rng}
			for _, tenant := range []string{"acme", "globex"} {
				gen.tenant(tenant, 240)
			}
			// Append in chunks, the tenants' events interleaved, so batches mix tenants.
			for len(gen.pending) > 0 {
				tenant := gen.order[rng.IntN(len(gen.order))]
				evs := gen.pending[tenant]
				if len(evs) == 0 {
					continue
				}
				n := min(len(evs), 1+rng.IntN(30))
				appendAll(t, e.store, tenant, evs[:n]...)
				if gen.pending[tenant] = evs[n:]; len(gen.pending[tenant]) == 0 {
					delete(gen.pending, tenant)
				}
			}
			var events []eventstore.Event
			require.NoError(t, e.store.Read(ctxT(t), eventstore.ReadFilter{Kinds: allocation.New().Kinds()},
				func(ev eventstore.Event) error {
					events = append(events, ev)
					return nil
				}))
			want := expectedRows(t, events)
			require.NotEmpty(t, want)

			for cut := range 2 {
				schema := fmt.Sprintf("alloc_cut%d", cut)
				foldRandomCuts(t, e.pool, schema, events, rng, []int{3, 30}[cut])
				require.Equal(t, want, foldRows(t, e.pool, schema), "seed %d, cut %d", seed, cut)
				requireTotalsAreSums(t, e.pool, schema)
			}
		})
	}
}

// foldRandomCuts sets up schema and folds events into it in batches of 1 to maxBatch events,
// through Apply or through Prepare and ApplyPrepared, now and then two batches in one
// transaction (as a rebuild's swap may).
func foldRandomCuts(t *testing.T, pool *pgxpool.Pool, schema string, events []eventstore.Event, rng *rand.Rand, maxBatch int) {
	t.Helper()
	ctx := ctxT(t)
	p := allocation.New()
	_, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize())
	require.NoError(t, err)
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return p.Setup(ctx, tx, schema) }))
	for i := 0; i < len(events); {
		require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			for range 1 + rng.IntN(2) {
				if i == len(events) {
					return nil
				}
				n := min(len(events)-i, 1+rng.IntN(maxBatch))
				batch := events[i : i+n]
				i += n
				if rng.IntN(2) == 0 {
					if err := p.Apply(ctx, tx, schema, batch); err != nil {
						return err
					}
					continue
				}
				prepared, err := p.Prepare(batch)
				if err != nil {
					return err
				}
				if err := p.ApplyPrepared(ctx, tx, schema, prepared); err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

// foldRows is the read model's rows as text, sorted: allocated (A), unallocated (U), failed
// days (F), and each line with its stored rule (L). Amounts keep their scale.
func foldRows(t *testing.T, pool *pgxpool.Pool, schema string) []string {
	t.Helper()
	q := strings.ReplaceAll(`
SELECT concat_ws('|', 'A', tenant_id, day, cost_center, currency, rule_id, rule_version, amount) FROM s.allocated_daily
UNION ALL SELECT concat_ws('|', 'U', tenant_id, day, currency, service_name, amount) FROM s.unallocated_daily
UNION ALL SELECT concat_ws('|', 'F', tenant_id, day, reason) FROM s.failed_days
UNION ALL SELECT concat_ws('|', 'L', tenant_id, line_key, day, currency, amount, rule_id, rule_version) FROM s.lines`,
		"s.", pgx.Identifier{schema}.Sanitize()+".")
	rows, err := pool.Query(ctxT(t), q)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	sort.Strings(out)
	return out
}

// requireTotalsAreSums checks pool_totals against the lines it sums, amounts as text (so
// scales too).
func requireTotalsAreSums(t *testing.T, pool *pgxpool.Pool, schema string) {
	t.Helper()
	q := strings.ReplaceAll(`
WITH sums AS (
    SELECT tenant_id, day, currency, rule_id, rule_version, service_name, scale(amount) AS scale,
        sum(amount)::text AS amount, count(*) AS lines
    FROM s.lines GROUP BY 1, 2, 3, 4, 5, 6, 7),
totals AS (
    SELECT tenant_id, day, currency, rule_id, rule_version, service_name, scale, amount::text, lines FROM s.pool_totals)
SELECT count(*) FROM ((SELECT * FROM sums EXCEPT SELECT * FROM totals) UNION ALL (SELECT * FROM totals EXCEPT SELECT * FROM sums)) x`,
		"s.", pgx.Identifier{schema}.Sanitize()+".")
	var n int
	require.NoError(t, pool.QueryRow(ctxT(t), q).Scan(&n))
	require.Zero(t, n, "pool_totals rows that are not the sums of the lines")
}

// expectedRows computes foldRows' answer from scratch: the events replayed in log order into
// per-tenant lines (by key) and books, then every day allocated with AllocateDay.
func expectedRows(t *testing.T, events []eventstore.Event) []string {
	t.Helper()
	type line struct {
		key  string
		day  time.Time
		line allocation.CostLine
	}
	lines := map[string]map[string]line{}
	books := map[string]*allocation.Book{}
	for _, ev := range events {
		env := ev.Envelope
		tenant := env.GetTenantId()
		if lines[tenant] == nil {
			lines[tenant], books[tenant] = map[string]line{}, allocation.NewBook()
		}
		put := func(l *tallyv1.CostLine) {
			cl, day, err := allocation.FromCostLine(l)
			require.NoError(t, err)
			lines[tenant][l.GetLineKey()] = line{key: l.GetLineKey(), day: day, line: cl}
		}
		switch b := env.GetBody().(type) {
		case *tallyv1.Envelope_CostLineRecorded:
			put(b.CostLineRecorded.GetLine())
		case *tallyv1.Envelope_CostLineRestated:
			put(b.CostLineRestated.GetLine())
		case *tallyv1.Envelope_CostLineRetracted:
			delete(lines[tenant], b.CostLineRetracted.GetLineKey())
		case *tallyv1.Envelope_AllocationRuleSet:
			if r, err := allocation.NewRule(b.AllocationRuleSet); err == nil {
				books[tenant].Set(r)
			}
		case *tallyv1.Envelope_AllocationRuleRetired:
			if r := b.AllocationRuleRetired; r.GetRuleId() != "" && r.GetEffectiveTo() != nil {
				books[tenant].Retire(r.GetRuleId(), r.GetEffectiveTo().AsTime())
			}
		}
	}
	var out []string
	for tenant, ls := range lines {
		days := map[time.Time][]allocation.CostLine{}
		for _, l := range ls {
			days[l.day] = append(days[l.day], l.line)
			rule, version := "", "0"
			if r := books[tenant].Select(l.day, l.line.Line); r != nil {
				rule, version = r.ID, strconv.Itoa(int(r.Version))
			}
			out = append(out, strings.Join([]string{"L", tenant, l.key, l.day.Format(time.DateOnly),
				l.line.Currency, numericText(l.line.Amount), rule, version}, "|"))
		}
		for day, dl := range days {
			d := day.Format(time.DateOnly)
			res, err := allocation.AllocateDay(books[tenant].InForce(day), dl)
			if err != nil {
				out = append(out, strings.Join([]string{"F", tenant, d, err.Error()}, "|"))
				res, err = allocation.AllocateDay(nil, dl)
				require.NoError(t, err)
			}
			for _, a := range res.Allocated {
				out = append(out, strings.Join([]string{"A", tenant, d, a.CostCenter, a.Currency, a.RuleID,
					strconv.Itoa(int(a.RuleVersion)), numericText(a.Amount)}, "|"))
			}
			for _, u := range res.Unallocated {
				out = append(out, strings.Join([]string{"U", tenant, d, u.Currency, u.ServiceName, numericText(u.Amount)}, "|"))
			}
		}
	}
	sort.Strings(out)
	return out
}

// numericText is d as PostgreSQL prints a numeric of d's scale.
func numericText(d decimal.Decimal) string {
	if d.Exponent() >= 0 {
		return d.String()
	}
	return d.StringFixed(-d.Exponent())
}

// logGen writes random logs of rule and line events, per tenant.
type logGen struct {
	rng     *rand.Rand
	order   []string
	pending map[string][]*tallyv1.Envelope
}

var (
	genServices   = []string{"Amazon EC2", "Amazon S3", "Support", "Amazon RDS"}
	genTeams      = []string{"", "web", "data"}
	genCurrencies = []string{"USD", "USD", "USD", "EUR", "JPY"}
	genRuleIDs    = []string{"r1", "r2", "r3", "r4", "r5"}
)

// tenant generates n events of tenant.
func (g *logGen) tenant(tenant string, n int) {
	if g.pending == nil {
		g.pending = map[string][]*tallyv1.Envelope{}
	}
	g.order = append(g.order, tenant)
	rng := g.rng
	live := map[string]bool{}
	versions := map[string]uint32{}
	var evs []*tallyv1.Envelope
	for i := range n {
		if rng.IntN(12) == 0 {
			evs = append(evs, g.ruleEvent(tenant, i, versions))
			continue
		}
		key := fmt.Sprintf("k%02d", rng.IntN(40))
		switch {
		case live[key] && rng.IntN(4) == 0:
			ev := retracted(tenant, g.line(key))
			unique(ev, tenant, fmt.Sprintf("retracted/%s/%d", key, i))
			evs = append(evs, ev)
			delete(live, key)
		case live[key]:
			ev := restated(tenant, g.line(key))
			unique(ev, tenant, fmt.Sprintf("restated/%s/%d", key, i))
			evs = append(evs, ev)
		case rng.IntN(20) == 0: // a retraction of a line never recorded, or gone: changes nothing
			ev := retracted(tenant, g.line(key))
			unique(ev, tenant, fmt.Sprintf("retracted/%s/%d", key, i))
			evs = append(evs, ev)
		default:
			ev := recorded(tenant, g.line(key))
			unique(ev, tenant, fmt.Sprintf("recorded/%s/%d", key, i))
			evs = append(evs, ev)
			live[key] = true
		}
	}
	g.pending[tenant] = evs
}

// line is a random state of the line key: day 1 to 5, a service, a team tag or none, a
// currency, an amount of 0 to 10 places, now and then a credit.
func (g *logGen) line(key string) *tallyv1.CostLine {
	rng := g.rng
	places := []int{0, 1, 2, 2, 2, 2, 2, 2, 3, 6, 10}[rng.IntN(11)]
	units := rng.Int64N(100_000)
	if rng.IntN(8) == 0 {
		units = -units
	}
	amount := decimal.New(units, -int32(places)).StringFixed(int32(places))
	var tags []string
	if team := genTeams[rng.IntN(len(genTeams))]; team != "" {
		tags = append(tags, "team="+team)
	}
	l := costLine(key, 1+rng.IntN(5), genServices[rng.IntN(len(genServices))], amount, tags...)
	l.BillingCurrency = genCurrencies[rng.IntN(len(genCurrencies))]
	l.ResourceId = fmt.Sprintf("arn:aws:x:%s/%d", key, rng.IntN(3))
	return l
}

// ruleEvent is a random rule event: a new version, a replacement of the current version or a
// retirement; now and then an invalid rule or a fixed amount of 3 places (which pools of
// cents cannot take). Effective instants fall at midday now and then.
func (g *logGen) ruleEvent(tenant string, i int, versions map[string]uint32) *tallyv1.Envelope {
	rng := g.rng
	id := genRuleIDs[rng.IntN(len(genRuleIDs))]
	at := func() *timestamppb.Timestamp {
		t := sep(1 + rng.IntN(5))
		if rng.IntN(3) == 0 {
			t = t.Add(12 * time.Hour)
		}
		return timestamppb.New(t)
	}
	if versions[id] > 0 && rng.IntN(6) == 0 {
		ev := envelope(tenant, fmt.Sprintf("allocation_rule_retired/%s/%d", id, i))
		ev.Body = &tallyv1.Envelope_AllocationRuleRetired{AllocationRuleRetired: &tallyv1.AllocationRuleRetired{
			RuleId: id, EffectiveTo: at()}}
		return ev
	}
	version := versions[id]
	if version == 0 || rng.IntN(3) > 0 {
		version++
	}
	versions[id] = version
	var r *tallyv1.AllocationRuleSet
	switch rng.IntN(6) {
	case 0:
		r = rule(id, version, 0, 1, direct, "web", "")
	case 1:
		r = rule(id, version, 0, 1, pct, "web", "60", "data", "40")
	case 2:
		r = rule(id, version, 0, 1, fixed, "platform", []string{"5.00", "1.005", "300"}[rng.IntN(3)])
		r.RemainderCostCenter = "rest"
	case 3:
		r = rule(id, version, 0, 1, prop, "web", "", "data", "", "platform", "")
	case 4:
		r = rule(id, version, 0, 1, even, "web", "", "data", "", "ml", "")
	default:
		r = rule(id, version, 0, 1, pct, "web", "60", "data", "30") // 90%: refused
	}
	r.Priority = int32(rng.IntN(5))
	r.EffectiveFrom = at()
	if rng.IntN(4) == 0 {
		r.EffectiveTo = timestamppb.New(r.EffectiveFrom.AsTime().Add(time.Duration(1+rng.IntN(5)) * 24 * time.Hour))
	}
	switch rng.IntN(4) {
	case 0:
		r.Match.ServiceName = genServices[rng.IntN(len(genServices))]
	case 1:
		r.Match.Tags = []*tallyv1.KeyValue{{Key: "team", Value: genTeams[1+rng.IntN(2)]}}
	case 2:
		r.Match.ResourceIdPattern = "arn:aws:x:k1*"
	}
	ev := ruleSet(tenant, r)
	unique(ev, tenant, fmt.Sprintf("allocation_rule_set/%s/%d", id, i))
	return ev
}

// unique gives ev the event id and idempotency key of key, unique in the log.
func unique(ev *tallyv1.Envelope, tenant, key string) {
	ev.EventId, ev.IdempotencyKey = eventstore.DeterministicID(tenant, key), key
}
