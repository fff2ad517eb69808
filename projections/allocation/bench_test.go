package allocation_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/allocation"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// benchLines is the number of cost lines the benchmarks fold: TALLY_BENCH_EVENTS, else 100,000.
func benchLines() int {
	if n, err := strconv.Atoi(os.Getenv("TALLY_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// benchLog appends four rules and n lines of one month: 30 days, 24 hours a day, 40 services,
// 500 resources, every other line tagged with one of 5 teams; appended in chunks of 10,000 as
// ingestion does.
func benchLog(b *testing.B, st *eventstore.Store, n int) {
	const tenant = "acme"
	team := rule("team", 1, 10, 1, direct, "teams", "")
	team.Match.Tags = []*tallyv1.KeyValue{{Key: "env", Value: "prod"}}
	ec2 := rule("ec2", 1, 20, 1, pct, "web", "60", "data", "40")
	ec2.Match.ServiceName = "svc-1"
	shared := rule("shared", 1, 30, 1, prop, "teams", "", "web", "", "data", "")
	shared.Match.ServiceName = "svc-2"
	appendAll(b, st, tenant, ruleSet(tenant, team), ruleSet(tenant, ec2), ruleSet(tenant, shared))
	var chunk []*tallyv1.Envelope
	for i := range n {
		var tags []string
		if i%2 == 0 {
			tags = []string{"env=prod", fmt.Sprintf("team=t%d", i%5)}
		}
		l := costLine(fmt.Sprintf("l%08d", i), 1+i%30, fmt.Sprintf("svc-%d", i%40), fmt.Sprintf("0.%07d", i%9999991), tags...)
		l.ResourceId = fmt.Sprintf("arn:aws:x:r%d", i%500)
		l.ChargePeriodStart.Seconds += int64(i/30%24) * 3600
		chunk = append(chunk, recorded(tenant, l))
		if len(chunk) == 10_000 {
			appendAll(b, st, tenant, chunk...)
			chunk = chunk[:0]
		}
	}
	if len(chunk) > 0 {
		appendAll(b, st, tenant, chunk...)
	}
}

// BenchmarkProjectAllocation folds benchLines lines (and their rules) from a real log into an
// empty allocation read model with the runner's default batch size, per iteration (run with
// -benchtime=1x). Every batch touches all 30 days: a fold that re-read its days' lines would be
// quadratic here.
func BenchmarkProjectAllocation(b *testing.B) {
	e := newEnv(b)
	n := benchLines()
	benchLog(b, e.store, n)
	var total time.Duration
	for range b.N {
		pool, _ := pgtest.NewDB(b)
		r, err := projections.NewRunner(pool, e.store, projections.Options{}, allocation.New())
		require.NoError(b, err)
		start := time.Now()
		require.NoError(b, r.CatchUp(context.Background()))
		total += time.Since(start)
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "lines/s")
}

// BenchmarkRuleChange is the cost of one rule version dated the 1st over a month of benchLines
// lines: one batch re-allocating every day.
func BenchmarkRuleChange(b *testing.B) {
	e := newEnv(b)
	n := benchLines()
	benchLog(b, e.store, n)
	pool, _ := pgtest.NewDB(b)
	r, err := projections.NewRunner(pool, e.store, projections.Options{}, allocation.New())
	require.NoError(b, err)
	require.NoError(b, r.CatchUp(context.Background()))
	var total time.Duration
	for i := range b.N {
		v := rule("ec2", uint32(2+i), 20, 1, pct, "web", "50", "data", "50")
		v.Match.ServiceName = "svc-1"
		appendAll(b, e.store, "acme", ruleSet("acme", v))
		start := time.Now()
		require.NoError(b, r.CatchUp(context.Background()))
		total += time.Since(start)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/change")
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "lines/s")
}

// BenchmarkDryRun is a dry run over the month of benchLines lines.
func BenchmarkDryRun(b *testing.B) {
	e := newEnv(b)
	n := benchLines()
	benchLog(b, e.store, n)
	pool, _ := pgtest.NewDB(b)
	r, err := projections.NewRunner(pool, e.store, projections.Options{}, allocation.New())
	require.NoError(b, err)
	require.NoError(b, r.CatchUp(context.Background()))
	q := allocation.NewQueries(pool)
	v := rule("ec2", 2, 20, 15, pct, "web", "50", "data", "50")
	v.Match.ServiceName = "svc-1"
	b.ResetTimer()
	for range b.N {
		_, err := q.DryRun(context.Background(), "acme", "2024-09", allocation.Change{Set: v})
		require.NoError(b, err)
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "lines/s")
}
