package eventstore

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// tenantState is what the writer knows of a tenant's log: its chain head and
// the ids of its events, with each one's content digest. It is rebuilt from
// the log on first use and after any surprise, so the log stays the only
// source of truth.
//
// The id index is what makes appends idempotent beyond JetStream's dedupe
// window. It costs about 24 bytes an event in memory (measured in
// BenchmarkAppend); a tenant with tens of millions of events would want it
// on disk instead.
type tenantState struct {
	mu     sync.Mutex
	loaded bool
	// lastStreamSeq is the stream sequence of the tenant's newest message.
	lastStreamSeq uint64
	// seq is the tenant sequence of the newest event; 0 when none.
	seq  uint64
	head Hash
	ids  map[uuid.UUID]uint64
	// buf is reused for the next message: JetStream has copied a message
	// once its publish returns.
	buf []byte
}

// buffer returns an empty slice with room for n bytes.
func (ts *tenantState) buffer(n int) []byte {
	if cap(ts.buf) < n {
		ts.buf = make([]byte, 0, n)
	}
	return ts.buf[:0]
}

func (s *Store) tenant(id string) *tenantState {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts, ok := s.tenants[id]
	if !ok {
		ts = &tenantState{ids: map[uuid.UUID]uint64{}}
		s.tenants[id] = ts
	}
	return ts
}

// catchUp folds the tenant's messages newer than what ts has seen.
// The caller holds ts.mu.
func (s *Store) catchUp(ctx context.Context, tenant string, ts *tenantState) error {
	start := scanStart{seq: ts.lastStreamSeq + 1}
	err := s.scan(ctx, []string{s.TenantSubjects(tenant)}, start, func(msg jetstream.Msg) error {
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		events, err := decodeMessage(meta.Sequence.Stream, msg.Data())
		if err != nil {
			return fmt.Errorf("tenant %q: %w", tenant, err)
		}
		for _, ev := range events {
			id, err := uuid.Parse(ev.Envelope.GetEventId())
			if err != nil {
				return fmt.Errorf("tenant %q: log message %d, event %d: event id: %w", tenant, ev.StreamSeq, ev.Index, err)
			}
			digest, err := contentDigest(ev.Raw)
			if err != nil {
				return fmt.Errorf("tenant %q: log message %d, event %d: %w", tenant, ev.StreamSeq, ev.Index, err)
			}
			if _, seen := ts.ids[id]; !seen {
				ts.ids[id] = digest
			}
			if seq := ev.Envelope.GetTenantSeq(); seq > ts.seq {
				ts.seq, ts.head = seq, ev.Hash
			}
		}
		ts.lastStreamSeq = meta.Sequence.Stream
		return nil
	})
	if err != nil {
		ts.loaded = false
		return err
	}
	ts.loaded = true
	return nil
}

// Head is a tenant's chain head as the log holds it now.
type Head struct {
	Tenant string
	// Seq is the tenant sequence of the newest event (0 when none).
	Seq uint64
	// Hash of that event (ZeroHash when none).
	Hash Hash
	// StreamSeq of the message holding it.
	StreamSeq uint64
}

// Head reads the tenant's current chain head from the log.
func (s *Store) Head(ctx context.Context, tenant string) (Head, error) {
	if err := validateTenantOrSystem(tenant); err != nil {
		return Head{}, err
	}
	ts := s.tenant(tenant)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if err := s.catchUp(ctx, tenant, ts); err != nil {
		return Head{}, err
	}
	return Head{Tenant: tenant, Seq: ts.seq, Hash: ts.head, StreamSeq: ts.lastStreamSeq}, nil
}
