package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tally-ledger/tally/eventstore"
)

// externalServer is a nats-server process started from a binary, with the
// settings of the embedded server (eventstore.StartEmbedded): its memory is
// then its own, apart from the client's.
type externalServer struct {
	cmd *exec.Cmd
	url string
}

// startExternal starts bin with JetStream under dir, fsyncing every write
// unless noSync, and waits until it accepts connections.
func startExternal(ctx context.Context, bin, dir string, noSync bool) (*externalServer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	sync := "sync_interval: always"
	if noSync {
		sync = ""
	}
	conf := fmt.Sprintf("host: 127.0.0.1\nport: %d\nmax_payload: %d\nwrite_deadline: \"10s\"\njetstream {\n  store_dir: %q\n  %s\n}\n",
		port, eventstore.DefaultMaxPayload, filepath.Join(dir, "store"), sync)
	confPath := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "nats.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-c", confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &externalServer{cmd: cmd, url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	deadline := time.Now().Add(30 * time.Second)
	for {
		nc, err := nats.Connect(s.url)
		if err == nil {
			nc.Close()
			return s, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.stop()
			return nil, fmt.Errorf("nats-server %s did not answer at %s (log in %s): %w", bin, s.url, dir, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the server and waits for it (it flushes its store on SIGTERM).
func (s *externalServer) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// rawPublishExternal is rawPublish against a nats-server process with the
// default fsync.
func rawPublishExternal(ctx context.Context, bin, dir string, events int) (Rate, error) {
	s, err := startExternal(ctx, bin, dir, true)
	if err != nil {
		return Rate{}, err
	}
	defer s.stop()
	nc, err := nats.Connect(s.url)
	if err != nil {
		return Rate{}, err
	}
	defer nc.Close()
	return rawPublishOn(ctx, nc, "raw publish, 1 event/msg, default fsync, nats-server process", events)
}

// resetPeakRSS makes the process's peak resident set (VmHWM) start again
// from its current one, so a stage's peak is its own.
func resetPeakRSS() { resetPeakRSSOf(os.Getpid()) }

func resetPeakRSSOf(pid int) {
	// "5" resets the peak RSS (Linux 4.0 on); where it cannot, the peak
	// stays the process's, which overstates the stage's.
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// peakRSSMiBOf is a process's VmHWM, 0 where /proc does not tell.
func peakRSSMiBOf(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0
			}
			return kb / 1024
		}
	}
	return 0
}

// watchHeap samples the Go heap every 100 ms until the returned function
// is called, which returns the most heap in use (live objects and garbage
// not yet collected) and the most marked live by a GC, in MiB.
func watchHeap() func() (inUse, live float64) {
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	var mu sync.Mutex
	var maxUse, maxLive uint64
	read := func() {
		metrics.Read(samples)
		mu.Lock()
		defer mu.Unlock()
		if samples[0].Value.Kind() == metrics.KindUint64 {
			maxUse = max(maxUse, samples[0].Value.Uint64())
		}
		if samples[1].Value.Kind() == metrics.KindUint64 {
			maxLive = max(maxLive, samples[1].Value.Uint64())
		}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() (float64, float64) {
		close(done)
		<-stopped
		read()
		mu.Lock()
		defer mu.Unlock()
		return float64(maxUse) / (1 << 20), float64(maxLive) / (1 << 20)
	}
}
