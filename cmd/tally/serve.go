package main

import (
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tally-ledger/tally/app"
	"github.com/tally-ledger/tally/storage"
)

func newServeCmd(c *cli) *cobra.Command {
	cfg := app.DefaultConfig()
	cfg.DataDir = defaultDataDir(c.lookupEnv)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run Tally: event log, read models and HTTP API in one process",
		Long: `Run Tally until SIGINT or SIGTERM, then shut down cleanly and exit 0.

With no NATS URL, serve starts NATS in-process with JetStream in
<data-dir>/nats, fsyncing every write. With no database URL, it uses the local
PostgreSQL on 127.0.0.1:5432 or, where none answers, starts a private cluster in
<data-dir>/postgres. It applies pending migrations, then serves GET /healthz and
GET /metrics on --addr.

Every API call needs a bearer token (tally tokens). When the database holds no
valid admin token (the first start), serve makes one for every tenant and writes
it to <data-dir>/admin.token, readable by its owner only; the CLI on this
machine (ingest, costs) uses it when given no --token.

Every flag can also be set from the variables named beside it; a flag on the
command line wins.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.LogLevel, cfg.LogFormat = c.logLevel, c.logFormat
			if err := cfg.Validate(); err != nil {
				return err
			}
			return c.serve(cmd.Context(), cfg, c.logger)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir,
		"`directory` for the embedded NATS store (nats/) and a private PostgreSQL cluster (postgres/); defaults to $XDG_DATA_HOME/tally or ~/.local/share/tally")
	fs.Var(checkedString{&cfg.Addr, app.CheckAddr}, "addr",
		"`host:port` to serve the API, /healthz and /metrics on; port 0 picks a free port")
	fs.Var(checkedString{&cfg.NATSURL, app.CheckNATSURL}, "nats-url",
		"external NATS server or cluster as comma-separated `urls` (nats://host:4222); empty starts an embedded server in <data-dir>/nats")
	fs.Var(checkedString{&cfg.NATSListen, checkOptionalAddr}, "nats-listen",
		"`host:port` where other processes can reach the embedded NATS server; empty: in-process only; port 0 picks a free port")
	fs.BoolVar(&cfg.NoSyncAlways, "no-sync-always", cfg.NoSyncAlways,
		"let the embedded NATS server skip the fsync of every write: faster, but acknowledged events can be lost on power loss (off by default: durable)")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas,
		"replicas of the event stream when tally creates it: 1 embedded, 3 on a JetStream cluster")
	fs.Var(checkedString{&cfg.DatabaseURL, app.CheckDatabaseURL}, "database-url",
		"PostgreSQL `url`; empty uses "+storage.DefaultLocalURL+" if it answers, else a private cluster in <data-dir>/postgres; prefer the variable: flags show in ps")
	fs.TextVar(&cfg.Roles, "roles", cfg.Roles,
		"`roles` this process runs: all, or a comma-separated list of gateway, projector")
	declareEnv(fs)
	return cmd
}

func checkOptionalAddr(s string) error {
	if s == "" {
		return nil
	}
	return app.CheckAddr(s)
}

// defaultDataDir follows the XDG base directory spec, which says to ignore
// a relative XDG_DATA_HOME.
func defaultDataDir(lookup func(string) (string, bool)) string {
	if x, ok := lookup("XDG_DATA_HOME"); ok && filepath.IsAbs(x) {
		return filepath.Join(x, "tally")
	}
	if home, ok := lookup("HOME"); ok && home != "" {
		return filepath.Join(home, ".local", "share", "tally")
	}
	return ""
}
