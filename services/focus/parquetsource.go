package focus

import (
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"github.com/shopspring/decimal"
)

var (
	errParquet = errors.New("parquet data is corrupt")
	errNested  = errors.New("nested Parquet column")
)

// parquetSource reads a Parquet file row group by row group through
// parquet-go's generic row API (no Go struct: columns are found by name),
// a few rows at a time, and renders every value as the text a CSV export
// would hold, so that both formats go through the same validation.
type parquetSource struct {
	file   *parquet.File
	rows   *parquet.Reader
	names  []string
	conv   []func(parquet.Value) string
	buf    []parquet.Row
	pos, n int
	err    error // error that came with the last batch, returned once it is drained
	fields []string
}

// parquetBatch rows are decoded at a time: enough to amortise the call,
// small enough to keep memory flat.
const parquetBatch = 128

func newParquetSource(ra io.ReaderAt, size int64) (src *parquetSource, err error) {
	defer recoverParquet(&err) // a corrupt footer can panic inside the decoder
	f, err := parquet.OpenFile(ra, size, parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errParquet, err)
	}
	schema := f.Schema()
	paths := schema.Columns()
	s := &parquetSource{
		file:   f,
		names:  make([]string, len(paths)),
		conv:   make([]func(parquet.Value) string, len(paths)),
		buf:    make([]parquet.Row, parquetBatch),
		fields: make([]string, len(paths)),
	}
	for _, path := range paths {
		leaf, ok := schema.Lookup(path...)
		if !ok || len(path) != 1 || leaf.MaxRepetitionLevel > 0 {
			// FOCUS columns are flat; a MAP or LIST Tags column would need
			// its own rendering to JSON, which no export we know uses.
			return nil, fmt.Errorf("%w %q is not supported (FOCUS columns are flat; JSON columns must be strings)",
				errNested, strings.Join(path, "."))
		}
		s.names[leaf.ColumnIndex] = path[0]
		s.conv[leaf.ColumnIndex] = parquetConverter(leaf.Node.Type())
	}
	s.rows = parquet.NewReader(f) // f is a *parquet.File, so this cannot panic on open
	return s, nil
}

func (s *parquetSource) header() ([]string, error) { return s.names, nil }

func (s *parquetSource) line(int) int { return 0 }

func (s *parquetSource) next() (fields []string, err error) {
	defer recoverParquet(&err)
	if s.pos == s.n {
		if s.err != nil {
			return nil, s.err
		}
		s.pos = 0
		s.n, s.err = s.rows.ReadRows(s.buf)
		if s.err != nil && !errors.Is(s.err, io.EOF) {
			s.err = fmt.Errorf("%w: %v", errParquet, s.err)
		}
		if s.n == 0 {
			if s.err == nil {
				s.err = io.EOF
			}
			return nil, s.err
		}
	}
	row := s.buf[s.pos]
	s.pos++
	for i := range s.fields {
		s.fields[i] = ""
	}
	for _, v := range row {
		if c := v.Column(); c >= 0 && c < len(s.fields) {
			s.fields[c] = s.conv[c](v)
		}
	}
	return s.fields, nil
}

func recoverParquet(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("%w: %v", errParquet, p)
	}
}

// parquetConverter renders a column's values as text. Decimals keep their
// scale exactly; timestamps become RFC 3339 UTC; a DOUBLE amount is printed
// with the shortest representation that round-trips, i.e. the number the
// writer meant (the float never reaches a sum: the text is parsed as a
// decimal like any CSV value).
func parquetConverter(t parquet.Type) func(parquet.Value) string {
	lt := t.LogicalType()
	var logical format.LogicalTypeValue
	if lt != nil {
		logical = lt.Value
	}
	null := func(f func(parquet.Value) string) func(parquet.Value) string {
		return func(v parquet.Value) string {
			if v.IsNull() {
				return ""
			}
			return f(v)
		}
	}
	switch l := logical.(type) {
	case *format.DecimalType:
		scale := int32(l.Scale)
		return null(func(v parquet.Value) string {
			switch v.Kind() {
			case parquet.Int32:
				return decimal.New(int64(v.Int32()), -scale).String()
			case parquet.Int64:
				return decimal.New(v.Int64(), -scale).String()
			default: // big-endian two's complement in (fixed length) byte arrays
				return decimal.NewFromBigInt(twosComplement(v.ByteArray()), -scale).String()
			}
		})
	case *format.TimestampType:
		unit := time.Millisecond
		switch l.Unit.Value.(type) {
		case *format.MicroSeconds:
			unit = time.Microsecond
		case *format.NanoSeconds:
			unit = time.Nanosecond
		}
		return null(func(v parquet.Value) string {
			n := v.Int64()
			sec, rem := n/int64(time.Second/unit), n%int64(time.Second/unit)
			return time.Unix(sec, rem*int64(unit)).UTC().Format(time.RFC3339Nano)
		})
	case *format.DateType:
		return null(func(v parquet.Value) string {
			return time.Unix(int64(v.Int32())*86400, 0).UTC().Format("2006-01-02")
		})
	}
	switch t.Kind() {
	case parquet.Boolean:
		return null(func(v parquet.Value) string { return strconv.FormatBool(v.Boolean()) })
	case parquet.Int32:
		return null(func(v parquet.Value) string { return strconv.FormatInt(int64(v.Int32()), 10) })
	case parquet.Int64:
		return null(func(v parquet.Value) string { return strconv.FormatInt(v.Int64(), 10) })
	case parquet.Float:
		return null(func(v parquet.Value) string { return strconv.FormatFloat(float64(v.Float()), 'g', -1, 32) })
	case parquet.Double:
		return null(func(v parquet.Value) string { return strconv.FormatFloat(v.Double(), 'g', -1, 64) })
	case parquet.Int96:
		// Legacy Spark/Impala timestamps: nanoseconds of the day, then the
		// Julian day number.
		return null(func(v parquet.Value) string {
			i := v.Int96()
			nanos := int64(i[1])<<32 | int64(i[0])
			days := int64(i[2]) - 2440588 // Julian day of 1970-01-01
			return time.Unix(days*86400, nanos).UTC().Format(time.RFC3339Nano)
		})
	default:
		return null(func(v parquet.Value) string { return string(v.ByteArray()) })
	}
}

func twosComplement(b []byte) *big.Int {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	return n
}
