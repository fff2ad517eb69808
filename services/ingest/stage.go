package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-ledger/tally/services/focus"
)

// scope is one bill a file holds.
type scope struct {
	Key      string
	Provider string
	Account  string
	Start    time.Time
	End      time.Time
	Rows     int64
	// Billed cost per currency of the scope's rows, for --final.
	totals map[string]decimal.Decimal
	// lines: distinct lines of the scope, counted by the diff.
	lines int64
}

// stageSource reads and validates the file in its own goroutine (produce)
// and hands the rows over in chunks.
type stageSource struct {
	r        *focus.Reader
	progress func(Progress)

	// The producer's until it closes the channel.
	rows     int64
	rejected []*focus.RowError
	nRejects int64
	err      error
	lastTick time.Time
}

// maxReported bounds the rejected rows kept for the report; the count is
// always exact.
const maxReported = 1000

// stageChunk rows travel together from the reader to the encoders.
const stageChunk = 256

func (s *stageSource) produce(ctx context.Context, out chan<- []focus.Row, free <-chan []focus.Row) {
	defer close(out)
	next := func() []focus.Row {
		select {
		case c := <-free:
			return c[:0]
		default:
			return make([]focus.Row, 0, stageChunk)
		}
	}
	chunk := next()
	send := func() bool {
		select {
		case out <- chunk:
			chunk = next()
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			s.err = err
			return
		}
		row, err := s.r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var rowErr *focus.RowError
		if errors.As(err, &rowErr) {
			s.nRejects++
			if len(s.rejected) < maxReported {
				s.rejected = append(s.rejected, rowErr)
			}
			continue
		}
		if err != nil {
			s.err = err
			return
		}
		s.rows++
		chunk = append(chunk, row)
		if len(chunk) == stageChunk && !send() {
			return
		}
		if s.progress != nil && s.rows%4096 == 0 {
			if now := time.Now(); now.Sub(s.lastTick) >= 200*time.Millisecond {
				s.lastTick = now
				s.progress(Progress{Stage: "read", Rows: s.rows, Rejected: s.nRejects, Bytes: s.r.BytesRead(), Size: s.r.Size()})
			}
		}
	}
	if len(chunk) > 0 {
		send()
	}
}

// encChunk is a chunk of rows as records, with what the stager keeps of
// each row.
type encChunk struct {
	recs []byte
	ns   []uint32 // record lengths
	meta []rowMeta
	err  error
}

type rowMeta struct {
	scopeKey, provider, account, currency string
	start, end                            time.Time
	billed                                decimal.Decimal
}

// encode gives rows their keys and encodes them: most of the CPU of
// reading a bill, so it runs on every core.
func encode(name string, version focus.Version, rows []focus.Row, ec *encChunk) {
	ec.recs, ec.ns, ec.meta, ec.err = ec.recs[:0], ec.ns[:0], ec.meta[:0], nil
	var last *focus.Row // the row sk was computed for: a bill's rows share it
	var sk string
	for i := range rows {
		row := &rows[i]
		provider := row.ProviderOrServiceProvider()
		if last == nil || provider != last.ProviderOrServiceProvider() || row.BillingAccountID != last.BillingAccountID ||
			!row.BillingPeriodStart.Equal(last.BillingPeriodStart) || !row.BillingPeriodEnd.Equal(last.BillingPeriodEnd) {
			sk, last = ScopeKey(provider, row.BillingAccountID, row.BillingPeriodStart, row.BillingPeriodEnd), row
		}
		key := LineKey(row)
		start := len(ec.recs)
		recs, err := appendRecordHead(ec.recs, sk, key, uint64(row.Number))
		if err == nil {
			recs, err = lineMarshal.MarshalAppend(recs, costLine(row, key, version))
		}
		if err != nil {
			ec.err = fmt.Errorf("%s:%d: encode line: %w", name, row.Line, err)
			return
		}
		sealRecord(recs[start:])
		ec.recs = recs
		ec.ns = append(ec.ns, uint32(len(recs)-start))
		ec.meta = append(ec.meta, rowMeta{scopeKey: sk, provider: provider, account: row.BillingAccountID,
			currency: row.BillingCurrency, start: row.BillingPeriodStart, end: row.BillingPeriodEnd, billed: row.BilledCost})
	}
}

// stager collects the encoded rows into sorted runs and keeps the scopes
// and totals.
type stager struct {
	name    string
	version focus.Version
	runs    *runWriter
	scopes  map[string]*scope
	totals  map[string]decimal.Decimal // billed cost per currency
}

func (st *stager) collect(ec *encChunk) error {
	off := 0
	for i, n := range ec.ns {
		m := &ec.meta[i]
		sc, ok := st.scopes[m.scopeKey]
		if !ok {
			sc = &scope{Key: m.scopeKey, Provider: m.provider, Account: m.account, Start: m.start, End: m.end,
				totals: map[string]decimal.Decimal{}}
			st.scopes[m.scopeKey] = sc
		}
		sc.Rows++
		sc.totals[m.currency] = sc.totals[m.currency].Add(m.billed)
		st.totals[m.currency] = st.totals[m.currency].Add(m.billed)
		if err := st.runs.addRecord(ec.recs[off : off+int(n)]); err != nil {
			return err
		}
		off += int(n)
	}
	return nil
}

// stageFile reads the whole file into sorted runs: one goroutine reads,
// one per core encodes, this one sorts and spills.
func stageFile(ctx context.Context, src *stageSource, st *stager) error {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := runtime.GOMAXPROCS(0)
	rowsCh := make(chan []focus.Row, workers)
	freeRows := make(chan []focus.Row, 2*workers+2)
	encCh := make(chan *encChunk, workers)
	freeEnc := make(chan *encChunk, 2*workers+2)
	done := make(chan struct{})
	go func() { src.produce(pctx, rowsCh, freeRows); close(done) }()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rows := range rowsCh {
				var ec *encChunk
				select {
				case ec = <-freeEnc:
				default:
					ec = &encChunk{}
				}
				encode(st.name, st.version, rows, ec)
				clear(rows) // the rows' strings go now, not when the chunk is reused
				select {
				case freeRows <- rows:
				default:
				}
				select {
				case encCh <- ec:
				case <-pctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(encCh) }()
	var err error
	for ec := range encCh {
		if err == nil {
			if err = ec.err; err == nil {
				err = st.collect(ec)
			}
			if err != nil {
				cancel()
			}
		}
		select {
		case freeEnc <- ec:
		default:
		}
	}
	<-done
	if err != nil {
		return err
	}
	if src.err != nil {
		return src.err
	}
	return st.runs.finish()
}
