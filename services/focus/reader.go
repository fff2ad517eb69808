package focus

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Format is the container of a FOCUS file.
type Format int

// Formats. FormatAuto detects the format from the first bytes.
const (
	FormatAuto Format = iota
	FormatCSV
	FormatGzipCSV
	FormatParquet
)

func (f Format) String() string {
	switch f {
	case FormatCSV:
		return "csv"
	case FormatGzipCSV:
		return "csv+gzip"
	case FormatParquet:
		return "parquet"
	default:
		return "auto"
	}
}

// Option configures a Reader.
type Option func(*config)

type config struct {
	allowMissingColumns bool
	maxRecordBytes      int64
}

// DefaultMaxRecordBytes bounds one CSV record. A FOCUS row is about 1 KB, a
// heavily tagged one a few tens of KB; a record larger than this is a broken
// quote swallowing the rest of the file, and reading it whole would break
// the bounded-memory promise.
const DefaultMaxRecordBytes = 4 << 20

// AllowMissingColumns skips the required-column check of the header. It
// exists for fragments such as the FOCUS appendix examples, which carry only
// the columns of one scenario; ledger ingestion must not use it.
func AllowMissingColumns() Option { return func(c *config) { c.allowMissingColumns = true } }

// MaxRecordBytes overrides DefaultMaxRecordBytes.
func MaxRecordBytes(n int64) Option { return func(c *config) { c.maxRecordBytes = n } }

// Reader reads a FOCUS cost-and-usage file one row at a time. It is not safe
// for concurrent use, except BytesRead, which a progress display may call
// from another goroutine.
type Reader struct {
	name    string
	format  Format
	cfg     config
	src     source
	closers []io.Closer
	read    atomic.Int64
	size    int64

	header  []string // column names as in the file, trimmed
	cols    []colID  // per field: the FOCUS column, or colNone for an extension
	extIdx  []int    // field indices of extensions, sorted by name
	present [numCols]bool
	version Version

	number int   // data rows returned so far, good or bad
	fatal  error // sticky: once set, Next returns it forever
	tcache [numCols]cachedTime
}

type cachedTime struct {
	raw string
	t   time.Time
}

// source yields the records of one container format.
type source interface {
	// header returns the column names and the physical line of each.
	header() ([]string, error)
	// next returns the next record's fields; the slice is reused by the next
	// call. A field-count mismatch is reported as *csv.ParseError with the
	// record still returned.
	next() ([]string, error)
	// line returns the physical line where field i of the last record starts,
	// or 0 when the format has no lines.
	line(i int) int
}

// Open opens a FOCUS file (CSV, gzip CSV or Parquet, detected from its first
// bytes) and reads its header. Errors are *Error values naming the file by
// its base name.
func Open(path string, opts ...Option) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open FOCUS file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat FOCUS file: %w", err)
	}
	r, err := NewReaderAt(f, st.Size(), filepath.Base(path), FormatAuto, opts...)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closers = append(r.closers, f)
	return r, nil
}

// NewReader reads a FOCUS file from a stream. name is used in error
// messages. Parquet needs random access: if r also implements io.ReaderAt
// and can tell its size (a Size method or io.Seeker), it is read through
// NewReaderAt; otherwise a Parquet stream is refused with RuleUnsupported.
func NewReader(r io.Reader, name string, format Format, opts ...Option) (*Reader, error) {
	if ra, ok := r.(io.ReaderAt); ok && (format == FormatAuto || format == FormatParquet) {
		if size, ok := sizeOf(r); ok {
			return NewReaderAt(ra, size, name, format, opts...)
		}
	}
	rd := newReader(name, format, -1, opts)
	if err := rd.initStream(r); err != nil {
		rd.Close()
		return nil, err
	}
	return rd, nil
}

// NewReaderAt reads a FOCUS file of the given size through random access,
// which Parquet requires; CSV and gzip CSV are streamed from it.
func NewReaderAt(ra io.ReaderAt, size int64, name string, format Format, opts ...Option) (*Reader, error) {
	rd := newReader(name, format, size, opts)
	if format == FormatAuto {
		var magic [4]byte
		n, _ := ra.ReadAt(magic[:], 0)
		if n == 4 && string(magic[:]) == "PAR1" {
			rd.format = FormatParquet
		}
	}
	var err error
	if rd.format == FormatParquet {
		err = rd.initParquet(&countingReaderAt{ra: ra, n: &rd.read}, size)
	} else {
		err = rd.initStream(io.NewSectionReader(ra, 0, size))
	}
	if err != nil {
		rd.Close()
		return nil, err
	}
	return rd, nil
}

func newReader(name string, format Format, size int64, opts []Option) *Reader {
	cfg := config{maxRecordBytes: DefaultMaxRecordBytes}
	for _, o := range opts {
		o(&cfg)
	}
	return &Reader{name: name, format: format, cfg: cfg, size: size}
}

func sizeOf(r io.Reader) (int64, bool) {
	if s, ok := r.(interface{ Size() int64 }); ok {
		return s.Size(), true
	}
	if s, ok := r.(io.Seeker); ok {
		cur, err := s.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, false
		}
		end, err := s.Seek(0, io.SeekEnd)
		if _, err2 := s.Seek(cur, io.SeekStart); err != nil || err2 != nil {
			return 0, false
		}
		return end, true
	}
	return 0, false
}

// Magic numbers of containers people hand us instead of a FOCUS file.
var foreignMagic = []struct {
	magic, what string
}{
	{"PK\x03\x04", "a zip archive (unzip it first)"},
	{"\x28\xb5\x2f\xfd", "zstd-compressed (decompress it first)"},
	{"BZh", "bzip2-compressed (decompress it first)"},
	{"\xfd7zXZ\x00", "xz-compressed (decompress it first)"},
	{"\xff\xfe", "UTF-16 text (FOCUS files are UTF-8: convert it first)"},
	{"\xfe\xff", "UTF-16 text (FOCUS files are UTF-8: convert it first)"},
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// initStream sets up CSV or gzip CSV reading: raw bytes are counted for
// progress, decompressed if needed, guarded against oversized records and
// stripped of a UTF-8 BOM before encoding/csv sees them.
func (r *Reader) initStream(raw io.Reader) error {
	sniff := bufio.NewReaderSize(&countingReader{r: raw, n: &r.read}, 64<<10)
	magic, err := sniff.Peek(8)
	if err != nil && !errors.Is(err, io.EOF) {
		return r.fileError(err)
	}
	if len(magic) == 0 {
		return r.problem(RuleEmpty, "file is empty")
	}
	if r.format == FormatAuto {
		switch {
		case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
			r.format = FormatGzipCSV
		case bytes.HasPrefix(magic, []byte("PAR1")):
			r.format = FormatParquet
		default:
			for _, f := range foreignMagic {
				if bytes.HasPrefix(magic, []byte(f.magic)) {
					return r.problem(RuleFormat, "file is "+f.what+", not a FOCUS CSV, gzip CSV or Parquet file")
				}
			}
			r.format = FormatCSV
		}
	}
	var text io.Reader = sniff
	switch r.format {
	case FormatParquet:
		return r.problem(RuleUnsupported, "Parquet needs random access: open the file with Open or NewReaderAt")
	case FormatGzipCSV:
		gz, err := gzip.NewReader(sniff)
		if err != nil {
			return r.fileError(err)
		}
		r.closers = append(r.closers, gz)
		text = gz
	}

	guard := &recordGuard{r: text, limit: r.cfg.maxRecordBytes}
	br := bufio.NewReaderSize(guard, 64<<10)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return r.fileError(err)
	}
	var skip int64
	if bytes.HasPrefix(head, utf8BOM) {
		_, _ = br.Discard(len(utf8BOM))
		head = head[len(utf8BOM):]
		skip = int64(len(utf8BOM))
	}
	if len(bytes.TrimSpace(head)) == 0 {
		return r.problem(RuleEmpty, "file has no header")
	}
	if i := bytes.IndexByte(head, 0); i >= 0 {
		return r.problem(RuleFormat, fmt.Sprintf("binary data (NUL byte at offset %d), not a FOCUS CSV file", i))
	}
	r.src = newCSVSource(br, guard, skip)
	return r.initHeader()
}

// initParquet opens a Parquet file; its schema is the header.
func (r *Reader) initParquet(ra io.ReaderAt, size int64) error {
	src, err := newParquetSource(ra, size)
	if err != nil {
		return r.fileError(err)
	}
	r.src = src
	r.closers = append(r.closers, src.rows)
	return r.initHeader()
}

// Name returns the name used in errors.
func (r *Reader) Name() string { return r.name }

// Format returns the detected (or forced) format.
func (r *Reader) Format() Format { return r.format }

// Columns returns the header's column names as they appear in the file.
func (r *Reader) Columns() []string { return r.header }

// Version returns the FOCUS version the header looks like: the highest
// version that introduced one of its columns. FOCUS keeps the real version in
// metadata outside the file, so this is a hint, not a fact.
func (r *Reader) Version() Version { return r.version }

// BytesRead returns how many bytes of the file have been read so far
// (compressed bytes for gzip), for progress displays. Buffering makes it run
// up to 128 KiB ahead of the rows returned.
func (r *Reader) BytesRead() int64 { return r.read.Load() }

// Size returns the file size in bytes, or -1 when the stream does not say.
func (r *Reader) Size() int64 { return r.size }

// Close releases the file opened by Open and the decompressor.
func (r *Reader) Close() error {
	var errs []error
	for i := len(r.closers) - 1; i >= 0; i-- {
		errs = append(errs, r.closers[i].Close())
	}
	r.closers = nil
	return errors.Join(errs...)
}

// countingReader counts bytes read for progress reporting.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type countingReaderAt struct {
	ra io.ReaderAt
	n  *atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.ra.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}
