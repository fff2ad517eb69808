package allocation_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/projections/allocation"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// TestSplitsSumToSource: through the whole read model, a 60/40 split of 100.00 and a
// three-way split of 100.00 give parts that sum exactly to the source.
func TestSplitsSumToSource(t *testing.T) {
	e := newEnv(t)
	const tenant = "acme"
	// Day 3: EC2 lines 70.00 + 30.00 = 100.00, split 60/40 (6000/4000 cents, no remainder).
	// Day 4: S3 lines 33.33 + 66.67 = 100.00, split three ways: 10000 cents / 3 = 3333 rem 1
	// each; the cent left goes to the first by name on the tie: a 33.34, b 33.33, c 33.33.
	sixty := rule("sixty-forty", 1, 10, 1, pct, "web", "60", "data", "40")
	sixty.Match.ServiceName = "Amazon EC2"
	thirds := rule("thirds", 1, 20, 1, even, "c", "", "a", "", "b", "")
	thirds.Match.ServiceName = "Amazon S3"
	appendAll(t, e.store, tenant,
		ruleSet(tenant, sixty), ruleSet(tenant, thirds),
		recorded(tenant, costLine("l1", 3, "Amazon EC2", "70.00")),
		recorded(tenant, costLine("l2", 3, "Amazon EC2", "30.00")),
		recorded(tenant, costLine("l3", 4, "Amazon S3", "33.33")),
		recorded(tenant, costLine("l4", 4, "Amazon S3", "66.67")))
	catchUp(t, e.store, e.pool, 100)

	q := allocation.NewQueries(e.pool)
	rows, err := q.Allocated(ctxT(t), tenant, sep(1), sep(31), allocation.ByCostCenter|allocation.ByDay)
	require.NoError(t, err)
	got := map[string]string{}
	for _, r := range rows {
		require.Equal(t, "USD", r.Currency)
		got[r.Day.Format(time.DateOnly)+" "+r.CostCenter] = r.Amount.StringFixed(2)
	}
	require.Equal(t, map[string]string{
		"2024-09-03 web": "60.00", "2024-09-03 data": "40.00",
		"2024-09-04 a": "33.34", "2024-09-04 b": "33.33", "2024-09-04 c": "33.33",
	}, got)
	for day, want := range map[int]string{3: "100", 4: "100"} {
		rows, err := q.Allocated(ctxT(t), tenant, sep(day), sep(day+1), allocation.ByCostCenter)
		require.NoError(t, err)
		sum := d("0")
		for _, r := range rows {
			sum = sum.Add(r.Amount)
		}
		require.Equal(t, want, sum.String(), "day %d: the parts sum exactly to the source", day)
	}
	cov, err := q.Coverage(ctxT(t), tenant, "2024-09")
	require.NoError(t, err)
	require.Len(t, cov.Currencies, 1)
	require.Equal(t, "100", cov.Currencies[0].Percent.String())
	require.Equal(t, "200", cov.Currencies[0].Total.String())
	require.Empty(t, cov.FailedDays)
}

// TestProportionalSharedCost: shared cost split by the cost centers' direct cost matches the
// hand calculation.
func TestProportionalSharedCost(t *testing.T) {
	e := newEnv(t)
	const tenant = "acme"
	// Day 5, direct: team=web 100.00 + 23.45 = 123.45 to web; team=data 67.89 to data.
	// Shared: untagged Support lines 20.00 + 30.00 = 50.00, proportional to direct cost:
	//   web:  5000 cents * 123.45 / 191.34 = 3225.93 -> 3225, remainder .93
	//   data: 5000 cents *  67.89 / 191.34 = 1774.07 -> 1774, remainder .07
	//   3225 + 1774 = 4999: the cent left goes to the larger remainder, web: 32.26 / 17.74.
	// Totals: web 123.45 + 32.26 = 155.71; data 67.89 + 17.74 = 85.63; 155.71 + 85.63 = 241.34
	// = 123.45 + 67.89 + 50.00. An untagged EC2 line of 9.99 matches nothing: unallocated.
	web := rule("web", 1, 10, 1, direct, "web", "")
	web.Match.Tags = []*tallyv1.KeyValue{{Key: "team", Value: "web"}}
	data := rule("data", 1, 10, 1, direct, "data", "")
	data.Match.Tags = []*tallyv1.KeyValue{{Key: "team", Value: "data"}}
	shared := rule("shared", 1, 50, 1, prop, "web", "", "data", "")
	shared.Match.ServiceName = "Support"
	appendAll(t, e.store, tenant, ruleSet(tenant, web), ruleSet(tenant, data), ruleSet(tenant, shared),
		recorded(tenant, costLine("w1", 5, "Amazon EC2", "100.00", "team=web")),
		recorded(tenant, costLine("w2", 5, "Amazon S3", "23.45", "team=web")),
		recorded(tenant, costLine("d1", 5, "Amazon RDS", "67.89", "team=data")),
		recorded(tenant, costLine("s1", 5, "Support", "20.00")),
		recorded(tenant, costLine("s2", 5, "Support", "30.00")),
		recorded(tenant, costLine("x1", 5, "Amazon EC2", "9.99")))
	catchUp(t, e.store, e.pool, 100)

	q := allocation.NewQueries(e.pool)
	rows, err := q.Allocated(ctxT(t), tenant, sep(1), sep(31), allocation.ByCostCenter)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"web": "155.71", "data": "85.63"}, byCostCenter(rows))

	var shares [][2]string
	r, err := e.pool.Query(ctxT(t), `SELECT cost_center, amount::text FROM allocation.allocated_daily WHERE rule_id = 'shared' ORDER BY 1`)
	require.NoError(t, err)
	for r.Next() {
		var cc, amount string
		require.NoError(t, r.Scan(&cc, &amount))
		shares = append(shares, [2]string{cc, amount})
	}
	require.Equal(t, [][2]string{{"data", "17.74"}, {"web", "32.26"}}, shares)

	un, err := q.Unallocated(ctxT(t), tenant, sep(1), sep(31), 5)
	require.NoError(t, err)
	require.Len(t, un, 1)
	require.Equal(t, "9.99", un[0].Total.String())
	require.Equal(t, []allocation.ServiceAmount{{Service: "Amazon EC2", Amount: d("9.99")}}, un[0].Top)
}

// TestMidMonthRuleChange: a new rule version dated September 15, appended after the month's
// lines were allocated, re-allocates September 15 onward only; a retirement dated the 25th
// leaves the cost unallocated from then on.
func TestMidMonthRuleChange(t *testing.T) {
	e := newEnv(t)
	const tenant = "acme"
	v1 := rule("ec2", 1, 10, 1, direct, "web", "")
	v1.Match.ServiceName = "Amazon EC2"
	var events []*tallyv1.Envelope
	events = append(events, ruleSet(tenant, v1))
	for day := 1; day <= 30; day++ {
		events = append(events, recorded(tenant, costLine(fmt.Sprintf("ec2-%02d", day), day, "Amazon EC2", "10.00")))
	}
	appendAll(t, e.store, tenant, events...)
	catchUp(t, e.store, e.pool, 1000)
	q := allocation.NewQueries(e.pool)
	rows, err := q.Allocated(ctxT(t), tenant, sep(1), sep(31), allocation.ByCostCenter)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"web": "300"}, byCostCenter(rows))

	v2 := rule("ec2", 2, 10, 15, direct, "data", "")
	v2.Match.ServiceName = "Amazon EC2"
	appendAll(t, e.store, tenant, ruleSet(tenant, v2))
	catchUp(t, e.store, e.pool, 1000)

	perDay := func() map[int]string {
		rows, err := q.Allocated(ctxT(t), tenant, sep(1), sep(31), allocation.ByCostCenter|allocation.ByDay)
		require.NoError(t, err)
		out := map[int]string{}
		for _, r := range rows {
			out[r.Day.Day()] += r.CostCenter + "=" + r.Amount.String()
		}
		return out
	}
	got := perDay()
	for day := 1; day <= 30; day++ {
		want := "web=10"
		if day >= 15 {
			want = "data=10"
		}
		require.Equal(t, want, got[day], "September %d", day)
	}
	rows, err = q.Allocated(ctxT(t), tenant, sep(1), sep(31), allocation.ByCostCenter)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"web": "140", "data": "160"}, byCostCenter(rows)) // 14 and 16 days

	appendAll(t, e.store, tenant, ruleRetired(tenant, "ec2", 25))
	catchUp(t, e.store, e.pool, 1000)
	got = perDay()
	require.Equal(t, "data=10", got[24])
	require.Empty(t, got[25], "retired from the 25th")
	cov, err := q.Coverage(ctxT(t), tenant, "2024-09")
	require.NoError(t, err)
	require.Equal(t, "240", cov.Currencies[0].Allocated.String())
	require.Equal(t, "60", cov.Currencies[0].Unallocated.String()) // 6 days of 10.00
	require.Equal(t, "80", cov.Currencies[0].Percent.String())

	// The rules in force on the 20th, with the event that set them; none on the 26th.
	vs, err := q.RuleVersions(ctxT(t), tenant, sep(20).Add(13*time.Hour))
	require.NoError(t, err)
	require.Len(t, vs, 1)
	require.Equal(t, "ec2", vs[0].RuleID)
	require.Equal(t, uint32(2), vs[0].Version)
	require.Equal(t, "direct", vs[0].Split)
	require.Equal(t, []allocation.RuleShare{{CostCenter: "data"}}, vs[0].Shares)
	require.Equal(t, ruleSet(tenant, v2).GetEventId(), vs[0].EventID)
	require.Equal(t, uint64(32), vs[0].TenantSeq) // 1 rule + 30 lines before it
	vs, err = q.RuleVersions(ctxT(t), tenant, sep(26))
	require.NoError(t, err)
	require.Empty(t, vs)
}

// TestRestateAndRetract: a restatement re-allocates the line's day with its new amount, a
// retraction removes it.
func TestRestateAndRetract(t *testing.T) {
	e := newEnv(t)
	const tenant = "acme"
	appendAll(t, e.store, tenant, ruleSet(tenant, rule("all", 1, 10, 1, pct, "a", "50", "b", "50")),
		recorded(tenant, costLine("l1", 7, "Amazon EC2", "10.00")),
		recorded(tenant, costLine("l2", 7, "Amazon EC2", "5.00")))
	catchUp(t, e.store, e.pool, 100)
	q := allocation.NewQueries(e.pool)
	rows, err := q.Allocated(ctxT(t), tenant, sep(1), sep(31), allocation.ByCostCenter)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"a": "7.5", "b": "7.5"}, byCostCenter(rows))

	appendAll(t, e.store, tenant, restated(tenant, costLine("l1", 7, "Amazon EC2", "12.01")))
	catchUp(t, e.store, e.pool, 100)
	rows, err = q.Allocated(ctxT(t), tenant, sep(1), sep(31), allocation.ByCostCenter)
	require.NoError(t, err)
	// 17.01 = 1701 cents: 850 each, 1 left, to "a" on the tie: 8.51 / 8.50.
	require.Equal(t, map[string]string{"a": "8.51", "b": "8.5"}, byCostCenter(rows))

	appendAll(t, e.store, tenant, retracted(tenant, costLine("l1", 7, "", "")), retracted(tenant, costLine("l2", 7, "", "")))
	catchUp(t, e.store, e.pool, 100)
	rows, err = q.Allocated(ctxT(t), tenant, sep(1), sep(31), allocation.ByCostCenter)
	require.NoError(t, err)
	require.Empty(t, rows)
	require.Empty(t, dump(t, e.pool, "allocation"), "no line, no row")
}

// TestBatchCutDeterminism: the same log folded one event per batch and in one batch gives
// identical rows, through rules before and after lines, a same-version replacement, new
// versions, restatements, retractions, a retirement, a proportional split and an invalid
// rule, for two tenants.
func TestBatchCutDeterminism(t *testing.T) {
	e := newEnv(t)
	for _, tenant := range []string{"acme", "globex"} {
		web := rule("web", 1, 10, 1, direct, "web", "")
		web.Match.Tags = []*tallyv1.KeyValue{{Key: "team", Value: "web"}}
		shared := rule("shared", 1, 50, 1, prop, "web", "", "data", "")
		shared.Match.ServiceName = "Support"
		webV1b := rule("web", 1, 10, 6, direct, "web-b", "") // replaces v1 from a later day: 1-5 fall out
		webV1b.Match.Tags = web.Match.Tags
		data := rule("data", 1, 20, 10, pct, "data", "70", "ml", "30")
		data.Match.ResourceIdPattern = "arn:aws:x:d*"
		fx := rule("fixed", 1, 30, 10, fixed, "platform", "1.50")
		fx.RemainderCostCenter = "shared-pool"
		fx.Match.ServiceName = "Amazon S3"
		bad := rule("bad", 1, 1, 1, pct, "a", "60", "b", "30") // 90%: refused, kept, never applies
		var events []*tallyv1.Envelope
		events = append(events, ruleSet(tenant, web), ruleSet(tenant, bad))
		for day := 1; day <= 20; day++ {
			events = append(events,
				recorded(tenant, costLine(fmt.Sprintf("w%02d", day), day, "Amazon EC2", fmt.Sprintf("%d.%02d", day, day), "team=web")),
				recorded(tenant, costLine(fmt.Sprintf("d%02d", day), day, "Amazon RDS", "3.333")),
				recorded(tenant, costLine(fmt.Sprintf("s%02d", day), day, "Support", "1.01")),
				recorded(tenant, costLine(fmt.Sprintf("x%02d", day), day, "Amazon S3", fmt.Sprintf("0.%02d", 100-day))))
			switch day {
			case 5:
				events = append(events, ruleSet(tenant, shared), ruleSet(tenant, data))
			case 8:
				events = append(events, restated(tenant, costLine("w03", 3, "Amazon EC2", "30.30", "team=web")))
			case 12:
				events = append(events, ruleSet(tenant, webV1b), retracted(tenant, costLine("d04", 4, "", "")))
			case 15:
				events = append(events, ruleSet(tenant, fx), ruleRetired(tenant, "data", 14))
			}
		}
		appendOne(t, e.store, tenant, events...)
	}

	one, _ := pgtest.NewDB(t)
	all, _ := pgtest.NewDB(t)
	catchUp(t, e.store, one, 1)
	catchUp(t, e.store, all, 1_000_000)
	a, b := dump(t, one, "allocation"), dump(t, all, "allocation")
	require.NotEmpty(t, a)
	require.Equal(t, a, b)

	// The fold's answer is the pure core's over the final state: every day allocated with the
	// final book, summed per cost center.
	q := allocation.NewQueries(all)
	rows, err := q.Allocated(ctxT(t), "acme", sep(1), sep(31), allocation.ByCostCenter)
	require.NoError(t, err)
	got := byCostCenter(rows)
	require.Contains(t, got, "web-b", "v1 was replaced by web-b")
	require.NotContains(t, got, "a", "the invalid rule never applies")
	var n int
	require.NoError(t, all.QueryRow(ctxT(t), `SELECT count(*) FROM allocation.allocated_daily WHERE rule_id = 'web' AND cost_center = 'web'`).Scan(&n))
	require.Zero(t, n, "the replaced version allocates nothing, even on days it alone covered")
	require.Contains(t, got, "ml")
	require.Contains(t, got, "platform")
	var invalid string
	require.NoError(t, all.QueryRow(ctxT(t), `SELECT invalid FROM allocation.rules WHERE rule_id = 'bad' AND tenant_id = 'acme'`).Scan(&invalid))
	require.Contains(t, invalid, "percentages total 90")
}

// TestFailedDayIsUnallocated: a fixed amount finer than a day's pool cannot be split; that
// day's cost is left unallocated and the failure is reported, and the other days allocate.
func TestFailedDayIsUnallocated(t *testing.T) {
	e := newEnv(t)
	const tenant = "acme"
	fx := rule("fixed", 1, 10, 1, fixed, "platform", "1.005")
	fx.RemainderCostCenter = "rest"
	appendAll(t, e.store, tenant, ruleSet(tenant, fx),
		recorded(tenant, costLine("a", 2, "Amazon EC2", "10.00")),    // cents: 1.005 is finer: fails
		recorded(tenant, costLine("b", 3, "Amazon EC2", "10.12345"))) // 5 places: 1.005 fits
	catchUp(t, e.store, e.pool, 100)
	q := allocation.NewQueries(e.pool)
	cov, err := q.Coverage(ctxT(t), tenant, "2024-09")
	require.NoError(t, err)
	require.Equal(t, "10.12345", cov.Currencies[0].Allocated.String())
	require.Equal(t, "10", cov.Currencies[0].Unallocated.String())
	require.Len(t, cov.FailedDays, 1)
	require.Equal(t, sep(2), cov.FailedDays[0].Day)
	require.Contains(t, cov.FailedDays[0].Reason, "finer than")
}

// TestEffectiveDatedRuleBeforeLines: lines arriving after a rule (in later batches) are
// allocated by it, including lines of days before its effective date (which stay unallocated).
func TestEffectiveDatedRuleBeforeLines(t *testing.T) {
	e := newEnv(t)
	const tenant = "acme"
	r := rule("r", 1, 1, 10, direct, "web", "")
	r.EffectiveTo = timestamppb.New(sep(20))
	appendAll(t, e.store, tenant, ruleSet(tenant, r))
	catchUp(t, e.store, e.pool, 100)
	appendAll(t, e.store, tenant,
		recorded(tenant, costLine("a", 9, "Amazon EC2", "1.00")),
		recorded(tenant, costLine("b", 10, "Amazon EC2", "2.00")),
		recorded(tenant, costLine("c", 19, "Amazon EC2", "4.00")),
		recorded(tenant, costLine("e", 20, "Amazon EC2", "8.00")))
	catchUp(t, e.store, e.pool, 100)
	q := allocation.NewQueries(e.pool)
	cov, err := q.Coverage(ctxT(t), tenant, "2024-09")
	require.NoError(t, err)
	require.Equal(t, "6", cov.Currencies[0].Allocated.String())   // days 10 and 19
	require.Equal(t, "9", cov.Currencies[0].Unallocated.String()) // days 9 and 20
}
