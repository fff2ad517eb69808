package focus

import "strings"

// ChargeCategory is the highest-level classification of a charge.
type ChargeCategory string

// ChargeCategory allowed values (FOCUS 1.0+).
const (
	ChargeCategoryUsage      ChargeCategory = "Usage"
	ChargeCategoryPurchase   ChargeCategory = "Purchase"
	ChargeCategoryTax        ChargeCategory = "Tax"
	ChargeCategoryCredit     ChargeCategory = "Credit"
	ChargeCategoryAdjustment ChargeCategory = "Adjustment"
)

// ChargeClass marks corrections of charges invoiced in an earlier period.
// Empty means the row is not a correction.
type ChargeClass string

// ChargeClassCorrection is the only non-null ChargeClass value.
const ChargeClassCorrection ChargeClass = "Correction"

// ChargeFrequency says how often a charge occurs.
type ChargeFrequency string

// ChargeFrequency allowed values.
const (
	ChargeFrequencyOneTime    ChargeFrequency = "One-Time"
	ChargeFrequencyRecurring  ChargeFrequency = "Recurring"
	ChargeFrequencyUsageBased ChargeFrequency = "Usage-Based"
)

// PricingCategory is the pricing model of a charge.
type PricingCategory string

// PricingCategory allowed values.
const (
	PricingCategoryStandard  PricingCategory = "Standard"
	PricingCategoryDynamic   PricingCategory = "Dynamic"
	PricingCategoryCommitted PricingCategory = "Committed"
	PricingCategoryOther     PricingCategory = "Other"
)

// CommitmentDiscountCategory says whether a commitment discount is based on
// spend or on usage quantity.
type CommitmentDiscountCategory string

// CommitmentDiscountCategory allowed values.
const (
	CommitmentDiscountCategorySpend CommitmentDiscountCategory = "Spend"
	CommitmentDiscountCategoryUsage CommitmentDiscountCategory = "Usage"
)

// Status is the Used / Unused value shared by CommitmentDiscountStatus and
// CapacityReservationStatus.
type Status string

// Status allowed values.
const (
	StatusUsed   Status = "Used"
	StatusUnused Status = "Unused"
)

// Allowed values per enum column, canonical spelling first. Real exports mix
// case ("Usage-based" next to "Usage-Based" in the FOCUS sample data), so
// matching ignores case and the row always carries the canonical spelling.
var (
	chargeCategories = []string{"Usage", "Purchase", "Tax", "Credit", "Adjustment"}
	chargeClasses    = []string{"Correction"}
	chargeFreqs      = []string{"One-Time", "Recurring", "Usage-Based"}
	pricingCats      = []string{"Standard", "Dynamic", "Committed", "Other"}
	commitmentCats   = []string{"Spend", "Usage"}
	statuses         = []string{"Used", "Unused"}
)

// canonical returns the allowed value equal to v ignoring case, or false.
// The lists are tiny, so a linear EqualFold scan beats a map and allocates
// nothing.
func canonical(allowed []string, v string) (string, bool) {
	for _, a := range allowed {
		if a == v {
			return a, true
		}
	}
	for _, a := range allowed {
		if strings.EqualFold(a, v) {
			return a, true
		}
	}
	return "", false
}
