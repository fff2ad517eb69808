package focusgen

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Params describe one generated bill.
type Params struct {
	Seed   uint64
	Period time.Time // any instant of the billing month; the month is taken in UTC
	Rows   int       // data rows, header excluded
	Gzip   bool      // gzip the CSV
}

func (p Params) validate() error {
	if p.Rows < 0 {
		return fmt.Errorf("focusgen: negative row count %d", p.Rows)
	}
	if p.Period.IsZero() {
		return errors.New("focusgen: billing period not set")
	}
	return nil
}

func (p Params) periodStart() time.Time {
	t := p.Period.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// Summary is what a bill adds up to, for checking a reader against the
// generator.
type Summary struct {
	Rows   int
	Totals []CurrencyTotal // sorted by currency
}

// CurrencyTotal sums one billing currency.
type CurrencyTotal struct {
	Currency      string
	Rows          int
	BilledCost    decimal.Decimal
	EffectiveCost decimal.Decimal
}

// Total returns the totals of one currency (zero if absent).
func (s Summary) Total(currency string) CurrencyTotal {
	for _, t := range s.Totals {
		if t.Currency == currency {
			return t
		}
	}
	return CurrencyTotal{Currency: currency}
}

func (s *Summary) add(l *line) {
	s.Rows++
	i := slices.IndexFunc(s.Totals, func(t CurrencyTotal) bool { return t.Currency == l.acct.currency })
	if i < 0 {
		s.Totals = append(s.Totals, CurrencyTotal{Currency: l.acct.currency})
		slices.SortFunc(s.Totals, func(a, b CurrencyTotal) int { return strings.Compare(a.Currency, b.Currency) })
		i = slices.IndexFunc(s.Totals, func(t CurrencyTotal) bool { return t.Currency == l.acct.currency })
	}
	t := &s.Totals[i]
	t.Rows++
	t.BilledCost = t.BilledCost.Add(l.billed)
	t.EffectiveCost = t.EffectiveCost.Add(l.effective)
}

// Generate writes the bill described by p to w as FOCUS 1.3 CSV, streaming:
// memory stays flat whatever p.Rows. The same Params always produce the same
// bytes.
func Generate(ctx context.Context, w io.Writer, p Params) (Summary, error) {
	if err := p.validate(); err != nil {
		return Summary{}, err
	}
	out, err := newCSVOut(w, p)
	if err != nil {
		return Summary{}, err
	}
	src := newLineSource(p.Seed, p.periodStart(), p.Rows)
	var sum Summary
	for i := range p.Rows {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return sum, fmt.Errorf("generate FOCUS bill: %w", err)
			}
		}
		l := src.next()
		if err := out.write(&l); err != nil {
			return sum, err
		}
		sum.add(&l)
	}
	return sum, out.close()
}

// csvOut streams records through encoding/csv, optionally gzipped.
type csvOut struct {
	bill *bill
	gz   *gzip.Writer
	buf  *bufio.Writer
	cw   *csv.Writer
	rec  []string
}

func newCSVOut(w io.Writer, p Params) (*csvOut, error) {
	o := &csvOut{bill: newBill(p.periodStart()), rec: make([]string, len(header))}
	if p.Gzip {
		// The gzip header carries no name and no time, so output stays
		// byte-identical from run to run. BestSpeed: these files feed tests
		// and benchmarks, where generation time matters more than size.
		gz, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			return nil, fmt.Errorf("gzip writer: %w", err)
		}
		o.gz = gz
		w = gz
	}
	o.buf = bufio.NewWriterSize(w, 64<<10)
	o.cw = csv.NewWriter(o.buf)
	if err := o.cw.Write(header); err != nil {
		return nil, fmt.Errorf("write FOCUS header: %w", err)
	}
	return o, nil
}

func (o *csvOut) write(l *line) error {
	o.bill.record(l, o.rec)
	if err := o.cw.Write(o.rec); err != nil {
		return fmt.Errorf("write FOCUS row: %w", err)
	}
	return nil
}

func (o *csvOut) close() error {
	o.cw.Flush()
	if err := o.cw.Error(); err != nil {
		return fmt.Errorf("write FOCUS rows: %w", err)
	}
	if err := o.buf.Flush(); err != nil {
		return fmt.Errorf("write FOCUS rows: %w", err)
	}
	if o.gz != nil {
		if err := o.gz.Close(); err != nil {
			return fmt.Errorf("close gzip: %w", err)
		}
	}
	return nil
}
