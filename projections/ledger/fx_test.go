package ledger_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// normalized is a tenant's normalized totals as strings: the grand total, final and
// preliminary, and each billing currency's total with its normalized equivalent.
func normalized(t testing.TB, q *ledger.Queries, f ledger.Filter, to string) map[string]string {
	t.Helper()
	n, err := q.NormalizedTotals(t.Context(), f, to)
	require.NoError(t, err)
	out := map[string]string{
		"total":       n.Currency + " " + n.Billed.String(),
		"effective":   n.Effective.String(),
		"list":        n.List.String(),
		"final":       n.FinalBilled.String(),
		"preliminary": n.PreliminaryBilled.String(),
		"lines":       fmt.Sprint(n.Lines),
	}
	for _, c := range n.ByCurrency {
		out[c.Currency] = c.Billed.String() + " = " + c.Normalized.Currency + " " + c.Normalized.Billed.String()
	}
	return out
}

// TestNormalize: EUR and USD lines across days, EUR→USD rates recorded as events, folded from
// a real log into a real database; normalized amounts are the hand-computed exact sums.
func TestNormalize(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	appendEvents(t, e.store, "acme",
		recorded("acme", line("acct-1", "k1", "EC2", 1, "100.00", "USD")),
		recorded("acme", line("acct-1", "k2", "EC2", 1, "10.00", "EUR")),
		recorded("acme", line("acct-1", "k3", "S3", 2, "20.50", "EUR")),
		recorded("acme", line("acct-2", "k4", "S3", 4, "3.35", "EUR")),
		finalized("acme", "acct-1"))
	appendEvents(t, e.store, "acme",
		fxRate("acme", "EUR", "USD", "2026-01-01", "1.0850", "v1"),
		fxRate("acme", "EUR", "USD", "2026-01-02", "1.0921", "v1"),
		fxRate("acme", "EUR", "USD", "2026-01-03", "1.1", "v1"),
		// Neither the opposite pair nor another tenant's rate is ever used.
		fxRate("acme", "USD", "EUR", "2026-01-04", "0.5", "v1"))
	appendEvents(t, e.store, "other", fxRate("other", "EUR", "USD", "2026-01-04", "9.99", "v1"))
	require.NoError(t, e.runner(t, projections.Options{BatchEvents: 3}).CatchUp(ctx))
	q := ledger.NewQueries(e.pool)

	// k1 100.00 USD, already USD                                   = 100.00
	// k2  10.00 EUR on Jan 1 × 1.0850 (Jan 1's rate)               =  10.850000
	// k3  20.50 EUR on Jan 2 × 1.0921 (Jan 2's rate)               =  22.388050
	// k4   3.35 EUR on Jan 4 × 1.1    (no Jan 4 rate: Jan 3's)     =   3.685
	// EUR 10.00 + 20.50 + 3.35 = 33.85 → 10.85 + 22.38805 + 3.685  =  36.92305
	// all: 100 + 36.92305                                          = 136.92305
	// final (acct-1: k1, k2, k3): 100 + 10.85 + 22.38805           = 133.23805; preliminary (k4) 3.685
	want := map[string]string{
		"total": "USD 136.92305", "effective": "136.92305", "list": "136.92305",
		"final": "133.23805", "preliminary": "3.685", "lines": "4",
		"EUR": "33.85 = USD 36.92305", "USD": "100 = USD 100",
	}
	acme := ledger.Filter{Tenant: "acme"}
	require.Equal(t, want, normalized(t, q, acme, "USD"))
	require.Equal(t, want, normalized(t, q, acme, "usd"), "the target's case does not matter")

	// Per day, from the daily rollup and from the lines (a tag filter reads lines): the same.
	for name, f := range map[string]ledger.Filter{
		"daily": acme,
		"lines": {Tenant: "acme", Tags: map[string][]string{"team": {"team-E", "team-S"}}},
	} {
		rows, err := q.Cost(ctx, ledger.Query{Filter: f, Granularity: ledger.ByDay, Normalize: "USD"})
		require.NoError(t, err, name)
		got := map[string]string{}
		for _, r := range rows {
			got[r.Period.Format(time.DateOnly)+" "+r.Currency] = r.Normalized.Billed.String()
		}
		require.Equal(t, map[string]string{
			"2026-01-01 USD": "100", "2026-01-01 EUR": "10.85", "2026-01-02 EUR": "22.38805", "2026-01-04 EUR": "3.685",
		}, got, name)
	}

	// Rounding is for display only, half to even, once on the figure shown:
	// 3.685 → 3.68 (half-up would say 3.69), 22.38805 → 22.39, 136.92305 → 136.92.
	n, err := q.NormalizedTotals(ctx, acme, "USD")
	require.NoError(t, err)
	require.Equal(t, "136.92", n.Round(2).Billed.StringFixed(2))
	rows, err := q.Cost(ctx, ledger.Query{Filter: acme, Granularity: ledger.ByDay, Normalize: "USD"})
	require.NoError(t, err)
	require.Equal(t, "3.68", rows[len(rows)-1].Normalized.Round(2).Billed.StringFixed(2))

	// Without Normalize nothing changes: no normalized amounts, and no rate is needed.
	plain, err := q.Totals(ctx, acme)
	require.NoError(t, err)
	require.Len(t, plain, 2)
	require.Nil(t, plain[0].Normalized)

	_, err = q.Cost(ctx, ledger.Query{Filter: acme, Normalize: "US"})
	require.ErrorIs(t, err, ledger.ErrInvalidQuery)
}

// TestNormalizeMissingRate: a line with no rate on or before its day fails the whole query
// with an error naming the pair and the first day missing: never a partial total, never 1.0.
func TestNormalizeMissingRate(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	appendEvents(t, e.store, "acme",
		recorded("acme", line("acct-1", "k1", "EC2", 3, "10", "EUR")),
		recorded("acme", line("acct-1", "k2", "EC2", 5, "10", "EUR")),
		recorded("acme", line("acct-1", "k3", "EC2", 7, "10", "EUR")),
		recorded("acme", line("acct-1", "k4", "EC2", 1, "10", "USD")),
		fxRate("acme", "EUR", "USD", "2026-01-06", "1.2", "v1"))
	r := e.runner(t, projections.Options{})
	require.NoError(t, r.CatchUp(ctx))
	q := ledger.NewQueries(e.pool)

	for name, f := range map[string]ledger.Filter{
		"daily": {Tenant: "acme"},
		"lines": {Tenant: "acme", Tags: map[string][]string{"team": {"team-E"}}},
	} {
		_, err := q.NormalizedTotals(ctx, f, "USD")
		require.ErrorIs(t, err, ledger.ErrMissingRate, name)
		var missing *ledger.MissingRateError
		require.True(t, errors.As(err, &missing), name)
		require.Equal(t, ledger.MissingRateError{Tenant: "acme", From: "EUR", To: "USD", Day: "2026-01-03"}, *missing, name)
		require.Contains(t, err.Error(), "EUR→USD", name)
		require.Contains(t, err.Error(), "2026-01-03", name)

		rows, err := q.Cost(ctx, ledger.Query{Filter: f, Granularity: ledger.ByDay, Normalize: "USD"})
		require.ErrorIs(t, err, ledger.ErrMissingRate, name)
		require.Nil(t, rows, "no partial answer")
	}

	// Only the lines of the answer need a rate: from Jan 6 on, Jan 6's rate covers all.
	n, err := q.NormalizedTotals(ctx, ledger.Filter{Tenant: "acme", From: period.AddDate(0, 0, 5)}, "USD")
	require.NoError(t, err)
	require.Equal(t, "12", n.Billed.String(), "k3: 10 × 1.2")

	// Record the missing days' rates: the first missing day is now Jan 5; then none.
	appendEvents(t, e.store, "acme", fxRate("acme", "EUR", "USD", "2026-01-03", "1.1", "v1"))
	require.NoError(t, r.CatchUp(ctx))
	n, err = q.NormalizedTotals(ctx, ledger.Filter{Tenant: "acme"}, "USD")
	require.NoError(t, err)
	// k4 10 USD + k1 10 × 1.1 (Jan 3) + k2 10 × 1.1 (Jan 5: Jan 3's) + k3 10 × 1.2 (Jan 7: Jan 6's)
	// = 10 + 11 + 11 + 12 = 44
	require.Equal(t, "44", n.Billed.String())

	// A currency with no rate to the target at all.
	_, err = q.NormalizedTotals(ctx, ledger.Filter{Tenant: "acme"}, "GBP")
	var missing *ledger.MissingRateError
	require.ErrorAs(t, err, &missing)
	require.Equal(t, ledger.MissingRateError{Tenant: "acme", From: "USD", To: "GBP", Day: "2026-01-01"}, *missing)
}

// TestNormalizeReplayAndRestatedRate: a rate restated later (a new event for the same pair and
// day) changes the result; replaying the log into an empty database, in one batch or event by
// event, and a zero-downtime rebuild, give the same normalized totals.
func TestNormalizeReplayAndRestatedRate(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	appendEvents(t, e.store, "acme",
		recorded("acme", line("acct-1", "k1", "EC2", 1, "100.00", "USD")),
		recorded("acme", line("acct-1", "k2", "EC2", 1, "10.00", "EUR")),
		recorded("acme", line("acct-1", "k3", "S3", 2, "20.50", "EUR")),
		fxRate("acme", "EUR", "USD", "2026-01-01", "1.0850", "v1"),
		fxRate("acme", "EUR", "USD", "2026-01-02", "1.0921", "v1"))
	r := e.runner(t, projections.Options{})
	require.NoError(t, r.CatchUp(ctx))
	q := ledger.NewQueries(e.pool)
	acme := ledger.Filter{Tenant: "acme"}
	// 100 + 10.00 × 1.0850 + 20.50 × 1.0921 = 100 + 10.85 + 22.38805 = 133.23805
	require.Equal(t, "USD 133.23805", normalized(t, q, acme, "USD")["total"])

	// The provider's Jan 2 rate is restated: 20.50 × 1.1000 = 22.55; 100 + 10.85 + 22.55 = 133.40.
	appendEvents(t, e.store, "acme", fxRate("acme", "EUR", "USD", "2026-01-02", "1.1000", "v2"))
	require.NoError(t, r.CatchUp(ctx))
	want := normalized(t, q, acme, "USD")
	require.Equal(t, "USD 133.4", want["total"])
	require.Equal(t, "30.5 = USD 33.4", want["EUR"])
	var rate, eventID string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT rate::text, event_id::text FROM ledger.fx_rates
		WHERE tenant_id = 'acme' AND from_currency = 'EUR' AND to_currency = 'USD' AND day = '2026-01-02'`).Scan(&rate, &eventID))
	require.Equal(t, "1.1000", rate)
	require.Equal(t, fxRate("acme", "EUR", "USD", "2026-01-02", "1.1000", "v2").GetEventId(), eventID, "the later event replaced the rate")
	live := checksum(t, e.pool, ledger.Name)

	// Replay into empty databases: the restatement in the same batch as the first rate, and
	// event by event.
	for _, batch := range []int{1, 1000} {
		pool, _ := pgtest.NewDB(t)
		r2, err := projections.NewRunner(pool, e.store, projections.Options{BatchEvents: batch}, ledger.New())
		require.NoError(t, err)
		require.NoError(t, r2.CatchUp(ctx))
		require.Equal(t, want, normalized(t, ledger.NewQueries(pool), acme, "USD"), "batch %d", batch)
		require.Equal(t, live, checksum(t, pool, ledger.Name), "batch %d", batch)
	}

	// A zero-downtime rebuild beside the live copy, then swapped in.
	require.NoError(t, r.Rebuild(ctx, ledger.Name, nil))
	require.Equal(t, want, normalized(t, q, acme, "USD"))
	require.Equal(t, live, checksum(t, e.pool, ledger.Name))
}
