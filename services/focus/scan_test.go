package focus_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/services/focus"
)

func hour(h int) (string, string) {
	start := "2024-09-01T" + pad2(h) + ":00:00Z"
	end := "2024-09-01T" + pad2(h+1) + ":00:00Z"
	return start, end
}

func pad2(n int) string { return string([]byte{byte('0' + n/10), byte('0' + n%10)}) }

// mixed has rows 1, 2, 4, 6 good and rows 3 and 5 bad.
func mixed() []byte {
	var lines []string
	for i := 1; i <= 6; i++ {
		s, e := hour(i)
		l := line("ChargePeriodStart", s, "ChargePeriodEnd", e)
		if i == 3 || i == 5 {
			l = line("ChargePeriodStart", s, "ChargePeriodEnd", e, "BilledCost", "oops")
		}
		lines = append(lines, l)
	}
	return []byte(doc(lines...))
}

func TestScanModes(t *testing.T) {
	tests := []struct {
		mode     focus.Mode
		seen     int // rows handed to fn
		rows     int
		rejected int
		err      error
	}{
		{focus.RejectFile, 2, 4, 2, focus.ErrRejected},
		{focus.SkipBadRows, 4, 4, 2, nil},
	}
	for _, tt := range tests {
		r, err := focus.NewReader(bytes.NewReader(mixed()), "mixed.csv", focus.FormatCSV)
		require.NoError(t, err)
		var seen int
		rep, err := r.Scan(context.Background(), tt.mode, func(focus.Row) error { seen++; return nil })
		if tt.err != nil {
			require.ErrorIs(t, err, tt.err)
			var fe *focus.Error
			require.ErrorAs(t, err, &fe, "the first bad row's problem is reachable")
			require.Equal(t, 4, fe.Line)
			require.True(t, strings.HasPrefix(err.Error(), "FOCUS file rejected: mixed.csv has 2 bad rows, first: mixed.csv:4: column BilledCost"), err.Error())
		} else {
			require.NoError(t, err)
		}
		require.Equal(t, tt.seen, seen)
		require.Equal(t, tt.rows, rep.Rows)
		require.Equal(t, tt.rejected, rep.RejectedRows)
		require.Len(t, rep.Rejected, tt.rejected)
		require.Equal(t, []int{4, 6}, []int{rep.Rejected[0].Line, rep.Rejected[1].Line})
		require.Equal(t, int64(len(mixed())), rep.BytesRead)
	}
}

func TestScanStops(t *testing.T) {
	stop := errors.New("stop")
	r, err := focus.NewReader(bytes.NewReader(mixed()), "mixed.csv", focus.FormatCSV)
	require.NoError(t, err)
	rep, err := r.Scan(context.Background(), focus.SkipBadRows, func(focus.Row) error { return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, rep.Rows)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r, err = focus.NewReader(bytes.NewReader(mixed()), "mixed.csv", focus.FormatCSV)
	require.NoError(t, err)
	_, err = r.Scan(ctx, focus.SkipBadRows, func(focus.Row) error { return nil })
	require.ErrorIs(t, err, context.Canceled)

	// A fatal error ends the scan with what was read so far.
	r, err = focus.NewReader(bytes.NewReader([]byte(doc(line(), `x,"y`))), "cut.csv", focus.FormatCSV)
	require.NoError(t, err)
	rep, err = r.Scan(context.Background(), focus.SkipBadRows, func(focus.Row) error { return nil })
	var fe *focus.Error
	require.ErrorAs(t, err, &fe)
	require.Equal(t, focus.RuleTruncated, fe.Rule)
	require.Equal(t, 1, rep.Rows)
}
