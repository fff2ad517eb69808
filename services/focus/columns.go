package focus

import (
	"slices"
	"strings"
)

// Version is a FOCUS specification version.
type Version string

// The FOCUS versions whose cost-and-usage columns this package knows.
const (
	V1_0 Version = "1.0"
	V1_1 Version = "1.1"
	V1_2 Version = "1.2"
	V1_3 Version = "1.3"
)

// rank orders versions; the zero value of an unknown version sorts first.
func (v Version) rank() int {
	return slices.Index([]Version{V1_0, V1_1, V1_2, V1_3}, v)
}

// colID identifies a FOCUS column. Unknown columns (x_ prefixed or not) have
// no colID; they become Row.Extensions.
type colID int

const (
	colNone colID = iota
	colAllocatedMethodDetails
	colAllocatedMethodID
	colAllocatedResourceID
	colAllocatedResourceName
	colAllocatedTags
	colAvailabilityZone
	colBilledCost
	colBillingAccountID
	colBillingAccountName
	colBillingAccountType
	colBillingCurrency
	colBillingPeriodEnd
	colBillingPeriodStart
	colCapacityReservationID
	colCapacityReservationStatus
	colChargeCategory
	colChargeClass
	colChargeDescription
	colChargeFrequency
	colChargePeriodEnd
	colChargePeriodStart
	colCommitmentDiscountCategory
	colCommitmentDiscountID
	colCommitmentDiscountName
	colCommitmentDiscountQuantity
	colCommitmentDiscountStatus
	colCommitmentDiscountType
	colCommitmentDiscountUnit
	colConsumedQuantity
	colConsumedUnit
	colContractApplied
	colContractedCost
	colContractedUnitPrice
	colEffectiveCost
	colHostProviderName
	colInvoiceID
	colInvoiceIssuerName
	colListCost
	colListUnitPrice
	colPricingCategory
	colPricingCurrency
	colPricingCurrencyContractedUnitPrice
	colPricingCurrencyEffectiveCost
	colPricingCurrencyListUnitPrice
	colPricingQuantity
	colPricingUnit
	colProviderName
	colPublisherName
	colRegionID
	colRegionName
	colResourceID
	colResourceName
	colResourceType
	colServiceCategory
	colServiceName
	colServiceProviderName
	colServiceSubcategory
	colSkuID
	colSkuMeter
	colSkuPriceDetails
	colSkuPriceID
	colSubAccountID
	colSubAccountName
	colSubAccountType
	colTags
	numCols
)

// column describes one FOCUS cost-and-usage column: its Column ID as the
// specification spells it and the version that introduced it.
type column struct {
	name  string
	since Version
}

// columns lists every cost-and-usage column of FOCUS 1.0 to 1.3, checked
// against the specification (FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec:
// CHANGELOG.md for 1.0-1.2 and specification/datasets/cost_and_usage/columns
// for 1.3): 43 columns in 1.0, 50 in 1.1, 57 in 1.2, 65 in 1.3. ProviderName
// and PublisherName are deprecated by 1.3 (replaced by ServiceProviderName and
// HostProviderName) but remain in the 1.3 dataset, so they are still read.
var columns = [numCols]column{
	colAllocatedMethodDetails:             {"AllocatedMethodDetails", V1_3},
	colAllocatedMethodID:                  {"AllocatedMethodId", V1_3},
	colAllocatedResourceID:                {"AllocatedResourceId", V1_3},
	colAllocatedResourceName:              {"AllocatedResourceName", V1_3},
	colAllocatedTags:                      {"AllocatedTags", V1_3},
	colAvailabilityZone:                   {"AvailabilityZone", V1_0},
	colBilledCost:                         {"BilledCost", V1_0},
	colBillingAccountID:                   {"BillingAccountId", V1_0},
	colBillingAccountName:                 {"BillingAccountName", V1_0},
	colBillingAccountType:                 {"BillingAccountType", V1_2},
	colBillingCurrency:                    {"BillingCurrency", V1_0},
	colBillingPeriodEnd:                   {"BillingPeriodEnd", V1_0},
	colBillingPeriodStart:                 {"BillingPeriodStart", V1_0},
	colCapacityReservationID:              {"CapacityReservationId", V1_1},
	colCapacityReservationStatus:          {"CapacityReservationStatus", V1_1},
	colChargeCategory:                     {"ChargeCategory", V1_0},
	colChargeClass:                        {"ChargeClass", V1_0},
	colChargeDescription:                  {"ChargeDescription", V1_0},
	colChargeFrequency:                    {"ChargeFrequency", V1_0},
	colChargePeriodEnd:                    {"ChargePeriodEnd", V1_0},
	colChargePeriodStart:                  {"ChargePeriodStart", V1_0},
	colCommitmentDiscountCategory:         {"CommitmentDiscountCategory", V1_0},
	colCommitmentDiscountID:               {"CommitmentDiscountId", V1_0},
	colCommitmentDiscountName:             {"CommitmentDiscountName", V1_0},
	colCommitmentDiscountQuantity:         {"CommitmentDiscountQuantity", V1_1},
	colCommitmentDiscountStatus:           {"CommitmentDiscountStatus", V1_0},
	colCommitmentDiscountType:             {"CommitmentDiscountType", V1_0},
	colCommitmentDiscountUnit:             {"CommitmentDiscountUnit", V1_1},
	colConsumedQuantity:                   {"ConsumedQuantity", V1_0},
	colConsumedUnit:                       {"ConsumedUnit", V1_0},
	colContractApplied:                    {"ContractApplied", V1_3},
	colContractedCost:                     {"ContractedCost", V1_0},
	colContractedUnitPrice:                {"ContractedUnitPrice", V1_0},
	colEffectiveCost:                      {"EffectiveCost", V1_0},
	colHostProviderName:                   {"HostProviderName", V1_3},
	colInvoiceID:                          {"InvoiceId", V1_2},
	colInvoiceIssuerName:                  {"InvoiceIssuerName", V1_0},
	colListCost:                           {"ListCost", V1_0},
	colListUnitPrice:                      {"ListUnitPrice", V1_0},
	colPricingCategory:                    {"PricingCategory", V1_0},
	colPricingCurrency:                    {"PricingCurrency", V1_2},
	colPricingCurrencyContractedUnitPrice: {"PricingCurrencyContractedUnitPrice", V1_2},
	colPricingCurrencyEffectiveCost:       {"PricingCurrencyEffectiveCost", V1_2},
	colPricingCurrencyListUnitPrice:       {"PricingCurrencyListUnitPrice", V1_2},
	colPricingQuantity:                    {"PricingQuantity", V1_0},
	colPricingUnit:                        {"PricingUnit", V1_0},
	colProviderName:                       {"ProviderName", V1_0},
	colPublisherName:                      {"PublisherName", V1_0},
	colRegionID:                           {"RegionId", V1_0},
	colRegionName:                         {"RegionName", V1_0},
	colResourceID:                         {"ResourceId", V1_0},
	colResourceName:                       {"ResourceName", V1_0},
	colResourceType:                       {"ResourceType", V1_0},
	colServiceCategory:                    {"ServiceCategory", V1_0},
	colServiceName:                        {"ServiceName", V1_0},
	colServiceProviderName:                {"ServiceProviderName", V1_3},
	colServiceSubcategory:                 {"ServiceSubcategory", V1_1},
	colSkuID:                              {"SkuId", V1_0},
	colSkuMeter:                           {"SkuMeter", V1_1},
	colSkuPriceDetails:                    {"SkuPriceDetails", V1_1},
	colSkuPriceID:                         {"SkuPriceId", V1_0},
	colSubAccountID:                       {"SubAccountId", V1_0},
	colSubAccountName:                     {"SubAccountName", V1_0},
	colSubAccountType:                     {"SubAccountType", V1_2},
	colTags:                               {"Tags", V1_0},
}

// columnByFold maps a lower-cased column name to its colID. Matching ignores
// case because real files do not always spell the IDs right (the spec's own
// appendix examples have "SkuPriceid").
var columnByFold = func() map[string]colID {
	m := make(map[string]colID, numCols)
	for id := colNone + 1; id < numCols; id++ {
		m[strings.ToLower(columns[id].name)] = id
	}
	return m
}()

// ColumnNames returns the cost-and-usage Column IDs defined by FOCUS version
// v (cumulative: 1.3 includes everything from 1.0), sorted by name. It
// returns nil for an unknown version.
func ColumnNames(v Version) []string {
	if v.rank() < 0 {
		return nil
	}
	var names []string
	for id := colNone + 1; id < numCols; id++ {
		if columns[id].since.rank() <= v.rank() {
			names = append(names, columns[id].name)
		}
	}
	slices.Sort(names)
	return names
}

// requiredColumns must be present in a file's header: they are what the
// ledger cannot do without (the amount, its currency, when, and whose), not
// the full FOCUS mandatory list; a provider column is checked separately
// because 1.3 renamed it.
var requiredColumns = []colID{
	colBilledCost,
	colBillingCurrency,
	colBillingAccountID,
	colBillingPeriodStart,
	colBillingPeriodEnd,
	colChargePeriodStart,
	colChargePeriodEnd,
	colChargeCategory,
}

// detectVersion guesses the FOCUS version from the columns present: the file
// itself does not say (FOCUS keeps the version in separate metadata).
func detectVersion(present *[numCols]bool) Version {
	v := V1_0
	for id := colNone + 1; id < numCols; id++ {
		if present[id] && columns[id].since.rank() > v.rank() {
			v = columns[id].since
		}
	}
	return v
}
