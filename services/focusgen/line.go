package focusgen

import (
	"time"

	"github.com/shopspring/decimal"
)

// line is one generated FOCUS row before it is written: dimensions as
// strings, metrics as decimals, so that a revision can restate it exactly.
type line struct {
	acct        *account
	sub         subAccount
	svc         *service
	category    string
	frequency   string
	description string
	start, end  time.Time

	resourceID, resourceName, resourceType string
	region                                 *region
	zone                                   string
	sku                                    *sku // nil for tax and credits
	skuID, skuPriceID                      string
	pricingCategory                        string
	pricingUnit, consumedUnit              string
	cd                                     *commitment
	cdStatus                               string
	tags                                   string

	pricingQty, consumedQty, cdQty      decimal.NullDecimal
	listUnitPrice, contractedUnitPrice  decimal.NullDecimal
	billed, effective, list, contracted decimal.Decimal
}

// costPlaces is how many decimal places generated costs carry, about what
// provider exports print.
const costPlaces = 10

func roundCost(x decimal.Decimal) decimal.Decimal { return x.Round(costPlaces) }

// scaled returns the line restated by factor f: quantities and every cost
// change together (unit prices do not), as when a provider corrects metered
// usage. Costs are re-rounded like freshly generated ones.
func (l line) scaled(f decimal.Decimal) line {
	mul := func(n decimal.NullDecimal) decimal.NullDecimal {
		if !n.Valid {
			return n
		}
		return decimal.NewNullDecimal(n.Decimal.Mul(f))
	}
	l.pricingQty = mul(l.pricingQty)
	l.consumedQty = mul(l.consumedQty)
	l.cdQty = mul(l.cdQty)
	l.billed = roundCost(l.billed.Mul(f))
	l.effective = roundCost(l.effective.Mul(f))
	l.list = roundCost(l.list.Mul(f))
	l.contracted = roundCost(l.contracted.Mul(f))
	if l.cd != nil && l.cd.category == "Spend" && l.cdQty.Valid {
		l.cdQty = nd(l.effective) // a spend commitment counts money, keep it equal to the cost
	}
	return l
}

func nd(x decimal.Decimal) decimal.NullDecimal { return decimal.NewNullDecimal(x) }
