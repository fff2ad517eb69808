package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// fallbackChild marks the re-executed test binary: the shared server is resolved once per
// binary, so only a fresh process can show the path taken when no server answers.
const fallbackChild = "PGTEST_FALLBACK_CHILD"

// TestPrivateClusterFallback runs this test binary again with nothing answering at the local
// URL, and checks that NewDB then works on a private cluster, which Main stops and removes.
func TestPrivateClusterFallback(t *testing.T) {
	if os.Getenv(fallbackChild) != "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		localURL = fmt.Sprintf("postgres://postgres@%s/postgres", l.Addr())
		require.NoError(t, l.Close())

		pool, _ := NewDB(t)
		_, err = pool.Exec(t.Context(), "INSERT INTO projection_checkpoints (name, version) VALUES ('ledger', 1)")
		require.NoError(t, err)
		fmt.Println("cluster dir:", server.dir)
		return
	}
	if testing.Short() {
		t.Skip("starts PostgreSQL: initdb takes seconds")
	}
	if os.Getenv("DATABASE_URL") != "" {
		t.Skip("DATABASE_URL is set, so pgtest never falls back")
	}

	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestPrivateClusterFallback$", "-test.v")
	cmd.Env = append(os.Environ(), fallbackChild+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "private PostgreSQL started")
	require.Contains(t, string(out), "private PostgreSQL stopped", "Main stops the cluster")

	m := regexp.MustCompile(`cluster dir: (\S+)`).FindSubmatch(out)
	require.NotNil(t, m, "%s", out)
	require.True(t, filepath.IsAbs(string(m[1])))
	require.NoDirExists(t, string(m[1]), "Main removes the cluster's directory")
}
