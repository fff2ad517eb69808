package ingest_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/focusgen"
	"github.com/tally-ledger/tally/services/ingest"
)

// csvTotals sums BilledCost per BillingCurrency with encoding/csv and
// decimal, independently of the ingest code.
func csvTotals(t *testing.T, data []byte) map[string]decimal.Decimal {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	require.NoError(t, err)
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	out := map[string]decimal.Decimal{}
	for _, r := range recs[1:] {
		cur := r[col["BillingCurrency"]]
		out[cur] = out[cur].Add(dec(t, r[col["BilledCost"]]))
	}
	return out
}

// TestTinyRunsSumRowsAcrossRuns ingests a bill whose last rows repeat
// earlier ones with runs so small that a line's rows sit in different
// spilled runs: they are summed into one line, exactly, and the result does
// not depend on the run size.
func TestTinyRunsSumRowsAcrossRuns(t *testing.T) {
	e := newEnv(t)
	data, _ := generate(t, 21, 3000, nil)
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	require.NoError(t, err)
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	require.NoError(t, w.WriteAll(recs))
	require.NoError(t, w.WriteAll(recs[1:301])) // rows 1-300 again, at the end of the file
	w.Flush()
	dup := buf.Bytes()

	tmp := t.TempDir()
	sum, err := ingestBytes(t, e, "acme", "dup.csv", dup, ingest.Options{RunBytes: 16 << 10, TempDir: tmp})
	require.NoError(t, err)
	require.Equal(t, int64(3300), sum.RowsRead)
	require.Equal(t, int64(3000), sum.Lines)
	require.Equal(t, int64(3000), sum.Recorded)
	entries, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, entries, "the runs are removed")

	led := foldLog(t, e.store, "acme")
	require.Len(t, led.lines, 3000)
	requireSums(t, csvTotals(t, dup), currencyTotals(t, led))
	twice := 0
	for _, l := range led.lines {
		if l.line.GetRowCount() == 2 {
			twice++
		}
	}
	require.Equal(t, 300, twice)

	// One big run gives the same lines: nothing to append.
	again, err := ingestBytes(t, e, "acme", "dup.csv", dup, ingest.Options{})
	require.NoError(t, err)
	require.Zero(t, again.Appended)
	require.Equal(t, int64(3000), again.Unchanged)

	// A run per row: 3,300 runs, more than one merge reads at once, are
	// merged in groups first. The same lines, to the digit.
	tmp = t.TempDir()
	many, err := ingestBytes(t, e, "beta", "dup.csv", dup, ingest.Options{RunBytes: 1, TempDir: tmp})
	require.NoError(t, err)
	require.Equal(t, int64(3000), many.Recorded)
	entries, err = os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, entries, "the runs and the merged runs are removed")
	beta := foldLog(t, e.store, "beta")
	require.Len(t, beta.lines, len(led.lines))
	for k, l := range led.lines {
		b, ok := beta.lines[k]
		require.True(t, ok, "line %s", k)
		require.Equal(t, l.line.GetBilledCost(), b.line.GetBilledCost(), "line %s", k)
		require.Equal(t, l.line.GetRowCount(), b.line.GetRowCount(), "line %s", k)
	}
}

// TestTinyRunsFindRemovedLinesInEveryScope diffs a revision against the
// state with tiny runs: lines dropped from every scope are retracted,
// restated and added lines found, as with one run.
func TestTinyRunsFindRemovedLinesInEveryScope(t *testing.T) {
	e := newEnv(t)
	opts := ingest.Options{RunBytes: 32 << 10, BatchEvents: 500}
	orig, _ := generate(t, 13, 4000, nil)
	sum, err := ingestBytes(t, e, "acme", "v1.csv", orig, opts)
	require.NoError(t, err)
	require.Greater(t, sum.Scopes, 1)

	revised, diff := generate(t, 13, 4000, &focusgen.Revision{Seed: 5, Restated: 0.1, Dropped: 0.1, Added: 0.05})
	sum2, err := ingestBytes(t, e, "acme", "v2.csv", revised, opts)
	require.NoError(t, err)
	require.Equal(t, int64(diff.Restated), sum2.Restated)
	require.Equal(t, int64(diff.Dropped), sum2.Retracted)
	require.Equal(t, int64(diff.Added), sum2.Recorded)
	require.Equal(t, int64(diff.Unchanged), sum2.Unchanged)

	scopes := map[string]int{}
	require.NoError(t, e.store.Read(ctxT(t), eventstore.ReadFilter{Tenant: "acme"}, func(ev eventstore.Event) error {
		if r, ok := ev.Envelope.GetBody().(*tallyv1.Envelope_CostLineRetracted); ok {
			scopes[scopeID(r.CostLineRetracted.GetScope())]++
		}
		return nil
	}))
	require.Len(t, scopes, sum2.Scopes, "lines were dropped from every scope")
	led := foldLog(t, e.store, "acme")
	requireSums(t, genTotals(diff.After), currencyTotals(t, led))

	// Back to the first bill: the retracted lines are recorded again.
	sum3, err := ingestBytes(t, e, "acme", "v1-again.csv", orig, opts)
	require.NoError(t, err)
	require.Equal(t, int64(diff.Dropped), sum3.Recorded)
	require.Equal(t, int64(diff.Added), sum3.Retracted)
	requireSums(t, csvTotals(t, orig), currencyTotals(t, foldLog(t, e.store, "acme")))
}

// TestCanceledIngestResumes cancels an ingest after its first appended
// batch, with more batches in the pipeline: it fails, leaves no runs behind,
// and the same ingest run again appends exactly what is missing.
func TestCanceledIngestResumes(t *testing.T) {
	e := newEnv(t)
	data, d := generate(t, 17, 3000, nil)
	tmp := t.TempDir()
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	r, err := focus.NewReader(bytes.NewReader(data), "bill.csv", focus.FormatAuto)
	require.NoError(t, err)
	first, err := ingest.Ingest(ctx, e.store, e.pool, "acme", r, ingest.Options{BatchEvents: 200, TempDir: tmp, RunBytes: 64 << 10,
		Progress: func(p ingest.Progress) {
			if p.Stage == "append" {
				cancel()
			}
		}})
	r.Close()
	require.Error(t, err)
	require.Less(t, first.Appended, int64(3000))
	entries, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, entries, "the runs are removed")

	sum, err := ingestBytes(t, e, "acme", "bill.csv", data, ingest.Options{BatchEvents: 200})
	require.NoError(t, err)
	require.Equal(t, int64(3000), first.Appended+sum.Appended)
	led := foldLog(t, e.store, "acme") // fails on a line recorded twice
	require.Len(t, led.lines, 3000)
	requireSums(t, genTotals(d.After), currencyTotals(t, led))

	again, err := ingestBytes(t, e, "acme", "bill.csv", data, ingest.Options{})
	require.NoError(t, err)
	require.Zero(t, again.Appended)
	require.Equal(t, int64(3000), again.Unchanged)
}
