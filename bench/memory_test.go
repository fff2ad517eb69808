package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// TestMeterMeasuresTheStage: a stage that holds 64 MiB live is charged with it (peak RSS, live
// Go heap, and the heap's objects at the peak RSS), and with a profile directory its start,
// peak and end heap profiles are written (gzipped protobuf).
func TestMeterMeasuresTheStage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		profiles bool
	}{
		{"without profiles", false},
		{"with profiles", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h harness
			if tc.profiles {
				h.heapProfiles = t.TempDir()
			}
			m := h.measure("Stage One", nil)
			held := make([]byte, 64<<20)
			for i := range held {
				held[i] = byte(i) // touch every page: resident, not only reserved
			}
			runtime.GC() // a GC marks it live
			var r Rate
			require.NoError(t, m.done(&r, nil))
			runtime.KeepAlive(held)
			require.GreaterOrEqual(t, r.TallyPeakRSSMiB, 64.0)
			require.GreaterOrEqual(t, r.GoHeapLiveMiB, 64.0)
			require.GreaterOrEqual(t, r.GoHeapPeakMiB, r.GoHeapLiveMiB)
			require.Zero(t, r.NATSPeakRSSMiB, "no nats-server to measure")
			require.NotNil(t, r.AtPeak)
			require.GreaterOrEqual(t, r.AtPeak.RSS, 64.0)
			require.GreaterOrEqual(t, r.AtPeak.HeapObjects, 64.0)
			if !tc.profiles {
				return
			}
			for _, when := range []string{"start", "peak", "end"} {
				b, err := os.ReadFile(filepath.Join(h.heapProfiles, "stage-one-"+when+".pb.gz"))
				require.NoError(t, err)
				require.Greater(t, len(b), 2)
				require.Equal(t, []byte{0x1f, 0x8b}, b[:2], "gzip")
			}
		})
	}
}

// TestLogServer: the log runs in this process, or in a nats-server process of its own whose
// peak RSS is measured apart (built from the module's pinned nats-server, or
// $TALLY_BENCH_NATS_SERVER).
func TestLogServer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		external bool
	}{
		{"in-process", false},
		{"nats-server process", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := ""
			if tc.external {
				bin = natsServerBinary(t)
			}
			srv, nc, err := startLog(t.Context(), bin, t.TempDir(), false)
			require.NoError(t, err)
			defer srv.stop()
			defer nc.Close()
			js, err := jetstream.New(nc)
			require.NoError(t, err)
			_, err = js.AccountInfo(t.Context())
			require.NoError(t, err, "JetStream is on")
			other, err := srv.connect()
			require.NoError(t, err)
			other.Close()

			m := startMeter("log", srv, "")
			mem := m.stop()
			if tc.external {
				require.Greater(t, mem.NATSPeakRSSMiB, 0.0)
				require.NotEqual(t, os.Getpid(), srv.ext.cmd.Process.Pid)
			} else {
				require.Zero(t, mem.NATSPeakRSSMiB, "in this process: its memory is this process's")
			}
			require.Greater(t, mem.TallyPeakRSSMiB, 0.0)
		})
	}
}

// natsServerBinary is $TALLY_BENCH_NATS_SERVER, else nats-server built from the version
// go.mod pins, as make bench builds it.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("TALLY_BENCH_NATS_SERVER"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "nats-server")
	out, err := exec.CommandContext(t.Context(), "go",
		"build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
	require.NoError(t, err, "build nats-server: %s", out)
	return bin
}
