package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// stateKinds are the events ingestion decides on.
var stateKinds = []string{"cost_line_recorded", "cost_line_restated", "cost_line_retracted", "billing_period_finalized", "period_closed"}

// upsertLine, retractLine, upsertScope... fold one event each; they are sent
// in pgx batches, one round trip per few thousand events.
const (
	upsertLine = `INSERT INTO ingest_lines (tenant_id, scope_key, line_key, content_hash, billed_cost, effective_cost,
	list_cost, contracted_cost, consumed_qty, pricing_qty, billing_currency, last_event_id, retracted)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, false)
ON CONFLICT (tenant_id, scope_key, line_key) DO UPDATE SET content_hash = EXCLUDED.content_hash,
	billed_cost = EXCLUDED.billed_cost, effective_cost = EXCLUDED.effective_cost, list_cost = EXCLUDED.list_cost,
	contracted_cost = EXCLUDED.contracted_cost, consumed_qty = EXCLUDED.consumed_qty, pricing_qty = EXCLUDED.pricing_qty,
	billing_currency = EXCLUDED.billing_currency, last_event_id = EXCLUDED.last_event_id, retracted = false`
	retractLine = `UPDATE ingest_lines SET retracted = true, last_event_id = $4
WHERE tenant_id = $1 AND scope_key = $2 AND line_key = $3`
	upsertScope = `INSERT INTO ingest_scopes (tenant_id, scope_key, provider, billing_account_id, billing_period_start, billing_period_end)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, scope_key) DO NOTHING`
	finalizeScope = `UPDATE ingest_scopes SET finalized_event_id = $3 WHERE tenant_id = $1 AND scope_key = $2`
	closePeriod   = `INSERT INTO ingest_closed_periods (tenant_id, period, provider) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	setCheckpoint = `INSERT INTO ingest_checkpoints (tenant_id, stream_seq) VALUES ($1, $2)
ON CONFLICT (tenant_id) DO UPDATE SET stream_seq = GREATEST(ingest_checkpoints.stream_seq, EXCLUDED.stream_seq)`
)

// catchUpBatch is how many events share one transaction while catching up.
const catchUpBatch = 5000

// errStateMoved: another writer folded into the tenant's ingest state since
// this one read its checkpoint.
var errStateMoved = errors.New("ingest state moved")

// lockState serialises the writers of one tenant's ingest state for the
// rest of tx and returns the state's checkpoint. Every write is fenced on it:
// a writer whose view is older than the checkpoint must not write, or it could
// put back values that newer events already replaced.
func lockState(ctx context.Context, tx pgx.Tx, tenant string) (uint64, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('tally.ingest_state.' || $1, 0))`, tenant); err != nil {
		return 0, fmt.Errorf("lock the ingest state of tenant %q: %w", tenant, err)
	}
	var cp int64
	err := tx.QueryRow(ctx, `SELECT stream_seq FROM ingest_checkpoints WHERE tenant_id = $1`, tenant).Scan(&cp)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("read ingest checkpoint of tenant %q: %w", tenant, err)
	}
	return uint64(cp), nil
}

// catchUp folds the tenant's cost events the state has not seen yet, up to
// the end of the log, and returns the stream sequence it reached. Each batch
// and its checkpoint commit together, fenced on the checkpoint the batch was
// read from: a crash loses nothing, nothing is folded twice or out of order.
func catchUp(ctx context.Context, db *pgx.Conn, store *eventstore.Store, tenant string) (uint64, error) {
	for attempt := 0; ; attempt++ {
		last, err := catchUpOnce(ctx, db, store, tenant)
		if !errors.Is(err, errStateMoved) || attempt >= 10 {
			return last, err
		}
	}
}

func catchUpOnce(ctx context.Context, db *pgx.Conn, store *eventstore.Store, tenant string) (uint64, error) {
	var from int64
	err := db.QueryRow(ctx, `SELECT stream_seq FROM ingest_checkpoints WHERE tenant_id = $1`, tenant).Scan(&from)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("read ingest checkpoint of tenant %q: %w", tenant, err)
	}
	base := uint64(from) // the checkpoint the pending batch was read from
	last := base
	f := newFolder(tenant)
	n := 0
	flush := func() error {
		if f.b.Len() == 0 {
			return nil
		}
		f.b.Queue(setCheckpoint, tenant, int64(last))
		tx, err := db.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
		cp, err := lockState(ctx, tx, tenant)
		if err != nil {
			return err
		}
		if cp != base {
			return errStateMoved
		}
		if err := tx.SendBatch(ctx, f.b).Close(); err != nil {
			return fmt.Errorf("fold cost events of tenant %q: %w", tenant, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		f, n, base = newFolder(tenant), 0, last
		return nil
	}
	err = store.Read(ctx, eventstore.ReadFilter{Tenant: tenant, Kinds: stateKinds, FromStreamSeq: last + 1}, func(ev eventstore.Event) error {
		if ev.StreamSeq != last && n >= catchUpBatch {
			// Only whole messages go into one transaction: the checkpoint is
			// a message's stream sequence.
			if err := flush(); err != nil {
				return err
			}
		}
		if err := f.fold(ev.Envelope); err != nil {
			return fmt.Errorf("event %s (tenant seq %d): %w", ev.Envelope.GetEventId(), ev.Envelope.GetTenantSeq(), err)
		}
		n++
		last = ev.StreamSeq
		return nil
	})
	if err != nil {
		return 0, err
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return last, nil
}

// folder queues the statements that fold events into the ingest state.
type folder struct {
	b      *pgx.Batch
	tenant string
	scopes map[string]bool // scopes already upserted in this batch
}

func newFolder(tenant string) *folder {
	return &folder{b: &pgx.Batch{}, tenant: tenant, scopes: map[string]bool{}}
}

func (f *folder) fold(env *tallyv1.Envelope) error {
	b, tenant := f.b, f.tenant
	id, err := uuid.Parse(env.GetEventId())
	if err != nil {
		return err
	}
	switch body := env.GetBody().(type) {
	case *tallyv1.Envelope_CostLineRecorded:
		return f.line(body.CostLineRecorded.GetLine(), id)
	case *tallyv1.Envelope_CostLineRestated:
		return f.line(body.CostLineRestated.GetLine(), id)
	case *tallyv1.Envelope_CostLineRetracted:
		sc := body.CostLineRetracted.GetScope()
		b.Queue(retractLine, tenant, scopeKeyOf(sc), body.CostLineRetracted.GetLineKey(), id)
	case *tallyv1.Envelope_BillingPeriodFinalized:
		sc := body.BillingPeriodFinalized.GetScope()
		f.scope(sc)
		b.Queue(finalizeScope, tenant, scopeKeyOf(sc), id)
	case *tallyv1.Envelope_PeriodClosed:
		b.Queue(closePeriod, tenant, body.PeriodClosed.GetPeriod(), body.PeriodClosed.GetProvider())
	}
	return nil
}

func scopeKeyOf(sc *tallyv1.BillScope) string {
	return ScopeKey(sc.GetProvider(), sc.GetBillingAccountId(), sc.GetBillingPeriodStart().AsTime(), sc.GetBillingPeriodEnd().AsTime())
}

func (f *folder) scope(sc *tallyv1.BillScope) string {
	key := scopeKeyOf(sc)
	if !f.scopes[key] {
		f.scopes[key] = true
		f.b.Queue(upsertScope, f.tenant, key, sc.GetProvider(), sc.GetBillingAccountId(),
			sc.GetBillingPeriodStart().AsTime(), sc.GetBillingPeriodEnd().AsTime())
	}
	return key
}

func (f *folder) line(l *tallyv1.CostLine, id uuid.UUID) error {
	enc, err := lineBytes(l)
	if err != nil {
		return err
	}
	billed, err := parseNumeric(l.GetBilledCost(), "billed_cost")
	if err != nil {
		return err
	}
	var amounts [5]pgtype.Numeric
	for i, s := range []string{l.GetEffectiveCost(), l.GetListCost(), l.GetContractedCost(), l.GetConsumedQuantity(), l.GetPricingQuantity()} {
		if s == "" {
			continue
		}
		if amounts[i], err = parseNumeric(s, "amount"); err != nil {
			return err
		}
	}
	key := f.scope(l.GetScope())
	f.b.Queue(upsertLine, f.tenant, key, l.GetLineKey(), contentHash(enc), billed,
		amounts[0], amounts[1], amounts[2], amounts[3], amounts[4], l.GetBillingCurrency(), id)
	return nil
}

func parseNumeric(s, field string) (pgtype.Numeric, error) {
	d, err := decimal.NewFromString(s)
	if err != nil {
		return pgtype.Numeric{}, fmt.Errorf("%s %q is not a decimal: %w", field, s, err)
	}
	return numeric(d), nil
}
