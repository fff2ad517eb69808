package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/app"
	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// billedLines are n recorded cost lines of tenant from line from on, each billed 1.25 USD, in
// January 2026.
func billedLines(tenant string, from, n int) []*tallyv1.Envelope {
	period := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	scope := &tallyv1.BillScope{Provider: "AWS", BillingAccountId: "acct-1",
		BillingPeriodStart: timestamppb.New(period), BillingPeriodEnd: timestamppb.New(period.AddDate(0, 1, 0))}
	out := make([]*tallyv1.Envelope, n)
	for i := range out {
		key := fmt.Sprintf("line-%06d", from+i)
		day := period.AddDate(0, 0, (from+i)%28)
		out[i] = &tallyv1.Envelope{
			EventId: eventstore.DeterministicID(tenant, key), TenantId: tenant, IdempotencyKey: key,
			OccurredAt: timestamppb.New(period),
			Actor:      &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "projections-test"},
			Body: &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: &tallyv1.CostLine{
				LineKey: key, Scope: scope, ServiceName: "Amazon EC2", ChargeCategory: "Usage",
				ChargePeriodStart: timestamppb.New(day), ChargePeriodEnd: timestamppb.New(day.Add(24 * time.Hour)),
				BilledCost: "1.25", EffectiveCost: "1.25", ListCost: "1.25", ContractedCost: "1.25", BillingCurrency: "USD",
			}}},
		}
	}
	return out
}

// TestProjectionsStatusAndRebuild runs `tally projections status` and `rebuild` in process
// against a real JetStream and PostgreSQL: status prints the checkpoint the projector reached,
// the head and the lag (or the checkpoints alone with no NATS URL); rebuild replays the whole
// log, swaps the new copy in and leaves the projection live at the head with every event's
// cost in it.
func TestProjectionsStatusAndRebuild(t *testing.T) {
	ctx := t.Context()
	srv := natstest.Run(t, natstest.NoSyncAlways())
	st := srv.Store()
	pool, dbURL := pgtest.NewDB(t)

	// 300 events projected, then 200 more that are not: 5 events per log message, so that
	// the rebuild has more than a swap's worth of messages to replay first.
	for i := range 60 {
		_, err := st.Append(ctx, "acme", billedLines("acme", i*5, 5))
		require.NoError(t, err)
	}
	r, err := projections.NewRunner(pool, st, projections.Options{}, ledger.New())
	require.NoError(t, err)
	require.NoError(t, r.CatchUp(ctx))
	checkpoint, err := st.LastSeq(ctx)
	require.NoError(t, err)
	for i := 60; i < 100; i++ {
		_, err := st.Append(ctx, "acme", billedLines("acme", i*5, 5))
		require.NoError(t, err)
	}
	head, err := st.LastSeq(ctx)
	require.NoError(t, err)
	require.Greater(t, head, checkpoint)
	q := ledger.NewQueries(pool)
	total := func() string {
		totals, err := q.Totals(ctx, ledger.Filter{Tenant: "acme"})
		require.NoError(t, err)
		require.Len(t, totals, 1)
		return totals[0].Billed.StringFixed(2) + " " + fmt.Sprint(totals[0].Lines)
	}
	require.Equal(t, "375.00 300", total())

	env := map[string]string{"HOME": t.TempDir(), "NATS_URL": srv.ClientURL(), "DATABASE_URL": dbURL}
	_, out, _, err := execute(t, env, "projections", "status", "--output", "json")
	require.NoError(t, err)
	var got []struct {
		Name       string  `json:"name"`
		State      string  `json:"state"`
		Checkpoint uint64  `json:"checkpoint"`
		Head       *uint64 `json:"head"`
		Lag        *uint64 `json:"lag"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	// Every read model tally serve folds is listed; only the ledger was ever set up.
	var names []string
	for _, p := range app.Projections(nil) {
		names = append(names, p.Name())
	}
	require.Len(t, got, len(names))
	for i, name := range names {
		require.Equal(t, name, got[i].Name)
		if i > 0 {
			require.Equal(t, "new", got[i].State, name)
		}
	}
	require.Equal(t, "ledger", got[0].Name)
	require.Equal(t, "live", got[0].State)
	require.Equal(t, checkpoint, got[0].Checkpoint)
	require.NotNil(t, got[0].Head)
	require.Equal(t, head, *got[0].Head)
	require.Equal(t, head-checkpoint, *got[0].Lag)

	_, out, _, err = execute(t, env, "projections", "status")
	require.NoError(t, err)
	t.Logf("status:\n%s", out)
	require.Regexp(t, `(?m)^PROJECTION\s+VERSION\s+STATE\s+CHECKPOINT\s+HEAD\s+LAG\s+UPDATED$`, out)
	require.Regexp(t, fmt.Sprintf(`(?m)^ledger\s+%d\s+live\s+%d\s+%d\s+%d\s+\d+s ago$`, ledger.Version, checkpoint, head, head-checkpoint), out)

	// No NATS: checkpoints from PostgreSQL, the lag unknown, and a word on why.
	delete(env, "NATS_URL")
	_, out, errOut, err := execute(t, env, "projections", "status")
	require.NoError(t, err)
	require.Regexp(t, fmt.Sprintf(`(?m)^ledger\s+%d\s+live\s+%d\s+unknown\s+unknown\s`, ledger.Version, checkpoint), out)
	require.Contains(t, errOut, "--nats-listen")
	_, _, _, err = execute(t, env, "projections", "rebuild", "ledger")
	require.ErrorContains(t, err, "no NATS URL")

	env["NATS_URL"] = srv.ClientURL()
	_, _, _, err = execute(t, env, "projections", "rebuild", "nope")
	require.ErrorContains(t, err, `unknown projection "nope": use one of ledger, closepkg, allocation, savings, changelog`)

	_, out, errOut, err = execute(t, env, "projections", "rebuild", "ledger")
	require.NoError(t, err, errOut)
	t.Logf("rebuild:\n%s%s", grepOut(errOut, "rebuild ledger"), out)
	require.Regexp(t, fmt.Sprintf(`ledger rebuilt and swapped in: 500 events up to sequence %d in \S+ \(\d+ events/s\)`, head), out)
	require.Contains(t, out, fmt.Sprintf("ledger: state live, version %d, checkpoint %d, head %d, lag 0", ledger.Version, head, head))
	// Not a terminal: plain progress lines, the last one the swap.
	require.Regexp(t, `(?m)^rebuild ledger \[[#.]{20}\] +\d+\.\d%  log \d+/\d+  \d+ events  \d+ events/s  ETA \S+$`, errOut)
	require.Regexp(t, regexp.MustCompile(fmt.Sprintf(`rebuild ledger: swapped in at sequence %d, 500 events`, head)), errOut)
	require.Equal(t, "625.00 500", total(), "the rebuilt copy serves every event's cost")

	var schemas int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname IN ('ledger_next', 'ledger_old')").Scan(&schemas))
	require.Zero(t, schemas, "no copy left behind")
	var history int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM ledger.line_history").Scan(&history))
	require.Equal(t, 500, history, "every event folded once")

	_, out, _, err = execute(t, env, "projections", "status", "-o", "json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	require.Equal(t, "live", got[0].State)
	require.Equal(t, head, got[0].Checkpoint)
	require.Zero(t, *got[0].Lag)

	_, _, _, err = execute(t, env, "projections", "status", "-o", "yaml")
	require.ErrorContains(t, err, `unknown format "yaml"`)
}

func TestProgressLine(t *testing.T) {
	require.Equal(t, "rebuild ledger [##########..........]  50.0%  log 200/400  100000 events  25000 events/s  ETA 4s",
		progressLine(projections.Progress{Projection: "ledger", Seq: 200, Head: 400, Events: 100000, EventsPerSec: 25000, ETA: 4 * time.Second}))
	require.Equal(t, "rebuild ledger [....................]   0.0%  log 0/400  0 events  0 events/s  ETA unknown",
		progressLine(projections.Progress{Projection: "ledger", Head: 400}))
	require.Equal(t, "rebuild ledger: swapped in at sequence 400, 9 events, 3 events/s",
		progressLine(projections.Progress{Projection: "ledger", Seq: 400, Head: 400, Events: 9, EventsPerSec: 3, Swapped: true}))
	require.Contains(t, progressLine(projections.Progress{Projection: "ledger", Seq: 400, Head: 400, Events: 9}), "ETA 0s")

	// On a terminal the line is redrawn in place, then ended.
	var buf bytes.Buffer
	p := &progressPrinter{w: &buf, terminal: true}
	p.report(projections.Progress{Projection: "ledger", Seq: 1, Head: 4})
	p.report(projections.Progress{Projection: "ledger", Seq: 4, Head: 4, Swapped: true})
	p.done()
	require.Equal(t, "\rrebuild ledger [#####...............]  25.0%  log 1/4  0 events  0 events/s  ETA unknown\x1b[K"+
		"\rrebuild ledger: swapped in at sequence 4, 0 events, 0 events/s\x1b[K\n", buf.String())
}

// grepOut keeps the lines of s that contain sub.
func grepOut(s, sub string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			b.WriteString(line)
		}
	}
	return b.String()
}
