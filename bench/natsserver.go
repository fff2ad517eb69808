package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// logServer is the nats-server a stage's log lives on: a process of its own when the stage
// is given a nats-server binary, as in production (Tally's memory and the server's are then
// measured apart), else in this process (eventstore.StartEmbedded), as `tally serve` runs it
// all-in-one.
type logServer struct {
	emb *eventstore.Embedded
	ext *externalServer
}

// startLog starts a nats-server with JetStream under dir, fsyncing every write unless noSync:
// the process bin when set, else in this process. It returns the server and a connection.
func startLog(ctx context.Context, bin, dir string, noSync bool) (*logServer, *nats.Conn, error) {
	s := &logServer{}
	var err error
	if bin != "" {
		s.ext, err = startExternal(ctx, bin, dir, noSync)
	} else {
		s.emb, err = eventstore.StartEmbedded(ctx, eventstore.EmbeddedConfig{
			StoreDir: dir, NoSyncAlways: noSync, Logger: slog.New(slog.DiscardHandler),
		})
	}
	if err != nil {
		return nil, nil, err
	}
	nc, err := s.connect()
	if err != nil {
		s.stop()
		return nil, nil, err
	}
	return s, nc, nil
}

// connect opens another client connection to the server.
func (s *logServer) connect() (*nats.Conn, error) {
	if s.ext != nil {
		nc, err := nats.Connect(s.ext.url, nats.Name("tally-bench"))
		if err != nil {
			return nil, fmt.Errorf("connect to nats-server at %s: %w", s.ext.url, err)
		}
		return nc, nil
	}
	return s.emb.Connect()
}

// stop shuts the server down.
func (s *logServer) stop() {
	if s.ext != nil {
		s.ext.stop()
		return
	}
	s.emb.Shutdown()
}

// resetPeakRSS starts the server process's peak resident set over (nothing in-process: it
// is this process's).
func (s *logServer) resetPeakRSS() {
	if s.ext != nil {
		resetPeakRSSOf(s.ext.cmd.Process.Pid)
	}
}

// peakRSSMiB is the server process's peak resident set; 0 in-process.
func (s *logServer) peakRSSMiB() float64 {
	if s.ext == nil {
		return 0
	}
	return peakRSSMiBOf(s.ext.cmd.Process.Pid)
}
