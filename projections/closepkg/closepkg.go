package closepkg

import (
	"context"
	_ "embed"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/money"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

const (
	// Name of the projection and of its live PostgreSQL schema.
	Name = "closepkg"
	// Version of the fold and tables; bump it to rebuild on deploy.
	Version = 1
)

//go:embed schema.sql
var schemaSQL string

// Projection folds cost, finalization, invoice and close events into the close tables. The
// zero value is ready.
type Projection struct{}

// New returns the close-package projection.
func New() *Projection { return &Projection{} }

// Name implements projections.Projection.
func (*Projection) Name() string { return Name }

// Version implements projections.Projection.
func (*Projection) Version() int { return Version }

// Kinds implements projections.Projection.
func (*Projection) Kinds() []string {
	return []string{"cost_line_recorded", "cost_line_restated", "cost_line_retracted",
		"billing_period_finalized", "invoice_recorded", "period_closed"}
}

// Setup implements projections.Projection: it creates the tables in schema.
func (*Projection) Setup(ctx context.Context, tx pgx.Tx, schema string) error {
	if _, err := tx.Exec(ctx, inSchema(schemaSQL, schema)); err != nil {
		return fmt.Errorf("create closepkg tables: %w", err)
	}
	return nil
}

// Apply implements projections.Projection. Every event is one row of one table, so the fold
// is a COPY per table, whatever the batch size, and order inside a batch does not matter
// (each row carries its tenant sequence).
func (*Projection) Apply(ctx context.Context, tx pgx.Tx, schema string, events []eventstore.Event) error {
	b, err := plan(events)
	if err != nil {
		return err
	}
	return b.apply(ctx, tx, schema)
}

// Prepare implements projections.Preparer.
func (*Projection) Prepare(events []eventstore.Event) (any, error) { return plan(events) }

// ApplyPrepared implements projections.Preparer.
func (*Projection) ApplyPrepared(ctx context.Context, tx pgx.Tx, schema string, prepared any) error {
	b, ok := prepared.(*batch)
	if !ok {
		return fmt.Errorf("closepkg: prepared batch of type %T", prepared)
	}
	return b.apply(ctx, tx, schema)
}

var (
	lineColumns = []string{"tenant_id", "tenant_seq", "period", "provider", "billing_account_id", "billing_period_start",
		"line_key", "op", "billing_currency", "billed_cost", "billed_delta", "post_close", "event_id", "chain_hash"}
	finalColumns = []string{"tenant_id", "tenant_seq", "period", "provider", "billing_account_id", "billing_period_start",
		"event_id", "chain_hash"}
	invoiceColumns = []string{"tenant_id", "tenant_seq", "period", "provider", "billing_account_id", "invoice_id",
		"amount", "currency", "issued_at", "event_id", "chain_hash"}
	closeColumns = []string{"tenant_id", "tenant_seq", "period", "provider", "actor_kind", "actor_id", "approver_kind",
		"approver_id", "package_sha256", "chain_head", "chain_head_seq", "note", "occurred_at", "event_id", "chain_hash"}
)

// batch is a batch of events turned into rows, one slice per table.
type batch struct {
	lines, finals, invoices, closes [][]any
}

func plan(events []eventstore.Event) (*batch, error) {
	b := &batch{}
	for _, ev := range events {
		if err := b.add(ev); err != nil {
			env := ev.Envelope
			return nil, fmt.Errorf("closepkg: event %s (tenant %s seq %d): %w", env.GetEventId(), env.GetTenantId(), env.GetTenantSeq(), err)
		}
	}
	return b, nil
}

func (b *batch) add(ev eventstore.Event) error {
	env := ev.Envelope
	id, err := uuid.Parse(env.GetEventId())
	if err != nil {
		return fmt.Errorf("event id: %w", err)
	}
	tenant, seq, hash := env.GetTenantId(), int64(env.GetTenantSeq()), hex.EncodeToString(ev.Hash[:])
	scopeCols := func(s *tallyv1.BillScope) []any {
		start := s.GetBillingPeriodStart().AsTime().UTC()
		return []any{tenant, seq, PeriodOf(start), s.GetProvider(), s.GetBillingAccountId()}
	}
	line := func(s *tallyv1.BillScope, key, op, currency string, billed, delta any, post bool) {
		row := append(scopeCols(s), s.GetBillingPeriodStart().AsTime(), key, op, currency, billed, delta, post, [16]byte(id), hash)
		b.lines = append(b.lines, row)
	}
	switch body := env.GetBody().(type) {
	case *tallyv1.Envelope_CostLineRecorded:
		l := body.CostLineRecorded.GetLine()
		billed, err := numeric(l.GetBilledCost())
		if err != nil {
			return err
		}
		line(l.GetScope(), l.GetLineKey(), "recorded", l.GetBillingCurrency(), billed, billed, body.CostLineRecorded.GetPostClose())
	case *tallyv1.Envelope_CostLineRestated:
		r := body.CostLineRestated
		billed, err := numeric(r.GetLine().GetBilledCost())
		if err != nil {
			return err
		}
		delta, err := numeric(r.GetDelta().GetBilledCost())
		if err != nil {
			return err
		}
		line(r.GetLine().GetScope(), r.GetLine().GetLineKey(), "restated", r.GetLine().GetBillingCurrency(), billed, delta, r.GetPostClose())
	case *tallyv1.Envelope_CostLineRetracted:
		r := body.CostLineRetracted
		delta, err := numeric(r.GetDelta().GetBilledCost())
		if err != nil {
			return err
		}
		line(r.GetScope(), r.GetLineKey(), "retracted", r.GetDelta().GetBillingCurrency(), nil, delta, r.GetPostClose())
	case *tallyv1.Envelope_BillingPeriodFinalized:
		s := body.BillingPeriodFinalized.GetScope()
		b.finals = append(b.finals, append(scopeCols(s), s.GetBillingPeriodStart().AsTime(), [16]byte(id), hash))
	case *tallyv1.Envelope_InvoiceRecorded:
		inv := body.InvoiceRecorded
		amount, err := numeric(inv.GetAmount())
		if err != nil {
			return err
		}
		var issued any
		if inv.GetIssuedAt() != nil {
			issued = inv.GetIssuedAt().AsTime()
		}
		b.invoices = append(b.invoices, append(scopeCols(inv.GetScope()), inv.GetInvoiceId(), amount, inv.GetCurrency(),
			issued, [16]byte(id), hash))
	case *tallyv1.Envelope_PeriodClosed:
		c := body.PeriodClosed
		var occurred any
		if env.GetOccurredAt() != nil {
			occurred = env.GetOccurredAt().AsTime()
		}
		b.closes = append(b.closes, []any{tenant, seq, c.GetPeriod(), c.GetProvider(),
			env.GetActor().GetKind().String(), env.GetActor().GetId(), c.GetApprover().GetKind().String(), c.GetApprover().GetId(),
			c.GetPackageSha256(), c.GetChainHead(), int64(c.GetChainHeadSeq()), c.GetNote(), occurred, [16]byte(id), hash})
	}
	return nil
}

func (b *batch) apply(ctx context.Context, tx pgx.Tx, schema string) error {
	for _, t := range []struct {
		table string
		cols  []string
		rows  [][]any
	}{
		{"line_events", lineColumns, b.lines},
		{"finalized", finalColumns, b.finals},
		{"invoices", invoiceColumns, b.invoices},
		{"closes", closeColumns, b.closes},
	} {
		if len(t.rows) == 0 {
			continue
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{schema, t.table}, t.cols, pgx.CopyFromRows(t.rows)); err != nil {
			return fmt.Errorf("closepkg: copy %s: %w", t.table, err)
		}
	}
	return nil
}

// PeriodOf is the close period ("YYYY-MM") of a bill starting at start: its UTC month.
func PeriodOf(start time.Time) string { return start.UTC().Format("2006-01") }

// numeric parses a decimal amount of an event; "" is 0 (proto3's empty string).
func numeric(s string) (pgtype.Numeric, error) {
	if s == "" {
		s = "0"
	}
	d, err := money.Parse(s)
	if err != nil {
		return pgtype.Numeric{}, fmt.Errorf("amount %q %w", s, err)
	}
	return pgtype.Numeric{Int: d.Coefficient(), Exp: d.Exponent(), Valid: true}, nil
}

// inSchema puts sql's tables in schema.
func inSchema(sql, schema string) string {
	return strings.ReplaceAll(sql, "closepkg_schema.", pgx.Identifier{schema}.Sanitize()+".")
}
