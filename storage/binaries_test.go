package storage

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeInstall makes dir/initdb and dir/pg_ctl; pg_ctl --version reports version.
func fakeInstall(t *testing.T, dir, version string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	script := "#!/bin/sh\necho 'pg_ctl (PostgreSQL) " + version + "'\n"
	for _, name := range []string{"initdb", "pg_ctl"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755))
	}
}

func TestFindBinaries(t *testing.T) {
	root := t.TempDir()
	lib := filepath.Join(root, "lib", "postgresql")
	for _, v := range []string{"9.6", "13", "15"} {
		fakeInstall(t, filepath.Join(lib, v, "bin"), v+".2")
	}
	// 16 is half installed (client package only): no initdb, so never chosen.
	require.NoError(t, os.MkdirAll(filepath.Join(lib, "16", "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(lib, "16", "bin", "pg_ctl"), nil, 0o755))
	// 17 lives elsewhere, found only through PATH.
	onPath := filepath.Join(root, "opt", "pg17")
	fakeInstall(t, onPath, "17.1")
	empty := filepath.Join(root, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))

	binaryGlobs = []string{filepath.Join(lib, "*", "bin")}
	t.Cleanup(func() { binaryGlobs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"} })
	t.Setenv("PATH", onPath)

	tests := []struct {
		name     string
		explicit string
		want     string
		dir      string // expected choice; empty means an error
		errHas   string
	}{
		{name: "newest versioned install wins", dir: filepath.Join(lib, "15", "bin")},
		{name: "data directory's version wins", want: "13", dir: filepath.Join(lib, "13", "bin")},
		{name: "two-part old version", want: "9.6", dir: filepath.Join(lib, "9.6", "bin")},
		{name: "version found only on PATH", want: "17", dir: onPath},
		{name: "version not installed", want: "12", errHas: "initialised by PostgreSQL 12"},
		{name: "explicit directory", explicit: filepath.Join(lib, "13", "bin"), dir: filepath.Join(lib, "13", "bin")},
		{name: "explicit directory without binaries", explicit: empty, errHas: "no initdb and pg_ctl in " + empty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := findBinaries(t.Context(), tt.explicit, tt.want)
			if tt.dir == "" {
				require.ErrorContains(t, err, tt.errHas)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.dir, b.dir)
		})
	}
}

func TestFindBinariesNoneInstalled(t *testing.T) {
	binaryGlobs = []string{filepath.Join(t.TempDir(), "*", "bin")}
	t.Cleanup(func() { binaryGlobs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"} })
	t.Setenv("PATH", t.TempDir())

	_, err := findBinaries(t.Context(), "", "")
	require.ErrorIs(t, err, errNoBinaries)
	require.ErrorContains(t, err, "install PostgreSQL")
	require.ErrorContains(t, err, "DATABASE_URL")
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"15", "9.6", 1},
		{"9.6", "9.5", 1},
		{"10", "10", 0},
		{"13", "17", -1},
		{"", "9.6", -1},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, compareVersions(tt.a, tt.b), "%q vs %q", tt.a, tt.b)
	}
}
