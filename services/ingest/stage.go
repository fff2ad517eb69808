package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"

	"github.com/tally-ledger/tally/services/focus"
)

// stageTable is a temporary table: it lives in the ingest's own session and
// disappears with it, whatever happens to the process.
const stageTable = "ingest_stage"

const createStage = `CREATE TEMP TABLE ` + stageTable + ` (
	scope_key        text    NOT NULL,
	line_key         text    NOT NULL,
	row_no           bigint  NOT NULL,
	line             bytea   NOT NULL,
	row_hash         bytea   NOT NULL,
	billed_cost      numeric NOT NULL,
	effective_cost   numeric,
	list_cost        numeric,
	contracted_cost  numeric,
	consumed_qty     numeric,
	pricing_qty      numeric,
	billing_currency text    NOT NULL
) ON COMMIT PRESERVE ROWS`

var stageColumns = []string{"scope_key", "line_key", "row_no", "line", "row_hash",
	"billed_cost", "effective_cost", "list_cost", "contracted_cost", "consumed_qty", "pricing_qty", "billing_currency"}

// scope is one bill a file holds.
type scope struct {
	Key      string
	Provider string
	Account  string
	Start    time.Time
	End      time.Time
	Rows     int64
}

// stageSource feeds CopyFrom straight from the reader, so the file is never
// held in memory: validation, line keys and encoding happen row by row.
type stageSource struct {
	ctx      context.Context
	r        *focus.Reader
	partial  bool
	progress func(Progress)

	rows     int64
	rejected []*focus.RowError
	nRejects int64
	scopes   map[string]*scope
	totals   map[string]decimal.Decimal // billed cost per currency
	err      error
	lastTick time.Time

	// The consumer's side.
	in    <-chan [][]any
	chunk [][]any
	i     int
}

// maxReported bounds the rejected rows kept for the report; the count is
// always exact.
const maxReported = 1000

// produce reads, validates and encodes the rows in its own goroutine and
// hands them over in chunks, so that parsing and the COPY's encoding and
// sending run side by side. The counters are the producer's until it closes
// the channel.
func (s *stageSource) produce(ctx context.Context, out chan<- [][]any) {
	defer close(out)
	chunk := make([][]any, 0, stageChunk)
	send := func() bool {
		select {
		case out <- chunk:
			chunk = make([][]any, 0, stageChunk)
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
		values, err := s.stage(&row)
		if err != nil {
			s.err = err
			return
		}
		chunk = append(chunk, values)
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

// stageChunk rows travel together from the producer to the COPY.
const stageChunk = 512

// Next, Values and Err make the source a pgx.CopyFromSource.
func (s *stageSource) Next() bool {
	s.i++
	for s.i >= len(s.chunk) {
		chunk, ok := <-s.in
		if !ok {
			return false
		}
		s.chunk, s.i = chunk, 0
	}
	return true
}

func (s *stageSource) Values() ([]any, error) { return s.chunk[s.i], nil }

// Err is read by CopyFrom once Next returned false, after the producer
// closed the channel: its error is visible then.
func (s *stageSource) Err() error { return s.err }

func (s *stageSource) stage(row *focus.Row) ([]any, error) {
	provider := row.ProviderOrServiceProvider()
	sk := ScopeKey(provider, row.BillingAccountID, row.BillingPeriodStart, row.BillingPeriodEnd)
	sc, ok := s.scopes[sk]
	if !ok {
		sc = &scope{Key: sk, Provider: provider, Account: row.BillingAccountID, Start: row.BillingPeriodStart, End: row.BillingPeriodEnd}
		s.scopes[sk] = sc
	}
	sc.Rows++
	s.totals[row.BillingCurrency] = s.totals[row.BillingCurrency].Add(row.BilledCost)

	key := LineKey(row)
	line := costLine(row, key, s.r.Version())
	b, err := lineBytes(line)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: encode line: %w", s.r.Name(), row.Line, err)
	}
	rowNo := int64(row.Number)
	return []any{sk, key, rowNo, b, contentHash(b),
		numeric(row.BilledCost), nullNumeric(row.EffectiveCost), nullNumeric(row.ListCost),
		nullNumeric(row.ContractedCost), nullNumeric(row.ConsumedQuantity), nullNumeric(row.PricingQuantity),
		row.BillingCurrency}, nil
}

// numeric converts without going through text: pgx then sends NUMERIC in
// binary, several times faster in COPY than strings.
func numeric(d decimal.Decimal) pgtype.Numeric {
	return pgtype.Numeric{Int: d.Coefficient(), Exp: d.Exponent(), Valid: true}
}

func nullNumeric(d decimal.NullDecimal) pgtype.Numeric {
	if !d.Valid {
		return pgtype.Numeric{}
	}
	return numeric(d.Decimal)
}

// stage creates the staging table on conn and copies the file into it.
func stageFile(ctx context.Context, conn *pgx.Conn, src *stageSource) (int64, error) {
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+stageTable); err != nil {
		return 0, fmt.Errorf("staging table: %w", err)
	}
	if _, err := conn.Exec(ctx, createStage); err != nil {
		return 0, fmt.Errorf("staging table: %w", err)
	}
	pctx, cancel := context.WithCancel(ctx)
	ch := make(chan [][]any, 4)
	src.in, src.i = ch, -1
	done := make(chan struct{})
	go func() { src.produce(pctx, ch); close(done) }()
	n, err := conn.CopyFrom(ctx, pgx.Identifier{stageTable}, stageColumns, src)
	cancel()
	<-done
	if src.err != nil && !(err != nil && errors.Is(src.err, context.Canceled)) {
		return n, src.err
	}
	if err != nil {
		return n, fmt.Errorf("stage rows of %s: %w", src.r.Name(), err)
	}
	// The index serves the per-line aggregation and the search for removed
	// lines: measured, the diff is faster by more than the index costs.
	if _, err := conn.Exec(ctx, "CREATE INDEX ON "+stageTable+" (scope_key, line_key, row_no)"); err != nil {
		return n, fmt.Errorf("index staging table: %w", err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE "+stageTable); err != nil {
		return n, fmt.Errorf("analyze staging table: %w", err)
	}
	return n, nil
}
