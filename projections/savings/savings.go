package savings

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/money"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

const (
	// Name of the projection and of its live PostgreSQL schema.
	Name = "savings"
	// Version of the fold and tables; bump it to rebuild on deploy.
	Version = 1
)

//go:embed schema.sql
var schemaSQL string

// Projection folds cost line, finalization and remediation events into the savings tables.
// The zero value is ready.
type Projection struct{}

// New returns the realized-savings projection.
func New() *Projection { return &Projection{} }

// Name implements projections.Projection.
func (*Projection) Name() string { return Name }

// Version implements projections.Projection.
func (*Projection) Version() int { return Version }

// Kinds implements projections.Projection.
func (*Projection) Kinds() []string {
	return []string{"cost_line_recorded", "cost_line_restated", "cost_line_retracted",
		"billing_period_finalized", "remediation_executed"}
}

// Setup implements projections.Projection: it creates the tables in schema.
func (*Projection) Setup(ctx context.Context, tx pgx.Tx, schema string) error {
	if _, err := tx.Exec(ctx, inSchema(schemaSQL, schema)); err != nil {
		return fmt.Errorf("create savings tables: %w", err)
	}
	return nil
}

// Apply implements projections.Projection.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, schema string, events []eventstore.Event) error {
	b, err := plan(events)
	if err != nil {
		return err
	}
	return b.apply(ctx, tx, schema)
}

// Prepare implements projections.Preparer: it decodes the batch, with no database.
func (*Projection) Prepare(events []eventstore.Event) (any, error) { return plan(events) }

// ApplyPrepared implements projections.Preparer.
func (*Projection) ApplyPrepared(ctx context.Context, tx pgx.Tx, schema string, prepared any) error {
	b, ok := prepared.(*batch)
	if !ok {
		return fmt.Errorf("savings: prepared batch of type %T", prepared)
	}
	return b.apply(ctx, tx, schema)
}

// lineID is a cost line's identity.
type lineID struct {
	tenant, provider, account string
	start                     int64 // billing period start, Unix microseconds
	key                       string
}

// line is a cost line as the savings model keeps it.
type line struct {
	id        lineID
	resource  string
	day       day
	currency  string
	effective decimal.Decimal
	eventID   [16]byte
	tenantSeq int64
}

func (l *line) scope() scopeKey {
	return scopeKey{tenant: l.id.tenant, provider: l.id.provider, account: l.id.account, start: l.id.start}
}

// scopeKey is one bill: (tenant, provider, billing account, billing period start).
type scopeKey struct {
	tenant, provider, account string
	start                     int64
}

// finalScope is a finalized bill.
type finalScope struct {
	scopeKey
	end       int64 // billing period end, Unix microseconds
	eventID   [16]byte
	tenantSeq int64
}

// actionKey is an action's identity.
type actionKey struct{ tenant, id string }

// resKey is a tenant's resource of a provider.
type resKey struct{ tenant, provider, resource string }

// action is an action's definition, from its last remediation_executed event, and its
// current figures.
type action struct {
	key                                    actionKey
	provider, account, resource            string
	kind, tool, description                string
	actorKind, actorID                     string
	expected                               *decimal.Decimal
	expectedCurrency                       string
	executedAt                             *time.Time
	baselineDays, gapDays, measurementDays int
	invalid                                string // why it cannot be measured
	windows                                Windows
	eventID                                [16]byte
	tenantSeq                              int64

	fig        Figures
	revision   int
	updatedID  [16]byte
	updatedSeq int64
	dirty      bool
}

func (a *action) res() resKey { return resKey{a.key.tenant, a.provider, a.resource} }

// period is the UTC month of the action day ("" without an execution time).
func (a *action) period() string {
	if a.executedAt == nil {
		return ""
	}
	return a.executedAt.UTC().Format("2006-01")
}

// setWindows derives the windows and the reason the action cannot be measured, if any.
func (a *action) setWindows() {
	a.invalid = ""
	for _, c := range []struct {
		name string
		v    int
	}{{"baseline_days", a.baselineDays}, {"gap_days", a.gapDays}, {"measurement_days", a.measurementDays}} {
		if c.v > MaxWindowDays {
			a.invalid = fmt.Sprintf("%s %d is over the limit of %d days", c.name, c.v, MaxWindowDays)
			return
		}
	}
	if a.executedAt == nil {
		a.invalid = "the action has no executed_at"
		return
	}
	a.windows = windowsFor(dayOf(*a.executedAt), a.baselineDays, a.gapDays, a.measurementDays)
}

// Operations of a batch, in log order.
const (
	opLine    = iota + 1 // a line recorded or restated: its new state
	opRetract            // a line retracted
	opFinal              // a bill finalized
	opAction             // a remediation executed
)

type op struct {
	kind      int
	evKind    string
	tenant    string
	eventID   [16]byte
	tenantSeq int64
	line      *line
	retract   lineID
	final     *finalScope
	action    *action
}

// batch is a batch of events decoded.
type batch struct{ ops []op }

func plan(events []eventstore.Event) (*batch, error) {
	b := &batch{ops: make([]op, 0, len(events))}
	for _, ev := range events {
		if err := b.add(ev); err != nil {
			env := ev.Envelope
			return nil, fmt.Errorf("savings: event %s (tenant %s seq %d): %w", env.GetEventId(), env.GetTenantId(), env.GetTenantSeq(), err)
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
	o := op{evKind: eventstore.Kind(env), tenant: env.GetTenantId(), eventID: [16]byte(id), tenantSeq: int64(env.GetTenantSeq())}
	lineOf := func(l *tallyv1.CostLine) (*line, error) {
		eff, err := amount(l.GetEffectiveCost())
		if err != nil {
			return nil, fmt.Errorf("effective_cost: %w", err)
		}
		start := l.GetChargePeriodStart()
		if start == nil {
			start = l.GetScope().GetBillingPeriodStart()
		}
		return &line{id: idOf(o.tenant, l.GetScope(), l.GetLineKey()), resource: l.GetResourceId(), day: dayOf(start.AsTime()),
			currency: l.GetBillingCurrency(), effective: eff, eventID: o.eventID, tenantSeq: o.tenantSeq}, nil
	}
	switch body := env.GetBody().(type) {
	case *tallyv1.Envelope_CostLineRecorded:
		o.kind = opLine
		o.line, err = lineOf(body.CostLineRecorded.GetLine())
	case *tallyv1.Envelope_CostLineRestated:
		o.kind = opLine
		o.line, err = lineOf(body.CostLineRestated.GetLine())
	case *tallyv1.Envelope_CostLineRetracted:
		r := body.CostLineRetracted
		o.kind, o.retract = opRetract, idOf(o.tenant, r.GetScope(), r.GetLineKey())
	case *tallyv1.Envelope_BillingPeriodFinalized:
		s := body.BillingPeriodFinalized.GetScope()
		o.kind = opFinal
		o.final = &finalScope{scopeKey: scopeKey{o.tenant, s.GetProvider(), s.GetBillingAccountId(), s.GetBillingPeriodStart().AsTime().UnixMicro()},
			end: s.GetBillingPeriodEnd().AsTime().UnixMicro(), eventID: o.eventID, tenantSeq: o.tenantSeq}
	case *tallyv1.Envelope_RemediationExecuted:
		o.kind = opAction
		o.action, err = actionOf(o, env, body.RemediationExecuted)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	b.ops = append(b.ops, o)
	return nil
}

func actionOf(o op, env *tallyv1.Envelope, r *tallyv1.RemediationExecuted) (*action, error) {
	a := &action{key: actionKey{o.tenant, r.GetActionId()}, provider: r.GetProvider(), account: r.GetBillingAccountId(),
		resource: r.GetResourceId(), kind: kindName(r.GetKind()), tool: r.GetTool(), description: r.GetDescription(),
		actorKind: env.GetActor().GetKind().String(), actorID: env.GetActor().GetId(), expectedCurrency: r.GetCurrency(),
		baselineDays: orDefault(r.GetBaselineDays(), DefaultBaselineDays), gapDays: orDefault(r.GetGapDays(), DefaultGapDays),
		measurementDays: orDefault(r.GetMeasurementDays(), DefaultMeasurementDays), eventID: o.eventID, tenantSeq: o.tenantSeq}
	if s := r.GetExpectedDailySavings(); s != "" {
		d, err := amount(s)
		if err != nil {
			return nil, fmt.Errorf("expected_daily_savings: %w", err)
		}
		a.expected = &d
	}
	if r.GetExecutedAt() != nil {
		t := r.GetExecutedAt().AsTime().UTC()
		a.executedAt = &t
	}
	a.setWindows()
	return a, nil
}

// kindName is the remediation kind in lower case without its prefix ("stop",
// "commitment_purchase"); KindFromName reverses it.
func kindName(k tallyv1.RemediationKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "REMEDIATION_KIND_"))
}

// KindFromName is the RemediationKind of a stored kind name (UNSPECIFIED when unknown).
func KindFromName(s string) tallyv1.RemediationKind {
	return tallyv1.RemediationKind(tallyv1.RemediationKind_value["REMEDIATION_KIND_"+strings.ToUpper(s)])
}

func orDefault(v uint32, def int) int {
	if v == 0 {
		return def
	}
	if v > 1<<20 {
		return 1 << 20 // over MaxWindowDays anyway; keeps day arithmetic in range
	}
	return int(v)
}

func idOf(tenant string, s *tallyv1.BillScope, key string) lineID {
	return lineID{tenant: tenant, provider: s.GetProvider(), account: s.GetBillingAccountId(),
		start: s.GetBillingPeriodStart().AsTime().UnixMicro(), key: key}
}

// amount parses a decimal amount of an event; "" is 0 (proto3's empty string).
func amount(s string) (decimal.Decimal, error) {
	if s == "" {
		return decimal.Zero, nil
	}
	d, err := money.Parse(s)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("amount %q %w", s, err)
	}
	return d, nil
}

// inSchema puts sql's tables in schema.
func inSchema(sql, schema string) string {
	return strings.ReplaceAll(sql, "savings_schema.", pgx.Identifier{schema}.Sanitize()+".")
}
