package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/gateway/tokens"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// OpenLoop is one open-loop load: requests scheduled at a fixed rate whatever the answers,
// each timed from the moment it was due (not from when it could be sent), so a stall shows in
// the latencies of every request it delayed instead of hiding them (coordinated omission).
type OpenLoop struct {
	Name        string        `json:"name"`
	Rate        int           `json:"rate_per_sec"`
	Duration    time.Duration `json:"duration_ns"`
	Latency     Latency       `json:"latency"`
	MaxInFlight int64         `json:"max_in_flight"`
	// MessageBytes is the size of one stored log message (payload and headers).
	MessageBytes int `json:"message_bytes"`
}

// AppendReport compares single-event appends through the gateway with raw JetStream publish
// of messages of the same size on the same server, and, between the two, the same events
// appended straight to the event store (no HTTP, no token, no request validation), so the
// difference splits into the gateway's share and the log's.
type AppendReport struct {
	Gateway OpenLoop `json:"gateway_record_usage"`
	Store   OpenLoop `json:"store_append"`
	Raw     OpenLoop `json:"raw_jetstream_publish"`
	// Delta is gateway minus raw, in milliseconds: the cost of the HTTP/2 request, the token
	// check, the tenant and body validation, the chain and the conditional append.
	DeltaP50 float64 `json:"delta_p50_ms"`
	DeltaP99 float64 `json:"delta_p99_ms"`
	// GatewayOverStore is gateway minus store (HTTP/2, token lookup, validation);
	// StoreOverRaw is store minus raw (chain, tenant lock, conditional publish and its ack).
	GatewayOverStoreP50 float64 `json:"gateway_over_store_p50_ms"`
	GatewayOverStoreP99 float64 `json:"gateway_over_store_p99_ms"`
	StoreOverRawP50     float64 `json:"store_over_raw_p50_ms"`
	StoreOverRawP99     float64 `json:"store_over_raw_p99_ms"`
}

// openLoop calls do(i) for i < rate*d, request i due at start + i/rate, each in its own
// goroutine.
func openLoop(ctx context.Context, name string, rate int, d time.Duration, do func(ctx context.Context, i int) error) (OpenLoop, error) {
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	var inFlight, maxInFlight atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			t := time.NewTimer(w)
			select {
			case <-ctx.Done():
				t.Stop()
				wg.Wait()
				return OpenLoop{}, ctx.Err()
			case <-t.C:
			}
		}
		wg.Go(func() {
			f := inFlight.Add(1)
			for m := maxInFlight.Load(); f > m && !maxInFlight.CompareAndSwap(m, f); m = maxInFlight.Load() {
			}
			errs[i] = do(ctx, i)
			lat[i] = time.Since(due)
			inFlight.Add(-1)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var s samples
	for i := range n {
		s.add(lat[i], errs[i])
	}
	return OpenLoop{Name: name, Rate: rate, Duration: d, Latency: s.summary(elapsed), MaxInFlight: maxInFlight.Load()}, nil
}

// usageReading is a realistic usage push of about the size a metering agent sends.
func usageReading(i int) *tallyv1.UsageRecorded {
	start := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i%720) * time.Hour)
	return &tallyv1.UsageRecorded{
		Provider: "AWS", BillingAccountId: "123456789012",
		ResourceId: fmt.Sprintf("arn:aws:ec2:us-east-1:123456789012:instance/i-%017x", i%5000),
		Metric:     "cpu_hours", Quantity: fmt.Sprintf("%d.%02d", i%48, i%100), Unit: "Hours",
		PeriodStart: timestamppb.New(start), PeriodEnd: timestamppb.New(start.Add(time.Hour)),
		Attributes: []*tallyv1.KeyValue{{Key: "team", Value: loadTeams[i%len(loadTeams)]}, {Key: "env", Value: "prod"}},
	}
}

// RunAppendLoad pushes single usage readings through IngestService.RecordUsage at rate per
// second for d, with an ingester token scoped to tenant (so each request's tenant is checked
// against the token, validated, and chained onto the tenant's log), then publishes messages
// of the same size, with the same headers but the log's conditions, straight to a JetStream
// stream on the same embedded server (so with the same sync_interval: always), at the same
// rate for d. Between the two it appends the same events straight to the store at the same
// rate. The raw stream is deleted afterwards.
func (l *Load) RunAppendLoad(ctx context.Context, tenant string, rate int, d time.Duration) (AppendReport, error) {
	var rep AppendReport
	token, err := l.Token(ctx, "load-ingester", tenant, tokens.RoleIngester)
	if err != nil {
		return rep, err
	}
	hc, closeIdle := h2cClient(token)
	defer closeIdle()
	c := tallyv1connect.NewIngestServiceClient(hc, l.URL)
	run := time.Now().UnixNano()
	push := func(ctx context.Context, key string, i int) error {
		resp, err := c.RecordUsage(ctx, connect.NewRequest(&tallyv1.RecordUsageRequest{
			TenantId: tenant, IdempotencyKey: key, Usage: usageReading(i)}))
		if err != nil {
			return err
		}
		if resp.Msg.GetDuplicate() || resp.Msg.GetTenantSeq() == 0 {
			return fmt.Errorf("push %s: not appended (duplicate %v)", key, resp.Msg.GetDuplicate())
		}
		return nil
	}
	// Warm-up, untimed: the connection, and the store's first look at the tenant's chain.
	for i := range 20 {
		if err := push(ctx, fmt.Sprintf("load-%d-warm-%d", run, i), i); err != nil {
			return rep, fmt.Errorf("warm-up: %w", err)
		}
	}
	if rep.Gateway, err = openLoop(ctx, "gateway RecordUsage (h2c, token, validation, chained append)", rate, d, func(ctx context.Context, i int) error {
		return push(ctx, fmt.Sprintf("load-%d-%d", run, i), i)
	}); err != nil {
		return rep, err
	}

	// The same events straight into the store, as the gateway's push builds them.
	actor := &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "load-ingester"}
	if rep.Store, err = openLoop(ctx, "store Append of one event (chained, conditional publish)", rate, d, func(ctx context.Context, i int) error {
		key := fmt.Sprintf("load-%d-store-%d", run, i)
		u := usageReading(i)
		env := &tallyv1.Envelope{EventId: eventstore.DeterministicID(tenant, key), TenantId: tenant, OccurredAt: u.GetPeriodStart(),
			Actor: actor, Source: &tallyv1.Source{Adapter: "api", BatchId: key}, CorrelationId: key, IdempotencyKey: key,
			Body: &tallyv1.Envelope_UsageRecorded{UsageRecorded: u}}
		res, err := l.Store().Append(ctx, tenant, []*tallyv1.Envelope{env})
		if err == nil && res.Appended != 1 {
			err = fmt.Errorf("append %s: appended %d", key, res.Appended)
		}
		return err
	}); err != nil {
		return rep, err
	}

	// The message the gateway stored last, as the raw path's model.
	js := l.Store().JetStream()
	stream, err := js.Stream(ctx, l.Store().StreamName())
	if err != nil {
		return rep, err
	}
	last, err := stream.GetLastMsgForSubject(ctx, l.Store().TenantSubjects(tenant))
	if err != nil {
		return rep, fmt.Errorf("read the last appended message: %w", err)
	}
	header := nats.Header{}
	for k, v := range last.Header {
		if !strings.HasPrefix(k, "Nats-") {
			header[k] = v
		}
	}
	size := len(last.Data)
	for k, vs := range header {
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	rep.Gateway.MessageBytes = size

	const rawStream = "TALLY_LOAD_RAW"
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: rawStream, Subjects: []string{"tally_load_raw.>"}, Storage: jetstream.FileStorage, Replicas: 1,
	}); err != nil {
		return rep, err
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), rawStream) }()
	publish := func(ctx context.Context, i int) error {
		msg := &nats.Msg{Subject: "tally_load_raw." + tenant + ".usage_recorded", Data: last.Data, Header: header}
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			return err
		}
		if ack.Stream != rawStream {
			return errors.New("acknowledged by another stream")
		}
		return nil
	}
	for i := range 20 {
		if err := publish(ctx, i); err != nil {
			return rep, fmt.Errorf("warm-up of raw publish: %w", err)
		}
	}
	if rep.Raw, err = openLoop(ctx, "raw JetStream publish, same size, sync_interval: always", rate, d, publish); err != nil {
		return rep, err
	}
	rep.Raw.MessageBytes, rep.Store.MessageBytes = size, size
	rep.DeltaP50 = rep.Gateway.Latency.P50 - rep.Raw.Latency.P50
	rep.DeltaP99 = rep.Gateway.Latency.P99 - rep.Raw.Latency.P99
	rep.GatewayOverStoreP50 = rep.Gateway.Latency.P50 - rep.Store.Latency.P50
	rep.GatewayOverStoreP99 = rep.Gateway.Latency.P99 - rep.Store.Latency.P99
	rep.StoreOverRawP50 = rep.Store.Latency.P50 - rep.Raw.Latency.P50
	rep.StoreOverRawP99 = rep.Store.Latency.P99 - rep.Raw.Latency.P99
	return rep, nil
}
