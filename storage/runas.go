package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// pgUser is who runs the PostgreSQL binaries. initdb and postgres refuse to run as root, so when
// we are root they run as the postgres system user through runuser, and the directories they
// write must belong to that user.
type pgUser struct {
	name    string // "" means this process's own user; no runuser, no chown
	runuser string
	uid     int
	gid     int
	groups  []int
}

var errNoPostgresUser = errors.New("running as root, and initdb refuses to run as root, but there is no postgres user to run it as: create one (useradd --system postgres), run tally as an ordinary user, or set DATABASE_URL")

func lookupPGUser() (*pgUser, error) {
	if os.Geteuid() != 0 {
		return &pgUser{}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", errNoPostgresUser, err)
	}
	runuser, err := findRunuser()
	if err != nil {
		return nil, fmt.Errorf("running as root, and initdb refuses to run as root, but runuser (util-linux) is missing to run it as postgres: install util-linux, run tally as an ordinary user, or set DATABASE_URL: %w", err)
	}
	pu := &pgUser{name: u.Username, runuser: runuser}
	if pu.uid, err = strconv.Atoi(u.Uid); err != nil {
		return nil, fmt.Errorf("postgres user id %q: %w", u.Uid, err)
	}
	if pu.gid, err = strconv.Atoi(u.Gid); err != nil {
		return nil, fmt.Errorf("postgres group id %q: %w", u.Gid, err)
	}
	gids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("groups of the postgres user: %w", err)
	}
	for _, g := range gids {
		if id, err := strconv.Atoi(g); err == nil {
			pu.groups = append(pu.groups, id)
		}
	}
	return pu, nil
}

// findRunuser looks in PATH, then where util-linux installs it: a service's PATH often lacks
// the sbin directories.
func findRunuser() (string, error) {
	path, err := exec.LookPath("runuser")
	if err == nil {
		return path, nil
	}
	for _, p := range []string{"/usr/sbin/runuser", "/sbin/runuser"} {
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", err
}

// command runs bin with args as the PostgreSQL user, in dir: a working directory the user can
// enter, since postgres complains when it cannot (root's home, say).
func (u *pgUser) command(ctx context.Context, dir, bin string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if u.name == "" {
		cmd = exec.CommandContext(ctx, bin, args...)
	} else {
		cmd = exec.CommandContext(ctx, u.runuser, append([]string{"-u", u.name, "--", bin}, args...)...)
	}
	cmd.Dir = dir
	// If a cancelled pg_ctl leaves a child holding our output pipe, give up on it rather
	// than hang.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// own makes path belong to the PostgreSQL user.
func (u *pgUser) own(path string) error {
	if u.name == "" {
		return nil
	}
	if err := os.Chown(path, u.uid, u.gid); err != nil {
		return fmt.Errorf("give %s to the %s user: %w", path, u.name, err)
	}
	return nil
}

// checkReach fails, saying what to change, when the PostgreSQL user cannot walk down to dir:
// every directory above it needs search (x) permission for that user. We do not change the
// permissions of directories we did not create; the operator decides.
func (u *pgUser) checkReach(dir string) error {
	if u.name == "" {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("check that the %s user can reach %s: %w", u.name, dir, err)
		}
		if !u.canSearch(fi) {
			return fmt.Errorf("the %s user cannot reach %s because %s (mode %04o) does not let it through: run chmod o+x %s, choose a data directory it can reach, or set DATABASE_URL",
				u.name, dir, p, fi.Mode().Perm(), p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (u *pgUser) canSearch(fi os.FileInfo) bool {
	uid, gid, ok := fileOwner(fi)
	perm := fi.Mode().Perm()
	switch {
	case !ok:
		return true // cannot tell on this system; let PostgreSQL report it
	case uid == u.uid:
		return perm&0o100 != 0
	case gid == u.gid || slices.Contains(u.groups, gid):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}
