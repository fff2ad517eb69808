package focusgen_test

import (
	"context"
	"io"
	"testing"

	"github.com/tally-ledger/tally/services/focusgen"
)

// BenchmarkGenerate writes a 100k-row FOCUS 1.3 bill to io.Discard.
//
//	go test ./services/focusgen -run '^$' -bench Generate -benchmem
func BenchmarkGenerate(b *testing.B) {
	for _, gz := range []bool{false, true} {
		name := "csv"
		if gz {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) {
			p := focusgen.Params{Seed: 1, Period: september, Rows: 100_000, Gzip: gz}
			cw := &countingWriter{}
			for b.Loop() {
				cw.n = 0
				if _, err := focusgen.Generate(context.Background(), cw, p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(p.Rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			b.SetBytes(cw.n)
		})
	}
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return io.Discard.Write(p)
}
