package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/services/focus"
)

func TestGenerateWritesAReadableBill(t *testing.T) {
	out := filepath.Join(t.TempDir(), "bill.csv")
	var stdout, stderr bytes.Buffer
	root := newRootCmd(&cli{lookupEnv: noEnv, stdout: &stdout, stderr: &stderr})
	root.SetArgs([]string{"generate", "--rows", "250", "--month", "2026-10", "--output", out})
	require.NoError(t, root.Execute())
	require.Contains(t, stderr.String(), "wrote 250 rows for 2026-10")

	r, err := focus.Open(out)
	require.NoError(t, err)
	defer r.Close()
	rows := 0
	for {
		row, err := r.Next()
		if err != nil {
			break
		}
		require.Equal(t, 2026, row.BillingPeriodStart.Year())
		rows++
	}
	require.Equal(t, 250, rows)

	for _, args := range [][]string{{"generate", "--month", "October"}, {"generate", "--rows", "0"}} {
		root := newRootCmd(&cli{lookupEnv: noEnv, stdout: &stdout, stderr: &stderr})
		root.SetArgs(args)
		require.Error(t, root.Execute(), args)
	}
}

func noEnv(string) (string, bool) { return "", false }
