package changelog

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tally-ledger/tally/eventstore"
)

const (
	// Name of the projection and of its live PostgreSQL schema.
	Name = "changelog"
	// Version of the fold and tables; bump it to rebuild on deploy.
	Version = 1
)

// ErrInvalid: a query the caller must fix (bad tenant, kind, period, window, page token). The
// gateway maps it to InvalidArgument.
var ErrInvalid = errors.New("invalid change-log query")

//go:embed schema.sql
var schemaSQL string

// Projection folds configuration events into the change log. The zero value is ready.
type Projection struct{}

// New returns the change-log projection.
func New() *Projection { return &Projection{} }

// Name implements projections.Projection.
func (*Projection) Name() string { return Name }

// Version implements projections.Projection.
func (*Projection) Version() int { return Version }

// Kinds implements projections.Projection.
func (*Projection) Kinds() []string { return Kinds() }

// Setup implements projections.Projection: it creates the tables in schema.
func (*Projection) Setup(ctx context.Context, tx pgx.Tx, schema string) error {
	if _, err := tx.Exec(ctx, inSchema(schemaSQL, schema)); err != nil {
		return fmt.Errorf("create changelog tables: %w", err)
	}
	return nil
}

var changeColumns = []string{"tenant_id", "tenant_seq", "event_id", "kind", "item", "item_key", "actor_kind", "actor_id",
	"approver_kind", "approver_id", "occurred_at", "recorded_at", "before", "after", "diff"}

// itemRef names one item of one tenant.
type itemRef struct{ tenant, item, key string }

// itemState is an item's document and the tenant sequence of its last event.
type itemState struct {
	doc doc
	seq int64
}

// Apply implements projections.Projection: it loads the items the batch touches, folds the
// events in order in memory, then COPYs the changes and upserts the items.
func (*Projection) Apply(ctx context.Context, tx pgx.Tx, schema string, events []eventstore.Event) error {
	type planned struct {
		ev  eventstore.Event
		ref itemRef
		ch  *change
	}
	var plan []planned
	refs := map[itemRef]bool{}
	for _, ev := range events {
		ch, err := changeOf(ev.Envelope)
		if err != nil {
			return eventErr(ev, err)
		}
		if ch == nil {
			continue
		}
		ref := itemRef{ev.Envelope.GetTenantId(), ch.item, ch.key}
		refs[ref] = true
		plan = append(plan, planned{ev, ref, ch})
	}
	if len(plan) == 0 {
		return nil
	}
	state, err := loadItems(ctx, tx, schema, refs)
	if err != nil {
		return err
	}
	rows := make([][]any, 0, len(plan))
	for _, p := range plan {
		env := p.ev.Envelope
		before := state[p.ref]
		var beforeDoc doc
		if before != nil {
			beforeDoc = before.doc
		}
		after, err := p.ch.next(clone(beforeDoc))
		if err != nil {
			return eventErr(p.ev, err)
		}
		diff, err := Diff(beforeDoc, after)
		if err != nil {
			return eventErr(p.ev, err)
		}
		id, err := uuid.Parse(env.GetEventId())
		if err != nil {
			return eventErr(p.ev, fmt.Errorf("event id: %w", err))
		}
		beforeJSON, afterJSON, diffJSON, err := encodeRow(beforeDoc, after, diff)
		if err != nil {
			return eventErr(p.ev, err)
		}
		actorKind, actorID := actorCols(env.GetActor())
		approverKind, approverID := actorCols(p.ch.approver)
		var occurred any
		if env.GetOccurredAt() != nil {
			occurred = env.GetOccurredAt().AsTime()
		}
		seq := int64(env.GetTenantSeq())
		rows = append(rows, []any{p.ref.tenant, seq, [16]byte(id), eventstore.Kind(env), p.ref.item, p.ref.key,
			actorKind, actorID, approverKind, approverID, occurred, env.GetRecordedAt().AsTime(), beforeJSON, afterJSON, diffJSON})
		state[p.ref] = &itemState{doc: after, seq: seq}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{schema, "changes"}, changeColumns, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("changelog: copy changes: %w", err)
	}
	return saveItems(ctx, tx, schema, state, refs)
}

func eventErr(ev eventstore.Event, err error) error {
	env := ev.Envelope
	return fmt.Errorf("changelog: event %s (tenant %s seq %d): %w", env.GetEventId(), env.GetTenantId(), env.GetTenantSeq(), err)
}

// encodeRow encodes a change's JSON columns; before is nil (SQL NULL) for an item's first event.
func encodeRow(before, after doc, diff []FieldChange) (beforeJSON any, afterJSON, diffJSON string, err error) {
	if before != nil {
		b, err := encodeJSON(before)
		if err != nil {
			return nil, "", "", err
		}
		beforeJSON = string(b)
	}
	a, err := encodeJSON(after)
	if err != nil {
		return nil, "", "", err
	}
	d, err := encodeJSON(diff)
	if err != nil {
		return nil, "", "", err
	}
	return beforeJSON, string(a), string(d), nil
}

// loadItems reads the current documents of refs.
func loadItems(ctx context.Context, tx pgx.Tx, schema string, refs map[itemRef]bool) (map[itemRef]*itemState, error) {
	var tenants, items, keys []string
	for r := range refs {
		tenants, items, keys = append(tenants, r.tenant), append(items, r.item), append(keys, r.key)
	}
	rows, err := tx.Query(ctx, inSchema(`SELECT i.tenant_id, i.item, i.item_key, i.doc::text, i.tenant_seq
FROM changelog_schema.items i
JOIN unnest($1::text[], $2::text[], $3::text[]) AS r(tenant_id, item, item_key) USING (tenant_id, item, item_key)`, schema),
		tenants, items, keys)
	if err != nil {
		return nil, fmt.Errorf("changelog: load items: %w", err)
	}
	defer rows.Close()
	out := map[itemRef]*itemState{}
	for rows.Next() {
		var r itemRef
		var text string
		var seq int64
		if err := rows.Scan(&r.tenant, &r.item, &r.key, &text, &seq); err != nil {
			return nil, fmt.Errorf("changelog: load items: %w", err)
		}
		d, err := decodeDoc([]byte(text))
		if err != nil {
			return nil, err
		}
		out[r] = &itemState{doc: d, seq: seq}
	}
	return out, rows.Err()
}

// saveItems upserts the documents of refs from state.
func saveItems(ctx context.Context, tx pgx.Tx, schema string, state map[itemRef]*itemState, refs map[itemRef]bool) error {
	var tenants, items, keys, docs []string
	var seqs []int64
	for r := range refs {
		s := state[r]
		b, err := encodeJSON(s.doc)
		if err != nil {
			return err
		}
		tenants, items, keys, docs, seqs = append(tenants, r.tenant), append(items, r.item), append(keys, r.key),
			append(docs, string(b)), append(seqs, s.seq)
	}
	_, err := tx.Exec(ctx, inSchema(`INSERT INTO changelog_schema.items (tenant_id, item, item_key, doc, tenant_seq)
SELECT t, i, k, d::jsonb, s FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS u(t, i, k, d, s)
ON CONFLICT (tenant_id, item, item_key) DO UPDATE SET doc = excluded.doc, tenant_seq = excluded.tenant_seq`, schema),
		tenants, items, keys, docs, seqs)
	if err != nil {
		return fmt.Errorf("changelog: save items: %w", err)
	}
	return nil
}

// inSchema puts sql's tables in schema.
func inSchema(sql, schema string) string {
	return strings.ReplaceAll(sql, "changelog_schema.", pgx.Identifier{schema}.Sanitize()+".")
}
