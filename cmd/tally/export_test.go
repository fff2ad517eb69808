package main

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/app"
	"github.com/tally-ledger/tally/exports"
	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/projections/closepkg"
)

// exportGateway serves a gateway beside a runner folding the ledger and the close package,
// with the FOCUS sample ingested for tenant acme, and returns its URL and an environment
// holding an auditor token for acme.
func exportGateway(t *testing.T) (string, map[string]string) {
	t.Helper()
	// Every read model, as tally serve folds them: a compliance pack holds them all.
	s := serve(t, app.Projections(nil)...)
	admin := map[string]string{"TALLY_TOKEN": s.token(t, tokens.Spec{Name: "cli-admin", Role: tokens.RoleAdmin})}
	_, _, _, err := execute(t, admin, "ingest", samplePath, "--tenant", "acme", "--server", s.url, "--final")
	require.NoError(t, err)
	s.caughtUp(t)
	return s.url, map[string]string{"TALLY_TOKEN": s.token(t, tokens.Spec{Name: "cli-auditor", Role: tokens.RoleAuditor, Tenant: "acme"})}
}

func TestExportCommands(t *testing.T) {
	url, env := exportGateway(t)
	dir := t.TempDir()
	run := func(args ...string) (string, string, error) {
		_, out, errOut, err := execute(t, env, append(args, "--tenant", "acme", "--server", url)...)
		return out, errOut, err
	}

	// FOCUS CSV under the server's name, in the current directory.
	t.Chdir(dir)
	out, _, err := run("export", "focus", "--period", "2024-09")
	require.NoError(t, err)
	require.Regexp(t, `^wrote acme-2024-09-focus.csv \(\d+ bytes\)\n$`, out)
	data, err := os.ReadFile(filepath.Join(dir, "acme-2024-09-focus.csv"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(data), strings.Join(exports.ColumnNames(), ",")+"\n"))
	require.Equal(t, 999+1, strings.Count(string(data), "\n"), "the sample's September lines and a header")

	// Parquet to stdout: the report goes to stderr.
	out, errOut, err := run("export", "focus", "--period", "2024-09", "--to-period", "2024-10", "--format", "parquet", "-o", "-")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out, "PAR1"))
	require.Contains(t, errOut, "wrote stdout")

	// Close package as CSV.
	closeCSV := filepath.Join(dir, "close.csv")
	_, _, err = run("export", "close", "--period", "2024-09", "--format", "csv", "-o", closeCSV)
	require.NoError(t, err)
	data, err = os.ReadFile(closeCSV)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(data), strings.Join(closepkg.CSVHeader, ",")+"\n"))

	// The pack, verified once saved.
	pack := filepath.Join(dir, "pack.zip")
	out, _, err = run("export", "pack", "--period", "2024-09", "-o", pack)
	require.NoError(t, err)
	require.Regexp(t, `^wrote .*pack.zip \(\d+ bytes\); verified: 10 files match the manifest \(sha256 [0-9a-f]{64}\); chain head \d+ [0-9a-f]{64}\n$`, out)
	_, out, _, err = execute(t, nil, "export", "verify", pack)
	require.NoError(t, err)
	require.Regexp(t, `^OK 10 files match the manifest .*: tenant acme, period 2024-09, chain head \d+ [0-9a-f]{64}, created \S+ by user:cli-auditor\n$`, out)

	// A tampered pack: one byte of focus.csv changed.
	tampered := filepath.Join(dir, "tampered.zip")
	rewriteZip(t, pack, tampered, func(name string, data []byte) []byte {
		if name == exports.FileFOCUS {
			return bytes.Replace(data, []byte("USD"), []byte("EUR"), 1)
		}
		return data
	})
	_, out, _, err = execute(t, nil, "export", "verify", tampered)
	require.ErrorIs(t, err, exports.ErrPackMismatch)
	require.Regexp(t, `^BAD focus.csv: sha256 [0-9a-f]{64}, the manifest says [0-9a-f]{64}\n$`, out)
}

func TestExportCommandErrors(t *testing.T) {
	url, env := exportGateway(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no period", []string{"export", "focus", "--tenant", "acme"}, "--period is required"},
		{"no tenant", []string{"export", "pack", "--period", "2024-09"}, "--tenant is required"},
		{"bad format", []string{"export", "focus", "--tenant", "acme", "--period", "2024-09", "--format", "xlsx"}, `--format "xlsx"`},
		{"bad close format", []string{"export", "close", "--tenant", "acme", "--period", "2024-09", "--format", "pdf"}, `--format "pdf"`},
		{"bad period", []string{"export", "focus", "--tenant", "acme", "--period", "2024-13"}, "period"},
		{"another tenant", []string{"export", "focus", "--tenant", "globex", "--period", "2024-09"}, "may only act for tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".out")
			_, _, _, err := execute(t, env, append(tc.args, "--server", url, "-o", out)...)
			require.ErrorContains(t, err, tc.want)
			require.NoFileExists(t, out, "a failed export leaves no file")
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Empty(t, entries, "no partial file either")
		})
	}
	_, _, _, err := execute(t, nil, "export", "verify", filepath.Join(dir, "missing.zip"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// rewriteZip copies the ZIP at from to to, passing each file through edit.
func rewriteZip(t *testing.T, from, to string, edit func(name string, data []byte) []byte) {
	t.Helper()
	zr, err := zip.OpenReader(from)
	require.NoError(t, err)
	defer zr.Close()
	f, err := os.Create(to)
	require.NoError(t, err)
	defer f.Close()
	zw := zip.NewWriter(f)
	for _, zf := range zr.File {
		rc, err := zf.Open()
		require.NoError(t, err)
		data, err := io.ReadAll(rc)
		require.NoError(t, err)
		rc.Close()
		w, err := zw.Create(zf.Name)
		require.NoError(t, err)
		_, err = w.Write(edit(zf.Name, data))
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
}
