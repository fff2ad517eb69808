package eventstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// Message headers the log sets besides JetStream's own.
const (
	HeaderTenant   = "Tally-Tenant"
	HeaderKind     = "Tally-Kind"
	HeaderFirstSeq = "Tally-First-Seq"
	HeaderCount    = "Tally-Count"
)

// AppendOption adjusts one Append.
type AppendOption func(*appendConfig)

type appendConfig struct {
	expectSeq *uint64
}

// ExpectTenantSeq makes the append conditional: it succeeds only while the
// tenant's newest event is still number seq (0: the tenant has none). Use it
// when what you append depends on what you read. A mismatch returns a
// *ConflictError and appends nothing.
func ExpectTenantSeq(seq uint64) AppendOption {
	return func(c *appendConfig) { c.expectSeq = &seq }
}

// AppendResult says what an Append did.
type AppendResult struct {
	// Appended events, in order; duplicates of events already in the log
	// are not among them.
	Appended int
	// Duplicates: events whose id and content were already in the log.
	Duplicates int
	// FirstSeq and LastSeq are the tenant sequences of the appended events
	// (both 0 when nothing was appended).
	FirstSeq, LastSeq uint64
	// Head is the tenant's chain head after the append.
	Head Head
	// Messages is how many log messages (fsyncs) the append took.
	Messages int
}

// maxAutoRetries bounds how often an unconditional append re-reads the head
// after losing a race to another writer.
const maxAutoRetries = 8

// marshalOpts: plain marshalling. Deterministic mode only orders map entries
// (the schema has none, by design: tags are sorted lists) and costs a
// slower path; the chain hashes the stored bytes, never a re-encoding.
var marshalOpts = proto.MarshalOptions{}

// Append adds events to the tenant's log, in order, durably: it returns once
// JetStream has acknowledged every message (with the embedded default, once
// they are fsynced).
//
// Idempotent: an event whose id is already in the tenant's log with the same
// content is skipped (counted in Duplicates); with other content the whole
// append is refused with ErrDuplicate. Content is the fact: event id, tenant,
// occurred_at, schema version, idempotency key and body; a retry may carry
// another actor, source, correlation or causation id. This holds at any distance in time, not
// only within JetStream's dedupe window, because the ids are checked against
// an index of the log (see Options.IndexDir), checked against and caught up
// from the log itself. Give events deterministic ids (DeterministicID) to make
// retries safe; an empty id gets a random UUIDv7.
//
// Append sets each envelope's tenant_id (when empty), recorded_at,
// tenant_seq and prev_hash, and its event_id when empty.
//
// Errors: ErrInvalidTenant, ErrInvalidEvent (nothing appended), ErrDuplicate
// (nothing appended), *ConflictError (with ExpectTenantSeq; nothing
// appended, unless another process interleaved with a multi-message append,
// in which case a prefix may be in the log and a retry appends the rest),
// ErrUnavailable (the outcome is unknown: retry the same events).
func (s *Store) Append(ctx context.Context, tenant string, events []*tallyv1.Envelope, opts ...AppendOption) (AppendResult, error) {
	if err := ValidateTenant(tenant); err != nil {
		return AppendResult{}, err
	}
	return s.appendTo(ctx, tenant, events, opts...)
}

// AppendSystem appends to the system tenant, which holds what has no valid
// tenant (rejected requests). Only the documented system jobs call it.
func (s *Store) AppendSystem(ctx context.Context, events []*tallyv1.Envelope) (AppendResult, error) {
	return s.appendTo(ctx, SystemTenant, events)
}

type pending struct {
	env    *tallyv1.Envelope
	id     uuid.UUID
	digest uint64
	bytes  []byte // producer bytes
	kind   string
}

func (s *Store) appendTo(ctx context.Context, tenant string, events []*tallyv1.Envelope, opts ...AppendOption) (AppendResult, error) {
	var cfg appendConfig
	for _, o := range opts {
		o(&cfg)
	}
	batch, err := prepare(tenant, events)
	if err != nil {
		return AppendResult{}, err
	}
	done, err := s.useIndex()
	if err != nil {
		return AppendResult{}, err
	}
	defer done()
	ts := s.tenant(tenant)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if !ts.loaded {
		if err := s.sync(ctx, tenant, ts); err != nil {
			return AppendResult{}, err
		}
	}
	if cfg.expectSeq != nil && *cfg.expectSeq != ts.seq {
		// Another process may have appended: look before refusing.
		if err := s.catchUp(ctx, tenant, ts); err != nil {
			return AppendResult{}, err
		}
		if *cfg.expectSeq != ts.seq {
			return AppendResult{}, &ConflictError{Tenant: tenant, Expected: *cfg.expectSeq, Actual: ts.seq}
		}
	}

	var res AppendResult
	for attempt := 0; ; attempt++ {
		fresh, dups, err := s.filterNew(tenant, ts, batch)
		if err != nil {
			return res, fmt.Errorf("tenant %q: %w", tenant, err)
		}
		res.Duplicates = dups
		if len(fresh) == 0 {
			break
		}
		n, msgs, err := s.publish(ctx, tenant, ts, fresh)
		res.Messages += msgs
		if n > 0 {
			if res.FirstSeq == 0 {
				res.FirstSeq = ts.seq - uint64(n) + 1
			}
			res.LastSeq = ts.seq
			res.Appended += n
		}
		if err == nil {
			break
		}
		if !errors.Is(err, errLostRace) {
			return res, err
		}
		if err := s.catchUp(ctx, tenant, ts); err != nil {
			return res, err
		}
		if cfg.expectSeq != nil {
			return res, &ConflictError{Tenant: tenant, Expected: *cfg.expectSeq, Actual: ts.seq}
		}
		if attempt >= maxAutoRetries {
			return res, fmt.Errorf("%w: tenant %q: lost the race to other writers %d times", ErrConflict, tenant, attempt+1)
		}
		s.log.DebugContext(ctx, "append lost a race; retrying on the new head", "tenant", tenant, "attempt", attempt+1)
	}
	res.Head = Head{Tenant: tenant, Seq: ts.seq, Hash: ts.head, StreamSeq: ts.lastStreamSeq}
	return res, nil
}

// prepare validates the batch and encodes each producer envelope once.
// Large batches are encoded on every core: encoding is most of an append's
// CPU, and the chain itself (which is serial) only hashes the bytes.
func prepare(tenant string, events []*tallyv1.Envelope) ([]pending, error) {
	out := make([]pending, len(events))
	workers := runtime.GOMAXPROCS(0)
	if len(events) < 2048 || workers < 2 {
		for i, env := range events {
			if err := prepareOne(tenant, i, env, &out[i]); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	per := (len(events) + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*per, min((w+1)*per, len(events))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				if err := prepareOne(tenant, i, events[i], &out[i]); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func prepareOne(tenant string, i int, env *tallyv1.Envelope, out *pending) error {
	if env == nil {
		return fmt.Errorf("%w: event %d is nil", ErrInvalidEvent, i)
	}
	kind := Kind(env)
	if kind == "" {
		return fmt.Errorf("%w: event %d (%s) has no body", ErrInvalidEvent, i, env.GetEventId())
	}
	switch env.GetTenantId() {
	case "":
		env.TenantId = tenant
	case tenant:
	default:
		return fmt.Errorf("%w: event %d has tenant_id %q in a batch for tenant %q", ErrInvalidEvent, i, env.GetTenantId(), tenant)
	}
	var id uuid.UUID
	var err error
	if env.GetEventId() == "" {
		if id, err = uuid.NewV7(); err != nil {
			return fmt.Errorf("event id: %w", err)
		}
		env.EventId = id.String()
	} else if id, err = uuid.Parse(env.GetEventId()); err != nil {
		return fmt.Errorf("%w: event %d: event_id %q is not a UUID", ErrInvalidEvent, i, env.GetEventId())
	}
	if env.GetSchemaVersion() == 0 {
		env.SchemaVersion = 1
	}
	// The log's own fields are never taken from a producer.
	env.RecordedAt, env.TenantSeq, env.PrevHash = nil, 0, nil
	b, err := marshalOpts.Marshal(env)
	if err != nil {
		return fmt.Errorf("%w: event %d: %w", ErrInvalidEvent, i, err)
	}
	digest, err := contentDigest(b)
	if err != nil {
		return fmt.Errorf("%w: event %d: %w", ErrInvalidEvent, i, err)
	}
	*out = pending{env: env, id: id, digest: digest, bytes: b, kind: kind}
	return nil
}

// filterNew drops events already in the log (same id, same content) and
// refuses ids reused for other content. Duplicates inside the batch count
// once. The caller holds ts.mu.
func (s *Store) filterNew(tenant string, ts *tenantState, batch []pending) ([]pending, int, error) {
	// Look every id up first (in key order, see lookup), then decide in
	// batch order.
	ids := make([]uuid.UUID, len(batch))
	for i := range batch {
		ids[i] = batch[i].id
	}
	type indexed struct {
		digest uint64
		found  bool
	}
	inIndex := make([]indexed, len(batch))
	key, err := s.idx.lookup(ts.key, tenant, ids, func(i int, d uint64) error {
		inIndex[i] = indexed{digest: d, found: true}
		return nil
	})
	ts.key = key
	if err != nil {
		return nil, 0, err
	}
	fresh := make([]pending, 0, len(batch))
	var inBatch map[uuid.UUID]uint64
	dups := 0
	for i, p := range batch {
		if x := inIndex[i]; x.found {
			if x.digest != p.digest {
				return nil, 0, fmt.Errorf("%w: event %d: id %s", ErrDuplicate, i, p.id)
			}
			dups++
			continue
		}
		if inBatch == nil {
			inBatch = make(map[uuid.UUID]uint64, len(batch))
		}
		if d, ok := inBatch[p.id]; ok {
			if d != p.digest {
				return nil, 0, fmt.Errorf("%w: event %d: id %s appears twice in the batch", ErrDuplicate, i, p.id)
			}
			dups++
			continue
		}
		inBatch[p.id] = p.digest
		fresh = append(fresh, p)
	}
	return fresh, dups, nil
}

// errLostRace: another writer extended the tenant's chain first.
var errLostRace = errors.New("lost race")

// publish chains the events onto the tenant's head and writes them as
// messages of at most MaxMessageBytes, one kind per message, each
// conditional on the previous one being the tenant's newest. It returns how
// many events were acknowledged and how many messages were sent; ts is
// updated for every acknowledged message.
func (s *Store) publish(ctx context.Context, tenant string, ts *tenantState, events []pending) (int, int, error) {
	recordedAtTS := timestamppb.New(time.Now().UTC())
	recordedAt, err := proto.Marshal(recordedAtTS)
	if err != nil {
		return 0, 0, err
	}
	done, msgs := 0, 0
	for done < len(events) {
		seq, head := ts.seq, ts.head
		kind := events[done].kind
		// Size the message first, so it is built in one buffer with no
		// copy: each stored event is written once, hashed in place.
		size, end := 0, done
		for end < len(events) && events[end].kind == kind {
			n := storedEventSize(len(events[end].bytes) + logFieldsSize(recordedAt, seq+uint64(end-done)+1))
			if n > s.opts.MaxMessageBytes {
				return done, msgs, fmt.Errorf("%w: event %s is %d bytes, over the log's message limit of %d", ErrInvalidEvent, events[end].id, n, s.opts.MaxMessageBytes)
			}
			if end > done && size+n > s.opts.MaxMessageBytes {
				break
			}
			size += n
			end++
		}
		payload := ts.buffer(size)
		prevs := make([]Hash, 0, end-done)
		ids := sha256.New()
		for i := done; i < end; i++ {
			p := events[i]
			envLen := len(p.bytes) + logFieldsSize(recordedAt, seq+1)
			inner := protowire.SizeTag(1) + protowire.SizeBytes(envLen) + protowire.SizeTag(2) + protowire.SizeBytes(HashSize)
			payload = protowire.AppendTag(payload, 1, protowire.BytesType)
			payload = protowire.AppendVarint(payload, uint64(inner))
			payload = protowire.AppendTag(payload, 1, protowire.BytesType)
			payload = protowire.AppendVarint(payload, uint64(envLen))
			at := len(payload)
			payload = append(payload, p.bytes...)
			payload = appendLogFields(payload, recordedAt, seq+1, head)
			h := ChainHash(head, payload[at:])
			payload = protowire.AppendTag(payload, 2, protowire.BytesType)
			payload = protowire.AppendBytes(payload, h[:])
			ids.Write(p.id[:])
			prevs = append(prevs, head)
			seq, head = seq+1, h
		}
		msg := nats.NewMsg(s.subject(tenant, kind))
		msg.Data = payload
		msg.Header.Set(HeaderTenant, tenant)
		msg.Header.Set(HeaderKind, kind)
		msg.Header.Set(HeaderFirstSeq, strconv.FormatUint(ts.seq+1, 10))
		msg.Header.Set(HeaderCount, strconv.Itoa(end-done))
		var idsSum [sha256.Size]byte
		ids.Sum(idsSum[:0])
		msgID := tenant + ":" + hex.EncodeToString(idsSum[:16])

		pctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		ack, err := s.js.PublishMsg(pctx, msg,
			jetstream.WithMsgID(msgID),
			jetstream.WithExpectLastSequenceForSubject(ts.lastStreamSeq, s.TenantSubjects(tenant)),
		)
		cancel()
		msgs++
		if err != nil {
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
				apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
				return done, msgs, errLostRace
			}
			// The outcome is unknown: the message may be stored. Re-read
			// the head before the next append, and never reuse a buffer
			// the client may still hold for a resend.
			ts.loaded = false
			ts.buf = nil
			return done, msgs, unavailable(fmt.Sprintf("append to tenant %q", tenant), err)
		}
		if ack.Duplicate {
			// An earlier attempt of ours was stored but its ack was lost;
			// the log has these events. Re-read it.
			return done, msgs, errLostRace
		}
		// The message is in the log: record its ids and the new head in the
		// index, in one batch.
		w := s.idx.newWrite(tenant, ts.key)
		var ierr error
		for i := done; i < end; i++ {
			if ierr == nil {
				ierr = w.id(events[i].id, events[i].digest)
			}
			env := events[i].env
			env.TenantSeq = ts.seq + uint64(i-done) + 1
			env.PrevHash = append([]byte(nil), prevs[i-done][:]...)
			env.RecordedAt = recordedAtTS
		}
		if ierr == nil {
			ierr = w.commit(indexHead{StreamSeq: ack.Sequence, Seq: seq, Hash: head})
		}
		w.release()
		ts.key = w.key
		ts.seq, ts.head, ts.lastStreamSeq = seq, head, ack.Sequence
		done = end
		if ierr != nil {
			// The log has the events but the index does not: the next
			// use reloads the index's head and catches up from it.
			ts.loaded = false
			return done, msgs, fmt.Errorf("%w: tenant %q: log message %d was appended, but the event index did not record it (a retry of the same events appends nothing): %w",
				ErrUnavailable, tenant, ack.Sequence, ierr)
		}
	}
	return done, msgs, nil
}
