package storage

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckReach(t *testing.T) {
	// A user that owns nothing here: only the "other" permission bits let it through.
	stranger := &pgUser{name: "stranger", uid: 54321, gid: 54321}
	tests := []struct {
		name     string
		parent   os.FileMode
		reachErr bool
	}{
		{name: "open parent", parent: 0o755},
		{name: "search-only parent", parent: 0o711},
		{name: "private parent", parent: 0o700, reachErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			// t.TempDir's own parent is private; open it so only the case's mode decides.
			require.NoError(t, os.Chmod(filepath.Dir(base), 0o755))
			require.NoError(t, os.Chmod(base, tt.parent))
			t.Cleanup(func() { _ = os.Chmod(base, 0o755) })

			err := stranger.checkReach(filepath.Join(base, "postgres"))
			if !tt.reachErr {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, "chmod o+x "+base)
			require.ErrorContains(t, err, "DATABASE_URL")
		})
	}
}

func TestCheckReachAsSelf(t *testing.T) {
	// Not root: the binaries run as us, so nothing to check.
	require.NoError(t, (&pgUser{}).checkReach("/nonexistent/anything"))
}
