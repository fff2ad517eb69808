package focus_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/tally-ledger/tally/services/focus"
)

// FuzzReader feeds arbitrary bytes to the CSV path (and gzip, when the input
// happens to start with its magic). The reader must never panic, must end,
// and every error must be a positioned *focus.Error or *focus.RowError.
//
//	go test ./services/focus -run '^$' -fuzz FuzzReader -fuzztime 1m
func FuzzReader(f *testing.F) {
	f.Add([]byte(doc(line())))
	f.Add([]byte("\xEF\xBB\xBF" + doc(line("ChargeDescription", "\"a\r\nb\""))))
	f.Add([]byte(doc(line("BilledCost", "1.5E-7", "Tags", `"{"" org"":1,""b"":null}"`))))
	f.Add([]byte(doc(line("ChargePeriodEnd", "4/1/25", "BillingCurrency", "eur"))))
	f.Add([]byte(doc("1,2,3")))
	f.Add(gz(f, doc(line())))
	f.Add([]byte(""))
	if sample, err := os.ReadFile(samplePath); err == nil {
		f.Add(sample[:4096])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range [][]focus.Option{nil, {focus.AllowMissingColumns(), focus.MaxRecordBytes(512)}} {
			r, err := focus.NewReader(io.MultiReader(bytes.NewReader(data)), "fuzz.csv", focus.FormatAuto, opts...)
			if err != nil {
				checkError(t, err)
				continue
			}
			// Every Next consumes input or ends, so this bound is generous.
			for range len(data) + 2 {
				row, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					checkError(t, err)
					var fe *focus.Error
					if errors.As(err, &fe) && !isRowError(err) {
						break // fatal
					}
					continue
				}
				start, end := row.ChargePeriodStart, row.ChargePeriodEnd
				if !start.IsZero() && !end.IsZero() && !start.Before(end) { // zero: column absent (AllowMissingColumns)
					t.Fatalf("row with a reversed charge period passed validation: %+v", row)
				}
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func isRowError(err error) bool {
	var re *focus.RowError
	return errors.As(err, &re)
}

func checkError(t *testing.T, err error) {
	t.Helper()
	var fe *focus.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error is not a *focus.Error: %T %v", err, err)
	}
	if fe.File != "fuzz.csv" || fe.Rule == "" || fe.Msg == "" {
		t.Fatalf("error without file, rule or message: %#v", fe)
	}
	if re := (*focus.RowError)(nil); errors.As(err, &re) && (len(re.Problems) == 0 || re.Row == 0) {
		t.Fatalf("row error without problems or row number: %#v", re)
	}
}
