package focus

import (
	"compress/flate"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// initHeader reads the header and maps each field to a FOCUS column. Header
// problems are fatal: without a trustworthy header no row means anything.
func (r *Reader) initHeader() error {
	names, err := r.src.header()
	if err != nil {
		return r.fileError(err)
	}
	r.header = make([]string, len(names))
	r.cols = make([]colID, len(names))
	seen := make(map[string]int, len(names))
	for i, raw := range names {
		name := strings.TrimSpace(raw)
		line := r.src.line(i)
		if !utf8.ValidString(name) {
			return r.headerError(line, "", raw, RuleEncoding, "column name is not valid UTF-8")
		}
		if name == "" {
			return r.headerError(line, "", raw, RuleColumnName, "column "+strconv.Itoa(i+1)+" has an empty name")
		}
		fold := strings.ToLower(name)
		if j, dup := seen[fold]; dup {
			return r.headerError(line, name, name, RuleDuplicateColumn,
				fmt.Sprintf("column appears twice (fields %d and %d)", j+1, i+1))
		}
		seen[fold] = i
		r.header[i] = name
		id := columnByFold[fold]
		r.cols[i] = id
		r.present[id] = true
	}
	r.present[colNone] = false
	r.version = detectVersion(&r.present)

	for i, id := range r.cols {
		if id == colNone {
			r.extIdx = append(r.extIdx, i)
		}
	}
	slices.SortStableFunc(r.extIdx, func(a, b int) int { return strings.Compare(r.header[a], r.header[b]) })

	if r.cfg.allowMissingColumns {
		return nil
	}
	var missing []string
	for _, id := range requiredColumns {
		if !r.present[id] {
			missing = append(missing, columns[id].name)
		}
	}
	if !r.present[colServiceProviderName] && !r.present[colProviderName] {
		missing = append(missing, "ServiceProviderName")
	}
	if len(missing) > 0 {
		msg := "required column is missing"
		if len(missing) > 1 {
			msg += " (also missing: " + strings.Join(missing[1:], ", ") + ")"
		}
		return r.headerError(r.src.line(0), missing[0], "", RuleMissingColumn, msg)
	}
	return nil
}

func (r *Reader) headerError(line int, column, value string, rule Rule, msg string) error {
	r.fatal = &Error{File: r.name, Line: line, Column: column, Value: value, Rule: rule, Msg: msg}
	return r.fatal
}

// problem records a fatal file-level problem without a position.
func (r *Reader) problem(rule Rule, msg string) error {
	r.fatal = &Error{File: r.name, Rule: rule, Msg: msg}
	return r.fatal
}

// fileError turns a read failure into a fatal *Error with the best position
// and rule we can tell. It never reports the next Next as a row problem:
// after a syntax or stream error the position in the file is not trustworthy.
func (r *Reader) fileError(err error) error {
	var fe *Error
	if errors.As(err, &fe) {
		r.fatal = fe
		return fe
	}
	e := &Error{File: r.name, Err: err}
	var pe *csv.ParseError
	var corrupt flate.CorruptInputError
	var oq *openQuoteError
	switch {
	case errors.As(err, &oq):
		e.Rule, e.Line = RuleTruncated, oq.line
		e.Msg = "file ends inside a quoted field that starts in this record (truncated file?)"
	case errors.Is(err, errNoHeader):
		e.Rule, e.Msg = RuleEmpty, "file has no header"
	case errors.Is(err, errRecordTooLarge):
		e.Rule = RuleRecordSize
		e.Msg = fmt.Sprintf("a record after data row %d is larger than %d bytes (unterminated quote?)",
			r.number, r.cfg.maxRecordBytes)
	case errors.As(err, &pe):
		e.Rule, e.Line = RuleCSVSyntax, pe.Line
		e.Msg = fmt.Sprintf("%v (record starting on line %d, character %d)", pe.Err, pe.StartLine, pe.Column)
	case errors.Is(err, io.ErrUnexpectedEOF):
		e.Rule, e.Msg = RuleTruncated, "file ends early (truncated download?)"
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader), errors.As(err, &corrupt):
		e.Rule, e.Msg = RuleCorrupt, "gzip data is corrupt: "+err.Error()
	case errors.Is(err, errParquet):
		e.Rule, e.Msg = RuleCorrupt, err.Error()
	case errors.Is(err, errNested):
		e.Rule, e.Msg = RuleUnsupported, err.Error()
	default:
		e.Rule, e.Msg = RuleIO, "read failed: "+err.Error()
	}
	r.fatal = e
	return e
}
