package focus_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/services/focus"
)

// pqRow is a FOCUS row as a Parquet export may type it: a DECIMAL amount, a
// DOUBLE amount, TIMESTAMP bounds of two precisions, optional strings and an
// extension column.
type pqRow struct {
	BilledCost          int64     `parquet:"BilledCost,decimal(6:18)"`
	EffectiveCost       float64   `parquet:"EffectiveCost"`
	ListCost            *float64  `parquet:"ListCost,optional"`
	BillingCurrency     string    `parquet:"BillingCurrency"`
	BillingAccountID    string    `parquet:"BillingAccountId"`
	BillingPeriodStart  time.Time `parquet:"BillingPeriodStart,timestamp(microsecond)"`
	BillingPeriodEnd    time.Time `parquet:"BillingPeriodEnd,timestamp(microsecond)"`
	ChargePeriodStart   time.Time `parquet:"ChargePeriodStart,timestamp(millisecond)"`
	ChargePeriodEnd     time.Time `parquet:"ChargePeriodEnd,timestamp(millisecond)"`
	ChargeCategory      string    `parquet:"ChargeCategory"`
	ChargeFrequency     string    `parquet:"ChargeFrequency,optional"`
	ServiceProviderName string    `parquet:"ServiceProviderName"`
	Tags                *string   `parquet:"Tags,optional"`
	LineID              int32     `parquet:"x_LineId"`
}

func writeParquet(t *testing.T, path string, rows []pqRow) {
	f, err := os.Create(path)
	require.NoError(t, err)
	w := parquet.NewGenericWriter[pqRow](f, parquet.MaxRowsPerRowGroup(100))
	_, err = w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())
}

func TestParquetReadsByColumnName(t *testing.T) {
	period := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	tags := `{"team":"data","env":"prod"}`
	list := 0.1 // a DOUBLE amount that is not exact in binary
	var rows []pqRow
	for i := range 1000 {
		r := pqRow{
			BilledCost:          int64(i)*1_000_000 + 123_456, // i.123456
			EffectiveCost:       1.5e-7,
			BillingCurrency:     "EUR",
			BillingAccountID:    "acct-9",
			BillingPeriodStart:  period,
			BillingPeriodEnd:    period.AddDate(0, 1, 0),
			ChargePeriodStart:   period.Add(time.Duration(i) * time.Hour),
			ChargePeriodEnd:     period.Add(time.Duration(i+1) * time.Hour),
			ChargeCategory:      "usage",
			ServiceProviderName: "Google Cloud",
			LineID:              int32(i),
		}
		if i%2 == 0 {
			r.Tags, r.ListCost, r.ChargeFrequency = &tags, &list, "Usage-Based"
		}
		rows = append(rows, r)
	}
	path := filepath.Join(t.TempDir(), "bill.parquet")
	writeParquet(t, path, rows)

	res := readFile(t, path)
	require.NoError(t, res.fatal)
	require.Empty(t, res.rowErrs)
	require.Len(t, res.rows, 1000)
	require.Equal(t, focus.FormatParquet, res.reader.Format())

	for i, r := range res.rows {
		require.Equal(t, i+1, r.Number)
		require.Zero(t, r.Line, "Parquet has no lines")
		require.Equal(t, fmt.Sprintf("%d.123456", i), r.BilledCost.String())
		require.Equal(t, "0.00000015", r.EffectiveCost.Decimal.String())
		require.Equal(t, period.Add(time.Duration(i)*time.Hour), r.ChargePeriodStart)
		require.Equal(t, focus.ChargeCategoryUsage, r.ChargeCategory, "case normalised")
		require.Equal(t, []focus.Extension{{Name: "x_LineId", Value: fmt.Sprint(i)}}, r.Extensions)
		if i%2 == 0 {
			require.Equal(t, "0.1", r.ListCost.Decimal.String(), "shortest round-trip text of the double")
			require.Equal(t, []focus.KeyValue{{Key: "env", Value: "prod"}, {Key: "team", Value: "data"}}, r.Tags)
			require.Equal(t, focus.ChargeFrequencyUsageBased, r.ChargeFrequency)
		} else {
			require.False(t, r.ListCost.Valid)
			require.Nil(t, r.Tags)
			require.Empty(t, r.ChargeFrequency)
		}
	}

	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Positive(t, res.reader.BytesRead())
	require.Equal(t, st.Size(), res.reader.Size())
}

func TestParquetBadRowsAreReportedByRowNumber(t *testing.T) {
	period := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	good := pqRow{
		BilledCost: 1, BillingCurrency: "USD", BillingAccountID: "a",
		BillingPeriodStart: period, BillingPeriodEnd: period.AddDate(0, 1, 0),
		ChargePeriodStart: period, ChargePeriodEnd: period.Add(time.Hour),
		ChargeCategory: "Usage", ServiceProviderName: "Oracle",
	}
	bad := good
	bad.BillingCurrency = "XXX"
	path := filepath.Join(t.TempDir(), "bad.parquet")
	writeParquet(t, path, []pqRow{good, bad, good})

	res := readFile(t, path)
	require.NoError(t, res.fatal)
	require.Len(t, res.rows, 2)
	fe := res.firstError(t)
	require.Equal(t, focus.RuleCurrency, fe.Rule)
	require.Equal(t, 2, fe.Row)
	require.Zero(t, fe.Line)
	require.Equal(t, `bad.parquet: row 2: column BillingCurrency: value "XXX" is not an active ISO 4217 currency code`, fe.Error())
}

func TestParquetNestedColumnUnsupported(t *testing.T) {
	type nested struct {
		BilledCost string            `parquet:"BilledCost"`
		Tags       map[string]string `parquet:"Tags"`
	}
	var b bytes.Buffer
	w := parquet.NewGenericWriter[nested](&b)
	_, err := w.Write([]nested{{BilledCost: "1", Tags: map[string]string{"a": "b"}}})
	require.NoError(t, err)
	require.NoError(t, w.Close())

	_, err = focus.NewReader(bytes.NewReader(b.Bytes()), "map.parquet", focus.FormatAuto)
	var fe *focus.Error
	require.ErrorAs(t, err, &fe)
	require.Equal(t, focus.RuleUnsupported, fe.Rule)
	require.Contains(t, fe.Error(), `nested Parquet column "Tags.key_value.key" is not supported`)
}

func TestParquetTruncated(t *testing.T) {
	period := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	row := pqRow{BillingPeriodStart: period, BillingPeriodEnd: period, ChargePeriodStart: period, ChargePeriodEnd: period}
	path := filepath.Join(t.TempDir(), "cut.parquet")
	writeParquet(t, path, []pqRow{row, row, row})
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data[:len(data)/2], 0o600))

	res := readFile(t, path)
	fe := res.firstError(t)
	require.Equal(t, focus.RuleCorrupt, fe.Rule)
	require.Equal(t, "cut.parquet", fe.File)
}
