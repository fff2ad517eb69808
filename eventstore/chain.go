package eventstore

import (
	"crypto/sha256"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// HashSize is the size of a chain hash (SHA-256).
const HashSize = sha256.Size

// Hash is one link of a tenant's chain.
type Hash [HashSize]byte

// ZeroHash is the prev_hash of a tenant's first event.
var ZeroHash Hash

// Envelope field numbers set by the log, never by a producer.
const (
	fieldRecordedAt = 4
	fieldTenantSeq  = 11
	fieldPrevHash   = 12
)

// Envelope fields that describe one attempt to record a fact rather than the
// fact: a retry may come from another run, request or actor. They are left
// out of the content digest, with the log's own fields, so that a retry of
// the same fact is recognised as a duplicate, not refused as a conflict.
const (
	fieldActor         = 5
	fieldSource        = 6
	fieldCorrelationID = 7
	fieldCausationID   = 8
)

// ChainHash is SHA-256(prev || envelope bytes as stored).
func ChainHash(prev Hash, envelope []byte) Hash {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(envelope)
	var out Hash
	h.Sum(out[:0])
	return out
}

// contentDigest hashes an envelope's bytes without the fields the log sets
// and without the attempt's metadata (actor, source, correlation and
// causation): two appends of the same fact have the same digest.
func contentDigest(envelope []byte) (uint64, error) {
	h := sha256.New()
	b := envelope
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return 0, protowire.ParseError(m)
		}
		switch num {
		case fieldRecordedAt, fieldTenantSeq, fieldPrevHash, fieldActor, fieldSource, fieldCorrelationID, fieldCausationID:
		default:
			h.Write(b[:n+m])
		}
		b = b[n+m:]
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return uint64(sum[0])<<56 | uint64(sum[1])<<48 | uint64(sum[2])<<40 | uint64(sum[3])<<32 |
		uint64(sum[4])<<24 | uint64(sum[5])<<16 | uint64(sum[6])<<8 | uint64(sum[7]), nil
}

// appendLogFields appends the log-set fields to a producer envelope's bytes.
// Protobuf merges concatenated encodings, so the result decodes as the
// envelope with those fields set.
func appendLogFields(b []byte, recordedAt []byte, tenantSeq uint64, prev Hash) []byte {
	b = protowire.AppendTag(b, fieldRecordedAt, protowire.BytesType)
	b = protowire.AppendBytes(b, recordedAt)
	b = protowire.AppendTag(b, fieldTenantSeq, protowire.VarintType)
	b = protowire.AppendVarint(b, tenantSeq)
	b = protowire.AppendTag(b, fieldPrevHash, protowire.BytesType)
	b = protowire.AppendBytes(b, prev[:])
	return b
}

// logFieldsSize is the size appendLogFields adds.
func logFieldsSize(recordedAt []byte, tenantSeq uint64) int {
	return protowire.SizeTag(fieldRecordedAt) + protowire.SizeBytes(len(recordedAt)) +
		protowire.SizeTag(fieldTenantSeq) + protowire.SizeVarint(tenantSeq) +
		protowire.SizeTag(fieldPrevHash) + protowire.SizeBytes(HashSize)
}

// storedEventSize is the size of one EventBatch.events element (a
// StoredEvent) holding an envelope of envelopeLen bytes.
func storedEventSize(envelopeLen int) int {
	inner := protowire.SizeTag(1) + protowire.SizeBytes(envelopeLen) + protowire.SizeTag(2) + protowire.SizeBytes(HashSize)
	return protowire.SizeTag(1) + protowire.SizeBytes(inner)
}

var bodyOneof = (&tallyv1.Envelope{}).ProtoReflect().Descriptor().Oneofs().ByName("body")

// Kind is the snake_case name of an envelope's body ("cost_line_recorded"),
// or "" when it has none. It is also the last token of the event's subject.
func Kind(env *tallyv1.Envelope) string {
	fd := env.ProtoReflect().WhichOneof(bodyOneof)
	if fd == nil {
		return ""
	}
	return string(fd.Name())
}

// Kinds lists every body kind the schema knows, in field order.
func Kinds() []string {
	fields := bodyOneof.Fields()
	out := make([]string, 0, fields.Len())
	for i := 0; i < fields.Len(); i++ {
		out = append(out, string(fields.Get(i).Name()))
	}
	return out
}

// IsKind reports whether k names a body kind.
func IsKind(k string) bool {
	return bodyOneof.Fields().ByName(protoreflect.Name(k)) != nil
}

// eventNamespace roots deterministic event ids.
var eventNamespace = uuid.MustParse("6f2f4c1e-3a7b-5d1e-9c55-7a11e0c0ffee")

// DeterministicID is the event id for an idempotency key within a tenant:
// a UUIDv5, so the same key always yields the same id.
func DeterministicID(tenant, idempotencyKey string) string {
	return uuid.NewSHA1(eventNamespace, []byte(tenant+"\x00"+idempotencyKey)).String()
}

// DecodeBatch decodes one log message's payload.
func DecodeBatch(payload []byte) (*tallyv1.EventBatch, error) {
	var b tallyv1.EventBatch
	if err := proto.Unmarshal(payload, &b); err != nil {
		return nil, fmt.Errorf("decode event batch: %w", err)
	}
	return &b, nil
}
