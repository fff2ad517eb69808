package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/tally-ledger/tally/gateway/tokens"
)

// AdminTokenFile is the file in the data directory where tally serve writes
// the first admin token, readable by its owner only. The CLI on the same
// machine uses it when given no token.
const AdminTokenFile = "admin.token"

// AdminTokenPath is where the admin token of a Tally with data directory
// dataDir is written.
func AdminTokenPath(dataDir string) string { return filepath.Join(dataDir, AdminTokenFile) }

// ensureAdminToken makes an admin token for every tenant and writes it to
// DataDir/admin.token when the database has no valid admin token: on the
// first start, and after every admin token was revoked. Otherwise it
// leaves the file alone, so that a restart keeps the token it wrote.
func (a *App) ensureAdminToken(ctx context.Context) error {
	path := AdminTokenPath(a.cfg.DataDir)
	saved := false
	var made tokens.Token
	ok, err := tokens.NewStore(a.pool).EnsureAdmin(ctx, "admin", func(t tokens.Token, secret string) error {
		if err := writeSecretFile(path, secret); err != nil {
			return fmt.Errorf("write the admin token to %s: %w", path, err)
		}
		saved, made = true, t
		return nil
	})
	if err != nil {
		if saved {
			// Its token was never committed.
			_ = os.Remove(path)
		}
		return fmt.Errorf("admin token: %w", err)
	}
	if ok {
		a.log.InfoContext(ctx, "wrote a new admin token for every tenant; the CLI on this machine uses it by default",
			slog.String("path", path), slog.String("token_id", made.ID))
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		a.log.InfoContext(ctx, "an admin token exists, but not in the data directory: make tokens with tally tokens create",
			slog.String("path", path))
	}
	return nil
}

// writeSecretFile replaces path with secret, mode 0600, atomically: a
// reader sees the old file or the whole new one.
func writeSecretFile(path, secret string) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// CreateTemp makes the file 0600 already; say so in case that changes.
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
