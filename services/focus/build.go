package focus

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// builder turns one record into a Row, collecting every problem rather than
// stopping at the first, so that a rejection report tells the whole story of
// a row at once.
type builder struct {
	r        *Reader
	fields   []string
	row      Row
	problems []*Error
}

func (r *Reader) build(fields []string) (Row, []*Error) {
	b := builder{r: r, fields: fields}
	b.row.Line = r.src.line(0)
	b.row.Number = r.number
	for i, v := range fields {
		if !utf8.ValidString(v) {
			b.fail(i, v, RuleEncoding, "is not valid UTF-8")
			continue
		}
		if id := r.cols[i]; id != colNone {
			b.assign(id, i, v)
		}
	}
	if len(r.extIdx) > 0 {
		b.row.Extensions = make([]Extension, len(r.extIdx))
		for k, i := range r.extIdx {
			b.row.Extensions[k] = Extension{Name: r.header[i], Value: fields[i]}
		}
	}
	b.checkProvider()
	b.checkPeriod(colBillingPeriodStart, colBillingPeriodEnd, b.row.BillingPeriodStart, b.row.BillingPeriodEnd)
	b.checkPeriod(colChargePeriodStart, colChargePeriodEnd, b.row.ChargePeriodStart, b.row.ChargePeriodEnd)
	return b.row, b.problems
}

// assign parses field i, the value of column id. One case per FOCUS column
// reads better than a table of closures and lets the compiler check types.
func (b *builder) assign(id colID, i int, v string) {
	row := &b.row
	switch id {
	case colBilledCost:
		if b.required(i, v) {
			if d, ok := b.decimal(i, v); ok {
				row.BilledCost = d
			}
		}
	case colEffectiveCost:
		row.EffectiveCost = b.nullDecimal(i, v)
	case colListCost:
		row.ListCost = b.nullDecimal(i, v)
	case colContractedCost:
		row.ContractedCost = b.nullDecimal(i, v)
	case colListUnitPrice:
		row.ListUnitPrice = b.nullDecimal(i, v)
	case colContractedUnitPrice:
		row.ContractedUnitPrice = b.nullDecimal(i, v)
	case colPricingQuantity:
		row.PricingQuantity = b.nullDecimal(i, v)
	case colConsumedQuantity:
		row.ConsumedQuantity = b.nullDecimal(i, v)
	case colCommitmentDiscountQuantity:
		row.CommitmentDiscountQuantity = b.nullDecimal(i, v)
	case colPricingCurrencyContractedUnitPrice:
		row.PricingCurrencyContractedUnitPrice = b.nullDecimal(i, v)
	case colPricingCurrencyEffectiveCost:
		row.PricingCurrencyEffectiveCost = b.nullDecimal(i, v)
	case colPricingCurrencyListUnitPrice:
		row.PricingCurrencyListUnitPrice = b.nullDecimal(i, v)

	case colBillingCurrency:
		if b.required(i, v) {
			if c, ok := normalizeCurrency(strings.TrimSpace(v)); ok {
				row.BillingCurrency = c
			} else {
				b.fail(i, v, RuleCurrency, "is not an active ISO 4217 currency code")
			}
		}
	case colBillingAccountID:
		if b.required(i, v) {
			row.BillingAccountID = v
		}
	case colChargeCategory:
		if b.required(i, v) {
			row.ChargeCategory = ChargeCategory(b.enum(i, v, chargeCategories))
		}
	case colBillingPeriodStart:
		row.BillingPeriodStart = b.timestamp(id, i, v)
	case colBillingPeriodEnd:
		row.BillingPeriodEnd = b.timestamp(id, i, v)
	case colChargePeriodStart:
		row.ChargePeriodStart = b.timestamp(id, i, v)
	case colChargePeriodEnd:
		row.ChargePeriodEnd = b.timestamp(id, i, v)

	case colChargeClass:
		row.ChargeClass = ChargeClass(b.enum(i, v, chargeClasses))
	case colChargeFrequency:
		row.ChargeFrequency = ChargeFrequency(b.enum(i, v, chargeFreqs))
	case colPricingCategory:
		row.PricingCategory = PricingCategory(b.enum(i, v, pricingCats))
	case colCommitmentDiscountCategory:
		row.CommitmentDiscountCategory = CommitmentDiscountCategory(b.enum(i, v, commitmentCats))
	case colCommitmentDiscountStatus:
		row.CommitmentDiscountStatus = Status(b.enum(i, v, statuses))
	case colCapacityReservationStatus:
		row.CapacityReservationStatus = Status(b.enum(i, v, statuses))

	case colTags:
		row.Tags = b.keyValues(i, v)
	case colAllocatedTags:
		row.AllocatedTags = b.keyValues(i, v)
	case colSkuPriceDetails:
		row.SkuPriceDetails = b.keyValues(i, v)
	case colContractApplied:
		row.ContractApplied = b.jsonText(i, v)
	case colAllocatedMethodDetails:
		row.AllocatedMethodDetails = b.jsonText(i, v)

	default:
		b.assignString(id, str(v))
	}
}

// assignString sets the free-text columns, which need no validation.
func (b *builder) assignString(id colID, v string) {
	row := &b.row
	switch id {
	case colAllocatedMethodID:
		row.AllocatedMethodID = v
	case colAllocatedResourceID:
		row.AllocatedResourceID = v
	case colAllocatedResourceName:
		row.AllocatedResourceName = v
	case colAvailabilityZone:
		row.AvailabilityZone = v
	case colBillingAccountName:
		row.BillingAccountName = v
	case colBillingAccountType:
		row.BillingAccountType = v
	case colCapacityReservationID:
		row.CapacityReservationID = v
	case colChargeDescription:
		row.ChargeDescription = v
	case colCommitmentDiscountID:
		row.CommitmentDiscountID = v
	case colCommitmentDiscountName:
		row.CommitmentDiscountName = v
	case colCommitmentDiscountType:
		row.CommitmentDiscountType = v
	case colCommitmentDiscountUnit:
		row.CommitmentDiscountUnit = v
	case colConsumedUnit:
		row.ConsumedUnit = v
	case colHostProviderName:
		row.HostProviderName = v
	case colInvoiceID:
		row.InvoiceID = v
	case colInvoiceIssuerName:
		row.InvoiceIssuerName = v
	case colPricingCurrency:
		row.PricingCurrency = v
	case colPricingUnit:
		row.PricingUnit = v
	case colProviderName:
		row.ProviderName = v
	case colPublisherName:
		row.PublisherName = v
	case colRegionID:
		row.RegionID = v
	case colRegionName:
		row.RegionName = v
	case colResourceID:
		row.ResourceID = v
	case colResourceName:
		row.ResourceName = v
	case colResourceType:
		row.ResourceType = v
	case colServiceCategory:
		row.ServiceCategory = v
	case colServiceName:
		row.ServiceName = v
	case colServiceProviderName:
		row.ServiceProviderName = v
	case colServiceSubcategory:
		row.ServiceSubcategory = v
	case colSkuID:
		row.SkuID = v
	case colSkuMeter:
		row.SkuMeter = v
	case colSkuPriceID:
		row.SkuPriceID = v
	case colSubAccountID:
		row.SubAccountID = v
	case colSubAccountName:
		row.SubAccountName = v
	case colSubAccountType:
		row.SubAccountType = v
	}
}

func str(v string) string {
	if isNull(v) {
		return ""
	}
	return v
}

// fail records a problem with field i's value.
func (b *builder) fail(i int, v string, rule Rule, reason string) {
	b.problems = append(b.problems, &Error{
		File:   b.r.name,
		Line:   b.r.src.line(i),
		Row:    b.r.number,
		Column: b.r.columnName(i),
		Value:  v,
		Rule:   rule,
		Msg:    "value " + quote(v) + " " + reason,
	})
}

func (r *Reader) columnName(i int) string {
	if id := r.cols[i]; id != colNone {
		return columns[id].name
	}
	return r.header[i]
}

func (b *builder) required(i int, v string) bool {
	if !isNull(v) {
		return true
	}
	b.problems = append(b.problems, &Error{
		File: b.r.name, Line: b.r.src.line(i), Row: b.r.number, Column: b.r.columnName(i),
		Value: v, Rule: RuleRequired, Msg: "value is required but the field is null",
	})
	return false
}

func (b *builder) decimal(i int, v string) (decimal.Decimal, bool) {
	d, reason, ok := parseDecimal(v)
	if !ok {
		b.fail(i, v, RuleDecimal, reason)
	}
	return d, ok
}

func (b *builder) nullDecimal(i int, v string) decimal.NullDecimal {
	if isNull(v) {
		return decimal.NullDecimal{}
	}
	d, ok := b.decimal(i, v)
	return decimal.NullDecimal{Decimal: d, Valid: ok}
}

// timestamp parses a required period bound. Most files repeat the same
// period bounds on every row, so the last value per column is cached.
func (b *builder) timestamp(id colID, i int, v string) time.Time {
	c := &b.r.tcache[id]
	if c.raw != "" && c.raw == v {
		return c.t
	}
	if !b.required(i, v) {
		return time.Time{}
	}
	t, ok := parseTimestamp(v)
	if !ok {
		b.fail(i, v, RuleTimestamp, "is not a timestamp (expected e.g. 2024-09-01T00:00:00Z)")
		return time.Time{}
	}
	c.raw, c.t = v, t
	return t
}

func (b *builder) enum(i int, v string, allowed []string) string {
	if isNull(v) {
		return ""
	}
	c, ok := canonical(allowed, strings.TrimSpace(v))
	if !ok {
		b.fail(i, v, RuleEnum, "is not one of "+strings.Join(allowed, ", "))
	}
	return c
}

func (b *builder) keyValues(i int, v string) []KeyValue {
	if isNull(v) {
		return nil
	}
	kvs, reason, ok := parseKeyValues(v)
	if !ok {
		b.fail(i, v, RuleJSON, reason)
	}
	return kvs
}

func (b *builder) jsonText(i int, v string) string {
	if isNull(v) {
		return ""
	}
	s, reason, ok := parseJSONText(v)
	if !ok {
		b.fail(i, v, RuleJSON, reason)
	}
	return s
}

// checkProvider requires a provider name: ServiceProviderName from 1.3 on,
// ProviderName before; a file may carry both during the transition.
func (b *builder) checkProvider() {
	r := b.r
	if b.row.ServiceProviderName != "" || b.row.ProviderName != "" {
		return
	}
	for _, id := range []colID{colServiceProviderName, colProviderName} {
		if i := r.fieldOf(id); i >= 0 {
			b.problems = append(b.problems, &Error{
				File: r.name, Line: r.src.line(i), Row: r.number, Column: columns[id].name,
				Value: b.fields[i], Rule: RuleRequired,
				Msg: "value is required but the field is null (a provider name is needed: ServiceProviderName or ProviderName)",
			})
			return
		}
	}
}

// checkPeriod requires start < end (FOCUS periods are start-inclusive,
// end-exclusive, so an empty or reversed period is always wrong). Bounds that
// failed to parse are already reported and left zero; parseTimestamp never
// returns the zero time for a valid value (it refuses years before 1970).
func (b *builder) checkPeriod(startID, endID colID, start, end time.Time) {
	if start.IsZero() || end.IsZero() || start.Before(end) {
		return
	}
	i, j := b.r.fieldOf(startID), b.r.fieldOf(endID)
	b.fail(j, b.fields[j], RulePeriod, "is not after "+columns[startID].name+" "+quote(b.fields[i]))
}

// fieldOf returns the field index of a FOCUS column, or -1 when absent.
func (r *Reader) fieldOf(id colID) int {
	for i, c := range r.cols {
		if c == id {
			return i
		}
	}
	return -1
}
