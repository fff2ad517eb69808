package ledger_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/storage"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// BenchmarkQueryMonthByServiceRLS is BenchmarkQueryMonthByService's two main questions asked
// three ways, interleaved query by query so that the machine's noise falls on all three
// alike: straight on the pool (as the ledger was read before the tenant wall), in a read-only
// transaction, and through storage.ReadAsTenant (read-only transaction, role tally_reader,
// tally.tenant set, row-level security on), which is how the gateway asks. The difference
// between the last two is the wall's own cost; between the first and the last, what the
// gateway pays for it.
//
//	go test -run '^$' -bench QueryMonthByServiceRLS -benchtime=1x -timeout 30m ./projections/ledger/
func BenchmarkQueryMonthByServiceRLS(b *testing.B) {
	ctx := context.Background()
	pool, _ := pgtest.NewDB(b)
	loadLedger(b, pool, benchLines())
	queries := 300
	if v, err := strconv.Atoi(os.Getenv("TALLY_BENCH_QUERIES")); err == nil && v > 0 {
		queries = v
	}
	month := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	ways := []struct {
		name string
		cost func(ledger.Query) ([]ledger.Row, error)
	}{
		{"pool", func(qu ledger.Query) ([]ledger.Row, error) { return ledger.NewQueries(pool).Cost(ctx, qu) }},
		{"tx", func(qu ledger.Query) (rows []ledger.Row, err error) {
			err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
				rows, err = ledger.NewQueries(tx).Cost(ctx, qu)
				return err
			})
			return rows, err
		}},
		{"rls", func(qu ledger.Query) (rows []ledger.Row, err error) {
			err = storage.ReadAsTenant(ctx, pool, qu.Tenant, func(tx pgx.Tx) error {
				rows, err = ledger.NewQueries(tx).Cost(ctx, qu)
				return err
			})
			return rows, err
		}},
	}
	for _, c := range []struct {
		name string
		qu   ledger.Query
	}{
		{"rollup", ledger.Query{Filter: ledger.Filter{Tenant: "tenant-03", From: month, To: month.AddDate(0, 1, 0)},
			GroupBy: []ledger.Dimension{ledger.Service}, Granularity: ledger.ByMonth}},
		{"lines-tag", ledger.Query{Filter: ledger.Filter{Tenant: "tenant-03", From: month, To: month.AddDate(0, 1, 0),
			Tags: map[string][]string{"env": {"prod"}}},
			GroupBy: []ledger.Dimension{ledger.Service}, Granularity: ledger.ByMonth}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				want, err := ways[0].cost(c.qu) // warm the cache and the plans
				require.NoError(b, err)
				require.NotEmpty(b, want)
				lat := make([][]time.Duration, len(ways))
				for range queries {
					for w, way := range ways {
						start := time.Now()
						rows, err := way.cost(c.qu)
						lat[w] = append(lat[w], time.Since(start))
						require.NoError(b, err)
						require.Equal(b, want, rows, way.name)
					}
				}
				for w, way := range ways {
					slices.Sort(lat[w])
					b.ReportMetric(float64(lat[w][len(lat[w])/2].Microseconds())/1000, way.name+"-p50-ms")
					b.ReportMetric(float64(lat[w][len(lat[w])*99/100].Microseconds())/1000, way.name+"-p99-ms")
				}
			}
		})
	}
}
