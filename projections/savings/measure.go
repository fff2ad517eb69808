package savings

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Window defaults (a remediation_executed field of 0 means the default) and limit.
const (
	DefaultBaselineDays    = 7
	DefaultGapDays         = 1
	DefaultMeasurementDays = 7
	// MaxWindowDays bounds each window (the gateway refuses longer ones when an action is pushed).
	MaxWindowDays = 366
	// Places is the number of decimal places daily and monthly figures are rounded to, half away
	// from zero (decimal.DivRound, decimal.Round).
	Places = 10
)

// MonthlyMultiplier turns a daily saving into a monthly one: the mean month, 365.25 / 12 days.
var MonthlyMultiplier = decimal.RequireFromString("30.4375")

// Statuses of an action's measurement.
const (
	// StatusPending: some day of a window is not covered by a finalized bill, or a window holds
	// preliminary lines. No figures yet.
	StatusPending = "pending"
	// StatusMeasured: both windows complete and final; the realized saving is zero or more.
	StatusMeasured = "measured"
	// StatusCostIncrease: measured, and the resource cost more a day after the action than
	// before; the realized figures are negative.
	StatusCostIncrease = "cost_increase"
	// StatusUnmeasurable: the action or its lines cannot be measured (no execution time, a
	// window over MaxWindowDays, lines in more than one currency).
	StatusUnmeasurable = "unmeasurable"
)

// Statuses lists every status, for validation and messages.
var Statuses = []string{StatusPending, StatusMeasured, StatusCostIncrease, StatusUnmeasurable}

// day is a UTC calendar day, counted from 1970-01-01.
type day int32

func dayOf(t time.Time) day {
	u := t.UTC()
	return day(time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

func (d day) time() time.Time { return time.Unix(int64(d)*86400, 0).UTC() }

func (d day) String() string { return d.time().Format(time.DateOnly) }

// Windows are an action's baseline and measurement windows, inclusive UTC days. For an action
// on day A with baseline B, gap G and measurement M days: baseline = [A−B, A−1] (it ends the
// day before the action day); the gap is [A, A+G−1] (it starts with the action day, which is
// never measured since the action changed cost part way through it); measurement =
// [A+G, A+G+M−1]. Defaults 7, 1, 7: an action on 2024-09-10 has baseline 09-03..09-09, gap
// 09-10 and measurement 09-11..09-17.
type Windows struct {
	BaselineStart, BaselineEnd, MeasurementStart, MeasurementEnd day
}

func windowsFor(actionDay day, baseline, gap, measurement int) Windows {
	return Windows{
		BaselineStart: actionDay - day(baseline), BaselineEnd: actionDay - 1,
		MeasurementStart: actionDay + day(gap), MeasurementEnd: actionDay + day(gap+measurement) - 1,
	}
}

// which window d is in: 'b', 'm' or 0.
func (w Windows) which(d day) byte {
	switch {
	case d >= w.BaselineStart && d <= w.BaselineEnd:
		return 'b'
	case d >= w.MeasurementStart && d <= w.MeasurementEnd:
		return 'm'
	}
	return 0
}

// Figures are an action's measurement: its status, why (for pending, unmeasurable and
// cost_increase) and, once measured, the amounts as canonical decimal strings in Currency.
// Amounts are "" while the status is pending or unmeasurable.
type Figures struct {
	Status, Reason, Currency string
	// Sums of the effective cost of the final lines of the resource in each window, and how
	// many lines each sum holds.
	BaselineTotal, MeasurementTotal string
	BaselineLines, MeasurementLines int
	// BaselineDaily = BaselineTotal / baseline days; MeasurementDaily = MeasurementTotal /
	// measurement days (each rounded to Places); RealizedDaily = BaselineDaily −
	// MeasurementDaily (exact; negative is a cost increase); RealizedMonthly = RealizedDaily ×
	// MonthlyMultiplier, rounded to Places.
	BaselineDaily, MeasurementDaily, RealizedDaily, RealizedMonthly string
}

// same reports whether f and g are the same figures: everything but the reason, which only
// explains them.
func (f Figures) same(g Figures) bool {
	f.Reason, g.Reason = "", ""
	return f == g
}

// Realize computes the daily and monthly figures from the window totals and lengths (both
// lengths positive): baseline daily = baselineTotal / baselineDays and measured daily =
// measurementTotal / measurementDays, each rounded to Places half away from zero; realized
// daily = their difference (exact, never clamped); realized monthly = realized daily ×
// MonthlyMultiplier, rounded to Places half away from zero.
func Realize(baselineTotal, measurementTotal decimal.Decimal, baselineDays, measurementDays int) (baselineDaily, measurementDaily, realizedDaily, realizedMonthly decimal.Decimal) {
	baselineDaily = baselineTotal.DivRound(decimal.NewFromInt(int64(baselineDays)), Places)
	measurementDaily = measurementTotal.DivRound(decimal.NewFromInt(int64(measurementDays)), Places)
	realizedDaily = baselineDaily.Sub(measurementDaily)
	realizedMonthly = realizedDaily.Mul(MonthlyMultiplier).Round(Places)
	return
}

// measureInput is what an action's measurement depends on.
type measureInput struct {
	invalid string // why the action itself cannot be measured; "" if it can
	windows Windows
	// account of the action; "" means any account of the resource.
	account          string
	expectedCurrency string
	baselineDays     int
	measurementDays  int
	// lines of the action's provider and resource (any day, any account).
	lines []*line
	// final reports whether a line's bill is finalized; covered whether a finalized bill of
	// account spans day d.
	final   func(l *line) bool
	covered func(account string, d day) bool
}

// measure evaluates an action. In order: an invalid action is unmeasurable; with no account
// to check (none named, no lines) it is pending; any window day not covered by a finalized
// bill of each account, or any preliminary line in a window, leaves it pending; final lines in
// more than one currency make it unmeasurable; otherwise it is measured (or a cost increase).
func measure(in measureInput) Figures {
	if in.invalid != "" {
		return Figures{Status: StatusUnmeasurable, Reason: in.invalid}
	}
	w := in.windows
	var bTotal, mTotal decimal.Decimal
	var bLines, mLines, prelim int
	currencies := map[string]bool{}
	accounts := map[string]bool{}
	if in.account != "" {
		accounts[in.account] = true
	}
	for _, l := range in.lines {
		if in.account != "" && l.id.account != in.account {
			continue
		}
		win := w.which(l.day)
		if win == 0 {
			continue
		}
		accounts[l.id.account] = true
		if !in.final(l) {
			prelim++
			continue
		}
		currencies[l.currency] = true
		if win == 'b' {
			bTotal, bLines = bTotal.Add(l.effective), bLines+1
		} else {
			mTotal, mLines = mTotal.Add(l.effective), mLines+1
		}
	}
	if len(accounts) == 0 {
		return Figures{Status: StatusPending, Reason: "the action names no billing account and the resource has no lines in its windows yet: no bill can show the windows complete"}
	}
	total := int(w.BaselineEnd-w.BaselineStart+1) + int(w.MeasurementEnd-w.MeasurementStart+1)
	for _, acc := range sortedKeys(accounts) {
		missing, first := 0, day(0)
		for _, span := range [][2]day{{w.BaselineStart, w.BaselineEnd}, {w.MeasurementStart, w.MeasurementEnd}} {
			for d := span[0]; d <= span[1]; d++ {
				if !in.covered(acc, d) {
					if missing == 0 {
						first = d
					}
					missing++
				}
			}
		}
		if missing > 0 {
			return Figures{Status: StatusPending, Reason: fmt.Sprintf(
				"%d of %d window days not covered by a finalized bill of billing account %q (first %s)", missing, total, acc, first)}
		}
	}
	if prelim > 0 {
		return Figures{Status: StatusPending, Reason: fmt.Sprintf("%d preliminary lines in the windows (their bill is not finalized)", prelim)}
	}
	if len(currencies) > 1 {
		return Figures{Status: StatusUnmeasurable, Reason: "final lines in more than one currency: " + strings.Join(sortedKeys(currencies), ", ")}
	}
	cur := in.expectedCurrency
	for c := range currencies {
		cur = c
	}
	bd, md, rd, rm := Realize(bTotal, mTotal, in.baselineDays, in.measurementDays)
	f := Figures{Status: StatusMeasured, Currency: cur,
		BaselineTotal: bTotal.String(), MeasurementTotal: mTotal.String(), BaselineLines: bLines, MeasurementLines: mLines,
		BaselineDaily: bd.String(), MeasurementDaily: md.String(), RealizedDaily: rd.String(), RealizedMonthly: rm.String()}
	if rd.IsNegative() {
		f.Status = StatusCostIncrease
		f.Reason = fmt.Sprintf("the resource cost %s %s a day more after the action than before", rd.Neg(), cur)
	}
	return f
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
