package focus

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"io"
)

// csvSource reads records with encoding/csv: RFC 4180 quoting, CRLF, quoted
// newlines, and FieldPos for the physical line of every field.
type csvSource struct {
	cr    *csv.Reader
	guard *recordGuard
	skip  int64 // bytes the guard passed that csv never saw (a BOM)
}

// newCSVSource reads records from br, which reads from guard after skipping
// skip bytes.
func newCSVSource(br *bufio.Reader, guard *recordGuard, skip int64) *csvSource {
	cr := csv.NewReader(br) // br is a *bufio.Reader: csv uses it as is
	cr.ReuseRecord = true   // one slice for the whole file; field strings are fresh per record
	cr.FieldsPerRecord = 0  // the header sets the count; other rows must match it
	guard.consumed = func() int64 { return cr.InputOffset() + skip }
	return &csvSource{cr: cr, guard: guard, skip: skip}
}

func (s *csvSource) header() ([]string, error) {
	rec, err := s.cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errNoHeader
	}
	if err != nil {
		return nil, err
	}
	return append([]string(nil), rec...), nil // the reused slice must not leak into Reader.header
}

func (s *csvSource) next() ([]string, error) {
	rec, err := s.cr.Read()
	var pe *csv.ParseError
	if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrQuote) && s.endedInsideQuotes() {
		return nil, &openQuoteError{line: pe.StartLine}
	}
	return rec, err
}

// endedInsideQuotes tells a download cut inside a quoted field (a Tags JSON,
// a description with commas) from a quoting mistake, so the error says
// "truncated" rather than "syntax": the error must have consumed the whole
// stream, and the stream must hold an odd number of quote characters
// (properly quoted CSV has an even number: opening, closing, doubled
// escapes; bare quotes fail earlier).
func (s *csvSource) endedInsideQuotes() bool {
	g := s.guard
	return g.eof && g.quotes%2 == 1 && s.cr.InputOffset()+s.skip == g.n
}

type openQuoteError struct{ line int }

func (e *openQuoteError) Error() string { return "file ends inside a quoted field" }

func (s *csvSource) line(i int) int {
	line, _ := s.cr.FieldPos(i)
	return line
}

var (
	errNoHeader       = errors.New("no header")
	errRecordTooLarge = errors.New("record too large")
)

// recordGuard sits under encoding/csv, which has no record size limit: an
// unterminated quote would make it buffer the rest of the file in memory.
// It fails the read once the bytes handed to csv run more than limit ahead of
// the end of the last complete record.
//
// It also counts quote characters and notes the end of the stream, for
// endsInsideQuotes.
type recordGuard struct {
	r        io.Reader
	n        int64
	limit    int64
	consumed func() int64 // csv.Reader.InputOffset, in the guard's byte count
	quotes   int64
	eof      bool
}

func (g *recordGuard) Read(p []byte) (int, error) {
	if g.consumed != nil && g.n-g.consumed() > g.limit {
		return 0, errRecordTooLarge
	}
	n, err := g.r.Read(p)
	g.n += int64(n)
	g.quotes += int64(bytes.Count(p[:n], quoteChar))
	if errors.Is(err, io.EOF) {
		g.eof = true
	}
	return n, err
}

var quoteChar = []byte{'"'}
