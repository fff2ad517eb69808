package faults

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/storage/pgtest"
)

// binDir holds the binaries the suite builds once per test binary.
var binDir string

// TestMain is pgtest.Main plus the removal of the built binaries (pgtest.Main
// exits, so it cannot be called here).
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	if err := pgtest.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// size is how hard the suite pushes: reduced by default (inside make test),
// full with TALLY_FAULTS=full (make test-faults).
type size struct {
	name string
	// kills of tally serve in TestKill9Serve.
	kills int
	// rows of each generated FOCUS file.
	rows int
	// rounds of TestClusterNodeKill: each kills one node (the stream leader)
	// and restarts it.
	clusterRounds int
	// batches appended in each phase of a cluster round (before the kill,
	// while the node is down, after it is back), of clusterBatch events.
	clusterBatches int
	// outageRows: rows of the files TestDependencyOutages ingests;
	// outageRounds: outages of each dependency.
	outageRows, outageRounds int
}

const clusterBatch = 100

func suiteSize(t *testing.T) size {
	t.Helper()
	if testing.Short() {
		t.Skip("the fault suite starts tally serve, nats-server and PostgreSQL processes: not in -short")
	}
	switch v := os.Getenv("TALLY_FAULTS"); v {
	case "", "short":
		return size{name: "short", kills: 4, rows: 6000, clusterRounds: 1, clusterBatches: 10, outageRows: 4000, outageRounds: 1}
	case "full":
		return size{name: "full", kills: 24, rows: 15000, clusterRounds: 3, clusterBatches: 40, outageRows: 15000, outageRounds: 3}
	default:
		t.Fatalf("TALLY_FAULTS=%q: use short (the default) or full", v)
		return size{}
	}
}

// seeded returns the test's random source and logs its seed: TALLY_FAULTS_SEED
// when set, else one taken from the clock.
func seeded(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("TALLY_FAULTS_SEED"); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "TALLY_FAULTS_SEED must be an unsigned integer")
	}
	t.Logf("faults: seed %d (repeat its choices with TALLY_FAULTS_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x7a11))
}

var builds struct {
	mu   sync.Mutex
	done map[string]string
}

// binary builds a Go main package once per test binary and returns the path
// of the executable. The go command works offline once the module cache
// holds the dependencies (make deps builds everything first).
func binary(t *testing.T, name, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if p, ok := builds.done[pkg]; ok {
		return p
	}
	if binDir == "" {
		dir, err := os.MkdirTemp("", "tally-faults-bin-")
		require.NoError(t, err)
		binDir = dir
	}
	goCmd, err := exec.LookPath("go")
	require.NoError(t, err, "the fault suite builds tally and nats-server with the go command")
	out := filepath.Join(binDir, name)
	began := time.Now()
	cmd := exec.CommandContext(t.Context(), goCmd, "build", "-o", out, pkg)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build %s: %s", pkg, b)
	t.Logf("built %s in %s", pkg, time.Since(began).Round(time.Millisecond))
	if builds.done == nil {
		builds.done = map[string]string{}
	}
	builds.done[pkg] = out
	return out
}

// tallyBinary is the tally binary under test: TALLY_FAULTS_TALLY when set (to
// test a release build), else one built from this checkout.
func tallyBinary(t *testing.T) string {
	if p := os.Getenv("TALLY_FAULTS_TALLY"); p != "" {
		return p
	}
	return binary(t, "tally", "github.com/tally-ledger/tally/cmd/tally")
}

func natsServerBinary(t *testing.T) string {
	return binary(t, "nats-server", "github.com/nats-io/nats-server/v2")
}

// childEnv is this process's environment without what would point a child at
// another Tally, NATS or PostgreSQL, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "TALLY_") || name == "NATS_URL" || name == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// tempDir is a directory the postgres user can pass through (t.TempDir is
// private to its owner), removed when the test ends.
func tempDir(t *testing.T, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
