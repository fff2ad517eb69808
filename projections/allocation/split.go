package allocation

import (
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/shopspring/decimal"
)

// ErrSplit is wrapped by every error a split returns: the inputs cannot be split (no parts,
// a negative weight, a fixed amount finer than the currency's minor unit).
var ErrSplit = errors.New("allocation: cannot split")

// Part is one cost center's share of a split amount.
type Part struct {
	CostCenter string
	Amount     decimal.Decimal
}

// Weight is a cost center's weight in a split; only the ratios between weights matter.
type Weight struct {
	CostCenter string
	Weight     decimal.Decimal
}

// minorUnits holds the ISO 4217 currencies whose minor unit is not 2 decimal places. Every
// other code, and the empty code, uses 2 (USD, EUR, GBP, ...).
var minorUnits = map[string]int32{
	// 0 decimal places.
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
	"PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	// 3 decimal places.
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	// 4 decimal places.
	"CLF": 4, "UYW": 4,
}

// MinorUnit is the number of decimal places of currency's minor unit (ISO 4217): 2 for USD
// and EUR, 0 for JPY, 3 for KWD; 2 for any code not in the table.
func MinorUnit(currency string) int32 {
	if d, ok := minorUnits[strings.ToUpper(currency)]; ok {
		return d
	}
	return 2
}

// splitPlaces is the number of decimal places the parts of amount are counted in: the
// currency's minor unit, or the amount's own precision where that is finer. Cloud bills carry
// line costs to 10 or more places; splitting such an amount at cents could not sum back to
// it, so it is split at its own precision and rounding to cents is left to presentation.
func splitPlaces(amount decimal.Decimal, currency string) int32 {
	places := MinorUnit(currency)
	if e := -amount.Exponent(); e > places {
		// The exponent may carry trailing zeros ("100.000"); only significant places count.
		if t := significantPlaces(amount); t > places {
			places = t
		}
	}
	return places
}

// significantPlaces is the number of decimal places of d without trailing zeros.
func significantPlaces(d decimal.Decimal) int32 {
	s := d.String() // shopspring prints without trailing zeros.
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return int32(len(s) - i - 1)
	}
	return 0
}

// SplitByWeights divides amount between the weighted cost centers by the largest remainder
// method, so that the parts sum exactly to amount.
//
// The amount is counted in units of the currency's minor unit (or finer, see splitPlaces). Each
// part first gets the whole units of its exact quota |amount| * w / sum(w); the units left
// over (fewer than the number of parts) go one each to the parts with the largest fractional
// remainders; equal remainders are broken by cost center name, ascending, so the result does
// not depend on the order of the weights. A negative amount (a credit) is split as its
// absolute value and every part negated: the sign is preserved, and a credit's extra unit goes
// where a cost's would. Weights must be non-negative with a positive total, and cost centers
// unique and non-empty. Parts are returned sorted by cost center, one per weight (zero parts
// included).
func SplitByWeights(amount decimal.Decimal, currency string, weights []Weight) ([]Part, error) {
	if len(weights) == 0 {
		return nil, fmt.Errorf("%w: no cost centers", ErrSplit)
	}
	ws := append([]Weight(nil), weights...)
	sort.Slice(ws, func(i, j int) bool { return ws[i].CostCenter < ws[j].CostCenter })
	total := decimal.Zero
	for i, w := range ws {
		if w.CostCenter == "" {
			return nil, fmt.Errorf("%w: empty cost center", ErrSplit)
		}
		if i > 0 && ws[i-1].CostCenter == w.CostCenter {
			return nil, fmt.Errorf("%w: cost center %q twice", ErrSplit, w.CostCenter)
		}
		if w.Weight.IsNegative() {
			return nil, fmt.Errorf("%w: negative weight %s for %q", ErrSplit, w.Weight, w.CostCenter)
		}
		total = total.Add(w.Weight)
	}
	if !total.IsPositive() {
		return nil, fmt.Errorf("%w: weights total %s, want > 0", ErrSplit, total)
	}

	places := splitPlaces(amount, currency)
	units := toUnits(amount.Abs(), places) // exact: places covers the amount's precision

	// Scale the weights to integers with a common exponent; the ratios are unchanged.
	wexp := int32(0)
	for _, w := range ws {
		if e := w.Weight.Exponent(); e < wexp {
			wexp = e
		}
	}
	iw := make([]*big.Int, len(ws))
	sum := new(big.Int)
	for i, w := range ws {
		iw[i] = w.Weight.Shift(-wexp).BigInt()
		sum.Add(sum, iw[i])
	}

	type share struct {
		idx   int
		whole *big.Int
		rem   *big.Int
	}
	shares := make([]share, len(ws))
	given := new(big.Int)
	for i := range ws {
		q, r := new(big.Int).QuoRem(new(big.Int).Mul(units, iw[i]), sum, new(big.Int))
		shares[i] = share{idx: i, whole: q, rem: r}
		given.Add(given, q)
	}
	left := new(big.Int).Sub(units, given).Int64() // < len(ws): each floor loses < 1 unit
	order := make([]int, len(ws))
	for i := range order {
		order[i] = i
	}
	// Largest remainder first; ws is sorted by name, so the stable sort breaks ties by name.
	sort.SliceStable(order, func(a, b int) bool {
		return shares[order[a]].rem.Cmp(shares[order[b]].rem) > 0
	})
	for k := int64(0); k < left; k++ {
		s := &shares[order[k]]
		s.whole.Add(s.whole, big.NewInt(1))
	}

	neg := amount.IsNegative()
	parts := make([]Part, len(ws))
	for i, s := range shares {
		a := decimal.NewFromBigInt(s.whole, -places)
		if neg {
			a = a.Neg()
		}
		parts[i] = Part{CostCenter: ws[i].CostCenter, Amount: a}
	}
	return parts, nil
}

// toUnits is d counted in units of 10^-places; d must have no finer precision.
func toUnits(d decimal.Decimal, places int32) *big.Int {
	return d.Shift(places).BigInt()
}

// SplitEven divides amount evenly between cost centers (largest remainder: the units left
// over go to the first cost centers by name).
func SplitEven(amount decimal.Decimal, currency string, costCenters []string) ([]Part, error) {
	ws := make([]Weight, len(costCenters))
	for i, cc := range costCenters {
		ws[i] = Weight{CostCenter: cc, Weight: decimal.NewFromInt(1)}
	}
	return SplitByWeights(amount, currency, ws)
}

// SplitProportional divides amount in proportion to each cost center's weight (in a shared
// cost split, its direct cost of the same day). A negative weight (a cost center whose day
// nets to a credit) counts as zero: a credit does not earn a share of shared cost. When no
// weight is positive there is nothing to be proportional to, and the split falls back to even.
func SplitProportional(amount decimal.Decimal, currency string, weights []Weight) ([]Part, error) {
	ws := make([]Weight, len(weights))
	positive := false
	for i, w := range weights {
		ws[i] = w
		if w.Weight.IsNegative() {
			ws[i].Weight = decimal.Zero
		}
		positive = positive || w.Weight.IsPositive()
	}
	if !positive {
		ccs := make([]string, len(weights))
		for i, w := range weights {
			ccs[i] = w.CostCenter
		}
		return SplitEven(amount, currency, ccs)
	}
	return SplitByWeights(amount, currency, ws)
}

// FixedShare is a fixed amount for a cost center.
type FixedShare struct {
	CostCenter string
	Amount     decimal.Decimal
}

// SplitFixed gives each cost center its fixed amount and the rest of amount to the remainder
// cost center. Fixed amounts are in the amount's currency and must be non-negative and exact
// at its minor unit (or at amount's own precision, if finer).
//
// When the amount cannot cover the fixed amounts, no part is made to change sign:
//   - 0 <= amount < sum(fixed): the amount is split in proportion to the fixed amounts (by
//     largest remainder) and the remainder cost center gets zero;
//   - amount < 0 (the day's matched lines net to a credit): the whole credit goes to the
//     remainder cost center, which carries the variable part of the pool; the fixed amounts
//     are charges agreed in advance, and a refund does not change them.
//
// The remainder cost center may also hold a fixed amount; its parts are merged. Parts are
// sorted by cost center.
func SplitFixed(amount decimal.Decimal, currency string, fixed []FixedShare, remainder string) ([]Part, error) {
	if remainder == "" {
		return nil, fmt.Errorf("%w: fixed amounts need a remainder cost center", ErrSplit)
	}
	places := splitPlaces(amount, currency)
	sum := decimal.Zero
	seen := map[string]bool{}
	for _, f := range fixed {
		if f.CostCenter == "" {
			return nil, fmt.Errorf("%w: empty cost center", ErrSplit)
		}
		if seen[f.CostCenter] {
			return nil, fmt.Errorf("%w: cost center %q twice", ErrSplit, f.CostCenter)
		}
		seen[f.CostCenter] = true
		if f.Amount.IsNegative() {
			return nil, fmt.Errorf("%w: negative fixed amount %s for %q", ErrSplit, f.Amount, f.CostCenter)
		}
		if significantPlaces(f.Amount) > places {
			return nil, fmt.Errorf("%w: fixed amount %s for %q is finer than %s's minor unit (%d places)",
				ErrSplit, f.Amount, f.CostCenter, currency, places)
		}
		sum = sum.Add(f.Amount)
	}

	acc := map[string]decimal.Decimal{remainder: decimal.Zero}
	switch {
	case amount.IsNegative() || sum.IsZero():
		acc[remainder] = amount
		for _, f := range fixed {
			acc[f.CostCenter] = acc[f.CostCenter].Add(decimal.Zero)
		}
	case amount.LessThan(sum):
		ws := make([]Weight, len(fixed))
		for i, f := range fixed {
			ws[i] = Weight{CostCenter: f.CostCenter, Weight: f.Amount}
		}
		parts, err := SplitByWeights(amount, currency, ws)
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			acc[p.CostCenter] = acc[p.CostCenter].Add(p.Amount)
		}
	default:
		for _, f := range fixed {
			acc[f.CostCenter] = acc[f.CostCenter].Add(f.Amount)
		}
		acc[remainder] = acc[remainder].Add(amount.Sub(sum))
	}
	return sortedParts(acc), nil
}

// sortedParts turns per-cost-center amounts into parts sorted by cost center.
func sortedParts(acc map[string]decimal.Decimal) []Part {
	parts := make([]Part, 0, len(acc))
	for cc, a := range acc {
		parts = append(parts, Part{CostCenter: cc, Amount: a})
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].CostCenter < parts[j].CostCenter })
	return parts
}
