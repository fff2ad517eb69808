package eventstore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// fixtureEnvelopes returns the stored schema fixtures (envelope bytes as
// written by older versions) as fuzz seeds: real events of every kind.
func fixtureEnvelopes(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, dir := range []string{"v1", "unknown"} {
		paths, err := filepath.Glob(filepath.Join("testdata", "fixtures", dir, "*.binpb"))
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		f.Fatal("no schema fixtures found under testdata/fixtures")
	}
	return out
}

// fixedTime is the recorded_at of seed events, so that seeds are stable.
var fixedTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// storedBatch builds a log message payload the way publish does: each
// envelope with the log's fields appended, chained, in one EventBatch.
func storedBatch(envelopes ...[]byte) []byte {
	recordedAt, _ := proto.Marshal(timestamppb.New(fixedTime))
	var batch tallyv1.EventBatch
	prev := ZeroHash
	for i, env := range envelopes {
		stored := appendLogFields(bytes.Clone(env), recordedAt, uint64(i+1), prev)
		h := ChainHash(prev, stored)
		batch.Events = append(batch.Events, &tallyv1.StoredEvent{Envelope: stored, Hash: h[:]})
		prev = h
	}
	b, err := proto.Marshal(&batch)
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzDecodeBatch feeds arbitrary bytes to the read path as a log message's
// payload. Decoding must never panic; DecodeBatch and decodeMessage (what
// Read uses) must agree; and whatever decodes must re-encode to bytes that
// decode to an equal message.
func FuzzDecodeBatch(f *testing.F) {
	fixtures := fixtureEnvelopes(f)
	for _, env := range fixtures {
		f.Add(storedBatch(env))
	}
	f.Add(storedBatch(fixtures...))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})                   // one empty StoredEvent
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})       // a StoredEvent with an empty envelope
	f.Add([]byte{0x0a, 0x04, 0x0a, 0x02, 0xff}) // a truncated envelope
	f.Fuzz(func(t *testing.T, payload []byte) {
		batch, batchErr := DecodeBatch(payload)
		events, msgErr := decodeMessage(7, payload)
		if batchErr != nil {
			if msgErr == nil {
				t.Fatalf("decodeMessage accepted a payload DecodeBatch refused: %v", batchErr)
			}
			return
		}
		if msgErr == nil && len(events) != len(batch.GetEvents()) {
			t.Fatalf("decodeMessage gave %d events, DecodeBatch %d", len(events), len(batch.GetEvents()))
		}

		again, err := proto.Marshal(batch)
		if err != nil {
			t.Fatalf("re-encode a decoded batch: %v", err)
		}
		back, err := DecodeBatch(again)
		if err != nil {
			t.Fatalf("decode a re-encoded batch: %v", err)
		}
		if !proto.Equal(batch, back) {
			t.Fatalf("batch changed through re-encoding:\n%v\n%v", batch, back)
		}

		refused := false
		for i, se := range batch.GetEvents() {
			env := &tallyv1.Envelope{}
			if err := proto.Unmarshal(se.GetEnvelope(), env); err != nil {
				if msgErr == nil {
					t.Fatalf("event %d: decodeMessage accepted an envelope proto.Unmarshal refuses: %v", i, err)
				}
				refused = true
				continue
			}
			// Kind must be answerable for anything that decodes.
			_ = Kind(env)
			b, err := marshalOpts.Marshal(env)
			if err != nil {
				t.Fatalf("event %d: re-encode a decoded envelope: %v", i, err)
			}
			envBack := &tallyv1.Envelope{}
			if err := proto.Unmarshal(b, envBack); err != nil {
				t.Fatalf("event %d: decode a re-encoded envelope: %v", i, err)
			}
			if !proto.Equal(env, envBack) {
				t.Fatalf("event %d: envelope changed through re-encoding:\n%v\n%v", i, env, envBack)
			}
			if msgErr == nil {
				ev := events[i]
				if ev.StreamSeq != 7 || ev.Index != i || !bytes.Equal(ev.Raw, se.GetEnvelope()) || !proto.Equal(ev.Envelope, env) {
					t.Fatalf("event %d: decodeMessage disagrees with DecodeBatch: %+v", i, ev)
				}
			}
		}
		if msgErr != nil && !refused {
			t.Fatalf("decodeMessage refused a payload whose batch and envelopes all decode: %v", msgErr)
		}
	})
}
