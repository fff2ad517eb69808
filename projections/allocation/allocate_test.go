package allocation

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

func cl(service, team, amount, currency string) CostLine {
	l := CostLine{Line: Line{ServiceName: service}, Amount: d(amount), Currency: currency}
	if team != "" {
		l.Tags = map[string]string{"team": team}
	}
	return l
}

// totals sums a day's allocation per cost center ("" for unallocated) and currency.
func totals(r DayResult) map[string]string {
	acc := map[string]decimalSum{}
	for _, a := range r.Allocated {
		acc[a.CostCenter+" "+a.Currency] = acc[a.CostCenter+" "+a.Currency].add(a.Amount.String())
	}
	for _, u := range r.Unallocated {
		acc["- "+u.Currency] = acc["- "+u.Currency].add(u.Amount.String())
	}
	out := map[string]string{}
	for k, v := range acc {
		out[k] = v.String()
	}
	return out
}

type decimalSum struct{ s string }

func (x decimalSum) add(a string) decimalSum {
	if x.s == "" {
		return decimalSum{a}
	}
	return decimalSum{d(x.s).Add(d(a)).String()}
}
func (x decimalSum) String() string { return x.s }

func teamRule(t *testing.T, id string, prio int32, team, cc string) *Rule {
	ev := ruleEvent(id, 1, prio, 1, direct, cc, "")
	ev.Match.Tags = []*tallyv1.KeyValue{{Key: "team", Value: team}}
	return mustRule(t, ev)
}

func TestAllocateDayProportionalSharedCost(t *testing.T) {
	// Direct: team=web lines 150.00 + 50.00 = 200.00 to "web"; team=data 100.00 to "data".
	// Shared: untagged support lines 60.00 + 30.00 = 90.00, split by direct cost 200:100:
	// web 90 * 200/300 = 60.00, data 90 * 100/300 = 30.00. An untagged EC2 line of 12.34
	// matches no rule (the shared rule takes only "Support") and is unallocated.
	shared := ruleEvent("shared", 1, 50, 1, prop, "web", "", "data", "")
	shared.Match.ServiceName = "Support"
	rules := []*Rule{
		teamRule(t, "data", 10, "data", "data"),
		teamRule(t, "web", 10, "web", "web"),
		mustRule(t, shared),
	}
	lines := []CostLine{
		cl("Amazon EC2", "web", "150.00", "USD"),
		cl("Amazon S3", "web", "50.00", "USD"),
		cl("Amazon RDS", "data", "100.00", "USD"),
		cl("Support", "", "60.00", "USD"),
		cl("Support", "", "30.00", "USD"),
		cl("Amazon EC2", "", "12.34", "USD"),
	}
	res, err := AllocateDay(rules, lines)
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"web USD":  "260", // 200.00 direct + 60.00 shared
		"data USD": "130", // 100.00 direct + 30.00 shared
		"- USD":    "12.34",
	}, totals(res))
	// Allocated rows keep the rule that made them.
	require.Equal(t, []Allocated{
		{CostCenter: "data", Currency: "USD", RuleID: "data", RuleVersion: 1, Amount: d("100.00")},
		{CostCenter: "data", Currency: "USD", RuleID: "shared", RuleVersion: 1, Amount: d("30.00")},
		{CostCenter: "web", Currency: "USD", RuleID: "shared", RuleVersion: 1, Amount: d("60.00")},
		{CostCenter: "web", Currency: "USD", RuleID: "web", RuleVersion: 1, Amount: d("200.00")},
	}, res.Allocated)
	require.Equal(t, []Unallocated{{Currency: "USD", ServiceName: "Amazon EC2", Amount: d("12.34")}}, res.Unallocated)
}

func TestAllocateDayPoolsPerCurrency(t *testing.T) {
	// One 60/40 rule, lines in USD and JPY are pooled separately: 100.00 USD -> 60.00/40.00;
	// 1001 JPY -> 600.6/400.4 -> whole yen 600/400 with 1 yen left to the larger remainder
	// (0.6 > 0.4): "a" 601, "b" 400.
	rules := []*Rule{mustRule(t, ruleEvent("r", 1, 1, 1, pct, "a", "60", "b", "40"))}
	lines := []CostLine{
		cl("x", "", "70.00", "USD"), cl("x", "", "30.00", "USD"),
		cl("x", "", "1000", "JPY"), cl("x", "", "1", "JPY"),
	}
	res, err := AllocateDay(rules, lines)
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"a USD": "60", "b USD": "40", "a JPY": "601", "b JPY": "400",
	}, totals(res))
}

func TestAllocateDayPoolNotLine(t *testing.T) {
	// Three lines of 0.01 by an even split of two: per line each line would give its cent to
	// "a" (0.03 / 0.00); pooled, 0.03 splits once: a 0.02, b 0.01.
	rules := []*Rule{mustRule(t, ruleEvent("r", 1, 1, 1, even, "a", "", "b", ""))}
	lines := []CostLine{cl("x", "", "0.01", "USD"), cl("x", "", "0.01", "USD"), cl("x", "", "0.01", "USD")}
	res, err := AllocateDay(rules, lines)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"a USD": "0.02", "b USD": "0.01"}, totals(res))
}

func TestDryRunMidMonth(t *testing.T) {
	// Current: everything to "shared". Proposed: a rule from March 15 sending team=web to
	// "web". Each day has a 10.00 web line and a 5.00 other line; over March 1-31 the change
	// moves 17 days (15..31) * 10.00 = 170.00 from "shared" to "web"; nothing else moves.
	current := NewBook()
	current.Set(mustRule(t, ruleEvent("all", 1, 100, 1, direct, "shared", "")))
	proposed := current.Clone()
	webEv := ruleEvent("web", 1, 1, 15, direct, "web", "")
	webEv.Match.Tags = []*tallyv1.KeyValue{{Key: "team", Value: "web"}}
	proposed.Set(mustRule(t, webEv))

	days := map[time.Time][]CostLine{}
	for day := 1; day <= 31; day++ {
		days[date(day)] = []CostLine{cl("x", "web", "10.00", "USD"), cl("x", "", "5.00", "USD")}
	}
	moves, err := DryRun(current, proposed, days)
	require.NoError(t, err)
	got := map[string][3]string{}
	for _, m := range moves {
		got[m.CostCenter] = [3]string{m.Before.String(), m.After.String(), m.Delta.String()}
	}
	require.Equal(t, map[string][3]string{
		"shared": {"465", "295", "-170"}, // 31 * 15.00 = 465.00; 465 - 170 = 295
		"web":    {"0", "170", "170"},
	}, got)
	// The current book is untouched by the dry run.
	require.Len(t, current.InForce(date(20)), 1)
}

func TestCoverage(t *testing.T) {
	c, ok := Coverage(d("90.00"), d("10.00"))
	require.True(t, ok)
	require.Equal(t, "90", c.String()) // 90 / 100 * 100
	c, ok = Coverage(d("2.00"), d("1.00"))
	require.True(t, ok)
	require.Equal(t, "66.6667", c.String()) // 2/3 at 4 places
	_, ok = Coverage(d("0"), d("0"))
	require.False(t, ok)
}
