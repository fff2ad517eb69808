package ingest_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/focusgen"
	"github.com/tally-ledger/tally/services/ingest"
)

// logMessage is one log message as read back: its events' kinds and lines.
type logMessage struct {
	streamSeq uint64
	kinds     []string
	lines     []string // scope NUL line key of each line event
	bytes     int
}

// readMessages reads the tenant's log messages from stream sequence from on,
// grouping the events by the message that holds them.
func readMessages(t *testing.T, st *eventstore.Store, tenant string, from uint64) []logMessage {
	t.Helper()
	var out []logMessage
	require.NoError(t, st.Read(ctxT(t), eventstore.ReadFilter{Tenant: tenant, FromStreamSeq: from}, func(ev eventstore.Event) error {
		if len(out) == 0 || out[len(out)-1].streamSeq != ev.StreamSeq {
			out = append(out, logMessage{streamSeq: ev.StreamSeq})
		}
		m := &out[len(out)-1]
		m.kinds = append(m.kinds, eventstore.Kind(ev.Envelope))
		m.bytes += len(ev.Raw)
		switch b := ev.Envelope.GetBody().(type) {
		case *tallyv1.Envelope_CostLineRecorded:
			l := b.CostLineRecorded.GetLine()
			m.lines = append(m.lines, scopeID(l.GetScope())+"\x00"+l.GetLineKey())
		case *tallyv1.Envelope_CostLineRestated:
			l := b.CostLineRestated.GetLine()
			m.lines = append(m.lines, scopeID(l.GetScope())+"\x00"+l.GetLineKey())
		case *tallyv1.Envelope_CostLineRetracted:
			r := b.CostLineRetracted
			m.lines = append(m.lines, scopeID(r.GetScope())+"\x00"+r.GetLineKey())
		}
		return nil
	}))
	return out
}

// eventOrder is the revision's events in log order as kind and line: the
// same for two tenants given the same bills, though the ids differ (they
// are derived from the tenant too).
func eventOrder(msgs []logMessage) []string {
	var out []string
	for _, m := range msgs {
		for i, k := range m.kinds {
			line := ""
			if i < len(m.lines) {
				line = m.lines[i]
			}
			out = append(out, k+" "+line)
		}
	}
	return out
}

// TestRevisionAppendsInFewMessages ingests a revised bill whose restated,
// retracted and recorded lines interleave in line key order: the appender
// groups each batch by kind, so the changes take a few log messages (one
// durable write each) rather than one per change of kind, and the ledger
// still folds to the revised bill. The same bills give the same events in
// the same order, a retry appends nothing, and an interrupted revision run
// again completes exactly.
func TestRevisionAppendsInFewMessages(t *testing.T) {
	const batch = 500
	e := newEnv(t)
	opts := ingest.Options{BatchEvents: batch}
	orig, _ := generate(t, 29, 3000, nil)
	revised, diff := generate(t, 29, 3000, &focusgen.Revision{Seed: 3, Restated: 0.2, Dropped: 0.1, Added: 0.1})
	changes := diff.Restated + diff.Dropped + diff.Added
	require.Equal(t, 1200, changes)

	revise := func(tenant string) (ingest.Summary, []logMessage) {
		first, err := ingestBytes(t, e, tenant, "v1.csv", orig, opts)
		require.NoError(t, err)
		sum, err := ingestBytes(t, e, tenant, "v2.csv", revised, opts)
		require.NoError(t, err)
		require.Equal(t, int64(diff.Restated), sum.Restated)
		require.Equal(t, int64(diff.Dropped), sum.Retracted)
		require.Equal(t, int64(diff.Added), sum.Recorded)
		require.Equal(t, int64(changes), sum.Appended)
		return sum, readMessages(t, e.store, tenant, first.StreamSeq+1)
	}
	sum, msgs := revise("acme")

	// The count: at most one message per kind per batch, plus one whenever
	// a kind's events of a batch overflow a message (the log's limit is
	// about 1 MiB; 512 KiB counts generously for the overflow).
	total := 0
	for _, m := range msgs {
		total += m.bytes
	}
	batches := (changes + batch - 1) / batch
	bound := 3*batches + (total+512<<10-1)/(512<<10)
	require.Len(t, msgs, int(sum.Messages), "the summary counts the log's messages")
	require.LessOrEqual(t, len(msgs), bound, "%d changes took %d log messages", changes, len(msgs))

	// Grouped by kind within each batch: the kind changes at most twice
	// per batch in log order, and no line has two events.
	kindRuns, prev := 0, ""
	seen := map[string]bool{}
	for _, m := range msgs {
		for i, k := range m.kinds {
			require.Equal(t, m.kinds[0], k, "one kind per message")
			if k != prev {
				kindRuns++
				prev = k
			}
			if i < len(m.lines) {
				require.False(t, seen[m.lines[i]], "line %q has two events", m.lines[i])
				seen[m.lines[i]] = true
			}
		}
	}
	require.Len(t, seen, changes)
	require.LessOrEqual(t, kindRuns, 3*batches)
	requireSums(t, genTotals(diff.After), currencyTotals(t, foldLog(t, e.store, "acme")))

	// The same bills on another tenant: the same events, in the same order
	// and the same messages.
	_, msgs2 := revise("globex")
	require.Equal(t, eventOrder(msgs), eventOrder(msgs2))
	require.Len(t, msgs2, len(msgs))

	// A retry of the revision appends nothing.
	again, err := ingestBytes(t, e, "acme", "v2-again.csv", revised, opts)
	require.NoError(t, err)
	require.Zero(t, again.Appended)
	require.Zero(t, again.Messages)
	require.Equal(t, int64(3000-diff.Dropped+diff.Added), again.Unchanged)

	// A revision interrupted after its first batch, run again, appends
	// exactly the rest.
	first, err := ingestBytes(t, e, "initech", "v1.csv", orig, opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	r, err := focus.NewReader(bytes.NewReader(revised), "v2.csv", focus.FormatAuto)
	require.NoError(t, err)
	cut, err := ingest.Ingest(ctx, e.store, e.pool, "initech", r, ingest.Options{BatchEvents: 200,
		Progress: func(p ingest.Progress) {
			if p.Stage == "append" {
				cancel()
			}
		}})
	r.Close()
	require.Error(t, err)
	require.Positive(t, cut.Appended)
	require.Less(t, cut.Appended, int64(changes))
	rest, err := ingestBytes(t, e, "initech", "v2.csv", revised, opts)
	require.NoError(t, err)
	require.Equal(t, int64(changes), cut.Appended+rest.Appended)
	resumed := readMessages(t, e.store, "initech", first.StreamSeq+1)
	require.ElementsMatch(t, eventOrder(msgs), eventOrder(resumed), "the same events, whatever the batches")
	requireSums(t, genTotals(diff.After), currencyTotals(t, foldLog(t, e.store, "initech")))
}
