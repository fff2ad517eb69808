package focus_test

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/services/focus"
)

// testdata is the repository's FOCUS test data (copies of the shared
// samples, see testdata/focus/SOURCE.md); tests never read /work/shared.
var testdata = filepath.Join("..", "..", "testdata", "focus")

// result is everything a reader produced for one input.
type result struct {
	rows    []focus.Row
	rowErrs []*focus.RowError
	fatal   error // open error or fatal read error
	reader  *focus.Reader
}

// drain reads a reader to the end, continuing past bad rows.
func drain(t testing.TB, r *focus.Reader) result {
	t.Helper()
	res := result{reader: r}
	for range 10_000_000 {
		row, err := r.Next()
		var rowErr *focus.RowError
		switch {
		case err == nil:
			res.rows = append(res.rows, row)
		case errors.Is(err, io.EOF):
			return res
		case errors.As(err, &rowErr):
			res.rowErrs = append(res.rowErrs, rowErr)
		default:
			res.fatal = err
			// A fatal error is sticky.
			_, again := r.Next()
			require.Equal(t, err, again)
			return res
		}
	}
	t.Fatal("reader never reached EOF")
	return res
}

func readFile(t testing.TB, path string, opts ...focus.Option) result {
	t.Helper()
	r, err := focus.Open(path, opts...)
	if err != nil {
		return result{fatal: err}
	}
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return drain(t, r)
}

func readBytes(t testing.TB, name string, data []byte, opts ...focus.Option) result {
	t.Helper()
	// io.MultiReader hides bytes.Reader's ReaderAt: this is the streaming path.
	r, err := focus.NewReader(io.MultiReader(bytes.NewReader(data)), name, focus.FormatAuto, opts...)
	if err != nil {
		return result{fatal: err}
	}
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return drain(t, r)
}

// firstError returns the first *focus.Error of a result: the fatal error, or
// the first problem of the first bad row.
func (res result) firstError(t testing.TB) *focus.Error {
	t.Helper()
	var err error = res.fatal
	if err == nil && len(res.rowErrs) > 0 {
		err = res.rowErrs[0]
	}
	require.Error(t, err, "expected an error")
	var fe *focus.Error
	require.ErrorAs(t, err, &fe)
	return fe
}
