package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tally-ledger/tally/app"
	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/migrations"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/storage"
)

// allProjections are the read models this binary folds, as `tally serve` runs them.
func allProjections() []projections.Projection { return app.Projections(nil) }

// projOpts is the part of serve's configuration the projection commands need: where the log
// and the read models are.
type projOpts struct {
	dataDir     string
	natsURL     string
	databaseURL string
	replicas    int
	partitions  int
}

func newProjectionsCmd(c *cli) *cobra.Command {
	o := &projOpts{dataDir: defaultDataDir(c.lookupEnv), replicas: 1}
	cmd := &cobra.Command{
		Use:   "projections",
		Short: "Show and rebuild the read models the event log is folded into",
		Long: `Show where each projection (read model) stands in the event log, and rebuild one
with no downtime.

These commands reach the same NATS and PostgreSQL as tally serve, configured the
same way (flags, TALLY_* variables, NATS_URL, DATABASE_URL). A serve on its
embedded NATS is reachable only if it listens (tally serve --nats-listen): pass
that address as --nats-url.`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.SortFlags = false
	addDatabaseFlags(pf, &o.dataDir, &o.databaseURL)
	pf.Var(checkedString{&o.natsURL, app.CheckNATSURL}, "nats-url",
		"NATS server or cluster as comma-separated `urls`: an external one, or tally serve's --nats-listen address")
	pf.IntVar(&o.replicas, "replicas", o.replicas,
		"replicas of the event stream, as tally serve was given: opening the stream with another number would change it")
	pf.IntVar(&o.partitions, "partitions", 0,
		"tenant partitions the projectors split each projection into; 0 keeps the layout stored in PostgreSQL")
	declareEnv(pf)
	cmd.AddCommand(newProjectionsStatusCmd(c, o), newProjectionsRebuildCmd(c, o))
	return cmd
}

func newProjectionsStatusCmd(c *cli, o *projOpts) *cobra.Command {
	output := "table"
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print each projection's checkpoint, the stream head, the lag and the state",
		Long: `Print, for each projection, the stream sequence it has folded up to
(checkpoint), the log's newest sequence (head), the lag between them in log
messages, and its state: live; stale (its version or partition layout is not this
binary's: a rebuild is due or running, queries see the old copy); new (not set up
yet). A rebuild in progress is shown with its own checkpoint.

With no NATS URL the head cannot be read: status then prints the checkpoints
from PostgreSQL alone, with the lag unknown.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("output: unknown format %q: use table or json", output)
			}
			ctx := cmd.Context()
			env, err := o.open(ctx, c.logger, false)
			if err != nil {
				return err
			}
			defer env.close()
			var st []projections.Status
			if env.store == nil {
				fmt.Fprintln(c.stderr, "tally: no NATS URL, so the stream head and the lag are unknown: pass --nats-url (NATS_URL), the external NATS or the address tally serve listens on with --nats-listen")
				st, err = env.runner.CheckpointStatus(ctx)
			} else {
				st, err = env.runner.Status(ctx)
			}
			if err != nil {
				return fmt.Errorf("projection status: %w", err)
			}
			if output == "json" {
				return writeStatusJSON(c.stdout, st)
			}
			return writeStatusTable(c.stdout, st, time.Now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", output, "output `format`: table or json")
	declareEnv(cmd.Flags())
	return cmd
}

func newProjectionsRebuildCmd(c *cli, o *projOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rebuild NAME",
		Short: "Rebuild a projection from the whole log with no downtime",
		Long: `Replay the whole event log into a new copy of projection NAME beside the live
one, which keeps serving queries (and running projectors keep folding into it),
then swap the new copy in, in one transaction, and drop the old one.

A progress line shows how far the replay has come in the log, the events folded,
events/s and the time left; when the output is not a terminal it is printed as
plain lines every few seconds. Interrupting it leaves the live copy serving; the
half-built copy is thrown away by the next rebuild. Needs the log: --nats-url.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name := args[0]
			known := false
			var names []string
			for _, p := range allProjections() {
				names = append(names, p.Name())
				known = known || p.Name() == name
			}
			if !known {
				return fmt.Errorf("unknown projection %q: use one of %s", name, strings.Join(names, ", "))
			}
			if o.natsURL == "" {
				return errors.New("rebuild replays the event log, and no NATS URL is set: pass --nats-url (NATS_URL), the external NATS or the address tally serve listens on with --nats-listen")
			}
			env, err := o.open(ctx, c.logger, true)
			if err != nil {
				return err
			}
			defer env.close()
			pr := newProgressPrinter(c.stderr)
			start := time.Now()
			err = env.runner.Rebuild(ctx, name, pr.report)
			pr.done()
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("rebuild of %s interrupted; the live copy still serves: %w", name, err)
				}
				return fmt.Errorf("rebuild of %s: %w", name, err)
			}
			st, err := env.runner.Status(ctx)
			if err != nil {
				return fmt.Errorf("projection status after the rebuild: %w", err)
			}
			last := pr.last
			rate := 0.0
			if el := time.Since(start).Seconds(); el > 0 {
				rate = float64(last.Events) / el
			}
			fmt.Fprintf(c.stdout, "%s rebuilt and swapped in: %d events up to sequence %d in %s (%.0f events/s)\n",
				name, last.Events, last.Seq, time.Since(start).Round(time.Millisecond), rate)
			for _, s := range st {
				if s.Name == name {
					fmt.Fprintf(c.stdout, "%s: state %s, version %d, checkpoint %d, head %d, lag %d\n",
						s.Name, s.State, s.StoredVersion, s.Checkpoint, s.Head, s.Lag)
				}
			}
			return nil
		},
	}
	return cmd
}

// addDatabaseFlags declares how the commands that open PostgreSQL directly
// (projections, tokens) find it, as tally serve does.
func addDatabaseFlags(fs *pflag.FlagSet, dataDir, databaseURL *string) {
	fs.StringVar(dataDir, "data-dir", *dataDir,
		"tally serve's `directory`: where a private PostgreSQL cluster (postgres/) is found when no database URL is set")
	fs.Var(checkedString{databaseURL, app.CheckDatabaseURL}, "database-url",
		"PostgreSQL `url`; empty uses "+storage.DefaultLocalURL+" if it answers, else the private cluster in <data-dir>/postgres; prefer the variable: flags show in ps")
}

// openDatabase finds PostgreSQL as tally serve does (databaseURL, else the
// local server, else the private cluster in dataDir/postgres) and opens a
// pool on the database serve uses; closeDB closes the pool and stops a
// private cluster it started.
func openDatabase(ctx context.Context, log *slog.Logger, dataDir, databaseURL string) (_ *pgxpool.Pool, closeDB func(), err error) {
	url, stop, err := app.ResolveDatabase(ctx, log, dataDir, databaseURL)
	if err != nil {
		return nil, nil, err
	}
	stopCluster := func() {
		if err := stop(); err != nil {
			log.Warn("stop private PostgreSQL", "err", err)
		}
	}
	pool, err := storage.Open(ctx, url)
	if err != nil {
		stopCluster()
		return nil, nil, err
	}
	return pool, func() { pool.Close(); stopCluster() }, nil
}

// projEnv is what a projection command opened.
type projEnv struct {
	runner  *projections.Runner
	pool    *pgxpool.Pool
	store   *eventstore.Store // nil when there is no NATS URL
	closers []func()
}

func (e *projEnv) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// open finds PostgreSQL as serve does and, when there is a NATS URL, opens the event log.
// migrate applies pending migrations (rebuild writes; status only reads).
func (o *projOpts) open(ctx context.Context, log *slog.Logger, migrate bool) (_ *projEnv, err error) {
	env := &projEnv{}
	defer func() {
		if err != nil {
			env.close()
		}
	}()
	var closeDB func()
	if env.pool, closeDB, err = openDatabase(ctx, log, o.dataDir, o.databaseURL); err != nil {
		return nil, err
	}
	env.closers = append(env.closers, closeDB)
	if migrate {
		if err := migrations.Up(ctx, env.pool); err != nil {
			return nil, fmt.Errorf("migrate PostgreSQL: %w", err)
		}
	} else {
		var ok bool
		if err := env.pool.QueryRow(ctx, "SELECT to_regclass('projection_checkpoints') IS NOT NULL").Scan(&ok); err != nil {
			return nil, err
		}
		if !ok {
			return nil, errors.New("the database has no projection checkpoints: it was never migrated (start tally serve once, or check --database-url)")
		}
	}
	parts := o.partitions
	if parts <= 0 {
		parts = 1
		for _, p := range allProjections() {
			n, err := projections.StoredPartitions(ctx, env.pool, p.Name())
			if err != nil {
				return nil, err
			}
			parts = max(parts, n)
		}
	}
	var lg projections.Log
	if o.natsURL != "" {
		nc, err := nats.Connect(o.natsURL, nats.Name("tally projections"), nats.Timeout(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("connect to NATS: %w", err)
		}
		env.closers = append(env.closers, nc.Close)
		if env.store, err = eventstore.Open(ctx, nc, eventstore.Options{Replicas: o.replicas, Logger: log}); err != nil {
			return nil, fmt.Errorf("open the event log: %w", err)
		}
		st := env.store
		// Closed before the connection (closers run in reverse): its in-memory index goes.
		env.closers = append(env.closers, func() { _ = st.Close() })
		lg = env.store
	}
	env.runner, err = projections.NewRunner(env.pool, lg, projections.Options{Partitions: parts, Logger: log}, allProjections()...)
	if err != nil {
		return nil, err
	}
	return env, nil
}

// statusJSON is a projection's status as --output json prints it; head and lag are null when
// unknown.
type statusJSON struct {
	Name          string          `json:"name"`
	Version       int             `json:"version"`
	StoredVersion int             `json:"stored_version"`
	State         string          `json:"state"`
	Checkpoint    uint64          `json:"checkpoint"`
	Head          *uint64         `json:"head"`
	Lag           *uint64         `json:"lag"`
	Partitions    []partitionJSON `json:"partitions"`
	Rebuild       *partitionJSON  `json:"rebuild,omitempty"`
}

type partitionJSON struct {
	Checkpoint string    `json:"checkpoint"`
	Seq        uint64    `json:"seq"`
	Lag        *uint64   `json:"lag"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func known(s projections.Status, v uint64) *uint64 {
	if s.NoHead {
		return nil
	}
	return &v
}

func writeStatusJSON(w io.Writer, st []projections.Status) error {
	out := make([]statusJSON, len(st))
	for i, s := range st {
		j := statusJSON{Name: s.Name, Version: s.Version, StoredVersion: s.StoredVersion, State: s.State,
			Checkpoint: s.Checkpoint, Head: known(s, s.Head), Lag: known(s, s.Lag), Partitions: []partitionJSON{}}
		for _, p := range s.Partitions {
			j.Partitions = append(j.Partitions, partitionJSON{p.Checkpoint, p.Seq, known(s, p.Lag), p.UpdatedAt.UTC()})
		}
		if r := s.Rebuild; r != nil {
			j.Rebuild = &partitionJSON{r.Checkpoint, r.Seq, known(s, r.Lag), r.UpdatedAt.UTC()}
		}
		out[i] = j
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func writeStatusTable(w io.Writer, st []projections.Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tVERSION\tSTATE\tCHECKPOINT\tHEAD\tLAG\tUPDATED")
	num := func(s projections.Status, v uint64) string {
		if s.NoHead {
			return "unknown"
		}
		return fmt.Sprint(v)
	}
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	}
	for _, s := range st {
		version := fmt.Sprint(s.Version)
		if s.StoredVersion != 0 && s.StoredVersion != s.Version {
			version = fmt.Sprintf("%d (stored %d)", s.Version, s.StoredVersion)
		}
		var updated time.Time
		for _, p := range s.Partitions {
			if p.UpdatedAt.After(updated) {
				updated = p.UpdatedAt
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.Name, version, s.State, s.Checkpoint, num(s, s.Head), num(s, s.Lag), ago(updated))
		if len(s.Partitions) > 1 {
			for _, p := range s.Partitions {
				fmt.Fprintf(tw, "  %s\t\t\t%d\t\t%s\t%s\n", p.Checkpoint, p.Seq, num(s, p.Lag), ago(p.UpdatedAt))
			}
		}
		if r := s.Rebuild; r != nil {
			fmt.Fprintf(tw, "  %s\t\trebuilding\t%d\t\t%s\t%s\n", r.Checkpoint, r.Seq, num(s, r.Lag), ago(r.UpdatedAt))
		}
	}
	return tw.Flush()
}

// progressPrinter shows a rebuild's progress: one line redrawn in place on a terminal, plain
// lines every progressEvery otherwise.
type progressPrinter struct {
	w        io.Writer
	terminal bool
	every    time.Duration
	printed  time.Time
	drawn    bool
	last     projections.Progress
}

const progressEvery = 5 * time.Second

func newProgressPrinter(w io.Writer) *progressPrinter {
	return &progressPrinter{w: w, terminal: isTerminal(w), every: progressEvery}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progressPrinter) report(pr projections.Progress) {
	p.last = pr
	now := time.Now()
	switch {
	case pr.Swapped:
	case p.terminal && now.Sub(p.printed) >= 200*time.Millisecond:
	case !p.terminal && (p.printed.IsZero() || now.Sub(p.printed) >= p.every):
	default:
		return
	}
	p.printed = now
	line := progressLine(pr)
	if p.terminal {
		// \r and erase to the end of the line: redraw in place.
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		p.drawn = true
		return
	}
	fmt.Fprintln(p.w, line)
}

// done ends the line being redrawn.
func (p *progressPrinter) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// progressLine: the log position against the head (a log message may hold many events, so
// the share done is counted in messages), the events folded, the rate and the time left.
func progressLine(pr projections.Progress) string {
	if pr.Swapped {
		return fmt.Sprintf("rebuild %s: swapped in at sequence %d, %d events, %.0f events/s",
			pr.Projection, pr.Seq, pr.Events, pr.EventsPerSec)
	}
	pct := 100.0
	if pr.Head > 0 {
		pct = 100 * float64(pr.Seq) / float64(pr.Head)
	}
	bar := progressBar(pct, 20)
	eta := "unknown"
	switch {
	case pr.ETA > 0:
		eta = pr.ETA.Round(time.Second).String()
	case pr.Head > 0 && pr.Seq >= pr.Head:
		eta = "0s"
	}
	return fmt.Sprintf("rebuild %s %s %5.1f%%  log %d/%d  %d events  %.0f events/s  ETA %s",
		pr.Projection, bar, pct, pr.Seq, pr.Head, pr.Events, pr.EventsPerSec, eta)
}

func progressBar(pct float64, width int) string {
	n := min(max(int(pct/100*float64(width)), 0), width)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}
