package focus

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Mode chooses what Scan does with a bad row.
type Mode int

const (
	// RejectFile (the default) rejects the whole file when any row is bad:
	// nothing of a file with a bad row may reach the ledger. Scan keeps
	// reading to report every bad row at once, but stops handing rows to
	// the callback after the first bad one.
	RejectFile Mode = iota
	// SkipBadRows is partial ingestion, which an operator must ask for:
	// good rows are handed over, bad rows are reported and skipped.
	SkipBadRows
)

// MaxReportedRows bounds Report.Rejected, so that a file where every row is
// bad does not hold millions of errors in memory; Report.RejectedRows still
// counts them all.
const MaxReportedRows = 1000

// Report summarises one pass over a file.
type Report struct {
	File         string
	Format       Format
	Version      Version
	Rows         int         // good rows read
	RejectedRows int         // bad rows, all of them
	Rejected     []*RowError // the first MaxReportedRows bad rows
	BytesRead    int64
}

// ErrRejected is returned (wrapped) by Scan in RejectFile mode when the file
// has at least one bad row.
var ErrRejected = errors.New("FOCUS file rejected")

// Scan reads every row of r and hands each good row to fn, which may stop the
// scan by returning an error (returned as is). It checks ctx every 1,024
// rows. A fatal read error ends the scan and is returned with the report so
// far. In RejectFile mode a file with bad rows returns an error wrapping
// ErrRejected and the first row's *RowError, after fn has seen only the rows
// before the first bad one: the caller must discard what it staged.
func (r *Reader) Scan(ctx context.Context, mode Mode, fn func(Row) error) (Report, error) {
	rep := Report{File: r.name, Format: r.format, Version: r.version}
	var first *RowError
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				rep.BytesRead = r.BytesRead()
				return rep, fmt.Errorf("scan %s: %w", r.name, err)
			}
		}
		row, err := r.Next()
		var rowErr *RowError
		switch {
		case err == nil:
			rep.Rows++
			if mode == RejectFile && first != nil {
				continue
			}
			if err := fn(row); err != nil {
				rep.BytesRead = r.BytesRead()
				return rep, err
			}
		case errors.Is(err, io.EOF):
			rep.BytesRead = r.BytesRead()
			if mode == RejectFile && first != nil {
				return rep, fmt.Errorf("%w: %s has %d bad rows, first: %w", ErrRejected, r.name, rep.RejectedRows, first)
			}
			return rep, nil
		case errors.As(err, &rowErr):
			rep.RejectedRows++
			if len(rep.Rejected) < MaxReportedRows {
				rep.Rejected = append(rep.Rejected, rowErr)
			}
			if first == nil {
				first = rowErr
			}
		default:
			rep.BytesRead = r.BytesRead()
			return rep, err
		}
	}
}
