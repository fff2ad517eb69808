package money_test

import (
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/money"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want string // canonical decimal, or "" for an error
		err  error
	}{
		{"12.34", "12.34", nil},
		{"-0.5", "-0.5", nil},
		{"+3", "3", nil},
		{".5", "0.5", nil},
		{"5.", "5", nil},
		{"1.5E-7", "0.00000015", nil},
		{"2e3", "2000", nil},
		{"0.00000000000000000001", "0.00000000000000000001", nil},
		{"1E-64", "0.0000000000000000000000000000000000000000000000000000000000000001", nil},
		{"1E-65", "", money.ErrRange},
		{"1E-9000", "", money.ErrRange},
		{"", "", money.ErrSyntax},
		{"-", "", money.ErrSyntax},
		{".", "", money.ErrSyntax},
		{"12,3", "", money.ErrSyntax},
		{"1,000.00", "", money.ErrSyntax},
		{"$10.00", "", money.ErrSyntax},
		{"10.00 ", "", money.ErrSyntax},
		{"NaN", "", money.ErrSyntax},
		{"Inf", "", money.ErrSyntax},
		{"1e", "", money.ErrSyntax},
		{"1e+", "", money.ErrSyntax},
		{"1e12345", "", money.ErrSyntax},
		{"1.2.3", "", money.ErrSyntax},
		{"0x10", "", money.ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, err := money.Parse(tt.in)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				require.False(t, tt.err == money.ErrSyntax && money.Syntax(tt.in))
				return
			}
			require.NoError(t, err)
			require.True(t, decimal.RequireFromString(tt.want).Equal(d), "got %s", d)
		})
	}
}

// FuzzParse: whatever Parse accepts round-trips exactly through its
// canonical text, and Syntax agrees with Parse.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"12.34", "-1.5E-7", "1,0", "NaN", "", "9e9999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := money.Parse(s)
		if err != nil {
			return
		}
		require.True(t, money.Syntax(s))
		back, err := money.Parse(d.String())
		require.NoError(t, err)
		require.True(t, back.Equal(d))
	})
}
