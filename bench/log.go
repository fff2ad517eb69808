// Package bench measures Tally against the raw speed of the machine it runs
// on, in one run, and reports ratios: a figure means little without the
// limit of the same disk and CPU beside it.
//
// It must never be imported by production code.
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// LogConfig sizes the event-log benchmark.
type LogConfig struct {
	// Events appended through the durable Append path.
	Events int
	// BatchSize: events per Append call (an ingest hands over thousands).
	BatchSize int
	// RawEvents published one message each with the default fsync.
	RawEvents int
	// RawSyncEvents published one message each with SyncAlways. At a few
	// thousand a second, a sample is enough for a steady rate.
	RawSyncEvents int
	// Dir for the servers' stores; a temp dir when empty.
	Dir    string
	Logger *slog.Logger
	// NATSServer is the path of a nats-server binary: each part runs against a nats-server
	// process of its own (the settings of the embedded one), as in production, so that this
	// process's memory and the server's are measured apart. Empty: in this process.
	NATSServer string
	// HeapProfiles, when set, is a directory for heap profiles of each part (see meter).
	HeapProfiles string
}

// Rate is one measured stage.
type Rate struct {
	Name     string        `json:"name"`
	Events   int           `json:"events"`
	Duration time.Duration `json:"duration_ns"`
	PerSec   float64       `json:"per_sec"` // a rate, not money
	// Messages the stage sent to JetStream (fsyncs with SyncAlways).
	Messages int `json:"messages"`
	// EventBytes is the mean size of one encoded event.
	EventBytes int `json:"event_bytes"`
	// Memory of the stage alone (peaks reset at its start).
	Memory
}

// LogReport holds the three rates and their ratios.
type LogReport struct {
	Durable       Rate    `json:"durable_append"`
	RawDefault    Rate    `json:"raw_publish_default_fsync"`
	RawSync       Rate    `json:"raw_publish_sync_always"`
	VsRawDefault  float64 `json:"durable_vs_raw_default"`
	VsRawSync     float64 `json:"durable_vs_raw_sync_always"`
	GoMaxProcs    int     `json:"gomaxprocs"`
	MeasuredAtUTC string  `json:"measured_at_utc"`
}

// SampleCostLine builds a realistic cost-line event (about the size of a
// FOCUS row) with a deterministic id.
func SampleCostLine(tenant string, n int) *tallyv1.Envelope {
	key := fmt.Sprintf("bench-line-%09d", n)
	start := time.Date(2026, 10, 1+n%30, 0, 0, 0, 0, time.UTC)
	return &tallyv1.Envelope{
		EventId:        eventstore.DeterministicID(tenant, key),
		TenantId:       tenant,
		IdempotencyKey: key,
		OccurredAt:     timestamppb.New(start),
		Actor:          &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "focus-ingest"},
		Source:         &tallyv1.Source{Adapter: "focus-file", File: "bench.csv", Line: uint64(n + 2)},
		CorrelationId:  "bench",
		Body: &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: &tallyv1.CostLine{
			LineKey: key,
			Scope: &tallyv1.BillScope{
				Provider: "AWS", BillingAccountId: "123456789012",
				BillingPeriodStart: timestamppb.New(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)),
				BillingPeriodEnd:   timestamppb.New(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)),
			},
			SubAccountId:      fmt.Sprintf("2109876543%02d", n%50),
			ChargePeriodStart: timestamppb.New(start),
			ChargePeriodEnd:   timestamppb.New(start.Add(24 * time.Hour)),
			ChargeCategory:    "Usage",
			ChargeFrequency:   "Usage-Based",
			ServiceName:       "Amazon Elastic Compute Cloud",
			ServiceCategory:   "Compute",
			RegionId:          "us-east-1",
			ResourceId:        fmt.Sprintf("arn:aws:ec2:us-east-1:123456789012:instance/i-%017x", n),
			SkuId:             "JRTCKXETXF",
			SkuPriceId:        "JRTCKXETXF.6YS6EN2CT7",
			PricingCategory:   "Standard",
			PricingUnit:       "Hours",
			PricingQuantity:   "24",
			ConsumedQuantity:  "24",
			ConsumedUnit:      "Hours",
			BilledCost:        fmt.Sprintf("%d.%04d", n%1000, n%10000),
			EffectiveCost:     fmt.Sprintf("%d.%04d", n%1000, n%10000),
			ListCost:          fmt.Sprintf("%d.%04d", n%1000+1, n%10000),
			BillingCurrency:   "USD",
			Tags:              []*tallyv1.KeyValue{{Key: "env", Value: "prod"}, {Key: "team", Value: fmt.Sprintf("team-%d", n%20)}},
			FocusVersion:      "1.3",
			RowCount:          1,
		}}},
	}
}

// RunLog measures the durable Append path and the raw publish limits.
func RunLog(ctx context.Context, cfg LogConfig) (LogReport, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "tally-bench-log-")
		if err != nil {
			return LogReport{}, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	rep := LogReport{MeasuredAtUTC: time.Now().UTC().Format(time.RFC3339), GoMaxProcs: runtime.GOMAXPROCS(0)}
	h := harness{cfg.NATSServer, cfg.HeapProfiles}
	var err error
	if rep.RawDefault, err = rawPublish(ctx, h, "log-raw-default", dir+"/raw-default", cfg.RawEvents, true); err != nil {
		return rep, fmt.Errorf("raw publish, default fsync: %w", err)
	}
	cfg.Logger.Info("measured", "stage", rep.RawDefault.Name, "per_sec", int(rep.RawDefault.PerSec), "peak_rss_mib", int(rep.RawDefault.TallyPeakRSSMiB))
	if rep.RawSync, err = rawPublish(ctx, h, "log-raw-sync", dir+"/raw-sync", cfg.RawSyncEvents, false); err != nil {
		return rep, fmt.Errorf("raw publish, sync always: %w", err)
	}
	cfg.Logger.Info("measured", "stage", rep.RawSync.Name, "per_sec", int(rep.RawSync.PerSec), "peak_rss_mib", int(rep.RawSync.TallyPeakRSSMiB))
	if rep.Durable, err = durableAppend(ctx, h, dir+"/durable", cfg.Events, cfg.BatchSize); err != nil {
		return rep, fmt.Errorf("durable append: %w", err)
	}
	cfg.Logger.Info("measured", "stage", rep.Durable.Name, "per_sec", int(rep.Durable.PerSec), "peak_rss_mib", int(rep.Durable.TallyPeakRSSMiB))
	rep.VsRawDefault = rep.Durable.PerSec / rep.RawDefault.PerSec
	rep.VsRawSync = rep.Durable.PerSec / rep.RawSync.PerSec
	return rep, nil
}

func clean() {
	runtime.GC()
	debug.FreeOSMemory()
}

// rawPublish is the machine's limit: plain JetStream async publish, one
// event per message, with no chain, no checks, no batching. stage names
// its heap profiles.
func rawPublish(ctx context.Context, h harness, stage, dir string, events int, noSync bool) (Rate, error) {
	name := "raw publish, 1 event/msg, sync_interval: always"
	if noSync {
		name = "raw publish, 1 event/msg, default fsync"
	}
	srv, nc, err := startLog(ctx, h.natsServer, dir, noSync)
	if err != nil {
		return Rate{}, err
	}
	defer srv.stop()
	defer nc.Close()
	m := h.measure(stage, srv)
	r, err := rawPublishOn(ctx, nc, name, events)
	return r, m.done(&r, err)
}

// rawPublishOn publishes events one message each on nc's server.
func rawPublishOn(ctx context.Context, nc *nats.Conn, name string, events int) (Rate, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(time.Minute))
	if err != nil {
		return Rate{}, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage,
	}); err != nil {
		return Rate{}, err
	}
	var size int
	start := time.Now()
	for i := 0; i < events; i++ {
		b, err := proto.Marshal(SampleCostLine("bench", i))
		if err != nil {
			return Rate{}, err
		}
		size += len(b)
		if _, err := js.PublishAsync("raw.bench.cost_line_recorded", b, jetstream.WithStallWait(time.Minute)); err != nil {
			return Rate{}, fmt.Errorf("publish %d: %w", i, err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return Rate{}, ctx.Err()
	}
	d := time.Since(start)
	info, err := js.Stream(ctx, "RAW")
	if err != nil {
		return Rate{}, err
	}
	if got := info.CachedInfo().State.Msgs; got != uint64(events) {
		return Rate{}, fmt.Errorf("stream holds %d messages, published %d", got, events)
	}
	return Rate{Name: name, Events: events, Duration: d, PerSec: float64(events) / d.Seconds(), Messages: events, EventBytes: size / max(events, 1)}, nil
}

// durableAppend is Tally's path: Append of batches with SyncAlways, so each
// acknowledged event is on disk, chained and idempotent.
func durableAppend(ctx context.Context, h harness, dir string, events, batchSize int) (r Rate, err error) {
	srv, nc, err := startLog(ctx, h.natsServer, dir, false)
	if err != nil {
		return Rate{}, err
	}
	defer srv.stop()
	defer nc.Close()
	st, err := eventstore.Open(ctx, nc, eventstore.Options{Logger: slog.New(slog.DiscardHandler), IndexDir: filepath.Join(dir, "eventindex")})
	if err != nil {
		return Rate{}, err
	}
	defer func() { _ = st.Close() }()
	m := h.measure("log-durable", srv)
	defer func() { err = m.done(&r, err) }()
	// A producer builds the next batch while the current one is being
	// fsynced, as an ingester parses its file while appending. The channel
	// holds none: the harness's own batches are most of this process's heap
	// at the peak (measured: 90 of 105 MB live with two more batches
	// queued), and the stage measures Tally's memory, not the caller's.
	batches := make(chan []*tallyv1.Envelope)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(batches)
		for done := 0; done < events; {
			n := min(batchSize, events-done)
			batch := make([]*tallyv1.Envelope, n)
			for i := range batch {
				batch[i] = SampleCostLine("bench", done+i)
			}
			select {
			case batches <- batch:
			case <-pctx.Done():
				return
			}
			done += n
		}
	}()
	msgs := 0
	start := time.Now()
	for batch := range batches {
		res, err := st.Append(ctx, "bench", batch)
		if err != nil {
			return Rate{}, err
		}
		if res.Appended != len(batch) {
			return Rate{}, fmt.Errorf("appended %d of %d", res.Appended, len(batch))
		}
		msgs += res.Messages
	}
	d := time.Since(start)
	head, err := st.Head(ctx, "bench")
	if err != nil {
		return Rate{}, err
	}
	if head.Seq != uint64(events) {
		return Rate{}, fmt.Errorf("log holds %d events, appended %d", head.Seq, events)
	}
	b, _ := proto.Marshal(SampleCostLine("bench", 0))
	return Rate{Name: fmt.Sprintf("durable Append, %d events/call, sync_interval: always", batchSize),
		Events: events, Duration: d, PerSec: float64(events) / d.Seconds(), Messages: msgs, EventBytes: len(b)}, nil
}
