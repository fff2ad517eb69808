// Command tally is Tally's one binary: `tally serve` runs the event log, the
// read models and the HTTP API; later commands ingest, audit, export and
// administer projections.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tally-ledger/tally/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal has started a clean shutdown, a second one
		// kills the process the default way.
		<-ctx.Done()
		stop()
	}()
	c := &cli{
		lookupEnv: os.LookupEnv,
		stdout:    os.Stdout,
		stderr:    os.Stderr,
		serve: func(ctx context.Context, cfg app.Config, log *slog.Logger) error {
			// Packages that log through the default logger (migrations) log
			// like the rest.
			slog.SetDefault(log)
			return app.Run(ctx, cfg, log)
		},
	}
	if err := newRootCmd(c).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tally:", err)
		os.Exit(1)
	}
}

// cli is what the commands share; tests fill it with a fake environment and
// a serve that records its configuration.
type cli struct {
	lookupEnv func(string) (string, bool)
	stdout    io.Writer
	stderr    io.Writer
	serve     func(context.Context, app.Config, *slog.Logger) error

	logLevel  slog.Level
	logFormat app.LogFormat
	logger    *slog.Logger
}

func newRootCmd(c *cli) *cobra.Command {
	root := &cobra.Command{
		Use:   "tally",
		Short: "Tally is an event-sourced cloud cost ledger",
		Long: `Tally is an event-sourced cloud cost ledger: every fact about money is an
immutable event in NATS JetStream, folded into PostgreSQL read models and
served over HTTP.

Every flag can also be set from the environment: TALLY_ and the flag's name in
upper case with '_' for '-' (--log-level: TALLY_LOG_LEVEL). A flag on the
command line wins over the environment; an empty variable counts as unset.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), c.lookupEnv); err != nil {
				return err
			}
			c.logger = newLogger(c.stderr, c.logLevel, c.logFormat)
			return nil
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return flagError(err) })

	pf := root.PersistentFlags()
	c.logLevel = slog.LevelInfo
	pf.Var(levelValue{&c.logLevel}, "log-level", "least severe `level` logged: debug, info, warn or error")
	pf.TextVar(&c.logFormat, "log-format", app.LogText, "log `format`: text (key=value, for people) or json (for log pipelines)")
	declareEnv(pf)

	root.AddCommand(newServeCmd(c), newVersionCmd(c), newIngestCmd(c))
	root.AddCommand(newProjectionsCmd(c))
	root.AddCommand(newCostsCmd(c))
	root.AddCommand(newAllocationCmd(c))
	root.AddCommand(newSavingsCmd(c))
	root.AddCommand(newAuditCmd(c))
	root.AddCommand(newCloseCmd(c))
	root.AddCommand(newTokensCmd(c))
	root.AddCommand(newGenerateCmd(c))
	root.AddCommand(newExportCmd(c))
	return root
}

func newVersionCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, VCS revision and Go version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(c.stdout, app.Build())
			return err
		},
	}
}

// levelValue is a log level flag that says which levels exist when given
// another.
type levelValue struct{ p *slog.Level }

func (v levelValue) String() string {
	if v.p == nil {
		return ""
	}
	return strings.ToLower(v.p.String())
}

func (v levelValue) Set(s string) error {
	if err := v.p.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("unknown log level %q: use debug, info, warn or error", s)
	}
	return nil
}

func (v levelValue) Type() string { return "level" }

// newLogger writes to w (stderr: stdout is for command output).
func newLogger(w io.Writer, level slog.Level, format app.LogFormat) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == app.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
