package allocation

import (
	"fmt"
	"sort"
	"time"

	"github.com/shopspring/decimal"
)

// CostLine is a cost line as allocation sees it: what rules match on, and the amount to
// allocate in its billing currency.
type CostLine struct {
	Line
	Amount   decimal.Decimal
	Currency string
}

// Allocated is cost allocated to a cost center by one rule version, in one currency.
type Allocated struct {
	CostCenter  string
	Currency    string
	RuleID      string
	RuleVersion uint32
	Amount      decimal.Decimal
}

// Unallocated is cost no rule matched, per currency and service (so that the largest gaps in
// coverage can be named).
type Unallocated struct {
	Currency    string
	ServiceName string
	Amount      decimal.Decimal
}

// DayResult is one day's allocation. Per currency, the sum of Allocated plus the sum of
// Unallocated is exactly the sum of the day's line amounts.
type DayResult struct {
	Allocated   []Allocated   // sorted by cost center, currency, rule id, version
	Unallocated []Unallocated // sorted by currency, service
}

type poolKey struct {
	rule     *Rule
	currency string
}

type serviceKey struct{ currency, service string }

// dayPools is a day's cost gathered for splitting: per rule and currency the pool the rule
// selected, per currency and service the cost no rule matched, and per currency and service
// all of the day's cost (what is left unallocated if the day's split fails). AllocateDay
// gathers it from lines; the read model gathers it from its running pool totals
// (pool_totals), so both split exactly the same sums with the same code.
type dayPools struct {
	pools map[poolKey]decimal.Decimal
	un    map[serviceKey]decimal.Decimal
	all   map[serviceKey]decimal.Decimal
}

func newDayPools() *dayPools {
	return &dayPools{pools: map[poolKey]decimal.Decimal{}, un: map[serviceKey]decimal.Decimal{},
		all: map[serviceKey]decimal.Decimal{}}
}

// add counts amount (in currency, of service) into the pool of rule, or as unallocated when
// rule is nil.
func (p *dayPools) add(rule *Rule, currency, service string, amount decimal.Decimal) {
	sk := serviceKey{currency, service}
	p.all[sk] = p.all[sk].Add(amount)
	if rule == nil {
		p.un[sk] = p.un[sk].Add(amount)
		return
	}
	k := poolKey{rule, currency}
	p.pools[k] = p.pools[k].Add(amount)
}

// AllocateDay allocates one day's lines of one tenant with the rules in force that day (as
// Book.InForce returns them).
//
// Lines are not split one by one: the lines a rule selects are summed per currency into a
// pool, and each pool is split once. Splitting per line would round every line (thousands a
// day, many worth fractions of a cent) and scatter the rounding; one split per pool rounds
// once, so a 60/40 rule gives 60/40 of the day's cost to the cent.
//
// Proportional rules split shared cost by the cost centers' direct cost of the same day and
// currency, so the day is allocated in two passes: first every pool of a non-proportional
// rule (direct, percentage, fixed amounts, even), whose parts are the direct costs; then the
// proportional pools, weighted by those. Cost a proportional rule allocates is never a weight
// of another proportional rule: that would make the result depend on the order the rules are
// split in (and allow cycles).
func AllocateDay(inForce []*Rule, lines []CostLine) (DayResult, error) {
	p := newDayPools()
	for _, l := range lines {
		p.add(SelectFrom(inForce, l.Line), l.Currency, l.ServiceName, l.Amount)
	}
	return p.split()
}

// split splits every pool (see AllocateDay) and lists the unallocated cost.
func (p *dayPools) split() (DayResult, error) {
	keys := make([]poolKey, 0, len(p.pools))
	for k := range p.pools {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.rule.ID != b.rule.ID {
			return a.rule.ID < b.rule.ID
		}
		return a.currency < b.currency
	})

	type allocKey struct {
		cc, currency, rule string
		version            uint32
	}
	alloc := map[allocKey]decimal.Decimal{}
	direct := map[string]map[string]decimal.Decimal{} // currency -> cost center -> direct cost
	for pass := 0; pass < 2; pass++ {
		for _, k := range keys {
			if (k.rule.Kind == Proportional) != (pass == 1) {
				continue
			}
			parts, err := k.rule.Split(p.pools[k], k.currency, direct[k.currency])
			if err != nil {
				return DayResult{}, err
			}
			for _, part := range parts {
				ak := allocKey{part.CostCenter, k.currency, k.rule.ID, k.rule.Version}
				alloc[ak] = alloc[ak].Add(part.Amount)
				if pass == 0 {
					if direct[k.currency] == nil {
						direct[k.currency] = map[string]decimal.Decimal{}
					}
					direct[k.currency][part.CostCenter] = direct[k.currency][part.CostCenter].Add(part.Amount)
				}
			}
		}
	}

	var res DayResult
	for k, a := range alloc {
		res.Allocated = append(res.Allocated, Allocated{
			CostCenter: k.cc, Currency: k.currency, RuleID: k.rule, RuleVersion: k.version, Amount: a,
		})
	}
	sort.Slice(res.Allocated, func(i, j int) bool {
		a, b := res.Allocated[i], res.Allocated[j]
		switch {
		case a.CostCenter != b.CostCenter:
			return a.CostCenter < b.CostCenter
		case a.Currency != b.Currency:
			return a.Currency < b.Currency
		case a.RuleID != b.RuleID:
			return a.RuleID < b.RuleID
		}
		return a.RuleVersion < b.RuleVersion
	})
	res.Unallocated = unallocated(p.un)
	return res, nil
}

// failed is the day as it stands when its split fails: all its cost unallocated, per
// currency and service (what AllocateDay with no rules gives for the same lines).
func (p *dayPools) failed() DayResult {
	return DayResult{Unallocated: unallocated(p.all)}
}

// unallocated lists per-service sums, sorted by currency and service.
func unallocated(un map[serviceKey]decimal.Decimal) []Unallocated {
	var out []Unallocated
	for k, a := range un {
		out = append(out, Unallocated{Currency: k.currency, ServiceName: k.service, Amount: a})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Currency != b.Currency {
			return a.Currency < b.Currency
		}
		return a.ServiceName < b.ServiceName
	})
	return out
}

// Movement is how a proposed rule change moves one cost center's cost in one currency over a
// period. The cost center "" stands for unallocated cost.
type Movement struct {
	CostCenter string
	Currency   string
	Before     decimal.Decimal
	After      decimal.Decimal
	Delta      decimal.Decimal // After - Before
}

// DryRun allocates the lines of each day with the rules of current and of proposed (a clone
// of current with the change applied) and returns, per cost center and currency, the cost
// before and after and what moved, sorted by cost center (unallocated first) and currency.
// Rows where nothing changed are kept, so the result also shows totals. It writes nothing.
func DryRun(current, proposed *Book, days map[time.Time][]CostLine) ([]Movement, error) {
	type key struct{ cc, currency string }
	before, after := map[key]decimal.Decimal{}, map[key]decimal.Decimal{}
	add := func(into map[key]decimal.Decimal, r DayResult) {
		for _, a := range r.Allocated {
			k := key{a.CostCenter, a.Currency}
			into[k] = into[k].Add(a.Amount)
		}
		for _, u := range r.Unallocated {
			k := key{"", u.Currency}
			into[k] = into[k].Add(u.Amount)
		}
	}
	for day, lines := range days {
		b, err := AllocateDay(current.InForce(day), lines)
		if err != nil {
			return nil, fmt.Errorf("current rules on %s: %w", day.Format(time.DateOnly), err)
		}
		a, err := AllocateDay(proposed.InForce(day), lines)
		if err != nil {
			return nil, fmt.Errorf("proposed rules on %s: %w", day.Format(time.DateOnly), err)
		}
		add(before, b)
		add(after, a)
	}
	keys := map[key]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	out := make([]Movement, 0, len(keys))
	for k := range keys {
		out = append(out, Movement{
			CostCenter: k.cc, Currency: k.currency,
			Before: before[k], After: after[k], Delta: after[k].Sub(before[k]),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].CostCenter != out[j].CostCenter {
			return out[i].CostCenter < out[j].CostCenter
		}
		return out[i].Currency < out[j].Currency
	})
	return out, nil
}

// Coverage is allocated / (allocated + unallocated) as a percentage, and false when the total
// is zero (nothing to cover, or costs and credits that cancel out). With credits in the day,
// the figure can exceed 100 or be negative; it is reported as computed, never clamped.
func Coverage(allocated, unallocated decimal.Decimal) (decimal.Decimal, bool) {
	total := allocated.Add(unallocated)
	if total.IsZero() {
		return decimal.Zero, false
	}
	return allocated.Mul(decimal.NewFromInt(100)).DivRound(total, 4), true
}
