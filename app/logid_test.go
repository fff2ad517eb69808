package app_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/app"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// TestRefusesAnotherLogsDatabase: a database whose read models were folded
// from one event log is never paired with another one.
func TestRefusesAnotherLogsDatabase(t *testing.T) {
	_, dbURL := pgtest.NewDB(t)
	open := func(dataDir string) (*app.App, error) {
		cfg := app.DefaultConfig()
		cfg.DataDir, cfg.Addr, cfg.DatabaseURL = dataDir, "127.0.0.1:0", dbURL
		return app.New(t.Context(), cfg, slog.New(slog.DiscardHandler))
	}
	first := t.TempDir()
	a, err := open(first)
	require.NoError(t, err)
	require.NoError(t, closeApp(t, a))

	a, err = open(first) // the same log again: fine
	require.NoError(t, err)
	require.NoError(t, closeApp(t, a))

	_, err = open(t.TempDir()) // a new, empty log with the old database
	require.Error(t, err)
	require.Contains(t, err.Error(), "holds read models folded from event log")
}

func TestDatabaseNamePerDataDir(t *testing.T) {
	require.Equal(t, app.DatabaseName("/var/lib/tally"), app.DatabaseName("/var/lib/tally/"))
	require.NotEqual(t, app.DatabaseName("/var/lib/tally"), app.DatabaseName("/srv/tally"))
	require.Regexp(t, `^tally_[0-9a-f]{10}$`, app.DatabaseName("/var/lib/tally"))
}

// closeApp releases an App that was never run: Run with an ended context
// shuts it down at once.
func closeApp(t *testing.T, a *app.App) error {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return a.Run(ctx)
}
