package eventstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// tenantState is what the writer knows of a tenant's log: its chain head,
// as far as the id index has recorded it. The ids themselves (each with its
// content digest) are in the index (idIndex), which makes appends idempotent
// beyond JetStream's dedupe window. Both are loaded from the index on first
// use, checked against the log and caught up from it (loadTenant), so the
// log stays the only source of truth.
type tenantState struct {
	mu sync.Mutex
	// loaded: seq, head and lastStreamSeq are the index's head for the
	// tenant, checked against the log. When false, the next use reloads
	// them from the index.
	loaded bool
	// lastStreamSeq is the stream sequence of the tenant's newest message.
	lastStreamSeq uint64
	// seq is the tenant sequence of the newest event; 0 when none.
	seq  uint64
	head Hash
	// buf is reused for the next message: JetStream has copied a message
	// once its publish returns.
	buf []byte
	// key is scratch space for index keys.
	key []byte
	// seen is scratch space for the ids of one message in catchUp.
	seen map[uuid.UUID]struct{}
}

// buffer returns an empty slice with room for n bytes.
func (ts *tenantState) buffer(n int) []byte {
	if cap(ts.buf) < n {
		ts.buf = make([]byte, 0, n)
	}
	return ts.buf[:0]
}

func (ts *tenantState) setHead(h indexHead) {
	ts.lastStreamSeq, ts.seq, ts.head = h.StreamSeq, h.Seq, h.Hash
}

func (s *Store) tenant(id string) *tenantState {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts, ok := s.tenants[id]
	if !ok {
		ts = &tenantState{}
		s.tenants[id] = ts
	}
	return ts
}

// sync brings ts up to the end of the tenant's log: from the index on first
// use (or after a failure), then from the log. The caller holds ts.mu.
func (s *Store) sync(ctx context.Context, tenant string, ts *tenantState) error {
	if !ts.loaded {
		if err := s.loadTenant(ctx, tenant, ts); err != nil {
			return err
		}
	}
	return s.catchUp(ctx, tenant, ts)
}

// loadTenant sets ts to the head the index recorded for the tenant, once it
// has checked that the log still holds that head: the tenant's message at
// that stream sequence, whose last event has that sequence and chain hash.
// Otherwise (the stream was restored from an older backup, purged, or
// another log took its place) it drops the tenant's entries, which catchUp
// then rebuilds from the start of the log. The caller holds ts.mu.
func (s *Store) loadTenant(ctx context.Context, tenant string, ts *tenantState) error {
	ts.loaded = false
	ts.setHead(indexHead{})
	h, found, ok, err := s.idx.head(tenant)
	if err != nil {
		return err
	}
	if !found {
		ts.loaded = true
		return nil
	}
	why := "the index's head is in a format this build does not read"
	if ok {
		if why, err = s.headMismatch(ctx, tenant, h); err != nil {
			return err
		}
	}
	if why != "" {
		s.log.WarnContext(ctx, "event index: dropping a tenant's entries, which no longer match the log; rebuilding them from the log",
			"tenant", tenant, "index", s.idx.where(), "index_stream_seq", h.StreamSeq, "index_tenant_seq", h.Seq, "reason", why)
		if err := s.idx.dropTenant(tenant); err != nil {
			return err
		}
	} else {
		ts.setHead(h)
	}
	ts.loaded = true
	return nil
}

// headMismatch says why the log does not hold h as the tenant's message at
// h.StreamSeq, or "" when it does.
func (s *Store) headMismatch(ctx context.Context, tenant string, h indexHead) (string, error) {
	if h.StreamSeq == 0 || h.Seq == 0 {
		return "empty head recorded", nil
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	msg, err := s.stream.GetMsg(cctx, h.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Sprintf("log message %d is not in the stream", h.StreamSeq), nil
	}
	if err != nil {
		return "", unavailable(fmt.Sprintf("tenant %q: read log message %d to check the event index", tenant, h.StreamSeq), err)
	}
	if !strings.HasPrefix(msg.Subject, s.opts.SubjectPrefix+"."+tenant+".") {
		return fmt.Sprintf("log message %d is on subject %s, not the tenant's", h.StreamSeq, msg.Subject), nil
	}
	batch, err := DecodeBatch(msg.Data)
	if err != nil || len(batch.GetEvents()) == 0 {
		return fmt.Sprintf("log message %d does not decode as an event batch", h.StreamSeq), nil
	}
	last := batch.GetEvents()[len(batch.GetEvents())-1]
	var env tallyv1.Envelope
	if err := proto.Unmarshal(last.GetEnvelope(), &env); err != nil {
		return fmt.Sprintf("log message %d: its last event does not decode", h.StreamSeq), nil
	}
	if env.GetTenantSeq() != h.Seq || !bytes.Equal(last.GetHash(), h.Hash[:]) {
		return fmt.Sprintf("log message %d ends with event %d, hash %x, not event %d, hash %x",
			h.StreamSeq, env.GetTenantSeq(), last.GetHash(), h.Seq, h.Hash[:]), nil
	}
	return "", nil
}

// catchUp folds the tenant's messages newer than what ts has seen into the
// index, one batch a message (its ids with the new head). The caller holds
// ts.mu and ts is loaded.
func (s *Store) catchUp(ctx context.Context, tenant string, ts *tenantState) error {
	start := scanStart{seq: ts.lastStreamSeq + 1}
	err := s.scan(ctx, []string{s.TenantSubjects(tenant)}, start, func(msg jetstream.Msg) error {
		s.caughtUp.Add(1)
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		events, err := decodeMessage(meta.Sequence.Stream, msg.Data())
		if err != nil {
			return fmt.Errorf("tenant %q: %w", tenant, err)
		}
		ids := make([]uuid.UUID, len(events))
		digests := make([]uint64, len(events))
		for i, ev := range events {
			if ids[i], err = uuid.Parse(ev.Envelope.GetEventId()); err != nil {
				return fmt.Errorf("tenant %q: log message %d, event %d: event id: %w", tenant, ev.StreamSeq, ev.Index, err)
			}
			if digests[i], err = contentDigest(ev.Raw); err != nil {
				return fmt.Errorf("tenant %q: log message %d, event %d: %w", tenant, ev.StreamSeq, ev.Index, err)
			}
		}
		// The first event with an id is the fact: skip ids already indexed
		// and repeats within the message. The writer never appends an id
		// twice, but the log is taken as it is.
		skip := make([]bool, len(events))
		if ts.key, err = s.idx.lookup(ts.key, tenant, ids, func(i int, _ uint64) error {
			skip[i] = true
			return nil
		}); err != nil {
			return err
		}
		if ts.seen == nil {
			ts.seen = make(map[uuid.UUID]struct{}, len(events))
		}
		clear(ts.seen)
		w := s.idx.newWrite(tenant, ts.key)
		defer func() { ts.key = w.key; w.release() }()
		h := indexHead{StreamSeq: meta.Sequence.Stream, Seq: ts.seq, Hash: ts.head}
		for i, ev := range events {
			if _, again := ts.seen[ids[i]]; !again && !skip[i] {
				ts.seen[ids[i]] = struct{}{}
				if err := w.id(ids[i], digests[i]); err != nil {
					return err
				}
			}
			if seq := ev.Envelope.GetTenantSeq(); seq > h.Seq {
				h.Seq, h.Hash = seq, ev.Hash
			}
		}
		if err := w.commit(h); err != nil {
			return err
		}
		ts.setHead(h)
		return nil
	})
	if err != nil {
		ts.loaded = false
		return err
	}
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
	done, err := s.useIndex()
	if err != nil {
		return Head{}, err
	}
	defer done()
	ts := s.tenant(tenant)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if err := s.sync(ctx, tenant, ts); err != nil {
		return Head{}, err
	}
	return Head{Tenant: tenant, Seq: ts.seq, Hash: ts.head, StreamSeq: ts.lastStreamSeq}, nil
}
