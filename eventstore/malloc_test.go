package eventstore

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTuneMalloc: glibc's malloc is set for pebble's memory where the
// process uses it (cgo on Linux with glibc, as CI and `make run` build), and
// the environment's own settings win.
func TestTuneMalloc(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{name: "defaults", want: glibcMalloc()},
		{name: "arenas set", env: map[string]string{"MALLOC_ARENA_MAX": "4"}},
		{name: "mmap threshold set", env: map[string]string{"MALLOC_MMAP_THRESHOLD_": "65536"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tuneMalloc(func(k string) string { return tc.env[k] }))
		})
	}
}
