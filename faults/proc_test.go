package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// Bounds on waiting for a child process. Generous: the machine is shared and
// slow under load; they only bound a hang.
const (
	readyTimeout = 2 * time.Minute
	stopTimeout  = time.Minute
)

// freePort returns a TCP port free on 127.0.0.1 right now. Children get a
// fixed port so that a restart comes back at the same address.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// logBook keeps every line a child process writes (stdout and stderr), so a
// test can wait for a line and check what was logged; it also copies them to
// a file kept for a failed test.
type logBook struct {
	name string
	mu   sync.Mutex
	part []byte
	all  []string
	wake chan struct{} // closed and replaced on every new line
	file *os.File
}

func newLogBook(t *testing.T, name string) *logBook {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	require.NoError(t, err)
	b := &logBook{name: name, wake: make(chan struct{}), file: f}
	t.Cleanup(func() {
		_ = f.Close()
		if t.Failed() {
			t.Logf("%s log (last lines):\n%s", name, b.tail(40))
		}
	})
	return b
}

// Write implements io.Writer for exec.Cmd.Stdout and Stderr.
func (b *logBook) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, _ = b.file.Write(p)
	b.part = append(b.part, p...)
	added := false
	for {
		i := bytes.IndexByte(b.part, '\n')
		if i < 0 {
			break
		}
		b.all = append(b.all, string(b.part[:i]))
		b.part = b.part[i+1:]
		added = true
	}
	if added {
		close(b.wake)
		b.wake = make(chan struct{})
	}
	return len(p), nil
}

// mark is the number of lines so far: a later wait or find looks past it.
func (b *logBook) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.all)
}

// find returns the index of the first line at or after from holding every
// one of subs, or -1.
func (b *logBook) find(from int, subs ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.findLocked(from, subs)
}

func (b *logBook) findLocked(from int, subs []string) int {
	for i := from; i < len(b.all); i++ {
		if containsAll(b.all[i], subs) {
			return i
		}
	}
	return -1
}

// count returns how many lines at or after from hold every one of subs.
func (b *logBook) count(from int, subs ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for i := from; i < len(b.all); i++ {
		if containsAll(b.all[i], subs) {
			n++
		}
	}
	return n
}

func (b *logBook) line(i int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.all[i]
}

// wait blocks until a line at or after from holds every one of subs, or
// until stop is closed or ctx ends (then it returns -1).
func (b *logBook) wait(ctx context.Context, stop <-chan struct{}, from int, subs ...string) int {
	for {
		b.mu.Lock()
		i := b.findLocked(from, subs)
		wake := b.wake
		b.mu.Unlock()
		if i >= 0 {
			return i
		}
		select {
		case <-wake:
		case <-stop:
			return b.find(from, subs...)
		case <-ctx.Done():
			return -1
		}
	}
}

func (b *logBook) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.all[max(0, len(b.all)-n):], "\n")
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// child is a process the test starts, kills and restarts.
type child struct {
	t      *testing.T
	name   string
	log    *logBook
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has exited
	err    error         // its exit status, valid once exited is closed
	starts int
}

func newChild(t *testing.T, name string) *child {
	c := &child{t: t, name: name, log: newLogBook(t, name)}
	t.Cleanup(func() {
		if c.running() {
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	})
	return c
}

func (c *child) start(env []string, dir, bin string, args ...string) {
	c.t.Helper()
	require.False(c.t, c.running(), "%s is already running", c.name)
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Dir = env, dir
	cmd.Stdout, cmd.Stderr = c.log, c.log
	require.NoError(c.t, cmd.Start(), "start %s", c.name)
	c.cmd, c.exited = cmd, make(chan struct{})
	c.starts++
	go func(exited chan struct{}) {
		c.err = cmd.Wait()
		close(exited)
	}(c.exited)
}

func (c *child) running() bool {
	if c.cmd == nil {
		return false
	}
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL: no shutdown code runs, nothing is flushed.
func (c *child) kill() {
	c.t.Helper()
	require.True(c.t, c.running(), "%s is not running (it exited: %v)", c.name, c.err)
	require.NoError(c.t, c.cmd.Process.Signal(syscall.SIGKILL))
	<-c.exited
	var ee *exec.ExitError
	require.ErrorAs(c.t, c.err, &ee, "%s was killed", c.name)
}

// stop sends SIGTERM and requires a clean exit.
func (c *child) stop() {
	c.t.Helper()
	require.True(c.t, c.running(), "%s is not running (it exited: %v)", c.name, c.err)
	require.NoError(c.t, c.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-c.exited:
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
		c.t.Fatalf("%s did not stop within %s of SIGTERM", c.name, stopTimeout)
	}
	require.NoError(c.t, c.err, "%s exits 0 on SIGTERM", c.name)
}

// tallyServe is a `tally serve` child process with its own data directory,
// at a fixed address across restarts.
type tallyServe struct {
	*child
	bin, dataDir, addr string
	args               []string
	env                []string
	http               *http.Client
}

func newTallyServe(t *testing.T, databaseURL string, args ...string) *tallyServe {
	t.Helper()
	s := &tallyServe{
		child:   newChild(t, "tally-serve"),
		bin:     tallyBinary(t),
		dataDir: filepath.Join(t.TempDir(), "data"),
		addr:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		args:    args,
		env:     childEnv("DATABASE_URL=" + databaseURL),
		http:    &http.Client{Timeout: 10 * time.Second},
	}
	return s
}

// start runs tally serve and waits until /healthz answers 200.
func (s *tallyServe) start() {
	s.t.Helper()
	args := append([]string{"serve", "--data-dir", s.dataDir, "--addr", s.addr, "--log-level", "info"}, s.args...)
	s.child.start(s.env, "", s.bin, args...)
	ctx, cancel := context.WithTimeout(s.t.Context(), readyTimeout)
	defer cancel()
	for {
		code, _, err := s.health(ctx)
		if err == nil && code == http.StatusOK {
			return
		}
		select {
		case <-s.exited:
			s.t.Fatalf("tally serve exited before it was ready (%v); log ends:\n%s", s.err, s.log.tail(20))
		case <-ctx.Done():
			s.t.Fatalf("tally serve not healthy after %s (last: %d, %v); log ends:\n%s", readyTimeout, code, err, s.log.tail(20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// healthReport is the /healthz body (app/health.go).
type healthReport struct {
	Status       string `json:"status"`
	Dependencies map[string]struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"dependencies"`
}

func (s *tallyServe) health(ctx context.Context) (int, healthReport, error) {
	var rep healthReport
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+"/healthz", nil)
	if err != nil {
		return 0, rep, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, rep, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return resp.StatusCode, rep, fmt.Errorf("decode /healthz: %w", err)
	}
	return resp.StatusCode, rep, nil
}

// waitHealth polls /healthz until want(code, report) holds.
func (s *tallyServe) waitHealth(what string, timeout time.Duration, want func(int, healthReport) bool) (int, healthReport) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), timeout)
	defer cancel()
	for {
		code, rep, err := s.health(ctx)
		if err == nil && want(code, rep) {
			return code, rep
		}
		require.True(s.t, s.running(), "tally serve exited (%v) while waiting for %s; log ends:\n%s", s.err, what, s.log.tail(20))
		select {
		case <-ctx.Done():
			s.t.Fatalf("waited %s for %s; last /healthz: %d %+v %v", timeout, what, code, rep, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// metric returns the value of one sample of /metrics, e.g.
// `tally_dependency_up{dependency="nats"}`.
func (s *tallyServe) metric(sample string) string {
	s.t.Helper()
	resp, err := s.http.Get("http://" + s.addr + "/metrics")
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), sample+" "); ok {
			return v
		}
	}
	s.t.Fatalf("no sample %s in /metrics", sample)
	return ""
}

// ingestRun is one `tally ingest` child process.
type ingestRun struct {
	file   string
	done   chan struct{}
	out    bytes.Buffer
	err    error
	began  time.Time
	wall   time.Duration
	server time.Duration // what the server reported the ingest took
	events int           // "events appended"
}

var (
	tookRE     = regexp.MustCompile(`ingested in (\S+)`)
	appendedRE = regexp.MustCompile(`events appended\s+(\d+)`)
)

// ingest starts `tally ingest` of b against the server; wait on done.
func (s *tallyServe) ingest(b *bill) *ingestRun {
	args := []string{"ingest", b.path, "--tenant", b.tenant, "--server", "http://" + s.addr, "--data-dir", s.dataDir}
	if b.final {
		args = append(args, "--final")
	}
	cmd := exec.CommandContext(s.t.Context(), s.bin, args...)
	cmd.Env = childEnv()
	r := &ingestRun{file: b.name, done: make(chan struct{}), began: time.Now()}
	cmd.Stdout, cmd.Stderr = &r.out, &r.out
	go func() {
		defer close(r.done)
		r.err = cmd.Run()
		r.wall = time.Since(r.began)
		if r.err != nil {
			return
		}
		if m := tookRE.FindStringSubmatch(r.out.String()); m != nil {
			r.server, _ = time.ParseDuration(m[1])
		}
		if m := appendedRE.FindStringSubmatch(r.out.String()); m != nil {
			r.events, _ = strconv.Atoi(m[1])
		}
	}()
	return r
}

func (r *ingestRun) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// ingestOK runs `tally ingest` of b to the end and requires success.
func (s *tallyServe) ingestOK(b *bill) *ingestRun {
	s.t.Helper()
	r := s.ingest(b)
	<-r.done
	require.NoError(s.t, r.err, "tally ingest %s:\n%s", b.name, r.out.String())
	return r
}

// natsServer is a nats-server child process with JetStream on its own store
// directory and sync_interval: always, at a fixed port across restarts.
type natsServer struct {
	*child
	bin, conf, url string
	port           int
}

type natsConfig struct {
	name     string
	storeDir string
	port     int
	// cluster: this node's route port and every node's route port (empty:
	// a single server).
	clusterPort int
	routes      []int
}

func newNATSServer(t *testing.T, cfg natsConfig) *natsServer {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %q\nlisten: \"127.0.0.1:%d\"\nmax_payload: 8MB\nwrite_deadline: \"10s\"\n", cfg.name, cfg.port)
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", cfg.storeDir)
	if len(cfg.routes) > 0 {
		fmt.Fprintf(&b, "cluster {\n  name: \"tally-faults\"\n  listen: \"127.0.0.1:%d\"\n  routes: [\n", cfg.clusterPort)
		for _, p := range cfg.routes {
			fmt.Fprintf(&b, "    \"nats-route://127.0.0.1:%d\"\n", p)
		}
		b.WriteString("  ]\n}\n")
	}
	conf := filepath.Join(t.TempDir(), cfg.name+".conf")
	require.NoError(t, os.WriteFile(conf, []byte(b.String()), 0o600))
	return &natsServer{child: newChild(t, cfg.name), bin: natsServerBinary(t), conf: conf,
		port: cfg.port, url: fmt.Sprintf("nats://127.0.0.1:%d", cfg.port)}
}

// start runs the server and waits until it accepts connections.
func (n *natsServer) start() {
	n.t.Helper()
	n.child.start(childEnv(), "", n.bin, "-c", n.conf)
	deadline := time.Now().Add(readyTimeout)
	for {
		nc, err := nats.Connect(n.url, nats.Timeout(time.Second))
		if err == nil {
			nc.Close()
			return
		}
		select {
		case <-n.exited:
			n.t.Fatalf("%s exited before it was ready (%v); log ends:\n%s", n.name, n.err, n.log.tail(20))
		case <-time.After(50 * time.Millisecond):
		}
		require.True(n.t, time.Now().Before(deadline), "%s not accepting connections after %s: %v", n.name, readyTimeout, err)
	}
}

// waitJetStream waits until JetStream answers through nc (in a cluster:
// until a meta leader is elected).
func waitJetStream(t *testing.T, nc *nats.Conn) {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), readyTimeout)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(actx)
		acancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("JetStream not available after %s: %v", readyTimeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pgCluster is a PostgreSQL cluster private to one test, on a fixed port, so
// that it can be stopped and started under a running Tally (the machine's
// shared server is never touched).
type pgCluster struct {
	t       *testing.T
	dir     string
	data    string
	logFile string
	binDir  string
	port    int
	asUser  []string // runuser prefix when we are root: initdb refuses to run as root
}

func newPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	more, _ := filepath.Glob("/usr/pgsql-*/bin/pg_ctl")
	bins = append(bins, more...)
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		bins = append(bins, p)
	}
	require.NotEmpty(t, bins, "PostgreSQL binaries (initdb, pg_ctl): install postgresql")
	slices.SortFunc(bins, func(a, b string) int { return pgMajor(b) - pgMajor(a) }) // newest first
	c := &pgCluster{t: t, dir: tempDir(t, "tally-faults-pg-"), binDir: filepath.Dir(bins[0]), port: freePort(t)}
	c.data = filepath.Join(c.dir, "pg", "data")
	c.logFile = filepath.Join(c.dir, "pg", "server.log")
	require.NoError(t, os.Mkdir(filepath.Join(c.dir, "pg"), 0o700))
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		require.NoError(t, err, "running as root: initdb needs a postgres user to run as")
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		require.NoError(t, os.Chown(filepath.Join(c.dir, "pg"), uid, gid))
		runuser, err := exec.LookPath("runuser")
		require.NoError(t, err, "running as root: runuser runs initdb as postgres")
		c.asUser = []string{runuser, "-u", "postgres", "--"}
	}
	c.run("initdb", "-D", c.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C")
	t.Cleanup(func() {
		if c.running() {
			_ = c.pgCtl("stop", "-D", c.data, "-m", "immediate", "-w")
		}
	})
	return c
}

func pgMajor(pgCtl string) int {
	m := regexp.MustCompile(`/(\d+)/bin/`).FindStringSubmatch(pgCtl)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func (c *pgCluster) command(name string, args ...string) *exec.Cmd {
	argv := append(slices.Clone(c.asUser), filepath.Join(c.binDir, name))
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = c.dir
	cmd.Env = childEnv()
	return cmd
}

func (c *pgCluster) run(name string, args ...string) {
	c.t.Helper()
	out, err := c.command(name, args...).CombinedOutput()
	require.NoError(c.t, err, "%s: %s", name, out)
}

func (c *pgCluster) pgCtl(args ...string) error {
	out, err := c.command("pg_ctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %w: %s", args[0], err, out)
	}
	return nil
}

func (c *pgCluster) running() bool {
	return c.command("pg_ctl", "status", "-D", c.data).Run() == nil
}

// start starts the server on its port (TCP only) and waits until it accepts
// connections.
func (c *pgCluster) start() {
	c.t.Helper()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k ''", c.port)
	require.NoError(c.t, c.pgCtl("start", "-D", c.data, "-l", c.logFile, "-w", "-t", "120", "-o", opts))
}

// crash stops the server in immediate mode: every backend is killed with no
// shutdown checkpoint, and the next start runs crash recovery.
func (c *pgCluster) crash() {
	c.t.Helper()
	require.NoError(c.t, c.pgCtl("stop", "-D", c.data, "-m", "immediate", "-w", "-t", "60"))
}

// url of database db on the cluster.
func (c *pgCluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// createDatabase creates db and returns its URL.
func (c *pgCluster) createDatabase(db string) string {
	c.t.Helper()
	ctx := c.t.Context()
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	require.NoError(c.t, err)
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	require.NoError(c.t, err)
	return c.url(db)
}
