package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bounds on pg_ctl: starting includes crash recovery after an unclean stop; stopping in fast
// mode rolls back open transactions and writes a checkpoint.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 60 * time.Second
)

// unixSocketMax is the room for a socket path (sun_path less its NUL). Longer paths, easy to
// reach under a test's temp dir, make postgres refuse to start, so we then go TCP-only.
const unixSocketMax = 107

type clusterConfig struct {
	dir    string // holds data/, run/ and server.log
	binDir string
	log    *slog.Logger
}

// cluster is a PostgreSQL server run from the binaries on the machine, private to Tally: it
// listens on 127.0.0.1 only, on a free port chosen at each start, with trust authentication.
type cluster struct {
	dir     string
	data    string // PGDATA
	run     string // Unix socket directory
	logFile string
	bins    pgBinaries
	user    *pgUser
	log     *slog.Logger
	url     string

	stopOnce sync.Once
	stopErr  error
}

// startCluster initialises cfg.dir/data on first use, then starts the server, or adopts it if
// a previous process left it running.
func startCluster(ctx context.Context, cfg clusterConfig) (*cluster, error) {
	c := &cluster{
		dir:     cfg.dir,
		data:    filepath.Join(cfg.dir, "data"),
		run:     filepath.Join(cfg.dir, "run"),
		logFile: filepath.Join(cfg.dir, "server.log"),
		log:     cfg.log,
	}
	initialised, err := os.ReadFile(filepath.Join(c.data, "PG_VERSION"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the data directory's version: %w", err)
	}
	version := strings.TrimSpace(string(initialised))
	// Binaries first: their absence is the likeliest failure, and its message the most useful.
	if c.bins, err = findBinaries(ctx, cfg.binDir, version); err != nil {
		return nil, err
	}
	if c.user, err = lookupPGUser(); err != nil {
		return nil, err
	}
	if err := c.prepareDirs(); err != nil {
		return nil, err
	}
	if version == "" {
		if err := c.initdb(ctx); err != nil {
			return nil, err
		}
	}

	port, running := c.runningPort(ctx)
	if running {
		// A previous process died without stopping it. It is ours (same data directory),
		// so use it and stop it when done.
		c.log.InfoContext(ctx, "private PostgreSQL already running; reusing it",
			slog.String("dir", c.dir), slog.Int("port", port))
	} else if port, err = c.start(ctx); err != nil {
		return nil, err
	}
	c.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)

	connCfg, err := pgx.ParseConfig(c.url)
	if err != nil {
		return nil, fmt.Errorf("parse private cluster URL: %w", err)
	}
	if err := probe(ctx, connCfg, 10*time.Second); err != nil {
		_ = c.stop()
		return nil, fmt.Errorf("private PostgreSQL started on port %d but does not accept connections (%w); its log ends: %s", port, err, c.logTail())
	}
	return c, nil
}

// prepareDirs creates the directories the PostgreSQL user writes and checks it can reach them.
func (c *cluster) prepareDirs() error {
	// Created readable by all so that the postgres user can pass through; the cluster
	// directory itself stays private to that user.
	if err := os.MkdirAll(filepath.Dir(c.dir), 0o755); err != nil {
		return fmt.Errorf("create the data directory: %w", err)
	}
	for _, d := range []string{c.dir, c.run} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create %s: %w", d, err)
		}
		if err := c.user.own(d); err != nil {
			return err
		}
	}
	return c.user.checkReach(c.dir)
}

func (c *cluster) initdb(ctx context.Context) error {
	began := time.Now()
	// C locale and UTF-8: the same sort order on every machine, whatever locales it has.
	cmd := c.user.command(ctx, c.dir, c.bins.initdb(),
		"-D", c.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s failed (%w): %s; if an earlier initdb was interrupted, remove %s and start again",
			c.data, err, lastLines(out, 5), c.data)
	}
	c.log.InfoContext(ctx, "private PostgreSQL initialised",
		slog.String("dir", c.data), slog.String("version", c.bins.version),
		slog.Duration("duration", time.Since(began)))
	return nil
}

// runningPort reports whether a postmaster already serves the data directory, and its port.
func (c *cluster) runningPort(ctx context.Context) (int, bool) {
	if err := c.user.command(ctx, c.dir, c.bins.pgCtl(), "status", "-D", c.data).Run(); err != nil {
		return 0, false // 3: not running; anything else, start will say what is wrong
	}
	pid, err := os.ReadFile(filepath.Join(c.data, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	// The fourth line of postmaster.pid is the port.
	lines := strings.Split(string(pid), "\n")
	if len(lines) < 4 {
		return 0, false
	}
	port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
	return port, err == nil
}

// start runs the server on a free port. Another process may take the port between our probe
// and postgres binding it, so a bind failure is retried on a new port.
func (c *cluster) start(ctx context.Context) (int, error) {
	socketDir := shellQuote(c.run)
	if len(filepath.Join(c.run, ".s.PGSQL.65535")) > unixSocketMax {
		socketDir = "''"
		c.log.InfoContext(ctx, "private PostgreSQL directory too deep for a Unix socket; listening on TCP only",
			slog.String("dir", c.run))
	}
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return 0, err
		}
		began := time.Now()
		// pg_ctl hands -o to a shell, hence the quoting.
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s", port, socketDir)
		cmd := c.user.command(ctx, c.dir, c.bins.pgCtl(), "start", "-D", c.data, "-l", c.logFile,
			"-w", "-t", strconv.Itoa(int(startTimeout.Seconds())), "-o", opts)
		out, err := cmd.CombinedOutput()
		if err == nil {
			c.log.InfoContext(ctx, "private PostgreSQL started",
				slog.String("dir", c.dir), slog.Int("port", port), slog.Duration("duration", time.Since(began)))
			return port, nil
		}
		tail := c.logTail()
		if strings.Contains(tail, "already in use") && attempt < 3 {
			continue
		}
		return 0, fmt.Errorf("pg_ctl start failed (%w): %s; server log %s ends: %s",
			err, lastLines(out, 3), c.logFile, tail)
	}
}

// stop shuts the server down; in fast mode open transactions roll back rather than being
// waited for. Only the first call does anything.
func (c *cluster) stop() error {
	c.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout+10*time.Second)
		defer cancel()
		began := time.Now()
		cmd := c.user.command(ctx, c.dir, c.bins.pgCtl(), "stop", "-D", c.data, "-m", "fast",
			"-w", "-t", strconv.Itoa(int(stopTimeout.Seconds())))
		if out, err := cmd.CombinedOutput(); err != nil {
			if _, running := c.runningPort(ctx); !running {
				return // someone else stopped it; stopped is what we wanted
			}
			c.stopErr = fmt.Errorf("stop private PostgreSQL in %s (%w): %s", c.data, err, lastLines(out, 3))
			return
		}
		c.log.Info("private PostgreSQL stopped",
			slog.String("dir", c.dir), slog.Duration("duration", time.Since(began)))
	})
	return c.stopErr
}

// logTail returns the last lines of the server log, where postgres says why it would not start.
func (c *cluster) logTail() string {
	f, err := os.Open(c.logFile)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 4096 {
		_, _ = f.Seek(-4096, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return lastLines(b, 5)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lastLines joins the last n non-empty lines of out on one line, for an error message.
func lastLines(out []byte, n int) string {
	var lines []string
	for l := range bytes.Lines(out) {
		if s := strings.TrimSpace(string(l)); s != "" {
			lines = append(lines, s)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "(no output)"
	}
	return strings.Join(lines, " | ")
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
