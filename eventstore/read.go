package eventstore

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// Event is one event read from the log.
type Event struct {
	// StreamSeq of the log message that holds the event; several events
	// share one.
	StreamSeq uint64
	// Index of the event within its message.
	Index int
	// Envelope decoded from Raw.
	Envelope *tallyv1.Envelope
	// Raw is the envelope's bytes exactly as stored (what the chain hashes).
	Raw []byte
	// Hash stored beside the event.
	Hash Hash
}

// ReadFilter selects events. The zero value reads every event of every
// tenant from the beginning (a full replay).
type ReadFilter struct {
	// Tenant limits the read to one tenant (or SystemTenant); "" reads all.
	Tenant string
	// Kinds limits the read to these body kinds (see Kinds()).
	Kinds []string
	// FromStreamSeq starts at this stream sequence.
	FromStreamSeq uint64
	// FromTime starts at the first message stored at or after this time.
	FromTime time.Time
	// FromTenantSeq skips a tenant's events before this tenant sequence
	// (only with Tenant).
	FromTenantSeq uint64
}

func (s *Store) subjectsFor(f ReadFilter) ([]string, error) {
	tenant := "*"
	if f.Tenant != "" {
		if err := validateTenantOrSystem(f.Tenant); err != nil {
			return nil, err
		}
		tenant = f.Tenant
	}
	if len(f.Kinds) == 0 {
		if f.Tenant == "" {
			return []string{s.opts.SubjectPrefix + ".>"}, nil
		}
		return []string{s.TenantSubjects(tenant)}, nil
	}
	out := make([]string, 0, len(f.Kinds))
	for _, k := range f.Kinds {
		if !IsKind(k) {
			return nil, fmt.Errorf("%w: unknown event kind %q", ErrInvalidEvent, k)
		}
		out = append(out, s.subject(tenant, k))
	}
	return out, nil
}

// Read calls fn for each event matching f, in log order, up to the end of
// the log as it was when Read began. An error from fn stops the read and is
// returned as is.
func (s *Store) Read(ctx context.Context, f ReadFilter, fn func(Event) error) error {
	subjects, err := s.subjectsFor(f)
	if err != nil {
		return err
	}
	return s.scan(ctx, subjects, scanStart{seq: f.FromStreamSeq, time: f.FromTime}, func(msg jetstream.Msg) error {
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		events, err := decodeMessage(meta.Sequence.Stream, msg.Data())
		if err != nil {
			return err
		}
		for _, ev := range events {
			if f.FromTenantSeq > 0 && ev.Envelope.GetTenantSeq() < f.FromTenantSeq {
				continue
			}
			if err := fn(ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// decodeMessage decodes every event of one log message.
func decodeMessage(streamSeq uint64, data []byte) ([]Event, error) {
	var batch tallyv1.EventBatch
	if err := proto.Unmarshal(data, &batch); err != nil {
		return nil, fmt.Errorf("log message %d: %w", streamSeq, err)
	}
	out := make([]Event, len(batch.GetEvents()))
	for i, se := range batch.GetEvents() {
		env := &tallyv1.Envelope{}
		if err := proto.Unmarshal(se.GetEnvelope(), env); err != nil {
			return nil, fmt.Errorf("log message %d, event %d: %w", streamSeq, i, err)
		}
		out[i] = Event{StreamSeq: streamSeq, Index: i, Envelope: env, Raw: se.GetEnvelope()}
		copy(out[i].Hash[:], se.GetHash())
	}
	return out, nil
}
