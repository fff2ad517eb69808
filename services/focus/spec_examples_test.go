package focus_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/services/focus"
)

var specExamples = filepath.Join(testdata, "spec-examples-1.2")

// TestSpecExamplesRead reads the FOCUS 1.2 appendix examples that carry the
// required columns: BOM, CRLF, "4/1/25" dates, empty ChargeClass, a trailing
// space in "0.00 ", a consumption currency ("Token") as PricingCurrency.
func TestSpecExamplesRead(t *testing.T) {
	tests := []struct {
		file  string
		rows  int
		start time.Time // BillingPeriodStart of the first row
	}{
		{"saas_examples/virtual_currency_pricing_model_a1.csv", 1, day(2025, 4, 1)},
		{"saas_examples/virtual_currency_pricing_model_a2.csv", 3, day(2025, 4, 1)},
		{"saas_examples/virtual_currency_pricing_model_b1.csv", 1, day(2025, 4, 1)},
		{"saas_examples/virtual_currency_pricing_model_b2.csv", 3, day(2025, 4, 1)},
		{"saas_examples/virtual_currency_pricing_model_b3.csv", 3, day(2025, 4, 1)},
		{"saas_examples/virtual_currency_pricing_model_c.csv", 2, day(2025, 10, 1)},
		{"saas_examples/spend_agreements/saas_spend_agreements_a1.csv", 4, day(2025, 4, 1)},
		{"saas_examples/spend_agreements/saas_spend_agreements_a2.csv", 13, day(2025, 4, 1)},
		{"saas_examples/spend_agreements/saas_spend_agreements_b1.csv", 5, day(2025, 4, 1)},
		{"saas_examples/spend_agreements/saas_spend_agreements_b2.csv", 14, day(2025, 4, 1)},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			res := readFile(t, filepath.Join(specExamples, tt.file))
			require.NoError(t, res.fatal)
			require.Empty(t, res.rowErrs)
			require.Len(t, res.rows, tt.rows)
			require.Equal(t, tt.start, res.rows[0].BillingPeriodStart)
			require.Equal(t, "USD", res.rows[0].BillingCurrency)
		})
	}
}

func TestSpecExampleVirtualCurrencyValues(t *testing.T) {
	res := readFile(t, filepath.Join(specExamples, "saas_examples", "virtual_currency_pricing_model_a2.csv"))
	require.NoError(t, res.fatal)
	require.Equal(t, []string{"BilledCost", "BillingAccountId"}, res.reader.Columns()[:2], "BOM stripped from the first name")
	require.Equal(t, focus.V1_2, res.reader.Version())
	r := res.rows[0]
	require.Equal(t, "Token", r.PricingCurrency)
	require.Equal(t, "245", r.PricingCurrencyEffectiveCost.Decimal.String())
	require.Equal(t, day(2025, 4, 2), r.ChargePeriodEnd)
	require.Equal(t, "ACMECORP", r.ProviderOrServiceProvider())
	require.Empty(t, r.ChargeClass)
	require.Equal(t, 2, r.Line, "CRLF line endings")
}

// TestSpecExamplesWithCurrencyFormattedAmounts: the simple SaaS agreement
// examples write amounts as "$10,000.00 ", which FOCUS's numeric format
// forbids. They are rejected row by row, with the position.
func TestSpecExamplesWithCurrencyFormattedAmounts(t *testing.T) {
	for _, f := range []string{"a1", "a2", "a3", "b", "c"} {
		t.Run(f, func(t *testing.T) {
			res := readFile(t, filepath.Join(specExamples, "saas_examples", "simple_agreements", "simple_saas_agreements_"+f+".csv"))
			require.NoError(t, res.fatal)
			require.Empty(t, res.rows)
			require.NotEmpty(t, res.rowErrs)
			fe := res.firstError(t)
			require.Equal(t, focus.RuleDecimal, fe.Rule)
			require.Equal(t, "BilledCost", fe.Column)
			require.Equal(t, 2, fe.Line)
			require.Regexp(t, `^simple_saas_agreements_`+f+`\.csv:2: column BilledCost: value "\$[0-9,]+\.00 " is not a decimal$`, fe.Error())
		})
	}
}

// TestSpecExamplesFragments: the commitment-discount examples illustrate one
// scenario with a subset of columns (no currency, account or provider). They
// are refused by default and read with AllowMissingColumns, which still
// catches the spec's own typo "2023-02-01T30:00:00Z" (hour 30).
func TestSpecExamplesFragments(t *testing.T) {
	tests := []struct {
		file    string
		rows    int
		badLine int // physical line of the first bad row, 0 if none
	}{
		{"commitment_discount_flexibility/one_hundred_percent_utilization_with_commitment_discount_flexibility_with_1_resource.csv", 3, 0},
		{"commitment_discount_flexibility/one_hundred_percent_utilization_with_commitment_discount_flexibility_with_2_resources.csv", 3, 0},
		{"commitment_discount_flexibility/one_hundred_percent_utilization_without_commitment_discount_flexibility.csv", 2, 0},
		{"commitment_discount_flexibility/zero_percent_utilization_without_commitment_discount_flexibility.csv", 3, 0},
		{"commitment_discount_scenarios/commitment_discount_purchase_scenario_1.csv", 1, 0},
		{"commitment_discount_scenarios/commitment_discount_purchase_scenario_2.csv", 2, 4},
		{"commitment_discount_scenarios/commitment_discount_purchase_scenario_3.csv", 3, 5},
		{"commitment_discount_scenarios/commitment_discount_usage_scenario_1.csv", 1, 0},
		{"commitment_discount_scenarios/commitment_discount_usage_scenario_2.csv", 1, 0},
		{"commitment_discount_scenarios/commitment_discount_usage_scenario_3.csv", 2, 0},
		{"commitment_discount_scenarios/commitment_discount_usage_scenario_4.csv", 2, 0},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			path := filepath.Join(specExamples, tt.file)

			strict := readFile(t, path)
			fe := strict.firstError(t)
			require.Equal(t, focus.RuleMissingColumn, fe.Rule)
			require.Equal(t, "BillingCurrency", fe.Column, "reported on the first missing required column")
			require.Equal(t, 1, fe.Line)
			require.Contains(t, fe.Error(), "column BillingCurrency: required column is missing (also missing: BillingAccountId, ServiceProviderName)")

			res := readFile(t, path, focus.AllowMissingColumns())
			require.NoError(t, res.fatal)
			require.Len(t, res.rows, tt.rows)
			if tt.badLine == 0 {
				require.Empty(t, res.rowErrs)
				return
			}
			require.Len(t, res.rowErrs, 1)
			fe = res.firstError(t)
			require.Equal(t, focus.RuleTimestamp, fe.Rule)
			require.Equal(t, "ChargePeriodEnd", fe.Column)
			require.Equal(t, tt.badLine, fe.Line)
			require.Equal(t, "2023-02-01T30:00:00Z", fe.Value)
		})
	}
}

func TestSpecExampleCommitmentFields(t *testing.T) {
	res := readFile(t, filepath.Join(specExamples, "commitment_discount_flexibility",
		"one_hundred_percent_utilization_with_commitment_discount_flexibility_with_1_resource.csv"), focus.AllowMissingColumns())
	require.NoError(t, res.fatal)
	used := res.rows[1]
	require.Equal(t, focus.StatusUsed, used.CommitmentDiscountStatus)
	require.Equal(t, focus.CommitmentDiscountCategoryUsage, used.CommitmentDiscountCategory)
	require.Equal(t, focus.PricingCategoryCommitted, used.PricingCategory)
	require.Equal(t, "VM_LARGE_COMMITTED_HOUR", used.SkuPriceID, `header spells it "SkuPriceid"`)
	require.Equal(t, "0.333", used.PricingQuantity.Decimal.String())
	require.False(t, res.rows[0].ConsumedQuantity.Valid, `"null" is null`)
	require.Equal(t, 6, res.rows[2].Line, "blank lines between rows counted")
	require.Equal(t, []focus.Extension{{Name: "x_CommitmentDiscountUnitPrice", Value: "1.50"}}, used.Extensions)
}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
