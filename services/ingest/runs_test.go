package ingest

import (
	"bytes"
	"fmt"
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
// exact sums.
func TestRunsMergeAcrossSpills(t *testing.T) {
	dir := t.TempDir()
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
	w := newRunWriter(dir, 4096)
	for _, r := range rows {
		b, err := lineBytes(&tallyv1.CostLine{LineKey: r.line, BilledCost: r.billed, EffectiveCost: r.billed, BillingCurrency: "USD"})
		require.NoError(t, err)
		require.NoError(t, w.add(r.scope, r.line, r.no, b))
	}
	require.NoError(t, w.finish())
	require.Greater(t, len(w.files), 50, "the tiny runs spilled many times")

	m, err := openMerger(w.files)
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

	// The runs are files under the ingest's own directory.
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, len(w.files))
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
