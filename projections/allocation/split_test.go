package allocation

import (
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// partsString renders parts as "cc=amount ..." with amounts at their exponent, so a test
// sees 60.00, not 60.
func partsString(ps []Part) map[string]string {
	m := map[string]string{}
	for _, p := range ps {
		m[p.CostCenter] = p.Amount.String()
	}
	return m
}

func sum(ps []Part) decimal.Decimal {
	s := decimal.Zero
	for _, p := range ps {
		s = s.Add(p.Amount)
	}
	return s
}

func w(cc, weight string) Weight { return Weight{CostCenter: cc, Weight: d(weight)} }

func TestSplitByWeights(t *testing.T) {
	tests := []struct {
		name     string
		amount   string
		currency string
		weights  []Weight
		want     map[string]string
	}{
		{
			// 100.00 = 10000 cents; 60% = 6000 cents, 40% = 4000 cents, no remainder.
			name: "60/40 of 100.00", amount: "100.00", currency: "USD",
			weights: []Weight{w("web", "60"), w("data", "40")},
			want:    map[string]string{"web": "60", "data": "40"},
		},
		{
			// 10000 cents / 3 = 3333 each, remainder 1 each (all tie); 10000 - 9999 = 1
			// cent left, to the first by name on a tie: "a". The order weights are given in
			// does not matter.
			name: "even thirds of 100.00", amount: "100.00", currency: "USD",
			weights: []Weight{w("c", "1"), w("a", "1"), w("b", "1")},
			want:    map[string]string{"a": "33.34", "b": "33.33", "c": "33.33"},
		},
		{
			// 10001 cents / 3 = 3333 rem 2 each; 10001 - 9999 = 2 cents left: to "a" and
			// "b". 33.34 + 33.34 + 33.33 = 100.01.
			name: "even thirds of 100.01", amount: "100.01", currency: "USD",
			weights: []Weight{w("a", "1"), w("b", "1"), w("c", "1")},
			want:    map[string]string{"a": "33.34", "b": "33.34", "c": "33.33"},
		},
		{
			// A credit: |-10.00| = 1000 cents, 500/500, both negated.
			name: "credit -10.00 split 50/50", amount: "-10.00", currency: "USD",
			weights: []Weight{w("a", "50"), w("b", "50")},
			want:    map[string]string{"a": "-5", "b": "-5"},
		},
		{
			// Credit with a cent left over: 1001 cents / 3 = 333 rem 2; 2 cents to a and b,
			// negated like the cost they mirror: -3.34, -3.34, -3.33.
			name: "credit -10.01 three ways", amount: "-10.01", currency: "USD",
			weights: []Weight{w("a", "1"), w("b", "1"), w("c", "1")},
			want:    map[string]string{"a": "-3.34", "b": "-3.34", "c": "-3.33"},
		},
		{
			// Largest remainder, not name order: 1.00 = 100 cents by 1/2/4 (of 7):
			// quotas 14.28, 28.57, 57.14 -> 14, 28, 57 (99), remainders 2/7, 4/7, 1/7;
			// the 1 cent left goes to the largest remainder, "b": 0.14, 0.29, 0.57.
			name: "largest remainder wins over name", amount: "1.00", currency: "EUR",
			weights: []Weight{w("a", "1"), w("b", "2"), w("c", "4")},
			want:    map[string]string{"a": "0.14", "b": "0.29", "c": "0.57"},
		},
		{
			// JPY has no minor unit: 100 yen by thirds = 34, 33, 33.
			name: "JPY whole yen", amount: "100", currency: "JPY",
			weights: []Weight{w("a", "1"), w("b", "1"), w("c", "1")},
			want:    map[string]string{"a": "34", "b": "33", "c": "33"},
		},
		{
			// A raw line cost finer than a cent is split at its own precision (7 places):
			// 0.1234567 = 1234567 units of 1e-7; /3 = 411522 rem 1 each, 1 unit left, to
			// "a": 0.0411523 + 0.0411522 + 0.0411522 = 0.1234567.
			name: "finer than a cent", amount: "0.1234567", currency: "USD",
			weights: []Weight{w("a", "1"), w("b", "1"), w("c", "1")},
			want:    map[string]string{"a": "0.0411523", "b": "0.0411522", "c": "0.0411522"},
		},
		{
			// Percentages with decimals: 33.33/33.33/33.34 of 100.00 -> exact quotas.
			name: "decimal percentages", amount: "100.00", currency: "USD",
			weights: []Weight{w("a", "33.33"), w("b", "33.33"), w("c", "33.34")},
			want:    map[string]string{"a": "33.33", "b": "33.33", "c": "33.34"},
		},
		{
			name: "zero amount", amount: "0", currency: "USD",
			weights: []Weight{w("a", "1"), w("b", "3")},
			want:    map[string]string{"a": "0", "b": "0"},
		},
		{
			// A zero weight gets nothing: 10.00 by 0/1 -> 0, 10.00.
			name: "zero weight", amount: "10.00", currency: "USD",
			weights: []Weight{w("a", "0"), w("b", "1")},
			want:    map[string]string{"a": "0", "b": "10"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := SplitByWeights(d(tt.amount), tt.currency, tt.weights)
			require.NoError(t, err)
			require.Equal(t, tt.want, partsString(parts))
			require.True(t, sum(parts).Equal(d(tt.amount)), "parts sum to %s, want %s", sum(parts), tt.amount)
			for i := 1; i < len(parts); i++ {
				require.Less(t, parts[i-1].CostCenter, parts[i].CostCenter, "parts sorted by cost center")
			}
		})
	}
}

func TestSplitByWeightsRefuses(t *testing.T) {
	for name, ws := range map[string][]Weight{
		"no weights":        nil,
		"zero total":        {w("a", "0"), w("b", "0")},
		"negative weight":   {w("a", "-1"), w("b", "2")},
		"empty cost center": {w("", "1")},
		"duplicate":         {w("a", "1"), w("a", "1")},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := SplitByWeights(d("1.00"), "USD", ws)
			require.ErrorIs(t, err, ErrSplit)
		})
	}
}

func TestSplitProportional(t *testing.T) {
	tests := []struct {
		name    string
		amount  string
		weights []Weight
		want    map[string]string
	}{
		{
			// Shared cost 90.00 by direct costs 200.00 and 100.00: 90 * 200/300 = 60.00,
			// 90 * 100/300 = 30.00.
			name: "shared 90.00 by 200/100", amount: "90.00",
			weights: []Weight{w("web", "200.00"), w("data", "100.00")},
			want:    map[string]string{"web": "60", "data": "30"},
		},
		{
			// No direct cost on the day: even split, 90.00 / 2 = 45.00 each.
			name: "zero weights fall back to even", amount: "90.00",
			weights: []Weight{w("web", "0"), w("data", "0")},
			want:    map[string]string{"web": "45", "data": "45"},
		},
		{
			// A cost center whose day nets to a credit (-50.00) counts as 0: all 90.00 to web.
			name: "negative direct cost counts as zero", amount: "90.00",
			weights: []Weight{w("web", "100.00"), w("data", "-50.00")},
			want:    map[string]string{"web": "90", "data": "0"},
		},
		{
			// All weights non-positive: even, 10.01 -> 5.01 (a, by name), 5.00.
			name: "all negative falls back to even", amount: "10.01",
			weights: []Weight{w("b", "-1"), w("a", "-2")},
			want:    map[string]string{"a": "5.01", "b": "5"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := SplitProportional(d(tt.amount), "USD", tt.weights)
			require.NoError(t, err)
			require.Equal(t, tt.want, partsString(parts))
			require.True(t, sum(parts).Equal(d(tt.amount)))
		})
	}
}

func TestSplitFixed(t *testing.T) {
	fx := func(cc, a string) FixedShare { return FixedShare{CostCenter: cc, Amount: d(a)} }
	tests := []struct {
		name   string
		amount string
		fixed  []FixedShare
		want   map[string]string
	}{
		{
			// 100.00 - 30.00 fixed = 70.00 to the remainder bucket.
			name: "fixed 30.00 + remainder of 100.00", amount: "100.00",
			fixed: []FixedShare{fx("support", "30.00")},
			want:  map[string]string{"support": "30", "platform": "70"},
		},
		{
			// 100.00 - (30.00 + 20.50) = 49.50.
			name: "two fixed + remainder", amount: "100.00",
			fixed: []FixedShare{fx("a", "30.00"), fx("b", "20.50")},
			want:  map[string]string{"a": "30", "b": "20.5", "platform": "49.5"},
		},
		{
			// Exactly covered: remainder 0.
			name: "exactly covered", amount: "50.00",
			fixed: []FixedShare{fx("a", "30.00"), fx("b", "20.00")},
			want:  map[string]string{"a": "30", "b": "20", "platform": "0"},
		},
		{
			// 40.00 cannot cover 30 + 20 = 50: scaled down in proportion 3:2 ->
			// 40 * 3/5 = 24.00, 40 * 2/5 = 16.00; the remainder bucket gets 0 (never -10).
			name: "short: proportional to fixed amounts", amount: "40.00",
			fixed: []FixedShare{fx("a", "30.00"), fx("b", "20.00")},
			want:  map[string]string{"a": "24", "b": "16", "platform": "0"},
		},
		{
			// A credit pool goes wholly to the remainder bucket.
			name: "credit to remainder", amount: "-12.34",
			fixed: []FixedShare{fx("a", "30.00")},
			want:  map[string]string{"a": "0", "platform": "-12.34"},
		},
		{
			// The remainder bucket may hold a fixed amount too: 10.00 + (100.00 - 40.00).
			name: "remainder also fixed", amount: "100.00",
			fixed: []FixedShare{fx("platform", "10.00"), fx("a", "30.00")},
			want:  map[string]string{"a": "30", "platform": "70"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := SplitFixed(d(tt.amount), "USD", tt.fixed, "platform")
			require.NoError(t, err)
			require.Equal(t, tt.want, partsString(parts))
			require.True(t, sum(parts).Equal(d(tt.amount)))
		})
	}

	_, err := SplitFixed(d("100"), "USD", []FixedShare{fx("a", "1.005")}, "p")
	require.ErrorIs(t, err, ErrSplit, "a fixed amount finer than a cent")
	_, err = SplitFixed(d("100"), "JPY", []FixedShare{fx("a", "1.5")}, "p")
	require.ErrorIs(t, err, ErrSplit, "a fractional yen")
	_, err = SplitFixed(d("100"), "USD", []FixedShare{fx("a", "-1")}, "p")
	require.ErrorIs(t, err, ErrSplit)
	_, err = SplitFixed(d("100"), "USD", []FixedShare{fx("a", "1")}, "")
	require.ErrorIs(t, err, ErrSplit)
}

func TestMinorUnit(t *testing.T) {
	require.Equal(t, int32(2), MinorUnit("USD"))
	require.Equal(t, int32(2), MinorUnit("EUR"))
	require.Equal(t, int32(0), MinorUnit("JPY"))
	require.Equal(t, int32(0), MinorUnit("jpy"))
	require.Equal(t, int32(3), MinorUnit("KWD"))
	require.Equal(t, int32(2), MinorUnit("XYZ"), "unknown codes default to 2")
	require.Equal(t, int32(2), MinorUnit(""))
}
