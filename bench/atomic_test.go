package bench_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tally-ledger/tally/bench"
	"github.com/tally-ledger/tally/eventstore/natstest"
)

// BenchmarkAtomicBatchPublish measures the alternative to many events per
// message: JetStream atomic batch publish (Nats-Batch-* headers, 1,000
// messages a batch, the server's default maximum), one event per message,
// with sync_interval: always. One op is one event. On our 2-core machines it
// ran at about 46k events/s, a third of BenchmarkAppend's chunked messages:
// each message is still stored (and fsynced) on its own, so eventstore
// carries many events per message instead.
func BenchmarkAtomicBatchPublish(b *testing.B) {
	srv := natstest.Run(b)
	nc := srv.Conn()
	js, err := jetstream.New(nc)
	require.NoError(b, err)
	_, err = js.CreateStream(b.Context(), jetstream.StreamConfig{
		Name: "ATOMIC", Subjects: []string{"atomic.>"}, Storage: jetstream.FileStorage, AllowAtomicPublish: true,
	})
	require.NoError(b, err)
	payload, err := proto.Marshal(bench.SampleCostLine("bench", 1))
	require.NoError(b, err)
	const size = 1000
	b.ResetTimer()
	for n, batch := 0, 0; n < b.N; batch++ {
		id := fmt.Sprintf("batch-%d", batch)
		count := min(size, b.N-n)
		for i := 1; i <= count; i++ {
			m := nats.NewMsg("atomic.bench")
			m.Data = payload
			m.Header.Set("Nats-Batch-Id", id)
			m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i))
			if i < count {
				require.NoError(b, nc.PublishMsg(m))
				continue
			}
			m.Header.Set("Nats-Batch-Commit", "1")
			resp, err := nc.RequestMsg(m, 30*time.Second)
			require.NoError(b, err)
			require.Contains(b, string(resp.Data), fmt.Sprintf(`"count":%d`, count))
		}
		n += count
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
