package allocation

import (
	"testing"

	"github.com/shopspring/decimal"
)

// FuzzSplit checks, for any amount and any non-negative weights, that the parts of every
// split sum exactly to the amount, that no part has the opposite sign of the amount, and
// that no part is finer than the split's unit.
func FuzzSplit(f *testing.F) {
	f.Add(int64(10000), int32(2), uint16(60), uint16(40), uint16(0), "USD")
	f.Add(int64(10001), int32(2), uint16(1), uint16(1), uint16(1), "USD")
	f.Add(int64(-1000), int32(2), uint16(50), uint16(50), uint16(0), "EUR")
	f.Add(int64(100), int32(0), uint16(1), uint16(1), uint16(1), "JPY")
	f.Add(int64(1), int32(10), uint16(7), uint16(0), uint16(3), "USD")
	f.Fuzz(func(t *testing.T, units int64, places int32, w1, w2, w3 uint16, currency string) {
		if places < 0 || places > 12 {
			places = 2
		}
		amount := decimal.New(units, -places)
		ws := []Weight{
			{CostCenter: "a", Weight: decimal.New(int64(w1), -1)},
			{CostCenter: "b", Weight: decimal.New(int64(w2), 0)},
			{CostCenter: "c", Weight: decimal.New(int64(w3), -3)},
		}
		check := func(kind string, parts []Part, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
			s := decimal.Zero
			for _, p := range parts {
				s = s.Add(p.Amount)
				if (amount.IsPositive() && p.Amount.IsNegative()) || (amount.IsNegative() && p.Amount.IsPositive()) {
					t.Fatalf("%s: part %s=%s has the opposite sign of %s", kind, p.CostCenter, p.Amount, amount)
				}
				if significantPlaces(p.Amount) > splitPlaces(amount, currency) {
					t.Fatalf("%s: part %s finer than the unit of %s %s", kind, p.Amount, amount, currency)
				}
			}
			if !s.Equal(amount) {
				t.Fatalf("%s: parts %v sum to %s, want %s", kind, parts, s, amount)
			}
		}

		if w1 != 0 || w2 != 0 || w3 != 0 {
			parts, err := SplitByWeights(amount, currency, ws)
			check("weights", parts, err)
		}
		parts, err := SplitProportional(amount, currency, ws)
		check("proportional", parts, err)
		parts, err = SplitEven(amount, currency, []string{"c", "a", "b"})
		check("even", parts, err)
		unit := MinorUnit(currency)
		fixed := []FixedShare{
			{CostCenter: "a", Amount: decimal.New(int64(w1), -unit)},
			{CostCenter: "b", Amount: decimal.New(int64(w2), -unit)},
		}
		parts, err = SplitFixed(amount, currency, fixed, "r")
		check("fixed", parts, err)
	})
}
