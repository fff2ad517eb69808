package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PeakRSSMiB is this process's peak resident set (VmHWM), 0 where /proc
// does not tell.
func PeakRSSMiB() float64 { return peakRSSMiBOf(os.Getpid()) }

// ResetPeakRSS starts this process's peak resident set (VmHWM) over from
// its current size, so that the next PeakRSSMiB is one stage's own peak. It
// reports whether Linux let it (writing 5 to /proc/self/clear_refs).
func ResetPeakRSS() bool { return resetPeakRSSOf(os.Getpid()) }

// resetPeakRSSOf writes "5" to pid's clear_refs, which resets its peak RSS
// (Linux 4.0 on); where it cannot, the peak stays the process's, which
// overstates the stage's.
func resetPeakRSSOf(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
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

// Memory is one stage's memory: each figure from the stage's start to its end.
type Memory struct {
	// TallyPeakRSSMiB is this process's peak resident set: Tally's code, the Go runtime and
	// the harness (and nats-server's when it runs in-process). On a raw row it is the raw
	// side's (for the raw copy: its rows, prebuilt in memory).
	TallyPeakRSSMiB float64 `json:"tally_peak_rss_mib"`
	// NATSPeakRSSMiB is the nats-server process's peak resident set; absent when the server
	// runs in this process (its memory is then in TallyPeakRSSMiB).
	NATSPeakRSSMiB float64 `json:"nats_peak_rss_mib,omitempty"`
	// GoHeapPeakMiB is the most Go heap in use in this process (live objects and garbage not
	// yet collected, sampled every 50 ms), GoHeapLiveMiB the most a GC marked live.
	GoHeapPeakMiB float64 `json:"go_heap_peak_mib"`
	GoHeapLiveMiB float64 `json:"go_heap_live_mib"`
	// AtPeak is where this process's memory was at the highest resident set sampled.
	AtPeak *RSSBreakdown `json:"at_peak_rss,omitempty"`
}

// RSSBreakdown splits this process's resident set by the Go runtime's memory classes
// (runtime/metrics /memory/classes/...), in MiB.
type RSSBreakdown struct {
	RSS float64 `json:"rss_mib"`
	// HeapObjects: live objects and garbage not yet swept; HeapUnused: room in spans in use
	// (fragmentation); HeapFree: free pages not yet returned to the OS.
	HeapObjects float64 `json:"heap_objects_mib"`
	HeapUnused  float64 `json:"heap_unused_mib"`
	HeapFree    float64 `json:"heap_free_mib"`
	// Stacks of goroutines and OS threads; Metadata: the runtime's (spans, caches, GC).
	Stacks   float64 `json:"stacks_mib"`
	Metadata float64 `json:"metadata_mib"`
	// Other: the rest the runtime maps (profiling buckets, trace, other).
	Other float64 `json:"other_mib"`
	// Outside is RSS less what the Go runtime maps and has not released: the binary's code
	// and data, and memory not Go's (an estimate: not all the runtime maps is resident).
	Outside float64 `json:"outside_go_mib"`
}

// harness is what every stage runs with: the nats-server binary (empty: in-process) and the
// directory for heap profiles (empty: none).
type harness struct{ natsServer, heapProfiles string }

// measure collects garbage, so that the last stage's is not charged to this one, and starts
// measuring stage's memory (and srv's, nil: none).
func (h harness) measure(stage string, srv *logServer) *meter {
	clean()
	return startMeter(stage, srv, h.heapProfiles)
}

// done ends m and sets r's memory; err is the stage's, else a failure to write a profile.
func (m *meter) done(r *Rate, err error) error {
	r.Memory = m.stop()
	if err != nil {
		return err
	}
	return m.profileError()
}

// meter measures one stage's Memory. With a profile directory it also writes heap profiles
// of this process: <stage>-start.pb.gz at the start, <stage>-peak.pb.gz at the most live
// heap a GC marked during the stage (a heap profile's in-use figures may be up to two GCs
// old), and <stage>-end.pb.gz at the end. alloc_space of
// `go tool pprof -diff_base <stage>-start.pb.gz <stage>-end.pb.gz` is the stage's own
// allocation.
type meter struct {
	stage   string
	srv     *logServer // nil: no nats-server to measure
	profDir string

	quit    chan struct{}
	stopped chan struct{}
	mu      sync.Mutex
	maxUse  uint64
	maxLive uint64
	maxRSS  uint64        // the highest resident set sampled, bytes
	atPeak  *RSSBreakdown // at maxRSS
	peak    bytes.Buffer  // heap profile at maxLive
	peakAt  uint64        // maxLive when peak was taken
	profErr error
}

// startMeter resets the peak RSS of this process and of srv's (nil: none) and starts
// sampling the Go heap. The caller collects garbage first (clean), so that the last stage's
// is not charged to this one.
func startMeter(stage string, srv *logServer, profDir string) *meter {
	m := &meter{stage: stage, srv: srv, profDir: profDir, quit: make(chan struct{}), stopped: make(chan struct{})}
	if profDir != "" {
		m.profErr = writeHeapProfile(filepath.Join(profDir, m.file("start")))
	}
	ResetPeakRSS()
	if srv != nil {
		srv.resetPeakRSS()
	}
	go func() {
		defer close(m.stopped)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.quit:
				return
			case <-t.C:
				m.sample()
			}
		}
	}()
	return m
}

var memSamples = []string{
	"/memory/classes/heap/objects:bytes", "/gc/heap/live:bytes",
	"/memory/classes/heap/unused:bytes", "/memory/classes/heap/free:bytes", "/memory/classes/heap/released:bytes",
	"/memory/classes/heap/stacks:bytes", "/memory/classes/os-stacks:bytes",
	"/memory/classes/metadata/mcache/free:bytes", "/memory/classes/metadata/mcache/inuse:bytes",
	"/memory/classes/metadata/mspan/free:bytes", "/memory/classes/metadata/mspan/inuse:bytes",
	"/memory/classes/metadata/other:bytes", "/memory/classes/total:bytes",
}

func (m *meter) sample() {
	s := make([]metrics.Sample, len(memSamples))
	for i, n := range memSamples {
		s[i].Name = n
	}
	metrics.Read(s)
	v := make([]uint64, len(s))
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = s[i].Value.Uint64()
		}
	}
	rss := residentBytes()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.maxUse = max(m.maxUse, v[0])
	live := v[1]
	m.maxLive = max(m.maxLive, live)
	// A new peak of live heap (by more than 1 MiB, so that a slow climb does not write a
	// profile each sample): the heap profile holds what a recent GC found live.
	if m.profDir != "" && live > m.peakAt+1<<20 {
		m.peak.Reset()
		if err := pprof.Lookup("heap").WriteTo(&m.peak, 0); err != nil && m.profErr == nil {
			m.profErr = err
		}
		m.peakAt = live
	}
	if rss > m.maxRSS {
		m.maxRSS = rss
		mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
		meta := v[7] + v[8] + v[9] + v[10] + v[11]
		known := v[0] + v[2] + v[3] + v[5] + v[6] + meta
		mapped := v[12] - v[4] // what the runtime maps, less what it released
		m.atPeak = &RSSBreakdown{RSS: mib(rss), HeapObjects: mib(v[0]), HeapUnused: mib(v[2]), HeapFree: mib(v[3]),
			Stacks: mib(v[5] + v[6]), Metadata: mib(meta), Other: mib(mapped - min(known, mapped)),
			Outside: mib(rss) - mib(mapped)}
	}
}

// residentBytes is this process's resident set now (/proc/self/statm), 0 where it cannot
// tell.
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// stop ends the stage and returns its Memory.
func (m *meter) stop() Memory {
	close(m.quit)
	<-m.stopped
	m.sample()
	mem := Memory{TallyPeakRSSMiB: PeakRSSMiB()}
	if m.srv != nil {
		mem.NATSPeakRSSMiB = m.srv.peakRSSMiB()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// What a GC marked live was in use then, between two samples.
	mem.GoHeapPeakMiB, mem.GoHeapLiveMiB = float64(max(m.maxUse, m.maxLive))/(1<<20), float64(m.maxLive)/(1<<20)
	mem.AtPeak = m.atPeak
	if m.profDir != "" {
		if m.peak.Len() > 0 {
			if err := os.WriteFile(filepath.Join(m.profDir, m.file("peak")), m.peak.Bytes(), 0o644); err != nil && m.profErr == nil {
				m.profErr = err
			}
		}
		if err := writeHeapProfile(filepath.Join(m.profDir, m.file("end"))); err != nil && m.profErr == nil {
			m.profErr = err
		}
	}
	return mem
}

// file is the profile file name of the stage at when.
func (m *meter) file(when string) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(m.stage))
	return name + "-" + when + ".pb.gz"
}

// profileError is the first error writing the stage's heap profiles, if any.
func (m *meter) profileError() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.profErr != nil {
		return fmt.Errorf("heap profile of %s in %s: %w", m.stage, m.profDir, m.profErr)
	}
	return nil
}

// writeHeapProfile writes this process's heap profile (pprof, gzipped protobuf) to path.
func writeHeapProfile(path string) error {
	var b bytes.Buffer
	if err := pprof.Lookup("heap").WriteTo(&b, 0); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
