package eventstore

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// fieldUsageRecorded is the body field number of usage_recorded.
const fieldUsageRecorded = 24

// FuzzContentDigest checks that contentDigest never panics, ignores the
// log's own fields and the attempt's metadata (actor, source, correlation,
// causation) however they are set or appended, and changes when the body
// changes: a retry of the same fact is a duplicate, a different fact under
// the same id a conflict.
func FuzzContentDigest(f *testing.F) {
	for _, env := range fixtureEnvelopes(f) {
		f.Add(env, "run-2", "file.csv", "corr", "cause", uint64(42), []byte("prev"), "usage")
	}
	f.Add([]byte{}, "", "", "", "", uint64(0), []byte{}, "")
	f.Add([]byte{0xa2, 0x01, 0x00}, "a", "b", "c", "d", uint64(1), make([]byte, HashSize), "x") // empty usage_recorded
	f.Fuzz(func(t *testing.T, raw []byte, actorID, file, correlation, causation string, seq uint64, prev []byte, metric string) {
		d, err := contentDigest(raw)
		if err != nil {
			return
		}

		// Raw level: what the log appends, and any attempt metadata
		// appended after the fact, leave the digest alone.
		var prevHash Hash
		copy(prevHash[:], prev)
		recordedAt, err := proto.Marshal(timestamppb.New(fixedTime))
		if err != nil {
			t.Fatal(err)
		}
		withLog := appendLogFields(bytes.Clone(raw), recordedAt, seq, prevHash)
		withMeta := bytes.Clone(withLog)
		for _, field := range []protowire.Number{fieldActor, fieldSource, fieldCorrelationID, fieldCausationID} {
			withMeta = protowire.AppendTag(withMeta, field, protowire.BytesType)
			withMeta = protowire.AppendBytes(withMeta, []byte(actorID+file))
		}
		for name, b := range map[string][]byte{"log fields": withLog, "attempt metadata": withMeta} {
			got, err := contentDigest(b)
			if err != nil {
				t.Fatalf("%s appended: %v", name, err)
			}
			if got != d {
				t.Fatalf("%s appended: digest %x, want %x", name, got, d)
			}
		}
		// Appending a body field is a different fact.
		withBody := protowire.AppendTag(bytes.Clone(raw), fieldUsageRecorded, protowire.BytesType)
		withBody = protowire.AppendBytes(withBody, []byte(metric))
		if got, err := contentDigest(withBody); err != nil || got == d {
			t.Fatalf("body appended: digest %x (err %v), unchanged from %x", got, err, d)
		}

		// Message level: the envelope as a producer would send it again.
		env := &tallyv1.Envelope{}
		if proto.Unmarshal(raw, env) != nil {
			return
		}
		env.RecordedAt, env.TenantSeq, env.PrevHash = nil, 0, nil
		base, err := marshalOpts.Marshal(env)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		want, err := contentDigest(base)
		if err != nil {
			t.Fatalf("digest of a marshalled envelope: %v", err)
		}

		retry := proto.Clone(env).(*tallyv1.Envelope)
		retry.Actor = &tallyv1.Actor{Kind: tallyv1.ActorKind(seq % 8), Id: strings.ToValidUTF8(actorID, "?")}
		retry.Source = &tallyv1.Source{Adapter: "api", File: strings.ToValidUTF8(file, "?"), Line: seq}
		retry.CorrelationId = strings.ToValidUTF8(correlation, "?")
		retry.CausationId = strings.ToValidUTF8(causation, "?")
		retry.RecordedAt = timestamppb.New(fixedTime)
		retry.TenantSeq = seq
		retry.PrevHash = prevHash[:]
		b, err := marshalOpts.Marshal(retry)
		if err != nil {
			t.Fatalf("re-encode the retry: %v", err)
		}
		if got, err := contentDigest(b); err != nil || got != want {
			t.Fatalf("retry with other metadata: digest %x (err %v), want %x", got, err, want)
		}

		other := proto.Clone(env).(*tallyv1.Envelope)
		m := strings.ToValidUTF8(metric, "?")
		if u := other.GetUsageRecorded(); u != nil && u.GetMetric() == m {
			m += "'"
		}
		other.Body = &tallyv1.Envelope_UsageRecorded{UsageRecorded: &tallyv1.UsageRecorded{Metric: m}}
		if u := env.GetUsageRecorded(); u != nil && proto.Equal(u, other.GetUsageRecorded()) {
			t.Fatalf("test bug: the changed body equals the original")
		}
		b, err = marshalOpts.Marshal(other)
		if err != nil {
			t.Fatalf("re-encode the changed body: %v", err)
		}
		if got, err := contentDigest(b); err != nil || got == want {
			t.Fatalf("changed body: digest %x (err %v), unchanged from %x", got, err, want)
		}
	})
}
