package eventstore_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/bench"
	"github.com/tally-ledger/tally/eventstore/natstest"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// BenchmarkAppend appends cost-line events in batches of 10,000 with the
// durable default (SyncAlways); one op is one event. Compare commits with
// benchstat; `make bench` puts the figure beside the machine's raw limits.
func BenchmarkAppend(b *testing.B) {
	srv := natstest.Run(b)
	st := srv.Store()
	const batchSize = 10_000
	// Batches are built by a producer goroutine while the previous one is
	// appended, as an ingester does.
	batches := make(chan []*tallyv1.Envelope, 2)
	go func() {
		defer close(batches)
		for n := 0; n < b.N; {
			batch := make([]*tallyv1.Envelope, 0, batchSize)
			for i := 0; i < batchSize && n < b.N; i++ {
				batch = append(batch, bench.SampleCostLine("bench", n))
				n++
			}
			batches <- batch
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for batch := range batches {
		res, err := st.Append(b.Context(), "bench", batch)
		require.NoError(b, err)
		require.Equal(b, len(batch), res.Appended)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
