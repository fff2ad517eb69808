package focusgen_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/focusgen"
)

func TestRevisionCountsAsAsked(t *testing.T) {
	tests := []struct {
		name                    string
		rows                    int
		rev                     focusgen.Revision
		restated, dropped, adds int
	}{
		{"typical", 10_000, focusgen.Revision{Seed: 1, Restated: 0.05, Dropped: 0.01, Added: 0.02}, 500, 100, 200},
		{"rounding", 333, focusgen.Revision{Seed: 2, Restated: 0.1, Dropped: 0.1, Added: 0.1}, 33, 33, 33},
		{"everything restated", 500, focusgen.Revision{Seed: 3, Restated: 1}, 500, 0, 0},
		{"everything dropped, all new", 500, focusgen.Revision{Seed: 4, Dropped: 1, Added: 1}, 0, 500, 500},
		{"nothing", 1000, focusgen.Revision{Seed: 5}, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := focusgen.Params{Seed: 77, Period: september, Rows: tt.rows}
			orig, origSum := generate(t, p)
			var revised bytes.Buffer
			diff, err := focusgen.GenerateRevision(context.Background(), &revised, p, tt.rev)
			require.NoError(t, err)

			require.Equal(t, tt.restated, diff.Restated)
			require.Equal(t, tt.dropped, diff.Dropped)
			require.Equal(t, tt.adds, diff.Added)
			require.Equal(t, tt.rows-tt.restated-tt.dropped, diff.Unchanged)
			require.Equal(t, origSum, diff.Before, "the revision knows the original bill's totals")
			require.Equal(t, tt.rows-tt.dropped+tt.adds, diff.After.Rows)

			// The revised file reads back cleanly and adds up to diff.After.
			_, before := readBack(t, orig)
			_, after := readBack(t, revised.Bytes())
			require.Len(t, after, diff.After.Rows)
			require.Equal(t, summaryMap(diff.After), summarize(after))

			// Diffing the two files by line identity finds exactly the
			// changes the generator reports: this is what the ingester's
			// revision step will do.
			old := map[string]focus.Row{}
			for _, r := range before {
				old[identity(r)] = r
			}
			var restated, added int
			for _, r := range after {
				o, ok := old[identity(r)]
				if !ok {
					added++
					continue
				}
				delete(old, identity(r))
				if !o.BilledCost.Equal(r.BilledCost) || !o.EffectiveCost.Decimal.Equal(r.EffectiveCost.Decimal) {
					restated++
				}
			}
			require.Equal(t, tt.restated, restated)
			require.Equal(t, tt.adds, added)
			require.Len(t, old, tt.dropped, "lines left over are the dropped ones")
		})
	}
}

func TestRevisionIsDeterministic(t *testing.T) {
	p := focusgen.Params{Seed: 8, Period: september, Rows: 3000, Gzip: true}
	rev := focusgen.Revision{Seed: 99, Restated: 0.1, Dropped: 0.05, Added: 0.05}
	run := func(rev focusgen.Revision) ([]byte, focusgen.Diff) {
		var b bytes.Buffer
		d, err := focusgen.GenerateRevision(context.Background(), &b, p, rev)
		require.NoError(t, err)
		return b.Bytes(), d
	}
	a, da := run(rev)
	b, db := run(rev)
	require.Equal(t, a, b)
	require.Equal(t, da, db)

	rev.Seed = 100
	c, _ := run(rev)
	require.NotEqual(t, a, c, "the revision seed picks other lines")

	// A revision that changes nothing is the original bill, byte for byte.
	orig, _ := generate(t, p)
	same, _ := run(focusgen.Revision{Seed: 5})
	require.Equal(t, orig, same)
}

func TestRevisionRefusesBadShares(t *testing.T) {
	p := focusgen.Params{Seed: 1, Period: september, Rows: 10}
	for _, rev := range []focusgen.Revision{
		{Restated: -0.1},
		{Dropped: 1.5},
		{Restated: 0.6, Dropped: 0.6},
	} {
		_, err := focusgen.GenerateRevision(context.Background(), io.Discard, p, rev)
		require.Error(t, err, "%+v", rev)
	}
}
