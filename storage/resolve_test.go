package storage

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// logTo returns a logger writing text lines to buf, to check what Resolve decided.
func logTo(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, nil))
}

// tempDataDir is a data directory the postgres user can reach when we run as root: t.TempDir
// and its parent are private to us.
func tempDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	require.NoError(t, os.Chmod(dir, 0o755))
	return dir
}

func TestResolveExplicitURLIsUsedAsGiven(t *testing.T) {
	// Nothing listens there: an explicit URL is the operator's decision, and Open reports it.
	url := fmt.Sprintf("postgres://tally:s3cret@127.0.0.1:%d/ledger", closedPort(t))
	var logs bytes.Buffer
	got, stop, err := Resolve(t.Context(), Config{URL: url, DataDir: t.TempDir(), Logger: logTo(&logs)})
	require.NoError(t, err)
	require.Equal(t, url, got)
	require.NoError(t, stop())
	require.Contains(t, logs.String(), "using configured PostgreSQL")
	require.NotContains(t, logs.String(), "s3cret")
}

func TestResolveLocal(t *testing.T) {
	dataDir := t.TempDir()
	got, stop, err := Resolve(t.Context(), Config{DataDir: dataDir, Logger: logTo(new(bytes.Buffer))})
	require.NoError(t, err, "these tests need PostgreSQL at %s", DefaultLocalURL)
	require.Equal(t, DefaultLocalURL, got)
	require.NoError(t, stop())
	entries, err := os.ReadDir(dataDir)
	require.NoError(t, err)
	require.Empty(t, entries, "no private cluster when the local server answers")
}

func TestResolveErrors(t *testing.T) {
	port := closedPort(t)
	local := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres", port)
	// A data directory below one that only root may enter.
	private := filepath.Join(t.TempDir(), "private")
	require.NoError(t, os.Mkdir(private, 0o700))

	// A data directory left by an initdb that was killed half way.
	halfInitialised := tempDataDir(t)
	require.NoError(t, os.MkdirAll(filepath.Join(halfInitialised, "postgres", "data", "base"), 0o755))

	tests := []struct {
		name       string
		cfg        Config
		noBinaries bool
		rootOnly   bool
		want       []string
	}{
		{
			name: "bad explicit URL",
			cfg:  Config{URL: "postgres://tally:s3cret@db:notaport/ledger"},
			want: []string{"parse database URL"},
		},
		{
			name: "no server and no data directory",
			cfg:  Config{LocalURL: local},
			want: []string{fmt.Sprintf("no PostgreSQL answers at 127.0.0.1:%d/postgres", port), "set DATABASE_URL"},
		},
		{
			name:       "no server and no binaries",
			cfg:        Config{LocalURL: local, DataDir: t.TempDir()},
			noBinaries: true,
			want: []string{
				fmt.Sprintf("no PostgreSQL answers at 127.0.0.1:%d/postgres", port),
				"no initdb and pg_ctl found", "install PostgreSQL", "set DATABASE_URL",
			},
		},
		{
			name:     "data directory the postgres user cannot reach",
			cfg:      Config{LocalURL: local, DataDir: filepath.Join(private, "tally")},
			rootOnly: true,
			want:     []string{"the postgres user cannot reach", "chmod o+x", "set DATABASE_URL"},
		},
		{
			name: "half initialised data directory",
			cfg:  Config{LocalURL: local, DataDir: halfInitialised},
			want: []string{"initdb", "not empty", "remove " + filepath.Join(halfInitialised, "postgres", "data")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rootOnly && os.Geteuid() != 0 {
				t.Skip("only root hands the cluster to another user")
			}
			if tt.noBinaries {
				binaryGlobs = []string{filepath.Join(t.TempDir(), "*", "bin")}
				t.Cleanup(func() { binaryGlobs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"} })
				t.Setenv("PATH", t.TempDir())
			}
			tt.cfg.Logger = logTo(new(bytes.Buffer))
			_, stop, err := Resolve(t.Context(), tt.cfg)
			if err == nil {
				require.NoError(t, stop())
			}
			t.Log(err) // with -v, to read what a person would see
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
			require.NotContains(t, err.Error(), "s3cret")
		})
	}
}
