package ingest

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// scopeState streams the state of one scope in line key order, which is
// the primary key's order: the merge join with the file's sorted lines
// needs no sort on either side.
const scopeState = `SELECT line_key, content_hash, billed_cost, effective_cost, list_cost, contracted_cost,
	consumed_qty, pricing_qty, billing_currency, last_event_id, retracted
FROM ingest_lines WHERE tenant_id = $1 AND scope_key = $2 ORDER BY line_key`

// amounts of a line, in the order of the state's columns.
type amounts [6]pgtype.Numeric // billed, effective, list, contracted, consumed, pricing

// stateLine is one row of the ingest state.
type stateLine struct {
	lineKey   string
	hash      []byte
	amounts   amounts
	currency  string
	lastEvent pgtype.UUID
	retracted bool
}

// stateCursor reads scopeState, checking the order the merge join relies
// on: PostgreSQL orders text by the database's collation, the runs by bytes.
// For lower-case hex keys every collation we know agrees; if one does not,
// the ingest stops rather than diff wrongly.
type stateCursor struct {
	rows pgx.Rows
	cur  stateLine
	prev string
	ok   bool
}

func openState(ctx context.Context, q pgx.Tx, tenant, scopeKey string) (*stateCursor, error) {
	rows, err := q.Query(ctx, scopeState, tenant, scopeKey)
	if err != nil {
		return nil, fmt.Errorf("read the ingest state of scope %s: %w", scopeKey, err)
	}
	c := &stateCursor{rows: rows}
	return c, c.advance()
}

func (c *stateCursor) advance() error {
	c.ok = false
	if !c.rows.Next() {
		c.rows.Close()
		if err := c.rows.Err(); err != nil {
			return fmt.Errorf("read the ingest state: %w", err)
		}
		return nil
	}
	s := &c.cur
	*s = stateLine{}
	if err := c.rows.Scan(&s.lineKey, &s.hash, &s.amounts[0], &s.amounts[1], &s.amounts[2], &s.amounts[3],
		&s.amounts[4], &s.amounts[5], &s.currency, &s.lastEvent, &s.retracted); err != nil {
		c.rows.Close()
		return fmt.Errorf("read the ingest state: %w", err)
	}
	if c.prev != "" && s.lineKey <= c.prev {
		c.rows.Close()
		return fmt.Errorf("the ingest state came out of byte order (%s after %s): the database's collation does not order line keys as bytes", s.lineKey, c.prev)
	}
	c.prev, c.ok = s.lineKey, true
	return nil
}

func (c *stateCursor) close() { c.rows.Close() }

// diffScope merge-joins one scope's lines of the file (from gr, which must
// be at the scope's first line) with the scope's state, and hands every
// difference to emit in line key order.
func (in *run) diffScope(ctx context.Context, tx pgx.Tx, gr *grouper, g *lineGroup, sc *scope, emit func(*change) error) (*lineGroup, error) {
	st, err := openState(ctx, tx, in.tenant, sc.Key)
	if err != nil {
		return g, err
	}
	defer st.close()
	var lines, changed int64
	for {
		inFile := g != nil && string(g.scopeKey()) == sc.Key
		if !inFile && !st.ok {
			break
		}
		cmp := 0
		switch {
		case !inFile:
			cmp = 1
		case !st.ok:
			cmp = -1
		default:
			cmp = bytes.Compare(g.lineKey(), []byte(st.cur.lineKey))
		}
		var c *change
		var err error
		switch {
		case cmp < 0: // a new line
			c, err = in.lineChange(sc, g, nil)
		case cmp > 0: // a line the file no longer has
			if !st.cur.retracted {
				c = in.removedChange(sc, &st.cur)
			}
		default:
			c, err = in.lineChange(sc, g, &st.cur)
		}
		if err != nil {
			return g, err
		}
		if cmp <= 0 {
			lines++
			if c != nil {
				changed++
			}
			if g, err = gr.next(); err != nil {
				return g, err
			}
		}
		if cmp >= 0 {
			if err := st.advance(); err != nil {
				return g, err
			}
		}
		if c != nil {
			if err := emit(c); err != nil {
				return g, err
			}
		}
	}
	sc.lines = lines
	in.sum.Lines += lines
	in.sum.Unchanged += lines - changed
	return g, nil
}

// applied is one line change appended to the log, for the state update.
type applied struct {
	scopeKey, lineKey string
	hash              []byte
	amounts           amounts
	currency          string
	eventID           uuid.UUID
	retracted         bool
	fresh             bool // the state has no row for the line
}

// change is one line difference turned into an event.
type change struct {
	env     *tallyv1.Envelope
	applied applied
	kind    changeKind
	post    bool // a change to a closed period
}

// lineChange compares a line of the file with its state (nil: none) and
// returns the event, or nil when the line is unchanged. The line goes into
// the event as its encoded bytes (rawline.go): only a line of several rows,
// whose amounts are summed, is decoded.
func (in *run) lineChange(sc *scope, g *lineGroup, st *stateLine) (*change, error) {
	exists := st != nil && !st.retracted
	enc, hash := g.line(), g.hash()
	if g.rows == 1 && exists && bytes.Equal(st.hash, hash) {
		// The common case of an unchanged bill: no decoding at all.
		return nil, nil
	}
	var cur amounts
	if g.rows > 1 {
		// Rows with one key are one line: their amounts summed, the first
		// row's attributes kept.
		line := &tallyv1.CostLine{}
		if err := proto.Unmarshal(enc, line); err != nil {
			return nil, fmt.Errorf("decode spilled line %s: %w", g.lineKey(), err)
		}
		for i, s := range g.sums {
			if s.Valid {
				cur[i] = numeric(s.Decimal)
			}
		}
		line.BilledCost = numText(cur[0])
		line.EffectiveCost, line.ListCost, line.ContractedCost = numText(cur[1]), numText(cur[2]), numText(cur[3])
		line.ConsumedQuantity, line.PricingQuantity = numText(cur[4]), numText(cur[5])
		line.RowCount = uint32(g.rows)
		var err error
		if enc, err = lineBytes(line); err != nil {
			return nil, err
		}
		hash = contentHash(enc)
		if exists && bytes.Equal(st.hash, hash) {
			return nil, nil
		}
	}
	lf, err := scanLine(enc)
	if err != nil {
		return nil, fmt.Errorf("line %s: %w", g.lineKey(), err)
	}
	if g.rows == 1 {
		for i, s := range lf.amounts {
			if s == "" {
				continue
			}
			d, err := decimal.NewFromString(s)
			if err != nil {
				return nil, fmt.Errorf("line %s: amount %q: %w", g.lineKey(), s, err)
			}
			cur[i] = numeric(d)
		}
		hash = bytes.Clone(hash)
	}
	prev := ""
	var old amounts
	if st != nil {
		if st.lastEvent.Valid {
			prev = uuid.UUID(st.lastEvent.Bytes).String()
		}
		old = st.amounts
	}
	scopeKey, lineKey := sc.Key, string(g.lineKey())
	post := in.postCloseScope(sc)
	c := &change{post: post, applied: applied{scopeKey: scopeKey, lineKey: lineKey, hash: hash, amounts: cur,
		currency: lf.currency, fresh: st == nil}}
	env := in.envelope(lf.chargeStart)
	if exists {
		c.kind = kindRestated
		env.EventId = eventstore.DeterministicID(in.tenant, "cost_line_restated/"+scopeKey+"/"+lineKey+"/"+prev+"/"+hex.EncodeToString(hash))
		body, err := restatedBody(enc, delta(cur, old, lf.currency), prev, post)
		if err != nil {
			return nil, err
		}
		env.Body = &tallyv1.Envelope_CostLineRestated{CostLineRestated: body}
	} else {
		c.kind = kindRecorded
		env.EventId = eventstore.DeterministicID(in.tenant, "cost_line_recorded/"+scopeKey+"/"+lineKey+"/"+prev+"/"+hex.EncodeToString(hash))
		env.Body = &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: recordedBody(enc, post)}
	}
	c.env = env
	c.applied.eventID = uuid.MustParse(env.EventId)
	return c, nil
}

// removedChange retracts a line the state holds and the file no longer has.
func (in *run) removedChange(sc *scope, st *stateLine) *change {
	prev := uuid.UUID(st.lastEvent.Bytes).String()
	bs := &tallyv1.BillScope{Provider: sc.Provider, BillingAccountId: sc.Account,
		BillingPeriodStart: timestamppb.New(sc.Start), BillingPeriodEnd: timestamppb.New(sc.End)}
	env := in.envelope(bs.GetBillingPeriodStart())
	env.EventId = eventstore.DeterministicID(in.tenant, "cost_line_retracted/"+sc.Key+"/"+st.lineKey+"/"+prev)
	env.Body = &tallyv1.Envelope_CostLineRetracted{CostLineRetracted: &tallyv1.CostLineRetracted{
		Scope: bs, LineKey: st.lineKey, Delta: delta(amounts{}, st.amounts, st.currency), PreviousEventId: prev, PostClose: in.postClose(bs),
	}}
	return &change{env: env, kind: kindRetracted, post: in.postClose(bs), applied: applied{scopeKey: sc.Key, lineKey: st.lineKey,
		amounts: st.amounts, currency: st.currency, eventID: uuid.MustParse(env.EventId), retracted: true}}
}

func (in *run) envelope(occurred *timestamppb.Timestamp) *tallyv1.Envelope {
	if in.source == nil {
		// One Source for every event of the run: nothing writes to it.
		in.source = &tallyv1.Source{Adapter: "focus-file", File: in.file, BatchId: in.runID}
	}
	return &tallyv1.Envelope{
		TenantId:      in.tenant,
		OccurredAt:    occurred,
		Actor:         in.opts.Actor,
		Source:        in.source,
		CorrelationId: in.runID,
	}
}

// delta is cur - old for each amount; an absent amount counts as zero.
func delta(cur, old amounts, currency string) *tallyv1.CostDelta {
	d := func(i int) string {
		if !cur[i].Valid && !old[i].Valid {
			return ""
		}
		return toDec(cur[i]).Sub(toDec(old[i])).String()
	}
	return &tallyv1.CostDelta{BilledCost: d(0), EffectiveCost: d(1), ListCost: d(2), ContractedCost: d(3),
		ConsumedQuantity: d(4), PricingQuantity: d(5), BillingCurrency: currency}
}

// numeric converts without going through text: pgx then sends NUMERIC in
// binary, several times faster in COPY than strings.
func numeric(d decimal.Decimal) pgtype.Numeric {
	return pgtype.Numeric{Int: d.Coefficient(), Exp: d.Exponent(), Valid: true}
}

func toDec(n pgtype.Numeric) decimal.Decimal {
	if !n.Valid || n.Int == nil {
		return decimal.Zero
	}
	return decimal.NewFromBigInt(n.Int, n.Exp)
}

func numText(n pgtype.Numeric) string {
	if !n.Valid {
		return ""
	}
	return toDec(n).String()
}

func periodOf(sc *tallyv1.BillScope) string {
	return sc.GetBillingPeriodStart().AsTime().UTC().Format("2006-01")
}

func (in *run) postClose(sc *tallyv1.BillScope) bool {
	p := periodOf(sc)
	return in.closed[p+"/"] || in.closed[p+"/"+sc.GetProvider()]
}

// postCloseScope is postClose for a scope of the file.
func (in *run) postCloseScope(sc *scope) bool {
	p := sc.Start.UTC().Format("2006-01")
	return in.closed[p+"/"] || in.closed[p+"/"+sc.Provider]
}
