package focus_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/services/focus"
)

func TestColumnCounts(t *testing.T) {
	// Counts of the specification (CHANGELOG.md of FOCUS_Spec for 1.0-1.2,
	// the cost_and_usage columns list for 1.3).
	for v, n := range map[focus.Version]int{focus.V1_0: 43, focus.V1_1: 50, focus.V1_2: 57, focus.V1_3: 65} {
		require.Len(t, focus.ColumnNames(v), n, v)
	}
	require.Nil(t, focus.ColumnNames("2.0"))
}

// TestColumnsMatchExternalSamples cross-checks the column table with headers
// written by others: the FOCUS 1.0 sample data (minus its extra "Id") and a
// FOCUS 1.3 sample checked with focus-validator against model 1.3
// (guymano/FOCUS-Sample-Data, FOCUS-1.3/focus_sample_costandusage_aws_1000.csv).
func TestColumnsMatchExternalSamples(t *testing.T) {
	r, err := focus.Open(samplePath)
	require.NoError(t, err)
	defer r.Close()
	v10 := slices.DeleteFunc(slices.Clone(r.Columns()), func(c string) bool { return c == "Id" })
	slices.Sort(v10)
	require.Equal(t, focus.ColumnNames(focus.V1_0), v10)

	v13 := strings.Split("ProviderName,PublisherName,ServiceProviderName,HostProviderName,InvoiceIssuerName,"+
		"InvoiceId,BillingAccountId,BillingAccountName,BillingAccountType,SubAccountId,SubAccountName,"+
		"SubAccountType,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,ChargePeriodEnd,ChargeCategory,"+
		"ChargeClass,ChargeDescription,ChargeFrequency,BilledCost,EffectiveCost,ListCost,ContractedCost,"+
		"ListUnitPrice,ContractedUnitPrice,PricingCategory,PricingQuantity,PricingUnit,PricingCurrency,"+
		"PricingCurrencyContractedUnitPrice,PricingCurrencyEffectiveCost,PricingCurrencyListUnitPrice,"+
		"BillingCurrency,ConsumedQuantity,ConsumedUnit,ServiceName,ServiceCategory,ServiceSubcategory,SkuId,"+
		"SkuMeter,SkuPriceId,SkuPriceDetails,ResourceId,ResourceName,ResourceType,RegionId,RegionName,"+
		"AvailabilityZone,CommitmentDiscountId,CommitmentDiscountName,CommitmentDiscountCategory,"+
		"CommitmentDiscountType,CommitmentDiscountStatus,CommitmentDiscountQuantity,CommitmentDiscountUnit,"+
		"ContractApplied,CapacityReservationId,CapacityReservationStatus,AllocatedMethodId,"+
		"AllocatedMethodDetails,AllocatedResourceId,AllocatedResourceName,AllocatedTags,Tags", ",")
	slices.Sort(v13)
	require.Equal(t, focus.ColumnNames(focus.V1_3), v13)
}
