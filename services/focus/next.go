package focus

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
)

// Next returns the next valid row.
//
//   - At the end of the file it returns io.EOF.
//   - A bad row yields a *RowError listing every problem of that row; the
//     row is not returned, and the following call reads the next row. This is
//     what lets a caller choose between rejecting the whole file (the
//     default, see Scan) and partial ingestion with a report.
//   - Any other error is a fatal *Error (broken quoting, truncated gzip,
//     I/O): every later call returns it again.
func (r *Reader) Next() (Row, error) {
	if r.fatal != nil {
		return Row{}, r.fatal
	}
	fields, err := r.src.next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Row{}, io.EOF
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
			r.number++
			return Row{}, &RowError{File: r.name, Line: pe.StartLine, Row: r.number, Problems: []*Error{{
				File: r.name, Line: pe.StartLine, Row: r.number, Rule: RuleFieldCount,
				Msg: fmt.Sprintf("row has %d fields, the header has %d", len(fields), len(r.header)),
			}}}
		}
		return Row{}, r.fileError(err)
	}
	r.number++
	row, problems := r.build(fields)
	if problems != nil {
		return Row{}, &RowError{File: r.name, Line: row.Line, Row: r.number, Problems: problems}
	}
	return row, nil
}
