package bench

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSamplesSummary(t *testing.T) {
	var s samples
	for i := 100; i >= 1; i-- { // out of order: summary sorts
		s.add(time.Duration(i)*time.Millisecond, nil)
	}
	boom := errors.New("boom")
	s.add(time.Hour, boom) // errors are counted, not timed
	s.add(time.Hour, errors.New("second"))
	got := s.summary(2 * time.Second)
	require.Equal(t, Latency{Requests: 102, Errors: 2, PerSec: 51, P50: 51, P95: 96, P99: 100, Max: 100, FirstError: "boom"}, got)

	var other samples
	other.add(500*time.Millisecond, nil)
	s.merge(&other)
	require.Equal(t, 500.0, s.summary(time.Second).Max)
	require.Equal(t, Latency{}, (&samples{}).summary(0), "no samples, no figures")
}

// TestOpenLoopSchedulesEveryRequest: the open loop sends rate*d requests whatever the answers
// (here every fifth fails and the first blocks until the last has been sent), counts the
// failures and reports how many were in flight at once.
func TestOpenLoopSchedulesEveryRequest(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int64
	ol, err := openLoop(t.Context(), "test", 200, 250*time.Millisecond, func(ctx context.Context, i int) error {
		n := calls.Add(1)
		if i == 0 {
			<-release
		}
		if n == 50 {
			close(release)
		}
		if i%5 == 4 {
			return errors.New("refused")
		}
		return nil
	})
	require.NoError(t, err)
	require.EqualValues(t, 50, calls.Load())
	require.Equal(t, 50, ol.Latency.Requests)
	require.Equal(t, 10, ol.Latency.Errors)
	require.GreaterOrEqual(t, ol.MaxInFlight, int64(2), "the blocked first request did not hold the others back")
}
