package eventstore_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/bench"
	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// BenchmarkIndexMemory appends events to one tenant in batches of 5,000, as
// bulk ingestion does, and reports the Go heap in use (after a GC), the RSS
// and the peak RSS of the process after 1M events and after
// EVENTSTORE_MEM_EVENTS (default 1M; 5000000 for the 1M/5M comparison). The
// nats-server runs in a child process, so the figures are the store's and
// its index's alone; so is the CPU time per event. It then closes the store, opens it again on the same
// index, and times the first Head (the old in-memory index rescanned the
// tenant's whole log there). It ignores b.N: run it with -benchtime 1x.
//
//	EVENTSTORE_MEM_EVENTS=5000000 go test -run '^$' -bench BenchmarkIndexMemory -benchtime 1x ./eventstore
func BenchmarkIndexMemory(b *testing.B) {
	total := 1_000_000
	if v := os.Getenv("EVENTSTORE_MEM_EVENTS"); v != "" {
		var err error
		total, err = strconv.Atoi(v)
		require.NoError(b, err, "EVENTSTORE_MEM_EVENTS")
	}
	const batchSize = 5_000
	url := childServer(b)
	nc, err := nats.Connect(url, nats.Timeout(10*time.Second))
	require.NoError(b, err)
	defer nc.Close()
	indexDir := b.TempDir()
	open := func() *eventstore.Store {
		st, err := eventstore.Open(b.Context(), nc, eventstore.Options{IndexDir: indexDir, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(b, err)
		return st
	}
	st := open()

	batches := make(chan []*tallyv1.Envelope, 2)
	go func() {
		defer close(batches)
		for n := 0; n < total; {
			batch := make([]*tallyv1.Envelope, 0, batchSize)
			for i := 0; i < batchSize && n < total; i++ {
				batch = append(batch, bench.SampleCostLine("mem", n))
				n++
			}
			batches <- batch
		}
	}()
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU(b)
	n := 0
	for batch := range batches {
		res, err := st.Append(b.Context(), "mem", batch)
		require.NoError(b, err)
		require.Equal(b, len(batch), res.Appended)
		n += len(batch)
		if n == 1_000_000 || n == total {
			label := fmt.Sprintf("@%dM", n/1_000_000)
			if n%1_000_000 != 0 {
				label = fmt.Sprintf("@%dk", n/1_000)
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			rss, hwm := procMemory(b)
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB"+label)
			b.ReportMetric(rss, "rss-MiB"+label)
			b.ReportMetric(hwm, "peak-rss-MiB"+label)
			cpu := float64((processCPU(b) - cpu0).Microseconds()) / float64(n)
			b.ReportMetric(cpu, "cpu-µs/event"+label)
			b.Logf("%d events in %s: heap in use %.1f MiB, rss %.1f MiB, peak rss %.1f MiB, cpu %.1f µs/event",
				n, time.Since(start).Round(time.Millisecond), float64(ms.HeapInuse)/(1<<20), rss, hwm, cpu)
		}
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
	require.NoError(b, st.Close())
	b.ReportMetric(float64(dirSize(b, indexDir))/(1<<20), "index-disk-MiB")

	st = open()
	defer st.Close()
	reopened := time.Now()
	head, err := st.Head(b.Context(), "mem")
	require.NoError(b, err)
	require.Equal(b, uint64(n), head.Seq)
	b.ReportMetric(float64(time.Since(reopened).Milliseconds()), "first-head-ms")
	b.StopTimer()
}

// dirSize is the size of the files under dir, in bytes.
func dirSize(b *testing.B, dir string) int64 {
	var size int64
	require.NoError(b, filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		size += info.Size()
		return err
	}))
	return size
}

// processCPU is the CPU time the process has used (user and system, every
// goroutine: the producer of the batches, the store, pebble's compactions).
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procMemory is the process's resident set and its peak, in MiB.
func procMemory(b *testing.B) (rss, hwm float64) {
	status, err := os.ReadFile("/proc/self/status")
	require.NoError(b, err)
	for line := range strings.Lines(string(status)) {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 64)
		switch name {
		case "VmRSS":
			require.NoError(b, err)
			rss = kb / 1024
		case "VmHWM":
			require.NoError(b, err)
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

// childServer runs an embedded nats-server (fsync on every write, as in
// production) in a child process and returns its URL; it stops when the
// benchmark ends.
func childServer(b *testing.B) string {
	cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryBenchServerChild$")
	cmd.Env = append(os.Environ(), "EVENTSTORE_MEM_SERVER_DIR="+b.TempDir())
	stdin, err := cmd.StdinPipe()
	require.NoError(b, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(b, cmd.Start())
	b.Cleanup(func() {
		_ = stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("nats-server child: %v: %s", err, stderr.String())
		}
	})
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if url, ok := strings.CutPrefix(lines.Text(), "nats-url: "); ok {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return url
		}
	}
	b.Fatalf("nats-server child gave no url: %s", stderr.String())
	return ""
}

// TestMemoryBenchServerChild is the nats-server process of
// BenchmarkIndexMemory: it runs until its standard input closes.
func TestMemoryBenchServerChild(t *testing.T) {
	dir := os.Getenv("EVENTSTORE_MEM_SERVER_DIR")
	if dir == "" {
		t.Skip("runs as a child of BenchmarkIndexMemory")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := eventstore.StartEmbedded(ctx, eventstore.EmbeddedConfig{
		StoreDir: dir, Listen: "127.0.0.1:-1", Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	defer e.Shutdown()
	fmt.Println("nats-url: " + e.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin)
}
