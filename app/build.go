package app

import (
	"runtime"
	"runtime/debug"
)

// version is set at link time:
//
//	go build -ldflags "-X github.com/tally-ledger/tally/app.version=v1.2.3" ./cmd/tally
//
// Without it the module version recorded by the Go toolchain is used.
var version string

// BuildInfo identifies the running binary.
type BuildInfo struct {
	Version   string
	Revision  string // VCS commit, with "-dirty" for uncommitted changes; "unknown" without VCS stamping
	GoVersion string
}

// Build describes the running binary.
func Build() BuildInfo {
	b := BuildInfo{Version: version, Revision: "unknown", GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" {
			b.Version = bi.Main.Version
		}
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && b.Revision != "unknown" {
			b.Revision += "-dirty"
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	return b
}

func (b BuildInfo) String() string {
	return "tally " + b.Version + " (revision " + b.Revision + ", " + b.GoVersion + ")"
}
