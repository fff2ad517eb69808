package focus_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/focusgen"
)

// BenchmarkRead reads a generated 100k-row FOCUS 1.3 bill (65 columns, tags,
// all amounts parsed as decimals) from memory, validating every row.
//
//	go test ./services/focus -run '^$' -bench Read -benchmem
func BenchmarkRead(b *testing.B) {
	for _, gz := range []bool{false, true} {
		name := "csv"
		if gz {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) {
			const rows = 100_000
			var data bytes.Buffer
			p := focusgen.Params{Seed: 1, Period: time.Date(2025, 9, 1, 0, 0, 0, 0, time.UTC), Rows: rows, Gzip: gz}
			if _, err := focusgen.Generate(context.Background(), &data, p); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(data.Len()))
			for b.Loop() {
				r, err := focus.NewReader(bytes.NewReader(data.Bytes()), "bench.csv", focus.FormatAuto)
				if err != nil {
					b.Fatal(err)
				}
				rep, err := r.Scan(context.Background(), focus.RejectFile, func(focus.Row) error { return nil })
				if err != nil || rep.Rows != rows {
					b.Fatalf("read %d rows: %v", rep.Rows, err)
				}
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
