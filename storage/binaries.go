package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// binaryGlobs are where distributions install PostgreSQL side by side, one directory per major
// version: Debian and Ubuntu, then Red Hat and Fedora. A package var so tests can point it at a
// fake tree.
var binaryGlobs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"}

var errNoBinaries = errors.New("no initdb and pg_ctl found in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin or PATH: install PostgreSQL (apt-get install postgresql) or set DATABASE_URL")

// pgBinaries is one installation's initdb and pg_ctl.
type pgBinaries struct {
	dir     string
	version string // major version: "15", or "9.6" before PostgreSQL 10
}

func (b pgBinaries) initdb() string { return filepath.Join(b.dir, "initdb") }
func (b pgBinaries) pgCtl() string  { return filepath.Join(b.dir, "pg_ctl") }

// findBinaries picks the installation to run. explicit, if set, wins. want, if set, is the
// major version an existing data directory was initialised with: any other version refuses to
// open it, so only that one will do. Otherwise the newest version wins.
func findBinaries(ctx context.Context, explicit, want string) (pgBinaries, error) {
	var found []pgBinaries
	if explicit != "" {
		if !hasBinaries(explicit) {
			return pgBinaries{}, fmt.Errorf("no initdb and pg_ctl in %s: fix the PostgreSQL binary directory or leave it empty to search", explicit)
		}
		found = append(found, pgBinaries{dir: explicit})
	} else {
		found = installedBinaries()
		if initdb, err := exec.LookPath("initdb"); err == nil {
			// Often a symlink into one of the directories above; the real path is what
			// tells the version.
			if real, err := filepath.EvalSymlinks(initdb); err == nil {
				initdb = real
			}
			if dir := filepath.Dir(initdb); hasBinaries(dir) && !slices.ContainsFunc(found, func(b pgBinaries) bool { return b.dir == dir }) {
				found = append(found, pgBinaries{dir: dir})
			}
		}
	}
	if len(found) == 0 {
		return pgBinaries{}, errNoBinaries
	}
	if want == "" {
		return found[0], nil
	}
	var seen []string
	for _, b := range found {
		if b.version == "" {
			b.version = askVersion(ctx, b)
		}
		if b.version == want {
			return b, nil
		}
		seen = append(seen, cmp.Or(b.version, "unknown")+" in "+b.dir)
	}
	return pgBinaries{}, fmt.Errorf("the data directory was initialised by PostgreSQL %s but only these binaries were found: %s: install PostgreSQL %s, or upgrade the directory with pg_upgrade, or move it away to start afresh",
		want, strings.Join(seen, ", "), want)
}

// installedBinaries lists the versioned installations, newest first.
func installedBinaries() []pgBinaries {
	var found []pgBinaries
	for _, glob := range binaryGlobs {
		dirs, _ := filepath.Glob(glob) // the only error is a malformed pattern
		for _, dir := range dirs {
			if !hasBinaries(dir) {
				continue
			}
			// The version is the path element the * matched: .../postgresql/15/bin, /usr/pgsql-15/bin.
			v := filepath.Base(filepath.Dir(dir))
			v = v[strings.LastIndex(v, "-")+1:]
			found = append(found, pgBinaries{dir: dir, version: v})
		}
	}
	slices.SortStableFunc(found, func(a, b pgBinaries) int { return compareVersions(b.version, a.version) })
	return found
}

func hasBinaries(dir string) bool {
	return isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "pg_ctl"))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

var versionOutput = regexp.MustCompile(`\(PostgreSQL\) (\d+)(\.\d+)?`)

// askVersion runs pg_ctl --version and returns the major version, or "" if it cannot tell.
func askVersion(ctx context.Context, b pgBinaries) string {
	out, err := exec.CommandContext(ctx, b.pgCtl(), "--version").Output()
	if err != nil {
		return ""
	}
	m := versionOutput.FindStringSubmatch(string(out))
	if m == nil {
		return ""
	}
	if major, _ := strconv.Atoi(m[1]); major < 10 {
		return m[1] + m[2] // before 10 the major version had two parts: 9.6
	}
	return m[1]
}

// compareVersions orders major versions numerically ("9.6" < "15"); anything unparsable sorts
// first, so it is tried last.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(pa), len(pb)) {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if c := cmp.Compare(x, y); c != 0 {
			return c
		}
	}
	return 0
}
