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
	values   []any
	err      error
	lastTick time.Time
}

// maxReported bounds the rejected rows kept for the report; the count is
// always exact.
const maxReported = 1000

func (s *stageSource) Next() bool {
	for {
		if s.err != nil {
			return false
		}
		if err := s.ctx.Err(); err != nil {
			s.err = err
			return false
		}
		row, err := s.r.Next()
		if errors.Is(err, io.EOF) {
			return false
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
			return false
		}
		s.rows++
		if err := s.stage(&row); err != nil {
			s.err = err
			return false
		}
		if s.progress != nil && s.rows%4096 == 0 {
			if now := time.Now(); now.Sub(s.lastTick) >= 200*time.Millisecond {
				s.lastTick = now
				s.progress(Progress{Stage: "read", Rows: s.rows, Rejected: s.nRejects, Bytes: s.r.BytesRead(), Size: s.r.Size()})
			}
		}
		return true
	}
}

func (s *stageSource) stage(row *focus.Row) error {
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
		return fmt.Errorf("%s:%d: encode line: %w", s.r.Name(), row.Line, err)
	}
	rowNo := int64(row.Number)
	s.values = append(s.values[:0], sk, key, rowNo, b, contentHash(b),
		numeric(row.BilledCost), nullNumeric(row.EffectiveCost), nullNumeric(row.ListCost),
		nullNumeric(row.ContractedCost), nullNumeric(row.ConsumedQuantity), nullNumeric(row.PricingQuantity),
		row.BillingCurrency)
	return nil
}

func (s *stageSource) Values() ([]any, error) { return s.values, nil }
func (s *stageSource) Err() error             { return s.err }

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
	n, err := conn.CopyFrom(ctx, pgx.Identifier{stageTable}, stageColumns, src)
	if src.err != nil {
		return n, src.err
	}
	if err != nil {
		return n, fmt.Errorf("stage rows of %s: %w", src.r.Name(), err)
	}
	if _, err := conn.Exec(ctx, "CREATE INDEX ON "+stageTable+" (scope_key, line_key, row_no)"); err != nil {
		return n, fmt.Errorf("index staging table: %w", err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE "+stageTable); err != nil {
		return n, fmt.Errorf("analyze staging table: %w", err)
	}
	return n, nil
}
