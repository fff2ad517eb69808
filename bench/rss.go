package bench

import (
	"os"
	"strconv"
	"strings"
)

// PeakRSSMiB is this process's peak resident set (VmHWM), 0 where /proc
// does not tell.
func PeakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
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

// ResetPeakRSS starts this process's peak resident set (VmHWM) over from
// its current size, so that the next PeakRSSMiB is one stage's own peak. It
// reports whether Linux let it (writing 5 to /proc/self/clear_refs).
func ResetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}
