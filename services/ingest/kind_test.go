package ingest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGroupByKind: a batch comes out grouped by kind in the constants'
// order, each kind's changes in their order in the batch, and the batch
// itself is left as it was.
func TestGroupByKind(t *testing.T) {
	// Each change is named by its kind's letter and its position.
	mk := func(spec string) []*change {
		kinds := map[byte]changeKind{'c': kindRecorded, 's': kindRestated, 'r': kindRetracted, 'f': kindFinalized}
		out := make([]*change, len(spec))
		for i := range spec {
			out[i] = &change{kind: kinds[spec[i]], applied: applied{lineKey: string(spec[i]) + string(rune('0'+i))}}
		}
		return out
	}
	names := func(cs []*change) []string {
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = c.applied.lineKey
		}
		return out
	}
	tests := []struct {
		name  string
		batch string
		want  []string
	}{
		{"empty", "", []string{}},
		{"one kind keeps its order", "sss", []string{"s0", "s1", "s2"}},
		{"interleaved", "srcsrcs", []string{"c2", "c5", "s0", "s3", "s6", "r1", "r4"}},
		{"finalized stay last", "crff", []string{"c0", "r1", "f2", "f3"}},
		{"already grouped", "ccsr", []string{"c0", "c1", "s2", "r3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			batch := mk(tt.batch)
			before := names(batch)
			require.Equal(t, tt.want, names(groupByKind(batch)))
			require.Equal(t, before, names(batch), "the batch is not modified")
		})
	}
}
