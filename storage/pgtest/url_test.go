package pgtest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"postgres://postgres@127.0.0.1:5432/postgres", "postgres://postgres@127.0.0.1:5432/tally_test_x"},
		{"postgres://u:pw@h:1/db?sslmode=disable", "postgres://u:pw@h:1/tally_test_x?sslmode=disable"},
		{"postgresql://h", "postgresql://h/tally_test_x"},
		{"host=h user=u dbname=db", "host=h user=u dbname=db dbname=tally_test_x"},
	}
	for _, tt := range tests {
		got, err := withDatabase(tt.in, "tally_test_x")
		require.NoError(t, err)
		require.Equal(t, tt.want, got)
	}
}
