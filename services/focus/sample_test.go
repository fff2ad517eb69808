package focus_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/services/focus"
)

var samplePath = filepath.Join(testdata, "FOCUS-1.0", "focus_sample.csv")

func TestSampleReadsWithoutErrors(t *testing.T) {
	r, err := focus.Open(samplePath)
	require.NoError(t, err)
	defer r.Close()

	require.Equal(t, focus.FormatCSV, r.Format())
	require.Equal(t, focus.V1_0, r.Version())
	require.Len(t, r.Columns(), 44) // 43 FOCUS 1.0 columns + the sample's "Id"

	var rows []focus.Row
	rep, err := r.Scan(context.Background(), focus.RejectFile, func(row focus.Row) error {
		rows = append(rows, row)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 1000, rep.Rows)
	require.Zero(t, rep.RejectedRows)
	require.Len(t, rows, 1000)

	st, err := os.Stat(samplePath)
	require.NoError(t, err)
	require.Equal(t, st.Size(), rep.BytesRead)
	require.Equal(t, st.Size(), r.Size())

	// No quoted newlines in this file: row n starts on line n+1.
	for i, row := range rows {
		require.Equal(t, i+1, row.Number)
		require.Equal(t, i+2, row.Line)
	}
}

// TestSampleSumsMatchPython compares per-provider and per-service BilledCost
// sums with testdata/focus/focus_sample.sums.txt, which expected_sums.py
// computed with Python's csv and decimal modules, independently of this Go
// code.
func TestSampleSumsMatchPython(t *testing.T) {
	res := readFile(t, samplePath)
	require.NoError(t, res.fatal)
	require.Empty(t, res.rowErrs)

	byProvider := map[string]decimal.Decimal{}
	byService := map[string]decimal.Decimal{}
	total := decimal.Zero
	for _, row := range res.rows {
		byProvider[row.ProviderName] = byProvider[row.ProviderName].Add(row.BilledCost)
		byService[row.ServiceName] = byService[row.ServiceName].Add(row.BilledCost)
		total = total.Add(row.BilledCost)
	}
	got := []string{
		"rows\t" + strconv.Itoa(len(res.rows)),
		"total\t" + total.String(),
	}
	got = append(got, sumLines("provider", byProvider)...)
	got = append(got, sumLines("service", byService)...)

	require.Equal(t, readGolden(t, filepath.Join(testdata, "focus_sample.sums.txt")), got)
}

func sumLines(kind string, sums map[string]decimal.Decimal) []string {
	names := make([]string, 0, len(sums))
	for n := range sums {
		names = append(names, n)
	}
	sort.Strings(names) // Python sorts str by code point, as Go sorts by byte for these ASCII names
	lines := make([]string, len(names))
	for i, n := range names {
		lines[i] = kind + "\t" + n + "\t" + sums[n].String()
	}
	return lines
}

func readGolden(t *testing.T, path string) []string {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			lines = append(lines, line)
		}
	}
	require.NoError(t, sc.Err())
	return lines
}

// TestSampleQuirks pins how the sample's real-world quirks are read.
func TestSampleQuirks(t *testing.T) {
	res := readFile(t, samplePath)
	require.NoError(t, res.fatal)
	rows := res.rows

	t.Run("first row typed", func(t *testing.T) {
		r := rows[0]
		require.Equal(t, "1234567890123", r.BillingAccountID)
		require.Equal(t, "USD", r.BillingCurrency)
		require.True(t, decimal.RequireFromString("0.0000008").Equal(r.BilledCost))
		require.Equal(t, time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC), r.BillingPeriodStart)
		require.Equal(t, time.Date(2024, 10, 1, 0, 0, 0, 0, time.UTC), r.BillingPeriodEnd)
		require.Equal(t, time.Date(2024, 9, 18, 22, 0, 0, 0, time.UTC), r.ChargePeriodStart)
		require.Equal(t, focus.ChargeCategoryUsage, r.ChargeCategory)
		require.Equal(t, focus.ChargeFrequencyUsageBased, r.ChargeFrequency)
		require.Equal(t, focus.PricingCategoryStandard, r.PricingCategory)
		require.Empty(t, r.AvailabilityZone, "literal NULL is null")
		require.Empty(t, r.ChargeClass)
		require.Nil(t, r.Tags, "NULL tags")
		require.True(t, r.ConsumedQuantity.Valid)
		require.Equal(t, "2", r.ConsumedQuantity.Decimal.String())
		require.Equal(t, []focus.Extension{{Name: "Id", Value: "11472"}}, r.Extensions)
		require.Equal(t, "AWS", r.ProviderOrServiceProvider())
	})

	t.Run("charge frequency case normalised", func(t *testing.T) {
		counts := map[focus.ChargeFrequency]int{}
		for _, r := range rows {
			counts[r.ChargeFrequency]++
		}
		// The file has 992 "Usage-Based", 7 "Usage-based" and 1 "One-Time".
		require.Equal(t, map[focus.ChargeFrequency]int{
			focus.ChargeFrequencyUsageBased: 999,
			focus.ChargeFrequencyOneTime:    1,
		}, counts)
	})

	t.Run("tag key with a leading space kept", func(t *testing.T) {
		var found bool
		for _, r := range rows {
			for i, kv := range r.Tags {
				if i > 0 {
					require.Less(t, r.Tags[i-1].Key, kv.Key, "tags sorted, keys unique")
				}
				if kv.Key == " org" {
					found = true
					require.Equal(t, focus.KeyValue{Key: " org", Value: "trey", Kind: focus.KindString}, kv)
				}
			}
		}
		require.True(t, found)
	})

	t.Run("credits are negative", func(t *testing.T) {
		var credits int
		for _, r := range rows {
			if r.ChargeCategory == focus.ChargeCategoryCredit {
				credits++
				require.True(t, r.BilledCost.IsNegative())
			}
		}
		require.Equal(t, 1, credits)
	})

	t.Run("availability zone holding a number stays a string", func(t *testing.T) {
		var zones []string
		for _, r := range rows {
			if r.ProviderName == "Microsoft" && r.AvailabilityZone != "" {
				zones = append(zones, r.AvailabilityZone)
			}
		}
		require.Contains(t, zones, "0.045")
	})

	t.Run("nullable amounts", func(t *testing.T) {
		var nullContracted int
		for _, r := range rows {
			if !r.ContractedCost.Valid {
				nullContracted++
			}
		}
		require.Equal(t, 7, nullContracted) // seven rows write ContractedCost as NULL
	})
}

// TestSampleVariants reads the sample as other exports would write it: with a
// BOM and CRLF line ends, gzipped, and as a file on disk with a .gz name.
func TestSampleVariants(t *testing.T) {
	raw, err := os.ReadFile(samplePath)
	require.NoError(t, err)
	crlf := append([]byte("\xEF\xBB\xBF"), bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n"))...)

	want := readFile(t, samplePath).rows
	for name, data := range map[string][]byte{
		"bom+crlf":      crlf,
		"gzip":          gz(t, string(raw)),
		"gzip bom+crlf": gz(t, string(crlf)),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "focus_sample.csv.gz")
			require.NoError(t, os.WriteFile(path, data, 0o600))
			res := readFile(t, path)
			require.NoError(t, res.fatal)
			require.Empty(t, res.rowErrs)
			require.Len(t, res.rows, len(want))
			require.Equal(t, int64(len(data)), res.reader.BytesRead())
			for i := range want {
				require.True(t, want[i].BilledCost.Equal(res.rows[i].BilledCost))
				require.Equal(t, want[i].Tags, res.rows[i].Tags)
				require.Equal(t, want[i].Line, res.rows[i].Line)
			}
		})
	}
}
