package ingest

import (
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

// changedLines: the staged lines (rows with one key summed, the first row's
// attributes kept) that differ from the state or are new. A single-row line
// whose content hash equals the state's is unchanged and filtered here, so
// re-ingesting an unchanged bill moves almost nothing out of PostgreSQL.
const changedLines = `WITH agg AS (
	SELECT scope_key, line_key,
		(array_agg(line ORDER BY row_no))[1] AS line,
		(array_agg(row_hash ORDER BY row_no))[1] AS row_hash,
		count(*) AS nrows,
		sum(billed_cost) AS billed, sum(effective_cost) AS effective, sum(list_cost) AS list,
		sum(contracted_cost) AS contracted, sum(consumed_qty) AS consumed, sum(pricing_qty) AS pricing,
		min(billing_currency) AS currency
	FROM ` + stageTable + ` GROUP BY scope_key, line_key
)
SELECT a.scope_key, a.line_key, a.line, a.nrows, a.billed, a.effective, a.list, a.contracted, a.consumed, a.pricing,
	st.content_hash, st.billed_cost, st.effective_cost, st.list_cost, st.contracted_cost, st.consumed_qty, st.pricing_qty,
	st.last_event_id, coalesce(st.retracted, false)
FROM agg a LEFT JOIN ingest_lines st ON st.tenant_id = $1 AND st.scope_key = a.scope_key AND st.line_key = a.line_key
WHERE NOT (a.nrows = 1 AND st.content_hash IS NOT NULL AND st.content_hash = a.row_hash AND NOT st.retracted)
ORDER BY a.scope_key, a.line_key`

// removedLines: lines the state holds for the file's scopes that the file no
// longer has.
const removedLines = `SELECT st.scope_key, st.line_key, st.billed_cost, st.effective_cost, st.list_cost, st.contracted_cost,
	st.consumed_qty, st.pricing_qty, st.billing_currency, st.last_event_id
FROM ingest_lines st
WHERE st.tenant_id = $1 AND st.scope_key = ANY($2) AND NOT st.retracted
	AND NOT EXISTS (SELECT 1 FROM ` + stageTable + ` s WHERE s.scope_key = st.scope_key AND s.line_key = st.line_key)
ORDER BY st.scope_key, st.line_key`

// amounts of a line, in the order of the staging and state columns.
type amounts [6]pgtype.Numeric // billed, effective, list, contracted, consumed, pricing

// applied is one line change appended to the log, for the state update.
type applied struct {
	scopeKey, lineKey string
	hash              []byte
	amounts           amounts
	currency          string
	eventID           uuid.UUID
	retracted         bool
}

// change is one line difference turned into an event.
type change struct {
	env     *tallyv1.Envelope
	applied applied
	kind    string // recorded, restated, retracted
}

// lineChange turns one row of changedLines into an event, or nil when the
// summed line turns out unchanged.
func (in *run) lineChange(rows pgx.Rows) (*change, error) {
	var (
		scopeKey, lineKey string
		enc               []byte
		nrows             int64
		cur, old          amounts
		oldHash           []byte
		lastEvent         pgtype.UUID
		retracted         bool
	)
	if err := rows.Scan(&scopeKey, &lineKey, &enc, &nrows, &cur[0], &cur[1], &cur[2], &cur[3], &cur[4], &cur[5],
		&oldHash, &old[0], &old[1], &old[2], &old[3], &old[4], &old[5], &lastEvent, &retracted); err != nil {
		return nil, fmt.Errorf("read line difference: %w", err)
	}
	line := &tallyv1.CostLine{}
	if err := proto.Unmarshal(enc, line); err != nil {
		return nil, fmt.Errorf("decode staged line %s: %w", lineKey, err)
	}
	if nrows > 1 {
		// Rows with one key are one line: their amounts summed, the first
		// row's attributes kept.
		line.BilledCost = numText(cur[0])
		line.EffectiveCost, line.ListCost, line.ContractedCost = numText(cur[1]), numText(cur[2]), numText(cur[3])
		line.ConsumedQuantity, line.PricingQuantity = numText(cur[4]), numText(cur[5])
		line.RowCount = uint32(nrows)
		var err error
		if enc, err = lineBytes(line); err != nil {
			return nil, err
		}
	}
	hash := contentHash(enc)
	prev := ""
	if lastEvent.Valid {
		prev = uuid.UUID(lastEvent.Bytes).String()
	}
	exists := oldHash != nil && !retracted
	if exists && string(oldHash) == string(hash) {
		return nil, nil
	}
	c := &change{applied: applied{scopeKey: scopeKey, lineKey: lineKey, hash: hash, amounts: cur, currency: line.GetBillingCurrency()}}
	env := in.envelope(line.GetChargePeriodStart())
	post := in.postClose(line.GetScope())
	if exists {
		c.kind = "restated"
		env.EventId = eventstore.DeterministicID(in.tenant, "cost_line_restated/"+scopeKey+"/"+lineKey+"/"+prev+"/"+hex.EncodeToString(hash))
		env.Body = &tallyv1.Envelope_CostLineRestated{CostLineRestated: &tallyv1.CostLineRestated{
			Line: line, Delta: delta(cur, old, line.GetBillingCurrency()), PreviousEventId: prev, PostClose: post,
		}}
	} else {
		c.kind = "recorded"
		env.EventId = eventstore.DeterministicID(in.tenant, "cost_line_recorded/"+scopeKey+"/"+lineKey+"/"+prev+"/"+hex.EncodeToString(hash))
		env.Body = &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: line, PostClose: post}}
	}
	c.env = env
	c.applied.eventID = uuid.MustParse(env.EventId)
	return c, nil
}

// removedChange turns one row of removedLines into a retraction.
func (in *run) removedChange(rows pgx.Rows) (*change, error) {
	var (
		scopeKey, lineKey, currency string
		old                         amounts
		lastEvent                   pgtype.UUID
	)
	if err := rows.Scan(&scopeKey, &lineKey, &old[0], &old[1], &old[2], &old[3], &old[4], &old[5], &currency, &lastEvent); err != nil {
		return nil, fmt.Errorf("read removed line: %w", err)
	}
	sc := in.scopes[scopeKey]
	prev := uuid.UUID(lastEvent.Bytes).String()
	bs := &tallyv1.BillScope{Provider: sc.Provider, BillingAccountId: sc.Account,
		BillingPeriodStart: timestamppb.New(sc.Start), BillingPeriodEnd: timestamppb.New(sc.End)}
	env := in.envelope(bs.GetBillingPeriodStart())
	env.EventId = eventstore.DeterministicID(in.tenant, "cost_line_retracted/"+scopeKey+"/"+lineKey+"/"+prev)
	env.Body = &tallyv1.Envelope_CostLineRetracted{CostLineRetracted: &tallyv1.CostLineRetracted{
		Scope: bs, LineKey: lineKey, Delta: delta(amounts{}, old, currency), PreviousEventId: prev, PostClose: in.postClose(bs),
	}}
	return &change{env: env, kind: "retracted", applied: applied{scopeKey: scopeKey, lineKey: lineKey,
		amounts: old, currency: currency, eventID: uuid.MustParse(env.EventId), retracted: true}}, nil
}

func (in *run) envelope(occurred *timestamppb.Timestamp) *tallyv1.Envelope {
	return &tallyv1.Envelope{
		TenantId:      in.tenant,
		OccurredAt:    occurred,
		Actor:         in.opts.Actor,
		Source:        &tallyv1.Source{Adapter: "focus-file", File: in.file, BatchId: in.runID},
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
