package focus_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/services/focus"
)

// A minimal valid file: the required columns plus the enum and JSON columns
// the catalogue below breaks one at a time.
var baseColumns = []string{
	"BilledCost", "BillingCurrency", "BillingAccountId",
	"BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd",
	"ChargeCategory", "ChargeClass", "ChargeFrequency", "PricingCategory",
	"CommitmentDiscountStatus", "ServiceProviderName", "ChargeDescription", "Tags",
}

var baseValues = map[string]string{
	"BilledCost": "12.30", "BillingCurrency": "USD", "BillingAccountId": "acct-1",
	"BillingPeriodStart": "2024-09-01T00:00:00Z", "BillingPeriodEnd": "2024-10-01T00:00:00Z",
	"ChargePeriodStart": "2024-09-01T00:00:00Z", "ChargePeriodEnd": "2024-09-01T01:00:00Z",
	"ChargeCategory": "Usage", "ChargeClass": "", "ChargeFrequency": "Usage-Based",
	"PricingCategory": "Standard", "CommitmentDiscountStatus": "", "ServiceProviderName": "AWS",
	"ChargeDescription": "compute", "Tags": `"{""team"":""payments""}"`,
}

// line renders a data line of the base file with some values replaced
// (pairs of column, raw CSV text).
func line(overrides ...string) string {
	vals := make([]string, len(baseColumns))
	for i, c := range baseColumns {
		vals[i] = baseValues[c]
	}
	for k := 0; k+1 < len(overrides); k += 2 {
		i := indexOf(baseColumns, overrides[k])
		if i < 0 {
			panic("unknown column " + overrides[k])
		}
		vals[i] = overrides[k+1]
	}
	return strings.Join(vals, ",")
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

var header = strings.Join(baseColumns, ",")

// doc is header + lines, newline-terminated.
func doc(lines ...string) string {
	return strings.Join(append([]string{header}, lines...), "\n") + "\n"
}

func gz(t testing.TB, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, err := w.Write([]byte(s))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return b.Bytes()
}

func TestBaseDocumentIsValid(t *testing.T) {
	res := readBytes(t, "ok.csv", []byte(doc(line(), line("ChargePeriodStart", "2024-09-01T01:00:00Z", "ChargePeriodEnd", "2024-09-01T02:00:00Z"))))
	require.NoError(t, res.fatal)
	require.Empty(t, res.rowErrs)
	require.Len(t, res.rows, 2)
	require.Equal(t, focus.V1_3, res.reader.Version())
}

// TestBadInputs is the catalogue of broken files. Each case names the rule,
// the physical line and the column the error must carry, and how many good
// rows the reader still yields (row-level problems let reading continue).
func TestBadInputs(t *testing.T) {
	good := line("ChargePeriodStart", "2024-09-02T00:00:00Z", "ChargePeriodEnd", "2024-09-02T01:00:00Z")
	bigGz := gz(t, doc(line(), good))
	badChecksum := bytes.Clone(bigGz)
	badChecksum[len(badChecksum)-8] ^= 0xFF // CRC-32 in the trailer

	tests := []struct {
		name     string
		input    []byte
		opts     []focus.Option
		rule     focus.Rule
		line     int
		column   string
		value    string
		fatal    bool
		row      int // data row of a row-level problem, when not the first
		goodRows int
		msg      string // substring of Error()
	}{
		// The container.
		{name: "empty file", input: nil, rule: focus.RuleEmpty, fatal: true, msg: "bad.csv: file is empty"},
		{name: "only a BOM", input: []byte("\xEF\xBB\xBF"), rule: focus.RuleEmpty, fatal: true},
		{name: "only blank lines", input: []byte("\r\n\r\n\n"), rule: focus.RuleEmpty, fatal: true},
		{name: "binary garbage", input: []byte("\x00\x01\x02\xff\xfe garbage \x00"), rule: focus.RuleFormat, fatal: true, msg: "binary data"},
		{name: "zip archive", input: []byte("PK\x03\x04\x14\x00\x00\x00"), rule: focus.RuleFormat, fatal: true, msg: "zip archive"},
		{name: "zstd stream", input: []byte("\x28\xb5\x2f\xfd\x00\x00"), rule: focus.RuleFormat, fatal: true, msg: "zstd"},
		{name: "UTF-16 export", input: []byte("\xff\xfeB\x00i\x00"), rule: focus.RuleFormat, fatal: true, msg: "UTF-16"},
		{name: "latin-1 header", input: []byte("BilledCost,Co\xfbt\n1,2\n"), rule: focus.RuleEncoding, line: 1, fatal: true},
		{name: "gzip truncated", input: bigGz[:len(bigGz)/2], rule: focus.RuleTruncated, fatal: true, msg: "file ends early"},
		{name: "gzip header only", input: bigGz[:12], rule: focus.RuleTruncated, fatal: true},
		{name: "gzip bad checksum", input: badChecksum, rule: focus.RuleCorrupt, fatal: true, goodRows: 2},
		{name: "gzip corrupt data", input: append(bytes.Clone(bigGz[:10]), bytes.Repeat([]byte{0xff}, 40)...), rule: focus.RuleCorrupt, fatal: true},
		{name: "parquet from a stream", input: []byte("PAR1 not seekable PAR1"), rule: focus.RuleUnsupported, fatal: true, msg: "random access"},

		// The header.
		{name: "header only", input: []byte(header + "\n")}, // a bill with no charges is valid; ingestion decides
		{name: "missing BilledCost column", input: []byte(strings.Replace(doc(line()), "BilledCost,", "Cost,", 1)),
			rule: focus.RuleMissingColumn, line: 1, column: "BilledCost", fatal: true, msg: "bad.csv:1: column BilledCost: required column is missing"},
		{name: "missing provider columns", input: []byte(strings.Replace(doc(line()), "ServiceProviderName", "Vendor", 1)),
			rule: focus.RuleMissingColumn, line: 1, column: "ServiceProviderName", fatal: true},
		{name: "duplicate column, other case", input: []byte(strings.Replace(doc(line()), "ChargeDescription", "billedcost", 1)),
			rule: focus.RuleDuplicateColumn, line: 1, column: "billedcost", fatal: true, msg: "fields 1 and 14"},
		{name: "empty column name", input: []byte(strings.Replace(doc(line()), "ChargeDescription", " ", 1)),
			rule: focus.RuleColumnName, line: 1, fatal: true, msg: "column 14 has an empty name"},

		// CSV structure.
		{name: "too few fields", input: []byte(doc("1,USD", good)), rule: focus.RuleFieldCount, line: 2, goodRows: 1,
			msg: "bad.csv:2: row has 2 fields, the header has 15"},
		{name: "too many fields", input: []byte(doc(line()+",extra", good)), rule: focus.RuleFieldCount, line: 2, goodRows: 1},
		{name: "truncated mid-row", input: []byte(doc(good, "12.30,USD,acct-1,2024-09-01T00:")[:len(doc(good, "12.30,USD,acct-1,2024-09-01T00:"))-1]),
			rule: focus.RuleFieldCount, line: 3, row: 2, goodRows: 1},
		{name: "truncated inside a quoted last field", input: []byte(doc(good, line())[:len(doc(good, line()))-8]),
			rule: focus.RuleTruncated, line: 3, fatal: true, goodRows: 1, msg: "file ends inside a quoted field"},
		{name: "truncated inside a quoted middle field", input: []byte(doc(good) + `12.30,USD,"acct`),
			rule: focus.RuleTruncated, line: 3, fatal: true, goodRows: 1},
		{name: "truncated inside a multi-line quoted field", input: []byte(doc(good) + "1,USD,a,2024-09-01,2024-10-01,2024-09-01,2024-09-02,Usage,,,,,AWS,\"line one\nline two"),
			rule: focus.RuleTruncated, line: 3, fatal: true, goodRows: 1},
		{name: "unbalanced quotes mid-file", input: []byte(doc(line("ChargeDescription", `"a"b"`), good, good)),
			rule: focus.RuleCSVSyntax, line: 2, fatal: true},
		{name: "quote closed then junk", input: []byte(doc(line("ChargeDescription", `"ab"c`), good)),
			rule: focus.RuleCSVSyntax, line: 2, fatal: true, msg: `extraneous or missing " in quoted-field`},
		{name: "bare quote", input: []byte(doc(line("ChargeDescription", `say "hi"`), good)), rule: focus.RuleCSVSyntax, line: 2, fatal: true},
		{name: "oversized record", input: []byte(doc(good, line("ChargeDescription", `"`+strings.Repeat("x", 300_000)))),
			opts: []focus.Option{focus.MaxRecordBytes(1000)}, rule: focus.RuleRecordSize, fatal: true, goodRows: 1},

		// Values.
		{name: "decimal comma", input: []byte(doc(line("BilledCost", `"12,3"`), good)), rule: focus.RuleDecimal, line: 2, column: "BilledCost", value: "12,3", goodRows: 1,
			msg: `bad.csv:2: column BilledCost: value "12,3" is not a decimal`},
		{name: "currency symbol", input: []byte(doc(line("BilledCost", "$5.00"), good)), rule: focus.RuleDecimal, line: 2, column: "BilledCost", value: "$5.00", goodRows: 1},
		{name: "NaN amount", input: []byte(doc(line("BilledCost", "NaN"), good)), rule: focus.RuleDecimal, line: 2, column: "BilledCost", goodRows: 1},
		{name: "absurd exponent", input: []byte(doc(line("BilledCost", "1E-9000"), good)), rule: focus.RuleDecimal, line: 2, column: "BilledCost", goodRows: 1, msg: "out of range"},
		{name: "null BilledCost", input: []byte(doc(line("BilledCost", "NULL"), good)), rule: focus.RuleRequired, line: 2, column: "BilledCost", goodRows: 1},
		{name: "unknown currency", input: []byte(doc(line("BillingCurrency", "XYZ"), good)), rule: focus.RuleCurrency, line: 2, column: "BillingCurrency", value: "XYZ", goodRows: 1,
			msg: `value "XYZ" is not an active ISO 4217 currency code`},
		{name: "withdrawn currency", input: []byte(doc(line("BillingCurrency", "HRK"), good)), rule: focus.RuleCurrency, line: 2, column: "BillingCurrency", goodRows: 1},
		{name: "currency name", input: []byte(doc(line("BillingCurrency", "Dollar"), good)), rule: focus.RuleCurrency, line: 2, column: "BillingCurrency", goodRows: 1},
		{name: "null account", input: []byte(doc(line("BillingAccountId", ""), good)), rule: focus.RuleRequired, line: 2, column: "BillingAccountId", goodRows: 1},
		{name: "null provider", input: []byte(doc(line("ServiceProviderName", "NULL"), good)), rule: focus.RuleRequired, line: 2, column: "ServiceProviderName", goodRows: 1},
		{name: "charge end before start", input: []byte(doc(line("ChargePeriodEnd", "2024-08-31T23:00:00Z"), good)),
			rule: focus.RulePeriod, line: 2, column: "ChargePeriodEnd", goodRows: 1, msg: `is not after ChargePeriodStart "2024-09-01T00:00:00Z"`},
		{name: "empty charge period", input: []byte(doc(line("ChargePeriodEnd", "2024-09-01T00:00:00Z"), good)), rule: focus.RulePeriod, line: 2, column: "ChargePeriodEnd", goodRows: 1},
		{name: "billing period reversed", input: []byte(doc(line("BillingPeriodStart", "2024-10-01", "BillingPeriodEnd", "2024-09-01"), good)),
			rule: focus.RulePeriod, line: 2, column: "BillingPeriodEnd", goodRows: 1},
		{name: "month 13", input: []byte(doc(line("ChargePeriodStart", "2024-13-01T00:00:00Z"), good)), rule: focus.RuleTimestamp, line: 2, column: "ChargePeriodStart", goodRows: 1},
		{name: "February 30", input: []byte(doc(line("BillingPeriodEnd", "2/30/25"), good)), rule: focus.RuleTimestamp, line: 2, column: "BillingPeriodEnd", goodRows: 1},
		{name: "hour 30", input: []byte(doc(line("ChargePeriodEnd", "2024-09-01T30:00:00Z"), good)), rule: focus.RuleTimestamp, line: 2, column: "ChargePeriodEnd", value: "2024-09-01T30:00:00Z", goodRows: 1},
		{name: "timestamp words", input: []byte(doc(line("ChargePeriodStart", "yesterday"), good)), rule: focus.RuleTimestamp, line: 2, column: "ChargePeriodStart", goodRows: 1},
		{name: "bad ChargeCategory", input: []byte(doc(line("ChargeCategory", "Refund"), good)), rule: focus.RuleEnum, line: 2, column: "ChargeCategory", value: "Refund", goodRows: 1,
			msg: `value "Refund" is not one of Usage, Purchase, Tax, Credit, Adjustment`},
		{name: "bad ChargeClass", input: []byte(doc(line("ChargeClass", "Credit"), good)), rule: focus.RuleEnum, line: 2, column: "ChargeClass", goodRows: 1},
		{name: "bad ChargeFrequency", input: []byte(doc(line("ChargeFrequency", "Monthly"), good)), rule: focus.RuleEnum, line: 2, column: "ChargeFrequency", goodRows: 1},
		{name: "bad PricingCategory", input: []byte(doc(line("PricingCategory", "On-Demand"), good)), rule: focus.RuleEnum, line: 2, column: "PricingCategory", goodRows: 1},
		{name: "bad CommitmentDiscountStatus", input: []byte(doc(line("CommitmentDiscountStatus", "Partial"), good)), rule: focus.RuleEnum, line: 2, column: "CommitmentDiscountStatus", goodRows: 1},
		{name: "broken JSON tags", input: []byte(doc(line("Tags", `"{""team"":"`), good)), rule: focus.RuleJSON, line: 2, column: "Tags", value: `{"team":`, goodRows: 1},
		{name: "tags not an object", input: []byte(doc(line("Tags", `"[""team""]"`), good)), rule: focus.RuleJSON, line: 2, column: "Tags", goodRows: 1, msg: "is not a JSON object"},
		{name: "tags with trailing text", input: []byte(doc(line("Tags", `"{}x"`), good)), rule: focus.RuleJSON, line: 2, column: "Tags", goodRows: 1},
		{name: "tags duplicate key", input: []byte(doc(line("Tags", `"{""a"":1,""a"":2}"`), good)), rule: focus.RuleJSON, line: 2, column: "Tags", goodRows: 1, msg: `duplicate key "a"`},
		{name: "invalid UTF-8 value", input: []byte(doc(line("ChargeDescription", "caf\xe9"), good)), rule: focus.RuleEncoding, line: 2, column: "ChargeDescription", goodRows: 1},
		{name: "line after a quoted newline", input: []byte(doc(line("ChargeDescription", "\"two\nlines\""), line("BilledCost", "abc"))),
			rule: focus.RuleDecimal, line: 4, column: "BilledCost", row: 2, goodRows: 1},
		{name: "field after a quoted newline in the same row", input: []byte(doc(line("ChargeDescription", "\"two\r\nlines\"", "Tags", "{"), good)),
			rule: focus.RuleJSON, line: 3, column: "Tags", goodRows: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := readBytes(t, "bad.csv", tt.input, tt.opts...)
			require.Len(t, res.rows, tt.goodRows)
			if tt.rule == "" {
				require.NoError(t, res.fatal)
				require.Empty(t, res.rowErrs)
				return
			}
			if tt.fatal {
				require.Error(t, res.fatal)
			} else {
				require.NoError(t, res.fatal)
				require.Len(t, res.rowErrs, 1)
			}
			fe := res.firstError(t)
			require.Equal(t, "bad.csv", fe.File)
			require.Equal(t, tt.rule, fe.Rule, fe.Error())
			require.Equal(t, tt.line, fe.Line, fe.Error())
			require.Equal(t, tt.column, fe.Column, fe.Error())
			if tt.value != "" {
				require.Equal(t, tt.value, fe.Value)
			}
			if !tt.fatal && tt.line > 0 {
				want := tt.row
				if want == 0 {
					want = 1
				}
				require.Equal(t, want, fe.Row)
			}
			if tt.msg != "" {
				require.Contains(t, fe.Error(), tt.msg)
			}
		})
	}
}

func TestRowErrorListsEveryProblem(t *testing.T) {
	res := readBytes(t, "bad.csv", []byte(doc(line("BilledCost", "x", "BillingCurrency", "ABC", "ChargeCategory", "Nope"))))
	require.Len(t, res.rowErrs, 1)
	re := res.rowErrs[0]
	require.Equal(t, 2, re.Line)
	require.Equal(t, 1, re.Row)
	var cols []string
	for _, p := range re.Problems {
		cols = append(cols, p.Column)
	}
	require.Equal(t, []string{"BilledCost", "BillingCurrency", "ChargeCategory"}, cols)
	require.Equal(t,
		"bad.csv:2: column BilledCost: value \"x\" is not a decimal\n"+
			"bad.csv:2: column BillingCurrency: value \"ABC\" is not an active ISO 4217 currency code\n"+
			"bad.csv:2: column ChargeCategory: value \"Nope\" is not one of Usage, Purchase, Tax, Credit, Adjustment",
		re.Error())
}

func TestParquetGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "garbage.parquet")
	require.NoError(t, os.WriteFile(path, []byte("PAR1"+strings.Repeat("\x07garbage", 64)+"PAR1"), 0o600))
	res := readFile(t, path)
	fe := res.firstError(t)
	require.Equal(t, "garbage.parquet", fe.File)
	require.Equal(t, focus.RuleCorrupt, fe.Rule)
	require.Zero(t, fe.Line)

	// Same through NewReader with an io.ReaderAt.
	_, err := focus.NewReader(bytes.NewReader([]byte("PAR1xxxxPAR1")), "tiny.parquet", focus.FormatAuto)
	require.ErrorAs(t, err, &fe)
	require.Equal(t, focus.RuleCorrupt, fe.Rule)
}

func TestValuesAreQuotedShortInMessages(t *testing.T) {
	long := strings.Repeat("9,", 200)
	res := readBytes(t, "bad.csv", []byte(doc(line("BilledCost", `"`+long+`"`))))
	fe := res.firstError(t)
	require.Equal(t, long, fe.Value, "the error keeps the whole value")
	require.Less(t, len(fe.Error()), 200, "the message does not")
	require.Contains(t, fe.Error(), "(400 bytes)")
}

func TestReaderKeepsCountingBytes(t *testing.T) {
	data := []byte(doc(line(), line("ChargePeriodStart", "2024-09-02T00:00:00Z", "ChargePeriodEnd", "2024-09-02T01:00:00Z")))
	r, err := focus.NewReader(io.MultiReader(bytes.NewReader(data)), "s.csv", focus.FormatCSV)
	require.NoError(t, err)
	require.Equal(t, int64(-1), r.Size())
	res := drain(t, r)
	require.Len(t, res.rows, 2)
	require.Equal(t, int64(len(data)), r.BytesRead())
}
