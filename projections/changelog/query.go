package changelog

import (
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/storage"
)

// Page sizes of List.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// DB is what the queries need of a database; *pgxpool.Pool has it.
type DB interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Queries reads the live change-log tables.
type Queries struct {
	db     DB
	schema string
}

// NewQueries returns queries over the live schema of db.
func NewQueries(db DB) *Queries { return &Queries{db: db, schema: Name} }

// NewQueriesIn returns queries over schema (a rebuild's copy, in tests).
func NewQueriesIn(db DB, schema string) *Queries { return &Queries{db: db, schema: schema} }

// Principal is an actor as stored: its kind's name ("ACTOR_KIND_USER") and id; both empty for
// none.
type Principal struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// String is "kind:id" without the ACTOR_KIND_ prefix ("USER:alice"), or "" for none.
func (p Principal) String() string {
	if p.ID == "" && p.Kind == "" {
		return ""
	}
	return strings.TrimPrefix(p.Kind, "ACTOR_KIND_") + ":" + p.ID
}

// Change is one configuration event and its effect on its item.
type Change struct {
	TenantSeq uint64
	EventID   string
	Kind      string
	Item      string
	Key       string
	Actor     Principal
	Approver  Principal
	// OccurredAt (zero when the event had none) and RecordedAt, to the microsecond.
	OccurredAt time.Time
	RecordedAt time.Time
	// Before is the item before the event as a JSON object, or "null" for its first event;
	// After is the item after it.
	Before, After json.RawMessage
	Diff          []FieldChange
}

// ListQuery selects changes of one tenant; every filter given must match.
type ListQuery struct {
	Tenant string
	// Kinds keeps these event kinds (see Kinds); empty keeps all.
	Kinds []string
	// From and To bound recorded_at: From <= recorded_at < To, to the microsecond; zero
	// leaves that side open.
	From, To time.Time
	// Limit is the page size: 0 means DefaultLimit, more than MaxLimit means MaxLimit.
	Limit int
	// PageToken continues after the page that returned it.
	PageToken string
}

// Page is one page of changes, newest first; Next continues it ("" on the last page).
type Page struct {
	Changes []Change
	Next    string
}

// List returns a page of q.Tenant's changes, newest (highest tenant sequence) first.
//
// Errors: ErrInvalid (bad tenant, kind, window or page token); database errors.
func (q *Queries) List(ctx context.Context, lq ListQuery) (Page, error) {
	if err := eventstore.ValidateTenant(lq.Tenant); err != nil {
		return Page{}, fmt.Errorf("%w: tenant: %w", ErrInvalid, err)
	}
	ks, err := sortedKinds(lq.Kinds)
	if err != nil {
		return Page{}, err
	}
	if !lq.From.IsZero() && !lq.To.IsZero() && !lq.To.After(lq.From) {
		return Page{}, fmt.Errorf("%w: to (%s) must be after from (%s)", ErrInvalid, lq.To.Format(time.RFC3339), lq.From.Format(time.RFC3339))
	}
	before := int64(math.MaxInt64)
	if lq.PageToken != "" {
		if before, err = decodeToken(lq.PageToken); err != nil {
			return Page{}, err
		}
	}
	limit := lq.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	var page Page
	err = q.read(ctx, `SELECT `+selectColumns+` FROM changelog_schema.changes
WHERE tenant_id = $1 AND tenant_seq < $2 AND (cardinality($3::text[]) = 0 OR kind = ANY($3))
  AND ($4::timestamptz IS NULL OR recorded_at >= $4) AND ($5::timestamptz IS NULL OR recorded_at < $5)
ORDER BY tenant_seq DESC LIMIT $6`, func(c Change) error {
		page.Changes = append(page.Changes, c)
		return nil
	}, lq.Tenant, before, ks, optTime(lq.From), optTime(lq.To), limit+1)
	if err != nil {
		return Page{}, err
	}
	if len(page.Changes) > limit {
		page.Changes = page.Changes[:limit]
		page.Next = encodeToken(page.Changes[limit-1].TenantSeq)
	}
	return page, nil
}

// CSVHeader is the header of WriteCSV.
var CSVHeader = []string{"tenant_seq", "recorded_at", "occurred_at", "kind", "item", "key", "actor", "approver",
	"event_id", "changed_fields", "before", "after", "diff"}

// WriteCSV writes tenant's changes recorded in period ("YYYY-MM", the UTC month of
// recorded_at; "" for every change) as CSV, in log order, one change a row (CSVHeader):
// times in RFC 3339 UTC, actors as "KIND:id", changed_fields the diff's paths joined with
// ";", and before, after and diff as JSON.
//
// Errors: ErrInvalid (bad tenant or period); database errors; w's errors.
func (q *Queries) WriteCSV(ctx context.Context, w io.Writer, tenant, period string) error {
	if err := eventstore.ValidateTenant(tenant); err != nil {
		return fmt.Errorf("%w: tenant: %w", ErrInvalid, err)
	}
	var from, to any
	if period != "" {
		start, err := time.Parse("2006-01", period)
		if err != nil || len(period) != 7 {
			return fmt.Errorf("%w: period %q is not YYYY-MM", ErrInvalid, period)
		}
		from, to = start, start.AddDate(0, 1, 0)
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	err := q.read(ctx, `SELECT `+selectColumns+` FROM changelog_schema.changes
WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR recorded_at >= $2) AND ($3::timestamptz IS NULL OR recorded_at < $3)
ORDER BY tenant_seq`, func(c Change) error {
		fields := make([]string, len(c.Diff))
		for i, f := range c.Diff {
			fields[i] = f.Field
		}
		diff, err := encodeJSON(c.Diff)
		if err != nil {
			return err
		}
		return cw.Write([]string{strconv.FormatUint(c.TenantSeq, 10), stamp(c.RecordedAt), stamp(c.OccurredAt), c.Kind, c.Item, c.Key,
			c.Actor.String(), c.Approver.String(), c.EventID, strings.Join(fields, ";"), string(c.Before), string(c.After), string(diff)})
	}, tenant, from, to)
	if err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

const selectColumns = `tenant_seq, event_id::text, kind, item, item_key, actor_kind, actor_id, approver_kind, approver_id,
    occurred_at, recorded_at, coalesce(before::text, 'null'), after::text, diff::text`

// read runs sql in one read-only snapshot as the tenant (args[0], which every query filters
// on): storage.ReadAsTenantTx, so that row-level security is a second wall behind the
// query's tenant filter. It hands each change to fn.
func (q *Queries) read(ctx context.Context, sql string, fn func(Change) error, args ...any) error {
	tenant, _ := args[0].(string)
	return storage.ReadAsTenantTx(ctx, q.db, tenant, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		return q.readIn(ctx, tx, sql, fn, args...)
	})
}

func (q *Queries) readIn(ctx context.Context, tx pgx.Tx, sql string, fn func(Change) error, args ...any) error {
	rows, err := tx.Query(ctx, inSchema(sql, q.schema), args...)
	if err != nil {
		return fmt.Errorf("changelog: query: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c Change
		var seq int64
		var occurred *time.Time
		var before, after, diff string
		if err := rows.Scan(&seq, &c.EventID, &c.Kind, &c.Item, &c.Key, &c.Actor.Kind, &c.Actor.ID, &c.Approver.Kind, &c.Approver.ID,
			&occurred, &c.RecordedAt, &before, &after, &diff); err != nil {
			return fmt.Errorf("changelog: scan: %w", err)
		}
		c.TenantSeq = uint64(seq)
		if occurred != nil {
			c.OccurredAt = occurred.UTC()
		}
		c.RecordedAt = c.RecordedAt.UTC()
		if c.Before, err = compact(before); err != nil {
			return err
		}
		if c.After, err = compact(after); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(diff), &c.Diff); err != nil {
			return fmt.Errorf("changelog: diff of seq %d: %w", seq, err)
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return rows.Err()
}

// compact re-encodes a JSON document read from jsonb in the package's canonical form:
// compact, keys sorted bytewise (jsonb sorts them by length first).
func compact(s string) (json.RawMessage, error) {
	if s == "null" {
		return json.RawMessage(s), nil
	}
	d, err := decodeDoc([]byte(s))
	if err != nil {
		return nil, err
	}
	b, err := encodeJSON(d)
	return json.RawMessage(b), err
}

// optTime is a bound of a window, or NULL. PostgreSQL keeps microseconds and pgx truncates
// to them, so the bound is truncated the same way: a From equal to an event's recorded_at,
// as the log gave it in nanoseconds, includes the event.
func optTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Truncate(time.Microsecond)
}

// Page tokens are opaque to clients: the tenant sequence the next page starts below.
func encodeToken(seq uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1:" + strconv.FormatUint(seq, 10)))
}

func decodeToken(tok string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	s, ok := strings.CutPrefix(string(b), "v1:")
	n, perr := strconv.ParseInt(s, 10, 64)
	if err != nil || !ok || perr != nil || n <= 0 {
		return 0, fmt.Errorf("%w: page token %q is not one this server gave", ErrInvalid, tok)
	}
	return n, nil
}
