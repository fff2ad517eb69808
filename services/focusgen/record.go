package focusgen

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-ledger/tally/services/focus"
)

// header is every FOCUS 1.3 cost-and-usage column, sorted by name.
var header = focus.ColumnNames(focus.V1_3)

// bill holds what is constant for one billing period.
type bill struct {
	periodStart, periodEnd string
	invoiceIDs             map[*account]string
}

func newBill(start time.Time) *bill {
	b := &bill{
		periodStart: stamp(start),
		periodEnd:   stamp(start.AddDate(0, 1, 0)),
		invoiceIDs:  map[*account]string{},
	}
	for i, a := range accounts {
		b.invoiceIDs[a] = fmt.Sprintf("INV-%s-%03d", start.Format("200601"), i+1)
	}
	return b
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

func dec(x decimal.Decimal) string { return x.String() }

func nullDec(x decimal.NullDecimal) string {
	if !x.Valid {
		return ""
	}
	return x.Decimal.String()
}

// columnValues renders each column of a line; the map is keyed by FOCUS
// column ID so a reader can check a column against the spec at a glance.
// Empty string is null. Columns FOCUS 1.3 defines that this generator does
// not model (capacity reservations, contract commitments, allocation) stay
// null.
var columnValues = map[string]func(b *bill, l *line) string{
	"AllocatedMethodDetails":    func(*bill, *line) string { return "" },
	"AllocatedMethodId":         func(*bill, *line) string { return "" },
	"AllocatedResourceId":       func(*bill, *line) string { return "" },
	"AllocatedResourceName":     func(*bill, *line) string { return "" },
	"AllocatedTags":             func(*bill, *line) string { return "" },
	"AvailabilityZone":          func(_ *bill, l *line) string { return l.zone },
	"BilledCost":                func(_ *bill, l *line) string { return dec(l.billed) },
	"BillingAccountId":          func(_ *bill, l *line) string { return l.acct.id },
	"BillingAccountName":        func(_ *bill, l *line) string { return l.acct.name },
	"BillingAccountType":        func(_ *bill, l *line) string { return l.acct.typ },
	"BillingCurrency":           func(_ *bill, l *line) string { return l.acct.currency },
	"BillingPeriodEnd":          func(b *bill, _ *line) string { return b.periodEnd },
	"BillingPeriodStart":        func(b *bill, _ *line) string { return b.periodStart },
	"CapacityReservationId":     func(*bill, *line) string { return "" },
	"CapacityReservationStatus": func(*bill, *line) string { return "" },
	"ChargeCategory":            func(_ *bill, l *line) string { return l.category },
	"ChargeClass":               func(*bill, *line) string { return "" },
	"ChargeDescription":         func(_ *bill, l *line) string { return l.description },
	"ChargeFrequency":           func(_ *bill, l *line) string { return l.frequency },
	"ChargePeriodEnd":           func(_ *bill, l *line) string { return stamp(l.end) },
	"ChargePeriodStart":         func(_ *bill, l *line) string { return stamp(l.start) },
	"CommitmentDiscountCategory": func(_ *bill, l *line) string {
		if l.cd == nil {
			return ""
		}
		return l.cd.category
	},
	"CommitmentDiscountId": func(_ *bill, l *line) string {
		if l.cd == nil {
			return ""
		}
		return l.cd.id
	},
	"CommitmentDiscountName": func(_ *bill, l *line) string {
		if l.cd == nil {
			return ""
		}
		return l.cd.name
	},
	"CommitmentDiscountQuantity": func(_ *bill, l *line) string { return nullDec(l.cdQty) },
	"CommitmentDiscountStatus":   func(_ *bill, l *line) string { return l.cdStatus },
	"CommitmentDiscountType": func(_ *bill, l *line) string {
		if l.cd == nil {
			return ""
		}
		return l.cd.typ
	},
	"CommitmentDiscountUnit": func(_ *bill, l *line) string {
		if l.cd == nil {
			return ""
		}
		return l.cd.unit
	},
	"ConsumedQuantity":    func(_ *bill, l *line) string { return nullDec(l.consumedQty) },
	"ConsumedUnit":        func(_ *bill, l *line) string { return l.consumedUnit },
	"ContractApplied":     func(*bill, *line) string { return "" },
	"ContractedCost":      func(_ *bill, l *line) string { return dec(l.contracted) },
	"ContractedUnitPrice": func(_ *bill, l *line) string { return nullDec(l.contractedUnitPrice) },
	"EffectiveCost":       func(_ *bill, l *line) string { return dec(l.effective) },
	"HostProviderName":    func(_ *bill, l *line) string { return l.acct.provider.host },
	"InvoiceId":           func(b *bill, l *line) string { return b.invoiceIDs[l.acct] },
	"InvoiceIssuerName":   func(_ *bill, l *line) string { return l.acct.issuer },
	"ListCost":            func(_ *bill, l *line) string { return dec(l.list) },
	"ListUnitPrice":       func(_ *bill, l *line) string { return nullDec(l.listUnitPrice) },
	"PricingCategory":     func(_ *bill, l *line) string { return l.pricingCategory },
	// Prices are in the billing currency: pricing and billing currency agree.
	"PricingCurrency":                    func(_ *bill, l *line) string { return l.acct.currency },
	"PricingCurrencyContractedUnitPrice": func(_ *bill, l *line) string { return nullDec(l.contractedUnitPrice) },
	"PricingCurrencyEffectiveCost":       func(_ *bill, l *line) string { return dec(l.effective) },
	"PricingCurrencyListUnitPrice":       func(_ *bill, l *line) string { return nullDec(l.listUnitPrice) },
	"PricingQuantity":                    func(_ *bill, l *line) string { return nullDec(l.pricingQty) },
	"PricingUnit":                        func(_ *bill, l *line) string { return l.pricingUnit },
	"ProviderName":                       func(_ *bill, l *line) string { return l.acct.provider.name },
	"PublisherName":                      func(_ *bill, l *line) string { return l.acct.provider.publisher },
	"RegionId": func(_ *bill, l *line) string {
		if l.region == nil {
			return ""
		}
		return l.region.id
	},
	"RegionName": func(_ *bill, l *line) string {
		if l.region == nil {
			return ""
		}
		return l.region.name
	},
	"ResourceId":          func(_ *bill, l *line) string { return l.resourceID },
	"ResourceName":        func(_ *bill, l *line) string { return l.resourceName },
	"ResourceType":        func(_ *bill, l *line) string { return l.resourceType },
	"ServiceCategory":     func(_ *bill, l *line) string { return l.svc.category },
	"ServiceName":         func(_ *bill, l *line) string { return l.svc.name },
	"ServiceProviderName": func(_ *bill, l *line) string { return l.acct.provider.name },
	"ServiceSubcategory":  func(_ *bill, l *line) string { return l.svc.subcategory },
	"SkuId":               func(_ *bill, l *line) string { return l.skuID },
	"SkuMeter": func(_ *bill, l *line) string {
		if l.sku == nil {
			return ""
		}
		return l.sku.meter
	},
	"SkuPriceDetails": func(_ *bill, l *line) string {
		if l.sku == nil {
			return ""
		}
		return l.sku.details
	},
	"SkuPriceId":     func(_ *bill, l *line) string { return l.skuPriceID },
	"SubAccountId":   func(_ *bill, l *line) string { return l.sub.id },
	"SubAccountName": func(_ *bill, l *line) string { return l.sub.name },
	"SubAccountType": func(_ *bill, l *line) string { return l.sub.typ },
	"Tags":           func(_ *bill, l *line) string { return l.tags },
}

// renderers holds columnValues in header order.
var renderers = func() []func(*bill, *line) string {
	fs := make([]func(*bill, *line) string, len(header))
	for i, name := range header {
		f, ok := columnValues[name]
		if !ok {
			panic("focusgen: no value for FOCUS column " + name)
		}
		fs[i] = f
	}
	if len(columnValues) != len(header) {
		panic("focusgen: columnValues has columns FOCUS 1.3 does not define")
	}
	return fs
}()

func (b *bill) record(l *line, rec []string) {
	for i, f := range renderers {
		rec[i] = f(b, l)
	}
}
