package focus

import (
	"fmt"
	"strconv"
	"strings"
)

// Rule names the check an input failed. Callers branch on it (and tests
// assert on it) rather than on message text.
type Rule string

// Rules. File-level rules stop the reader; row-level rules reject one row and
// let the reader continue with the next.
const (
	// File level.
	RuleFormat          Rule = "format"           // not CSV, gzip CSV or Parquet (binary data, zip, zstd...)
	RuleEmpty           Rule = "empty"            // no header at all
	RuleCSVSyntax       Rule = "csv-syntax"       // broken quoting
	RuleTruncated       Rule = "truncated"        // compressed stream or Parquet file cut short
	RuleCorrupt         Rule = "corrupt"          // checksum or structure error in gzip / Parquet
	RuleRecordSize      Rule = "record-size"      // one record larger than Options.MaxRecordBytes
	RuleColumnName      Rule = "column-name"      // empty column name in the header
	RuleDuplicateColumn Rule = "duplicate-column" // same column twice (names compare case-insensitively)
	RuleMissingColumn   Rule = "missing-column"   // a required column is absent
	RuleUnsupported     Rule = "unsupported"      // valid input this reader cannot handle (nested Parquet column)
	RuleIO              Rule = "io"               // the underlying reader failed

	// Row level.
	RuleFieldCount Rule = "field-count" // row has more or fewer fields than the header
	RuleEncoding   Rule = "encoding"    // value is not valid UTF-8
	RuleRequired   Rule = "required"    // null where a value is required
	RuleDecimal    Rule = "decimal"     // not a decimal number, or absurd scale
	RuleCurrency   Rule = "currency"    // not an active ISO 4217 code
	RuleEnum       Rule = "enum"        // not one of the allowed values
	RuleTimestamp  Rule = "timestamp"   // not a date/time
	RulePeriod     Rule = "period"      // period start not before its end
	RuleJSON       Rule = "json"        // Tags and other JSON columns: invalid JSON, not an object, duplicate key
)

// Error is one problem found in a FOCUS file. Error() reads like a compiler
// message, for example:
//
//	focus_sample.csv:17: column BilledCost: value "12,3" is not a decimal
type Error struct {
	File   string // name given to the reader (base name for Open)
	Line   int    // physical line in a CSV file (quoted newlines counted), 1-based; 0 when none
	Row    int    // data row number, 1-based, header excluded; 0 for file-level problems
	Column string // FOCUS column ID or header name; "" when the problem is not about one column
	Value  string // the offending value as read (possibly long); "" when none
	Rule   Rule
	Msg    string // what is wrong, without the location
	Err    error  // underlying cause, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	switch {
	case e.Line > 0:
		b.WriteString(":" + strconv.Itoa(e.Line))
	case e.Row > 0:
		b.WriteString(": row " + strconv.Itoa(e.Row))
	}
	if e.Column != "" {
		b.WriteString(": column " + e.Column)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// RowError collects every problem of one rejected row. Reading can continue
// after it: the next call to Next returns the next row.
type RowError struct {
	File     string
	Line     int // physical line where the row starts (0 for Parquet)
	Row      int // data row number, 1-based
	Problems []*Error
}

func (e *RowError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap exposes the problems, so errors.As(err, &focusErr) finds the first.
func (e *RowError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// quote shows a value in a message, cut short so that a 1 MB field does not
// become a 1 MB log line.
func quote(v string) string {
	const max = 80
	if len(v) > max {
		cut := max
		for cut > 0 && !isRuneStart(v[cut]) {
			cut--
		}
		return strconv.Quote(v[:cut]) + fmt.Sprintf("... (%d bytes)", len(v))
	}
	return strconv.Quote(v)
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
