package exports_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/exports"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/focusgen"
)

func TestColumnsAreFOCUS13(t *testing.T) {
	require.Equal(t, focus.ColumnNames(focus.V1_3), exports.ColumnNames())
}

// TestFOCUSRoundTripSample ingests the real FOCUS sample into tenant a (as a final bill),
// exports a's ledger as CSV and as Parquet, ingests each export into an empty tenant, and
// requires the same ledger, line for line and column for column, and the same daily rollup.
func TestFOCUSRoundTripSample(t *testing.T) {
	e := newEnv(t)
	e.ingestFile(t, "a", samplePath, true)
	e.catchUp(t)
	rng := exports.Range{Tenant: "a", From: month("2024-09"), To: month("2024-11")}
	want := len(e.ledgerRows(t, "a"))

	for _, format := range []string{"csv", "parquet"} {
		t.Run(format, func(t *testing.T) {
			path, n := e.exportTo(t, rng, format)
			require.EqualValues(t, want, n)
			r, err := focus.Open(path)
			require.NoError(t, err)
			require.Equal(t, focus.V1_3, r.Version(), "the export reads as FOCUS 1.3")
			require.NoError(t, r.Close())

			target := "from-" + format
			sum := e.ingestFile(t, target, path, true)
			require.EqualValues(t, n, sum.RowsRead)
			require.EqualValues(t, n, sum.Lines, "every exported row is its own line: no identity column was lost")
			e.catchUp(t)
			requireSameLedger(t, e, "a", target)
		})
	}
}

// TestFOCUSRoundTripGenerated does the same with a generated 100,000-row FOCUS 1.3 bill
// (four providers, credits, commitments, EUR and USD) that was then revised (5% of the lines
// restated, 1% dropped, 2% added), so that the export joins restated events too.
func TestFOCUSRoundTripGenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 rows: about a minute")
	}
	if raceEnabled {
		// Under the race detector this one test took about seven minutes of the suite's
		// fifteen; `make test` runs it again without -race (see the Makefile's test target).
		t.Skip("100,000 rows under -race: make test runs this test without -race")
	}
	start := time.Now()
	e := newEnv(t)
	dir := t.TempDir()
	p := focusgen.Params{Seed: 7, Period: month("2025-09"), Rows: 100_000}
	gen := func(name string, write func(f *os.File) error) string {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		require.NoError(t, err)
		require.NoError(t, write(f))
		require.NoError(t, f.Close())
		return path
	}
	bill := gen("bill.csv", func(f *os.File) error { _, err := focusgen.Generate(ctxT(t), f, p); return err })
	revised := gen("revised.csv", func(f *os.File) error {
		_, err := focusgen.GenerateRevision(ctxT(t), f, p, focusgen.Revision{Seed: 1, Restated: 0.05, Dropped: 0.01, Added: 0.02})
		return err
	})
	e.ingestFile(t, "gen", bill, false)
	sum := e.ingestFile(t, "gen", revised, false)
	require.Positive(t, sum.Restated)
	require.Positive(t, sum.Retracted)
	e.catchUp(t)
	rng := exports.Range{Tenant: "gen", From: month("2025-09"), To: month("2025-10")}
	lines := len(e.ledgerRows(t, "gen"))
	require.Equal(t, 100_000-1_000+2_000, lines)

	for _, format := range []string{"csv", "parquet"} {
		t.Run(format, func(t *testing.T) {
			path, n := e.exportTo(t, rng, format)
			require.EqualValues(t, lines, n)
			target := "gen-" + format
			sum := e.ingestFile(t, target, path, false)
			require.EqualValues(t, n, sum.Lines)
			e.catchUp(t)
			requireSameLedger(t, e, "gen", target)
		})
	}
	t.Logf("100,000-row round trip (generate, ingest, revise, export and re-ingest twice, compare): %s", time.Since(start))
}

// TestFOCUSExportFormats checks the spellings of one exported CSV row of the sample, and that
// a range holds only its billing periods.
func TestFOCUSExportFormats(t *testing.T) {
	e := newEnv(t)
	e.ingestFile(t, "a", samplePath, false)
	e.catchUp(t)

	var b bytes.Buffer
	n, err := exports.WriteFOCUSCSV(ctxT(t), &b, e.source(), exports.Range{Tenant: "a", From: month("2024-10"), To: month("2024-11")})
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the sample has one line billed in October")
	recs, err := csv.NewReader(&b).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 2)
	row := map[string]string{}
	for i, name := range recs[0] {
		row[name] = recs[1][i]
	}
	require.Equal(t, "2024-10-01T00:00:00Z", row["BillingPeriodStart"])
	require.Equal(t, "2024-11-01T00:00:00Z", row["BillingPeriodEnd"])
	require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`, row["ChargePeriodStart"])
	require.Equal(t, row["ProviderName"], row["ServiceProviderName"])
	require.NotEmpty(t, row["ServiceProviderName"])
	require.Regexp(t, `^-?\d+(\.\d+)?$`, row["BilledCost"], "a decimal, never an exponent")
	for _, name := range []string{"InvoiceId", "AllocatedMethodId", "CapacityReservationId"} {
		require.Empty(t, row[name], "%s is null in the sample: an empty field", name)
	}

	b.Reset()
	n, err = exports.WriteFOCUSCSV(ctxT(t), &b, e.source(), exports.Range{Tenant: "a", From: month("2024-09"), To: month("2024-10")})
	require.NoError(t, err)
	require.EqualValues(t, len(e.ledgerRows(t, "a"))-1, n)

	b.Reset()
	n, err = exports.WriteFOCUSCSV(ctxT(t), &b, e.source(), exports.Range{Tenant: "nobody", From: month("2024-09"), To: month("2024-10")})
	require.NoError(t, err)
	require.Zero(t, n)
	require.Equal(t, strings.Join(exports.ColumnNames(), ",")+"\n", b.String(), "an empty ledger is a header alone")
}

// TestFOCUSTagsSorted: Tags is a JSON object with its keys sorted.
func TestFOCUSTagsSorted(t *testing.T) {
	e := newEnv(t)
	data := "BilledCost,BillingAccountId,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,ChargePeriodEnd,ChargeCategory,ServiceProviderName,Tags\n" +
		`1.50,acct,USD,2025-01-01T00:00:00Z,2025-02-01T00:00:00Z,2025-01-02T00:00:00Z,2025-01-03T00:00:00Z,Usage,AWS,"{""zeta"":""<z&>"",""alpha"":""1"",""mid"":""""}"` + "\n"
	path := filepath.Join(t.TempDir(), "tags.csv")
	require.NoError(t, os.WriteFile(path, []byte(data), 0o600))
	e.ingestFile(t, "t", path, false)
	e.catchUp(t)
	var b bytes.Buffer
	_, err := exports.WriteFOCUSCSV(ctxT(t), &b, e.source(), exports.Range{Tenant: "t", From: month("2025-01"), To: month("2025-02")})
	require.NoError(t, err)
	recs, err := csv.NewReader(&b).ReadAll()
	require.NoError(t, err)
	tags := recs[1][len(recs[1])-1]
	require.Equal(t, `{"alpha":"1","mid":"","zeta":"<z&>"}`, tags)
	require.Equal(t, "1.5", recs[1][6], "BilledCost as the ledger holds it")
}

func TestFOCUSBadRequests(t *testing.T) {
	src := exports.Source{}
	for _, tc := range []struct {
		name string
		rng  exports.Range
		want string
	}{
		{"no tenant", exports.Range{From: month("2024-09"), To: month("2024-10")}, "tenant"},
		{"bad tenant", exports.Range{Tenant: "Acme Corp", From: month("2024-09"), To: month("2024-10")}, "tenant"},
		{"empty range", exports.Range{Tenant: "a", From: month("2024-10"), To: month("2024-10")}, "empty"},
		{"no range", exports.Range{Tenant: "a"}, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			_, err := exports.WriteFOCUSCSV(context.Background(), &b, src, tc.rng)
			require.ErrorIs(t, err, exports.ErrInvalid)
			require.ErrorContains(t, err, tc.want)
			require.Zero(t, b.Len(), "nothing written")
			_, err = exports.WriteFOCUSParquet(context.Background(), &b, src, tc.rng)
			require.ErrorIs(t, err, exports.ErrInvalid)
			require.Zero(t, b.Len(), "nothing written")
		})
	}
	for _, tc := range []struct{ from, to, want string }{
		{"2024-9", "", "period"},
		{"2024-09", "24-10", "to_period"},
		{"2024-10", "2024-09", "before"},
	} {
		_, err := exports.MonthRange("a", tc.from, tc.to)
		require.ErrorIs(t, err, exports.ErrInvalid)
		require.ErrorContains(t, err, tc.want)
	}
	r, err := exports.MonthRange("a", "2024-09", "2024-10")
	require.NoError(t, err)
	require.Equal(t, exports.Range{Tenant: "a", From: month("2024-09"), To: month("2024-11")}, r)
}

// TestFOCUSInconsistentLedger: a ledger line naming an event the log does not hold is an
// error, not a line written with guessed columns.
func TestFOCUSInconsistentLedger(t *testing.T) {
	e := newEnv(t)
	e.ingestFile(t, "a", samplePath, false)
	e.catchUp(t)
	_, err := e.pool.Exec(ctxT(t), `UPDATE ledger.lines SET last_event_id = '00000000-0000-4000-8000-000000000001'
	    WHERE line_key = (SELECT min(line_key) FROM ledger.lines)`)
	require.NoError(t, err)
	_, err = exports.WriteFOCUSCSV(ctxT(t), &bytes.Buffer{}, e.source(), exports.Range{Tenant: "a", From: month("2024-09"), To: month("2024-11")})
	require.True(t, errors.Is(err, exports.ErrInconsistent), "%v", err)
	require.ErrorContains(t, err, "00000000-0000-4000-8000-000000000001")
}
