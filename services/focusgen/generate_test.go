package focusgen_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/focusgen"
)

var september = time.Date(2025, 9, 1, 0, 0, 0, 0, time.UTC)

func generate(t testing.TB, p focusgen.Params) ([]byte, focusgen.Summary) {
	t.Helper()
	var b bytes.Buffer
	sum, err := focusgen.Generate(context.Background(), &b, p)
	require.NoError(t, err)
	return b.Bytes(), sum
}

// readBack reads a generated file through services/focus, strictly.
func readBack(t testing.TB, data []byte) (*focus.Reader, []focus.Row) {
	t.Helper()
	r, err := focus.NewReader(bytes.NewReader(data), "generated.csv", focus.FormatAuto)
	require.NoError(t, err)
	var rows []focus.Row
	_, err = r.Scan(context.Background(), focus.RejectFile, func(row focus.Row) error {
		rows = append(rows, row)
		return nil
	})
	require.NoError(t, err)
	return r, rows
}

// summarize recomputes the generator's summary from rows read by focus.
func summarize(rows []focus.Row) map[string][3]string {
	type acc struct {
		n                 int
		billed, effective decimal.Decimal
	}
	m := map[string]*acc{}
	for _, r := range rows {
		a := m[r.BillingCurrency]
		if a == nil {
			a = &acc{}
			m[r.BillingCurrency] = a
		}
		a.n++
		a.billed = a.billed.Add(r.BilledCost)
		a.effective = a.effective.Add(r.EffectiveCost.Decimal)
	}
	out := map[string][3]string{}
	for c, a := range m {
		out[c] = [3]string{fmt.Sprint(a.n), a.billed.String(), a.effective.String()}
	}
	return out
}

func summaryMap(s focusgen.Summary) map[string][3]string {
	out := map[string][3]string{}
	for _, t := range s.Totals {
		out[t.Currency] = [3]string{fmt.Sprint(t.Rows), t.BilledCost.String(), t.EffectiveCost.String()}
	}
	return out
}

func TestSameSeedSameBytes(t *testing.T) {
	for _, gz := range []bool{false, true} {
		p := focusgen.Params{Seed: 42, Period: september, Rows: 5000, Gzip: gz}
		a, sa := generate(t, p)
		b, sb := generate(t, p)
		require.Equal(t, a, b, "gzip=%v", gz)
		require.Equal(t, sa, sb)

		p.Seed = 43
		c, _ := generate(t, p)
		require.NotEqual(t, a, c)
	}
}

// TestGeneratedBillsReadBack: what the generator writes, services/focus
// reads with zero errors, and the row count and per-currency totals the
// reader sees are the generator's own report.
func TestGeneratedBillsReadBack(t *testing.T) {
	tests := []struct {
		name string
		p    focusgen.Params
	}{
		{"empty", focusgen.Params{Seed: 1, Period: september, Rows: 0}},
		{"one row", focusgen.Params{Seed: 1, Period: september, Rows: 1}},
		{"small", focusgen.Params{Seed: 7, Period: september, Rows: 300}},
		{"february gzip", focusgen.Params{Seed: 9, Period: time.Date(2026, 2, 14, 12, 0, 0, 0, time.UTC), Rows: 8_000, Gzip: true}},
		{"month of 31 days", focusgen.Params{Seed: 2025, Period: time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC), Rows: 12_000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, sum := generate(t, tt.p)
			r, rows := readBack(t, data)
			require.Equal(t, focus.V1_3, r.Version())
			require.Equal(t, focus.ColumnNames(focus.V1_3), r.Columns())
			require.Len(t, rows, tt.p.Rows)
			require.Equal(t, tt.p.Rows, sum.Rows)
			require.Equal(t, summaryMap(sum), summarize(rows))

			start := time.Date(tt.p.Period.Year(), tt.p.Period.Month(), 1, 0, 0, 0, 0, time.UTC)
			for _, row := range rows {
				require.Equal(t, start, row.BillingPeriodStart)
				require.Equal(t, start.AddDate(0, 1, 0), row.BillingPeriodEnd)
				require.False(t, row.ChargePeriodStart.Before(start))
				require.False(t, row.ChargePeriodEnd.After(start.AddDate(0, 1, 0)), "charge within the month")
			}
		})
	}
}

// identity is the line identity the ingester is advised to use (see the
// services/focus report); the generator promises no two rows share it, and
// promises more: even the four columns of uniqueKey are unique.
func identity(r focus.Row) string {
	return strings.Join([]string{
		r.BillingAccountID, r.BillingPeriodStart.String(), r.ProviderOrServiceProvider(), r.SubAccountID,
		string(r.ChargeCategory), string(r.ChargeClass), r.ChargePeriodStart.String(), r.ChargePeriodEnd.String(),
		r.ServiceName, r.SkuID, r.SkuPriceID, r.ResourceID, r.RegionID, r.AvailabilityZone,
		string(r.PricingCategory), r.PricingUnit, r.CommitmentDiscountID, string(r.CommitmentDiscountStatus),
		r.CapacityReservationID, string(r.CapacityReservationStatus), r.AllocatedMethodID, r.AllocatedResourceID,
		r.BillingCurrency,
	}, "\x1f")
}

func uniqueKey(r focus.Row) string {
	return strings.Join([]string{r.ResourceID, string(r.ChargeCategory), string(r.CommitmentDiscountStatus), r.ChargePeriodStart.String()}, "\x1f")
}

func TestGeneratedRowsAreUniqueAndVaried(t *testing.T) {
	data, _ := generate(t, focusgen.Params{Seed: 5, Period: september, Rows: 30_000})
	_, rows := readBack(t, data)

	ids, keys := map[string]int{}, map[string]int{}
	providers, currencies, categories := map[string]int{}, map[string]int{}, map[focus.ChargeCategory]int{}
	statuses, tagKeys := map[focus.Status]int{}, map[string]int{}
	for i, r := range rows {
		if j, dup := ids[identity(r)]; dup {
			t.Fatalf("rows %d and %d share a line identity", j+1, i+1)
		}
		ids[identity(r)] = i
		if j, dup := keys[uniqueKey(r)]; dup {
			t.Fatalf("rows %d and %d share (ResourceId, ChargeCategory, CommitmentDiscountStatus, ChargePeriodStart)", j+1, i+1)
		}
		keys[uniqueKey(r)] = i
		providers[r.ServiceProviderName]++
		currencies[r.BillingCurrency]++
		categories[r.ChargeCategory]++
		statuses[r.CommitmentDiscountStatus]++
		for _, kv := range r.Tags {
			tagKeys[kv.Key]++
		}
		switch r.ChargeCategory {
		case focus.ChargeCategoryCredit:
			require.True(t, r.BilledCost.IsNegative())
		case focus.ChargeCategoryTax:
			require.Empty(t, r.SkuID)
			require.Empty(t, r.PricingCategory)
		case focus.ChargeCategoryPurchase:
			require.Equal(t, focus.ChargeFrequencyRecurring, r.ChargeFrequency)
			require.True(t, r.EffectiveCost.Decimal.IsZero())
		}
		if r.CommitmentDiscountStatus == focus.StatusUsed {
			require.Equal(t, focus.PricingCategoryCommitted, r.PricingCategory)
			require.True(t, r.BilledCost.IsZero())
			require.True(t, r.EffectiveCost.Decimal.IsPositive())
		}
	}
	require.Len(t, providers, 4)
	require.Contains(t, providers, "Google Cloud")
	require.Equal(t, map[string]bool{"USD": true, "EUR": true}, map[string]bool{"USD": currencies["USD"] > 0, "EUR": currencies["EUR"] > 0})
	require.Greater(t, currencies["USD"], 2*currencies["EUR"], "mostly USD")
	for _, c := range []focus.ChargeCategory{focus.ChargeCategoryUsage, focus.ChargeCategoryCredit, focus.ChargeCategoryTax, focus.ChargeCategoryPurchase} {
		require.Positive(t, categories[c], c)
	}
	require.Equal(t, 4, categories[focus.ChargeCategoryPurchase], "one per commitment")
	require.Positive(t, statuses[focus.StatusUsed])
	require.Positive(t, statuses[focus.StatusUnused])
	for _, k := range []string{"team", "env", "cost-center"} {
		require.Positive(t, tagKeys[k], k)
	}
}

func TestGenerateRefusesBadParams(t *testing.T) {
	_, err := focusgen.Generate(context.Background(), io.Discard, focusgen.Params{Rows: 1})
	require.ErrorContains(t, err, "billing period")
	_, err = focusgen.Generate(context.Background(), io.Discard, focusgen.Params{Period: september, Rows: -1})
	require.ErrorContains(t, err, "negative")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = focusgen.Generate(ctx, io.Discard, focusgen.Params{Period: september, Rows: 10})
	require.ErrorIs(t, err, context.Canceled)
}
