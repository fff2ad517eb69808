package ingest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// TestRunsMergeAcrossSpills writes rows in a random order through runs so
// small that nearly every row spills on its own, merges them back and checks
// the order, the grouping of one line's rows from different runs and the
// exact sums: merged at once, and after reduceRuns merged them in groups
// (more than one pass for the smallest fan-in).
func TestRunsMergeAcrossSpills(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	type row struct {
		scope, line string
		no          uint64
		billed      string
	}
	var rows []row
	want := map[string][]string{} // scope+line -> billed amounts in row order
	for i := 0; i < 2000; i++ {
		s := fmt.Sprintf("%032x", rng.IntN(3))
		l := fmt.Sprintf("%064x", rng.IntN(400)) // ~5 rows a line on average
		billed := fmt.Sprintf("%d.%03d", rng.IntN(1000)-500, rng.IntN(1000))
		rows = append(rows, row{s, l, uint64(i + 1), billed})
		want[s+l] = append(want[s+l], billed)
	}
	for _, tc := range []struct {
		name  string
		fanIn int // 0: merge the runs as spilled
	}{
		{name: "merged at once"},
		{name: "reduced in one pass", fanIn: 64},
		{name: "reduced in passes", fanIn: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := newRunWriter(dir, 4096)
			for _, r := range rows {
				b, err := lineBytes(&tallyv1.CostLine{LineKey: r.line, BilledCost: r.billed, EffectiveCost: r.billed, BillingCurrency: "USD"})
				require.NoError(t, err)
				require.NoError(t, w.add(r.scope, r.line, r.no, b))
			}
			require.NoError(t, w.finish())
			require.Greater(t, len(w.files), 100, "the tiny runs spilled many times")
			files := w.files
			if tc.fanIn > 0 {
				var err error
				files, err = reduceRuns(context.Background(), dir, files, tc.fanIn, slog.New(slog.DiscardHandler))
				require.NoError(t, err)
				// Each pass merges groups of fanIn runs into one.
				want, passes := len(w.files), 0
				for ; want > tc.fanIn; passes++ {
					want = (want + tc.fanIn - 1) / tc.fanIn
				}
				require.Len(t, files, want)
				require.Less(t, len(files), len(w.files))
				if tc.fanIn == 4 {
					require.GreaterOrEqual(t, passes, 3, "runs merged more than once")
				}
			}

			m, err := openMerger(files)
			require.NoError(t, err)
			defer m.close()
			gr := &grouper{m: m}
			var keys []string
			for {
				g, err := gr.next()
				require.NoError(t, err)
				if g == nil {
					break
				}
				k := string(g.key)
				keys = append(keys, k)
				amounts := want[k]
				require.Equal(t, len(amounts), g.rows, "rows of %s", k)
				// The first row (in file order) gives the attributes.
				var first tallyv1.CostLine
				require.NoError(t, proto.Unmarshal(g.line(), &first))
				require.Equal(t, amounts[0], first.GetBilledCost())
				h := contentHash(g.line())
				require.True(t, bytes.Equal(h, g.hash()))
				if g.rows > 1 {
					total := dec(t, "0")
					for _, a := range amounts {
						total = total.Add(dec(t, a))
					}
					require.True(t, g.sums[0].Valid && g.sums[0].Decimal.Equal(total), "billed of %s: %s, want %s", k, g.sums[0].Decimal, total)
					require.True(t, g.sums[1].Valid && g.sums[1].Decimal.Equal(total))
					require.False(t, g.sums[2].Valid, "an amount no row has stays absent")
				}
			}
			require.Len(t, keys, len(want))
			require.True(t, sort.StringsAreSorted(keys))

			// The runs are files under the ingest's own directory, and the
			// runs a reduction merged are gone.
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, len(files))
		})
	}
}

// TestMergeReadBuffers: the merge's read buffers share one budget, so
// their memory does not grow with the number of runs, and a merge of more
// runs than the budget allows is refused rather than made.
func TestMergeReadBuffers(t *testing.T) {
	for _, tc := range []struct{ runs, want int }{
		{1, maxRunRead},
		{16, maxRunRead},
		{30, mergeReadBudget / 30},
		{310, mergeReadBudget / 310},
		{maxFanIn, minRunRead},
		{10 * maxFanIn, minRunRead},
	} {
		got := runReadBuffer(tc.runs)
		require.Equal(t, tc.want, got, "%d runs", tc.runs)
		if tc.runs <= maxFanIn {
			require.LessOrEqual(t, tc.runs*got, mergeReadBudget, "%d runs", tc.runs)
		}
	}
	_, err := openMerger(make([]string, maxFanIn+1))
	require.ErrorContains(t, err, "reduce them first")
}

func TestDecString(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []string{"0", "0.000", "-0.5", "1E-20", "123456789012345678", "1234567890123456789", "0.000000000000000001",
		"-999999999999999999", "1.50", "100", "1E+3", "-0.0001230", "12345678901234567890.123"}
	for i := 0; i < 20000; i++ {
		cases = append(cases, fmt.Sprintf("%d.%0*d", rng.Int64N(1e12)-5e11, rng.IntN(12)+1, rng.Int64N(1e6)))
	}
	for _, c := range cases {
		d := dec(t, c)
		require.Equal(t, d.String(), decString(d), c)
	}
}

func dec(t *testing.T, s string) decimal.Decimal {
	t.Helper()
	d, err := decimal.NewFromString(s)
	require.NoError(t, err)
	return d
}
