package ledger_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tally-ledger/tally/projections/ledger"
)

// errCaptured ends a query once its SQL has been captured.
var errCaptured = errors.New("captured")

// captureQuerier records the SQL and arguments of the one query Cost sends,
// so that validation and SQL building run without a database.
type captureQuerier struct {
	calls int
	sql   string
	args  []any
}

func (c *captureQuerier) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	return pgconn.CommandTag{}, errors.New("Exec: cost queries never write")
}

func (c *captureQuerier) Query(_ context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.calls++
	c.sql, c.args = sql, args
	return nil, errCaptured
}

func (c *captureQuerier) QueryRow(context.Context, string, ...any) pgx.Row {
	panic("QueryRow: cost queries use Query")
}

// costSQL runs Cost against a captureQuerier: accepted reports whether q
// passed validation and reached the database.
func costSQL(t *testing.T, q ledger.Query) (c captureQuerier, accepted bool) {
	t.Helper()
	_, err := ledger.NewQueries(&c).Cost(context.Background(), q)
	switch {
	case errors.Is(err, errCaptured):
		if c.calls != 1 {
			t.Fatalf("accepted query sent %d statements, want 1", c.calls)
		}
		return c, true
	case errors.Is(err, ledger.ErrInvalidQuery):
		if c.calls != 0 {
			t.Fatalf("refused query (%v) still reached the database", err)
		}
		return c, false
	default:
		t.Fatalf("Cost: unexpected error %v", err)
		return c, false
	}
}

// fuzzTime maps a fuzzed number of seconds to a time within a few centuries
// of 1970 (0 stays the zero time: an open end).
func fuzzTime(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	const span = 400 * 366 * 24 * 3600
	return time.Unix(sec%span, 0).UTC()
}

func hasArg(args []any, want any) bool {
	for _, a := range args {
		switch a := a.(type) {
		case string:
			if w, ok := want.(string); ok && a == w {
				return true
			}
		case []string:
			if w, ok := want.([]string); ok && slices.Equal(a, w) {
				return true
			}
		}
	}
	return false
}

// FuzzCostQuery checks the validation and SQL building of Cost on arbitrary
// filters: it never panics; it refuses unknown dimensions, bad tenants,
// reversed ranges and bad currency codes before touching the database; and an
// accepted query's SQL text depends only on the query's shape, never on a
// tenant, dimension value, tag key, tag value or currency, which reach
// PostgreSQL only as parameters. The shape check is made by building the same
// query with those values replaced by harmless ones and requiring the same
// SQL text.
func FuzzCostQuery(f *testing.F) {
	day := int64(1740787200) // 2025-03-01T00:00:00Z
	f.Add("acme", "service_name", "EC2", "team", "web", "region_id", "env", uint8(1), day, day+31*86400, uint8(0), "")
	f.Add("acme", "provider", "aws", "", "", "provider", "", uint8(2), day, day+86400, uint8(2), "EUR")
	f.Add("acme", "sku_id", "x'); DROP TABLE lines; --", "k'--", "$1", "sku_id", "o'brien", uint8(0), day+1, day+7, uint8(1), "usd")
	f.Add("Acme", "service", "EC2", "team", "web", "region", "", uint8(3), day+86400, day, uint8(0), "US")
	f.Add("acme", "billing_account_id; --", "a", "b", "c", "l.tags", "d", uint8(1), int64(0), int64(0), uint8(0), "U$D")
	f.Fuzz(func(t *testing.T, tenant, dim, dimValue, tagKey, tagValue, groupDim, groupTag string,
		gran uint8, fromSec, toSec int64, final uint8, normalize string) {
		withTags := tagKey != "" || tagValue != ""
		build := func(tenant, dimValue, tagKey, tagValue, groupTag, normalize string) ledger.Query {
			q := ledger.Query{
				Filter: ledger.Filter{
					Tenant:     tenant,
					From:       fuzzTime(fromSec),
					To:         fuzzTime(toSec),
					Dimensions: map[ledger.Dimension][]string{ledger.Dimension(dim): {dimValue, dimValue + "'"}},
				},
				Granularity: ledger.Granularity(gran % 4),
				Normalize:   normalize,
			}
			if withTags {
				q.Tags = map[string][]string{tagKey: {tagValue}}
			}
			if groupDim != "" {
				q.GroupBy = []ledger.Dimension{ledger.Dimension(groupDim)}
			}
			if groupTag != "" {
				q.GroupByTags = []string{groupTag}
			}
			switch final % 3 {
			case 1:
				q.Final = new(false)
			case 2:
				q.Final = new(true)
			}
			return q
		}
		q := build(tenant, dimValue, tagKey, tagValue, groupTag, normalize)
		got, accepted := costSQL(t, q)
		if !accepted {
			return
		}
		if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
			t.Fatalf("accepted a range from %s to %s", q.From, q.To)
		}

		// The same shape with harmless values must give the same SQL text.
		safeNorm := ""
		if normalize != "" {
			safeNorm = "USD"
		}
		safeGroupTag := ""
		if groupTag != "" {
			safeGroupTag = "g"
		}
		safe := build("t", "v", "k", "v", safeGroupTag, safeNorm)
		want, ok := costSQL(t, safe)
		if !ok {
			t.Fatalf("the query with harmless values was refused; the fuzzed one was accepted")
		}
		if got.sql != want.sql {
			t.Fatalf("SQL text depends on user values:\n--- fuzzed\n%s\n--- harmless\n%s", got.sql, want.sql)
		}
		if len(got.args) != len(want.args) {
			t.Fatalf("%d parameters, %d with harmless values", len(got.args), len(want.args))
		}
		for name, v := range map[string]any{
			"tenant": tenant, "dimension values": []string{dimValue, dimValue + "'"},
		} {
			if !hasArg(got.args, v) {
				t.Fatalf("%s %q not passed as a parameter: %#v", name, v, got.args)
			}
		}
		if q.Tags != nil && (!hasArg(got.args, tagKey) || !hasArg(got.args, []string{tagValue})) {
			t.Fatalf("tag %q=%q not passed as parameters: %#v", tagKey, tagValue, got.args)
		}
		if groupTag != "" && !hasArg(got.args, groupTag) {
			t.Fatalf("group-by tag %q not passed as a parameter: %#v", groupTag, got.args)
		}
	})
}
