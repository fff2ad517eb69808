package ingest_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/focusgen"
	"github.com/tally-ledger/tally/services/ingest"
	"github.com/tally-ledger/tally/storage/pgtest"
)

const samplePath = "../../testdata/focus/FOCUS-1.0/focus_sample.csv"

type env struct {
	srv   *natstest.Server
	store *eventstore.Store
	pool  *pgxpool.Pool
}

func newEnv(t testing.TB) *env {
	srv := natstest.Run(t)
	pool, _ := pgtest.NewDB(t)
	return &env{srv: srv, store: srv.Store(), pool: pool}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func ingestFile(t *testing.T, e *env, tenant, path string, opts ingest.Options) (ingest.Summary, error) {
	t.Helper()
	r, err := focus.Open(path)
	require.NoError(t, err)
	defer r.Close()
	return ingest.Ingest(ctxT(t), e.store, e.pool, tenant, r, opts)
}

func ingestBytes(t *testing.T, e *env, tenant, name string, data []byte, opts ingest.Options) (ingest.Summary, error) {
	t.Helper()
	r, err := focus.NewReader(bytes.NewReader(data), name, focus.FormatAuto)
	if err != nil {
		return ingest.Summary{}, err
	}
	defer r.Close()
	return ingest.Ingest(ctxT(t), e.store, e.pool, tenant, r, opts)
}

// logLine is a line as the log says it is now, folded here independently of
// the ingest code: recorded and restated set the values, retracted removes.
type logLine struct {
	line  *tallyv1.CostLine
	final bool
}

type logLedger struct {
	lines  map[string]*logLine // scope NUL line key
	events map[string]int      // count per kind
}

func scopeID(sc *tallyv1.BillScope) string {
	return sc.GetProvider() + "|" + sc.GetBillingAccountId() + "|" + sc.GetBillingPeriodStart().AsTime().String()
}

func foldLog(t *testing.T, st *eventstore.Store, tenant string) logLedger {
	t.Helper()
	led := logLedger{lines: map[string]*logLine{}, events: map[string]int{}}
	final := map[string]bool{}
	require.NoError(t, st.Read(ctxT(t), eventstore.ReadFilter{Tenant: tenant}, func(ev eventstore.Event) error {
		led.events[eventstore.Kind(ev.Envelope)]++
		switch b := ev.Envelope.GetBody().(type) {
		case *tallyv1.Envelope_CostLineRecorded:
			l := b.CostLineRecorded.GetLine()
			k := scopeID(l.GetScope()) + "\x00" + l.GetLineKey()
			require.NotContains(t, led.lines, k, "recorded twice: %s", k)
			led.lines[k] = &logLine{line: l}
		case *tallyv1.Envelope_CostLineRestated:
			l := b.CostLineRestated.GetLine()
			k := scopeID(l.GetScope()) + "\x00" + l.GetLineKey()
			old, ok := led.lines[k]
			require.True(t, ok, "restated a line the log does not hold: %s", k)
			// The delta must be exactly new minus old.
			d := dec(t, l.GetBilledCost()).Sub(dec(t, old.line.GetBilledCost()))
			require.Equal(t, d.String(), dec(t, b.CostLineRestated.GetDelta().GetBilledCost()).String())
			led.lines[k] = &logLine{line: l}
		case *tallyv1.Envelope_CostLineRetracted:
			k := scopeID(b.CostLineRetracted.GetScope()) + "\x00" + b.CostLineRetracted.GetLineKey()
			old, ok := led.lines[k]
			require.True(t, ok, "retracted a line the log does not hold: %s", k)
			require.Equal(t, dec(t, old.line.GetBilledCost()).Neg().String(), dec(t, b.CostLineRetracted.GetDelta().GetBilledCost()).String())
			delete(led.lines, k)
		case *tallyv1.Envelope_BillingPeriodFinalized:
			final[scopeID(b.BillingPeriodFinalized.GetScope())] = true
		}
		return nil
	}))
	for k, l := range led.lines {
		l.final = final[strings.SplitN(k, "\x00", 2)[0]]
	}
	return led
}

func dec(t *testing.T, s string) decimal.Decimal {
	t.Helper()
	if s == "" {
		return decimal.Zero
	}
	d, err := decimal.NewFromString(s)
	require.NoError(t, err)
	return d
}

func (l logLedger) sumBy(t *testing.T, key func(*tallyv1.CostLine) string) map[string]decimal.Decimal {
	out := map[string]decimal.Decimal{}
	for _, ll := range l.lines {
		k := key(ll.line)
		out[k] = out[k].Add(dec(t, ll.line.GetBilledCost()))
	}
	return out
}

// golden reads testdata/focus/focus_sample.sums.txt, which
// testdata/focus/expected_sums.py computed with Python's csv and decimal
// modules from the CSV, independently of any Go code.
func golden(t *testing.T) map[string]map[string]decimal.Decimal {
	f, err := os.Open("../../testdata/focus/focus_sample.sums.txt")
	require.NoError(t, err)
	defer f.Close()
	out := map[string]map[string]decimal.Decimal{"provider": {}, "service": {}, "total": {}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), "\t")
		switch {
		case len(parts) == 3:
			out[parts[0]][parts[1]] = dec(t, parts[2])
		case len(parts) == 2 && parts[0] == "total":
			out["total"][""] = dec(t, parts[1])
		}
	}
	require.NoError(t, sc.Err())
	return out
}

func requireSums(t *testing.T, want, got map[string]decimal.Decimal) {
	t.Helper()
	require.Equal(t, len(want), len(got), "groups: want %v got %v", want, got)
	for k, w := range want {
		g, ok := got[k]
		require.True(t, ok, "missing group %q", k)
		require.True(t, w.Equal(g), "group %q: want %s, got %s", k, w, g)
	}
}

func TestSampleTotalsMatchIndependentSums(t *testing.T) {
	e := newEnv(t)
	sum, err := ingestFile(t, e, "acme", samplePath, ingest.Options{})
	require.NoError(t, err)
	require.Equal(t, int64(1000), sum.RowsRead)
	require.Zero(t, sum.RowsBad)
	require.Equal(t, sum.Lines, sum.Recorded)
	require.Equal(t, sum.Lines, sum.Appended)
	require.Equal(t, focus.Version("1.0"), sum.FileVersion)

	want := golden(t)
	led := foldLog(t, e.store, "acme")
	require.Len(t, led.lines, int(sum.Lines))
	// The sample names providers in ProviderName (FOCUS 1.0).
	requireSums(t, want["provider"], led.sumBy(t, func(l *tallyv1.CostLine) string { return l.GetScope().GetProvider() }))
	requireSums(t, want["service"], led.sumBy(t, func(l *tallyv1.CostLine) string { return l.GetServiceName() }))
	total := decimal.Zero
	for _, tot := range sum.Totals {
		total = total.Add(tot.Billed)
	}
	require.True(t, want["total"][""].Equal(total), "summary total %s", total)

	// Re-ingesting the unchanged bill appends nothing.
	again, err := ingestFile(t, e, "acme", samplePath, ingest.Options{})
	require.NoError(t, err)
	require.Zero(t, again.Appended)
	require.Zero(t, again.Recorded+again.Restated+again.Retracted)
	require.Equal(t, sum.Lines, again.Unchanged)
	require.Equal(t, sum.HeadSeq, again.HeadSeq)
}

func generate(t *testing.T, seed uint64, rows int, rev *focusgen.Revision) ([]byte, focusgen.Diff) {
	t.Helper()
	var buf bytes.Buffer
	p := focusgen.Params{Seed: seed, Period: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Rows: rows}
	if rev == nil {
		s, err := focusgen.Generate(context.Background(), &buf, p)
		require.NoError(t, err)
		return buf.Bytes(), focusgen.Diff{After: s}
	}
	d, err := focusgen.GenerateRevision(context.Background(), &buf, p, *rev)
	require.NoError(t, err)
	return buf.Bytes(), d
}

func currencyTotals(t *testing.T, led logLedger) map[string]decimal.Decimal {
	return led.sumBy(t, func(l *tallyv1.CostLine) string { return l.GetBillingCurrency() })
}

func genTotals(s focusgen.Summary) map[string]decimal.Decimal {
	out := map[string]decimal.Decimal{}
	for _, c := range s.Totals {
		out[c.Currency] = c.BilledCost
	}
	return out
}

func TestRevisionAppendsExactlyTheDifferences(t *testing.T) {
	e := newEnv(t)
	orig, d0 := generate(t, 7, 3000, nil)
	sum, err := ingestBytes(t, e, "acme", "bill-v1.csv", orig, ingest.Options{})
	require.NoError(t, err)
	require.Equal(t, int64(3000), sum.Recorded)
	requireSums(t, genTotals(d0.After), currencyTotals(t, foldLog(t, e.store, "acme")))

	rev := focusgen.Revision{Seed: 11, Restated: 0.10, Dropped: 0.05, Added: 0.04}
	revised, diff := generate(t, 7, 3000, &rev)
	require.True(t, diff.Restated > 0 && diff.Dropped > 0 && diff.Added > 0)
	sum2, err := ingestBytes(t, e, "acme", "bill-v2.csv", revised, ingest.Options{})
	require.NoError(t, err)
	require.Equal(t, int64(diff.Restated), sum2.Restated)
	require.Equal(t, int64(diff.Dropped), sum2.Retracted)
	require.Equal(t, int64(diff.Added), sum2.Recorded)
	require.Equal(t, int64(diff.Unchanged), sum2.Unchanged)
	require.Equal(t, int64(diff.Restated+diff.Dropped+diff.Added), sum2.Appended)

	led := foldLog(t, e.store, "acme")
	requireSums(t, genTotals(diff.After), currencyTotals(t, led))
	require.Equal(t, 3000+diff.Added, led.events["cost_line_recorded"])
	require.Equal(t, diff.Restated, led.events["cost_line_restated"])
	require.Equal(t, diff.Dropped, led.events["cost_line_retracted"])

	// Going back to the first bill restores it exactly; re-ingesting the
	// revision after that restates again, nothing is ever duplicated.
	_, err = ingestBytes(t, e, "acme", "bill-v1-again.csv", orig, ingest.Options{})
	require.NoError(t, err)
	requireSums(t, genTotals(d0.After), currencyTotals(t, foldLog(t, e.store, "acme")))
	_, err = ingestBytes(t, e, "acme", "bill-v2-again.csv", revised, ingest.Options{})
	require.NoError(t, err)
	requireSums(t, genTotals(diff.After), currencyTotals(t, foldLog(t, e.store, "acme")))
}

func TestConcurrentIngestsDoNotDoubleCount(t *testing.T) {
	e := newEnv(t)
	data, d := generate(t, 3, 2000, nil)
	// Two writers as two processes would be: separate connections and
	// stores, the same tenant, the same bill, at the same time.
	stores := []*eventstore.Store{e.srv.Store(), e.srv.Store(), e.srv.Store()}
	var wg sync.WaitGroup
	sums := make([]ingest.Summary, len(stores))
	errs := make([]error, len(stores))
	for i, st := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := focus.NewReader(bytes.NewReader(data), "bill.csv", focus.FormatAuto)
			if err != nil {
				errs[i] = err
				return
			}
			sums[i], errs[i] = ingest.Ingest(ctxT(t), st, e.pool, "acme", r, ingest.Options{BatchEvents: 300})
		}()
	}
	wg.Wait()
	var appended int64
	for i := range stores {
		require.NoError(t, errs[i])
		appended += sums[i].Appended
	}
	require.Equal(t, int64(2000), appended, "every line appended once across the writers")
	led := foldLog(t, e.store, "acme")
	require.Len(t, led.lines, 2000)
	require.Equal(t, 2000, led.events["cost_line_recorded"])
	requireSums(t, genTotals(d.After), currencyTotals(t, led))
	rep, err := e.store.Verify(ctxT(t), "acme")
	require.NoError(t, err)
	require.True(t, rep.OK())
}

func TestFinalAndPostClose(t *testing.T) {
	e := newEnv(t)
	orig, _ := generate(t, 5, 500, nil)
	sum, err := ingestBytes(t, e, "acme", "bill.csv", orig, ingest.Options{Final: true})
	require.NoError(t, err)
	require.Equal(t, int64(sum.Scopes), sum.Finalized)
	require.Positive(t, sum.Scopes)
	led := foldLog(t, e.store, "acme")
	for _, l := range led.lines {
		require.True(t, l.final)
	}

	// Finalizing the unchanged bill again appends nothing.
	again, err := ingestBytes(t, e, "acme", "bill.csv", orig, ingest.Options{Final: true})
	require.NoError(t, err)
	require.Zero(t, again.Appended)
	require.Equal(t, int64(sum.Scopes), again.Duplicates)

	// Finance closes October; a later revision is a post-close adjustment.
	_, err = e.store.Append(ctxT(t), "acme", []*tallyv1.Envelope{{
		Actor: &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_USER, Id: "cfo"},
		Body: &tallyv1.Envelope_PeriodClosed{PeriodClosed: &tallyv1.PeriodClosed{
			Period: "2026-10", Approver: &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_USER, Id: "controller"}}},
	}})
	require.NoError(t, err)
	revised, diff := generate(t, 5, 500, &focusgen.Revision{Seed: 2, Restated: 0.1})
	sum2, err := ingestBytes(t, e, "acme", "bill-late.csv", revised, ingest.Options{})
	require.NoError(t, err)
	require.Equal(t, int64(diff.Restated), sum2.Restated)
	require.Equal(t, sum2.Restated, sum2.PostClose)
}

func TestBadFilesAppendNothing(t *testing.T) {
	e := newEnv(t)
	good, _ := generate(t, 9, 20, nil)
	lines := strings.Split(string(good), "\n")
	header := strings.Split(lines[0], ",")
	col := func(name string) int {
		for i, h := range header {
			if strings.Trim(h, `"`) == name {
				return i
			}
		}
		t.Fatalf("no column %s", name)
		return -1
	}
	// Corrupt row 5's BilledCost.
	corrupt := func(colName, value string) []byte {
		out := append([]string(nil), lines...)
		fields := strings.Split(out[5], ",")
		fields[col(colName)] = value
		out[5] = strings.Join(fields, ",")
		return []byte(strings.Join(out, "\n"))
	}
	if strings.Contains(lines[5], `"`) {
		t.Skip("generated row has quoted fields; the catalogue in services/focus covers bad values")
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"bad decimal", corrupt("BilledCost", "12,3")},
		{"unknown currency", corrupt("BillingCurrency", "XXX")},
		{"empty file", nil},
		{"header only", []byte(lines[0] + "\n")},
		{"binary garbage", []byte("\x00\x01\x02PK\x03\x04garbage")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ingestBytes(t, e, "acme", tt.name+".csv", tt.data, ingest.Options{})
			require.Error(t, err)
			last, err2 := e.store.LastSeq(ctxT(t))
			require.NoError(t, err2)
			require.Zero(t, last, "nothing appended")
		})
	}

	// Partial ingestion appends the good rows and reports the bad one.
	sum, err := ingestBytes(t, e, "acme", "partial.csv", corrupt("BilledCost", "12,3"), ingest.Options{Partial: true})
	require.NoError(t, err)
	require.Equal(t, int64(1), sum.RowsBad)
	require.Len(t, sum.Rejected, 1)
	require.Contains(t, sum.Rejected[0].Error(), "BilledCost")
	require.Equal(t, int64(19), sum.Recorded)
}

func TestRejectedFileNamesTheRow(t *testing.T) {
	e := newEnv(t)
	data := "BilledCost,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,ChargePeriodEnd,BillingAccountId,ChargeCategory,ProviderName\n" +
		"1.00,USD,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,2026-10-01T00:00:00Z,2026-10-02T00:00:00Z,acct,Usage,AWS\n" +
		"abc,USD,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,2026-10-01T00:00:00Z,2026-10-02T00:00:00Z,acct,Usage,AWS\n"
	sum, err := ingestBytes(t, e, "acme", "tiny.csv", []byte(data), ingest.Options{})
	require.ErrorIs(t, err, ingest.ErrRejected)
	require.Contains(t, err.Error(), "tiny.csv:3")
	require.Contains(t, err.Error(), "BilledCost")
	require.Equal(t, int64(1), sum.RowsBad)
	last, err := e.store.LastSeq(ctxT(t))
	require.NoError(t, err)
	require.Zero(t, last)
}

func TestInvalidTenantIsRefusedAndAudited(t *testing.T) {
	e := newEnv(t)
	for _, tenant := range []string{"", "Acme", "a.b", "_system"} {
		_, err := ingestFile(t, e, tenant, samplePath, ingest.Options{})
		require.ErrorIs(t, err, eventstore.ErrInvalidTenant, tenant)
	}
	var audits []*tallyv1.RequestRejected
	require.NoError(t, e.store.Read(ctxT(t), eventstore.ReadFilter{}, func(ev eventstore.Event) error {
		require.Equal(t, eventstore.SystemTenant, ev.Envelope.GetTenantId(), "only audit events were appended")
		audits = append(audits, ev.Envelope.GetRequestRejected())
		return nil
	}))
	require.Len(t, audits, 4)
	claimed := make([]string, len(audits))
	for i, a := range audits {
		claimed[i] = a.GetClaimedTenant()
		require.Equal(t, "tenant_id", a.GetField())
	}
	sort.Strings(claimed)
	require.Equal(t, []string{"", "Acme", "_system", "a.b"}, claimed)
}
