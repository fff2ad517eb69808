package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// clusterTenant is the tenant TestClusterNodeKill appends to.
const clusterTenant = "acme"

// TestClusterNodeKill runs a three-node JetStream cluster on loopback (three
// nats-server processes, routes between them, sync_interval: always) holding
// the TALLY stream with three replicas. A writer appends cost-line events
// without pause; each round kills the stream's leader with SIGKILL, requires
// appends to go on while it is down, restarts it and waits until it has caught
// up. At the end the restarted node is made the stream's leader and the whole
// stream is read from it: it must hold exactly the acknowledged events, each
// once, with the tenant's chain intact.
func TestClusterNodeKill(t *testing.T) {
	sz := suiteSize(t)
	rng := seeded(t)
	began := time.Now()
	ctx := t.Context()

	dir := tempDir(t, "tally-faults-cluster-")
	var routes, ports []int
	for range 3 {
		ports, routes = append(ports, freePort(t)), append(routes, freePort(t))
	}
	nodes := map[string]*natsServer{}
	var urls []string
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		nodes[name] = newNATSServer(t, natsConfig{name: name, storeDir: filepath.Join(dir, name), port: ports[i], clusterPort: routes[i], routes: routes})
		urls = append(urls, nodes[name].url)
	}
	for _, n := range nodes {
		n.start()
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(2*time.Second))
	require.NoError(t, err)
	defer nc.Close()
	waitJetStream(t, nc)
	opts := eventstore.Options{Replicas: 3, RequestTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	var store *eventstore.Store
	require.Eventually(t, func() bool {
		store, err = eventstore.Open(ctx, nc, opts)
		return err == nil
	}, readyTimeout, 200*time.Millisecond, "open the R3 stream: %v", err)
	defer func() { require.NoError(t, store.Close()) }()
	js := store.JetStream()
	info := func() *jetstream.StreamInfo {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, err := js.Stream(ictx, store.StreamName())
		if err != nil {
			return nil
		}
		return st.CachedInfo()
	}
	require.Equal(t, 3, info().Config.Replicas)

	w := &clusterWriter{store: store, acked: map[string]bool{}}
	stop := make(chan struct{})
	wdone := make(chan error, 1)
	go func() { wdone <- w.run(ctx, stop) }()
	waitAcked := func(n int, what string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for w.count() < n {
			select {
			case err := <-wdone:
				t.Fatalf("the writer stopped (%v) waiting for %s", err, what)
			case <-time.After(20 * time.Millisecond):
			}
			require.True(t, time.Now().Before(deadline), "%d of %d events acknowledged after 2 minutes waiting for %s (retries %d, last error %v)",
				w.count(), n, what, w.retries(), w.lastErr())
		}
	}
	phase := sz.clusterBatches * clusterBatch

	var restarted string
	var downAcked, kills int
	for round := range sz.clusterRounds {
		waitAcked(w.count()+phase, "appends before the kill")
		si := info()
		require.NotNil(t, si)
		leader := si.Cluster.Leader
		victim := nodes[leader]
		require.NotNil(t, victim, "stream leader %q", leader)
		// Let an append be in flight: kill a moment after an acknowledgement.
		time.Sleep(randDuration(rng, 10*time.Millisecond))
		atKill := w.count()
		w.resetPause()
		victim.kill()
		kills++
		waitAcked(atKill+phase, "appends while "+leader+" is down")
		down, pause := w.count()-atKill, w.pause()
		downAcked += down
		newLeader := ""
		if si := info(); si != nil {
			newLeader = si.Cluster.Leader
		}
		victim.start()
		restartedAt := time.Now()
		waitCurrent(t, info, leader)
		t.Logf("round %d: killed stream leader %s at %d acknowledged events; appends paused at most %s, new leader %s; %d events acknowledged while it was down; it rejoined and caught up %s after its restart",
			round+1, leader, atKill, pause.Round(time.Millisecond), newLeader, down, time.Since(restartedAt).Round(time.Millisecond))
		restarted = leader
	}
	waitAcked(w.count()+phase, "appends after the last restart")
	close(stop)
	require.NoError(t, <-wdone)
	waitCurrent(t, info, restarted)

	// Read everything back from the node that was killed last: make it the
	// stream's leader (reads are served by the leader).
	if info().Cluster.Leader != restarted {
		req, err := json.Marshal(map[string]any{"placement": map[string]string{"preferred": restarted}})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			if info().Cluster.Leader == restarted {
				return true
			}
			_, _ = nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+store.StreamName(), req, 5*time.Second)
			return false
		}, time.Minute, 500*time.Millisecond, "make %s the stream leader", restarted)
	}
	// A read right after a leader change can find no responder yet; the
	// read starts over (reads have no side effect).
	var got map[string]int
	var total decimal.Decimal
	require.Eventually(t, func() bool {
		got, total = map[string]int{}, decimal.Zero
		err := store.Read(ctx, eventstore.ReadFilter{Tenant: clusterTenant}, func(ev eventstore.Event) error {
			got[ev.Envelope.GetEventId()]++
			total = total.Add(decimal.RequireFromString(ev.Envelope.GetCostLineRecorded().GetLine().GetBilledCost()))
			return nil
		})
		return err == nil
	}, time.Minute, 500*time.Millisecond, "read the stream from %s", restarted)
	require.Equal(t, restarted, info().Cluster.Leader, "read from the restarted node")
	var lost, twice []string
	for id := range w.acked {
		if got[id] == 0 && len(lost) < 10 {
			lost = append(lost, id)
		}
	}
	for id, n := range got {
		if n > 1 && len(twice) < 10 {
			twice = append(twice, id)
		}
	}
	require.Empty(t, lost, "acknowledged events missing from the stream read from %s", restarted)
	require.Empty(t, twice, "events in the stream twice")
	require.Len(t, got, len(w.acked), "the stream holds the acknowledged events and nothing else")
	require.Equal(t, w.sum.String(), total.String(), "billed total of the stream = of the acknowledged events")
	rep, err := store.Verify(ctx, clusterTenant)
	require.NoError(t, err)
	require.True(t, rep.OK(), "chain: %v", rep.FirstBad())
	si := info()

	// tally serve on the cluster (NATS_URL of the three nodes, three
	// replicas) folds the same events into the same total.
	pool, dbURL := pgtest.NewDB(t)
	s := newTallyServe(t, dbURL, "--nats-url", strings.Join(urls, ","), "--replicas", "3")
	s.start()
	waitProjected(t, pool, si.State.LastSeq)
	require.Equal(t, map[string]costRow{
		groupKey{tenant: clusterTenant, provider: "AWS", service: "Amazon Elastic Compute Cloud", currency: "USD"}.String(): {
			Billed: w.sum.String(), Final: "0", Lines: int64(len(w.acked))},
	}, s.costs(clusterTenant), "tally serve's ledger on the cluster")
	s.stop()

	t.Logf("faults: TestClusterNodeKill (%s): 3-node JetStream cluster, R3 stream, sync_interval always; %d kill -9 of the stream leader, %d restarts; "+
		"%d events acknowledged (%d while a node was down), %d append retries, 0 lost, 0 twice, chain intact, read back from restarted node %s; %d messages; tally serve on the cluster folded them to the same total; %s",
		sz.name, kills, kills, len(w.acked), downAcked, w.retries(), restarted, si.State.Msgs, time.Since(began).Round(time.Second))
}

// waitCurrent waits until every replica of the stream is online, current and
// not lagging, with node among them (or leading).
func waitCurrent(t *testing.T, info func() *jetstream.StreamInfo, node string) {
	t.Helper()
	var last string
	ok := func() bool {
		si := info()
		if si == nil || si.Cluster == nil || si.Cluster.Leader == "" {
			last = "no stream leader"
			return false
		}
		seen := si.Cluster.Leader == node
		if len(si.Cluster.Replicas) != 2 {
			last = fmt.Sprintf("%d replicas besides leader %s", len(si.Cluster.Replicas), si.Cluster.Leader)
			return false
		}
		for _, r := range si.Cluster.Replicas {
			if r.Offline || !r.Current || r.Lag > 0 {
				last = fmt.Sprintf("replica %s: offline %v, current %v, lag %d", r.Name, r.Offline, r.Current, r.Lag)
				return false
			}
			seen = seen || r.Name == node
		}
		last = node + " not in the stream's peers"
		return seen
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !ok() {
		require.True(t, time.Now().Before(deadline), "replicas not current after 2 minutes: %s", last)
		time.Sleep(100 * time.Millisecond)
	}
}

// clusterWriter appends batches of cost-line events with deterministic ids
// until stopped, retrying a batch whose outcome is unknown (the log
// unavailable) until it is acknowledged: a retry of events already stored
// appends nothing.
type clusterWriter struct {
	store *eventstore.Store

	mu        sync.Mutex
	acked     map[string]bool
	sum       decimal.Decimal
	tries     int
	lastError error
	lastAck   time.Time
	maxPause  time.Duration // longest time between acknowledgements since resetPause
}

func (w *clusterWriter) resetPause() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maxPause = 0
}

func (w *clusterWriter) pause() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxPause
}

func (w *clusterWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *clusterWriter) retries() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tries
}

func (w *clusterWriter) lastErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastError
}

func (w *clusterWriter) run(ctx context.Context, stop <-chan struct{}) error {
	for b := 0; ; b++ {
		select {
		case <-stop:
			return nil
		default:
		}
		for {
			evs, sum := clusterBatchEvents(b)
			_, err := w.store.Append(ctx, clusterTenant, evs)
			if err == nil {
				w.mu.Lock()
				for _, e := range evs {
					w.acked[e.GetEventId()] = true
				}
				w.sum = w.sum.Add(sum)
				now := time.Now()
				if !w.lastAck.IsZero() {
					w.maxPause = max(w.maxPause, now.Sub(w.lastAck))
				}
				w.lastAck = now
				w.mu.Unlock()
				break
			}
			if !errors.Is(err, eventstore.ErrUnavailable) && !errors.Is(err, eventstore.ErrConflict) {
				return fmt.Errorf("batch %d: %w", b, err)
			}
			w.mu.Lock()
			w.tries++
			w.lastError = err
			w.mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

var clusterPeriod = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// clusterBatchEvents builds batch b afresh (Append fills in the log's fields
// of the envelopes it is given): clusterBatch recorded cost lines with
// deterministic ids and amounts, and their billed total.
func clusterBatchEvents(b int) ([]*tallyv1.Envelope, decimal.Decimal) {
	evs := make([]*tallyv1.Envelope, clusterBatch)
	var sum decimal.Decimal
	for i := range evs {
		n := b*clusterBatch + i
		key := fmt.Sprintf("k%07d", n)
		billed := fmt.Sprintf("%d.%04d", n%997, n*7919%10000)
		sum = sum.Add(decimal.RequireFromString(billed))
		start := clusterPeriod.Add(time.Duration(n%(28*24)) * time.Hour)
		evs[i] = &tallyv1.Envelope{
			EventId: eventstore.DeterministicID(clusterTenant, "rec/"+key), TenantId: clusterTenant, IdempotencyKey: "rec/" + key,
			OccurredAt: timestamppb.New(start),
			Actor:      &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "faults"},
			Body: &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: &tallyv1.CostLine{
				LineKey: key,
				Scope: &tallyv1.BillScope{Provider: "AWS", BillingAccountId: "111122223333",
					BillingPeriodStart: timestamppb.New(clusterPeriod), BillingPeriodEnd: timestamppb.New(clusterPeriod.AddDate(0, 1, 0))},
				ServiceName: "Amazon Elastic Compute Cloud", RegionId: "us-east-1", ChargeCategory: "Usage",
				ChargePeriodStart: timestamppb.New(start), ChargePeriodEnd: timestamppb.New(start.Add(time.Hour)),
				BilledCost: billed, EffectiveCost: billed, ListCost: billed, ContractedCost: billed,
				ConsumedQuantity: "1", BillingCurrency: "USD",
			}}},
		}
	}
	return evs, sum
}
