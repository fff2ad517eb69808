package ingest

import (
	"bufio"
	"bytes"
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
)

// A record is one row of the file on its way to the diff, in a run buffer
// and in a run file:
//
//	scope key (32 bytes, hex) | line key (64, hex) | row number (8, big-endian) | content hash (32) | encoded line
//
// Its first sortKeyLen bytes compare, byte by byte, in the order of scope
// key, line key and row number: sorting and merging runs is bytes.Compare.
const (
	scopeKeyLen = 32
	lineKeyLen  = 64
	sortKeyLen  = scopeKeyLen + lineKeyLen + 8
	groupKeyLen = scopeKeyLen + lineKeyLen
	recHeadLen  = sortKeyLen + sha256.Size
)

// defaultRunBytes is the memory a run takes before it is sorted and spilled:
// the file's size does not change it. Measured: 32 MiB runs keep the ingest
// under the RSS target while a 1M-row bill spills about 20 runs; 16 MiB runs
// did not lower the peak RSS (248-252 MiB against 231-252 MiB at 1M rows with
// 10,000 events per append), which comes after the staging, in the diff,
// append and fold pipeline, and is set by Options.BatchEvents.
const defaultRunBytes = 32 << 20

type recRef struct{ off, n uint32 }

// runWriter collects records in memory and spills them, sorted, to one file
// per run.
type runWriter struct {
	dir   string
	limit int
	buf   []byte
	idx   []recRef
	files []string
	bytes int64 // spilled
}

func newRunWriter(dir string, limit int) *runWriter {
	if limit <= 0 {
		limit = defaultRunBytes
	}
	return &runWriter{dir: dir, limit: limit}
}

// appendRecordHead starts a record in dst; the encoded line follows it, and
// sealRecord then fills in its content hash.
func appendRecordHead(dst []byte, scopeKey, lineKey string, rowNo uint64) ([]byte, error) {
	if len(scopeKey) != scopeKeyLen || len(lineKey) != lineKeyLen {
		return dst, fmt.Errorf("record keys of %d and %d bytes, want %d and %d", len(scopeKey), len(lineKey), scopeKeyLen, lineKeyLen)
	}
	dst = append(dst, scopeKey...)
	dst = append(dst, lineKey...)
	dst = binary.BigEndian.AppendUint64(dst, rowNo)
	return append(dst, make([]byte, sha256.Size)...), nil
}

func sealRecord(rec []byte) {
	h := sha256.Sum256(rec[recHeadLen:])
	copy(rec[sortKeyLen:recHeadLen], h[:])
}

// add appends one record built from its parts.
func (w *runWriter) add(scopeKey, lineKey string, rowNo uint64, line []byte) error {
	rec, err := appendRecordHead(nil, scopeKey, lineKey, rowNo)
	if err != nil {
		return err
	}
	rec = append(rec, line...)
	sealRecord(rec)
	return w.addRecord(rec)
}

// addRecord appends one sealed record; its bytes are copied.
func (w *runWriter) addRecord(rec []byte) error {
	n := len(rec)
	if len(w.idx) > 0 && len(w.buf)+n > w.limit {
		if err := w.spill(); err != nil {
			return err
		}
	}
	if w.buf == nil {
		w.buf = make([]byte, 0, max(w.limit, n))
	}
	off := len(w.buf)
	w.buf = append(w.buf, rec...)
	w.idx = append(w.idx, recRef{off: uint32(off), n: uint32(n)})
	return nil
}

// spill sorts the run in memory and writes it to a new file, each record
// prefixed with its length.
func (w *runWriter) spill() error {
	if len(w.idx) == 0 {
		return nil
	}
	buf := w.buf
	slices.SortFunc(w.idx, func(a, b recRef) int {
		return bytes.Compare(buf[a.off:a.off+sortKeyLen], buf[b.off:b.off+sortKeyLen])
	})
	name := filepath.Join(w.dir, fmt.Sprintf("run-%05d", len(w.files)))
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("spill a sorted run: %w", err)
	}
	rf := newRunFile(f)
	for _, r := range w.idx {
		rf.write(buf[r.off : r.off+r.n])
		w.bytes += int64(r.n)
	}
	if err := rf.close(); err != nil {
		return fmt.Errorf("spill a sorted run: %w", err)
	}
	w.files = append(w.files, name)
	w.buf, w.idx = w.buf[:0], w.idx[:0]
	return nil
}

// runFile writes a run file: each record prefixed with its length as a
// uvarint, as runReader reads it.
type runFile struct {
	f   *os.File
	bw  *bufio.Writer
	hdr [binary.MaxVarintLen32]byte
}

func newRunFile(f *os.File) *runFile {
	return &runFile{f: f, bw: bufio.NewWriterSize(f, 1<<20)}
}

func (rf *runFile) write(rec []byte) {
	rf.bw.Write(rf.hdr[:binary.PutUvarint(rf.hdr[:], uint64(len(rec)))]) //nolint:errcheck // bufio keeps the first error for Flush
	rf.bw.Write(rec)                                                     //nolint:errcheck // idem
}

// close flushes and closes the file; it is closed whatever the error.
func (rf *runFile) close() error {
	ferr := rf.bw.Flush()
	return errors.Join(ferr, rf.f.Close())
}

// finish spills the last run and frees the buffer.
func (w *runWriter) finish() error {
	err := w.spill()
	w.buf, w.idx = nil, nil
	return err
}

// runReader reads one run file, a record at a time.
type runReader struct {
	f   *os.File
	br  *bufio.Reader
	rec []byte // current record, valid until the next call of next
}

// The k-way merge reads every run at once, through a buffer each. The
// buffers share mergeReadBudget, so their memory does not grow with the
// file: a 1M-row bill of focusgen spills about 30 runs (136 KiB a buffer), a
// 10M-row one about 310 (13 KiB). Measured before: 64 KiB a run, 20 MiB of
// buffers live at 10M rows against 2 MiB at 1M, twice that in RSS with the
// GC's headroom. A buffer is at least minRunRead, so a merge reads at most
// maxFanIn runs: a file with more (about 16 GiB of encoded rows) first has
// its runs merged in groups into longer ones (reduceRuns), one more pass
// over the data, and the merge's memory stays the same.
const (
	mergeReadBudget = 4 << 20
	minRunRead      = 8 << 10
	maxRunRead      = 256 << 10
	maxFanIn        = mergeReadBudget / minRunRead
)

// runReadBuffer is the read buffer of each of n runs merged at once.
func runReadBuffer(n int) int {
	return min(max(mergeReadBudget/max(n, 1), minRunRead), maxRunRead)
}

func openRun(name string, buffer int) (*runReader, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open a sorted run: %w", err)
	}
	return &runReader{f: f, br: bufio.NewReaderSize(f, buffer)}, nil
}

func (r *runReader) next() (bool, error) {
	n, err := binary.ReadUvarint(r.br)
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read a sorted run: %w", err)
	}
	if n < recHeadLen || n > 1<<30 {
		return false, fmt.Errorf("read a sorted run %s: record of %d bytes", r.f.Name(), n)
	}
	if cap(r.rec) < int(n) {
		r.rec = make([]byte, n, max(int(n), 2*cap(r.rec)))
	}
	r.rec = r.rec[:n]
	if _, err := io.ReadFull(r.br, r.rec); err != nil {
		return false, fmt.Errorf("read a sorted run %s: %w", r.f.Name(), err)
	}
	return true, nil
}

// merger is a k-way merge of sorted runs into one stream in record order.
// Rows of one line in different runs come out in row order: runs hold
// consecutive rows and the row number is part of the sort key.
type merger struct {
	h       runHeap
	advance *runReader // the reader whose record was returned last
}

type runHeap []*runReader

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	return bytes.Compare(h[i].rec[:sortKeyLen], h[j].rec[:sortKeyLen]) < 0
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

func openMerger(files []string) (*merger, error) {
	if len(files) > maxFanIn {
		return nil, fmt.Errorf("merge %d sorted runs at once, more than %d: reduce them first", len(files), maxFanIn)
	}
	m := &merger{}
	buffer := runReadBuffer(len(files))
	for _, name := range files {
		r, err := openRun(name, buffer)
		if err != nil {
			m.close()
			return nil, err
		}
		ok, err := r.next()
		if err != nil {
			r.f.Close()
			m.close()
			return nil, err
		}
		if !ok {
			r.f.Close()
			continue
		}
		m.h = append(m.h, r)
	}
	heap.Init(&m.h)
	return m, nil
}

// next returns the smallest record left, valid until the next call, or nil
// at the end.
func (m *merger) next() ([]byte, error) {
	if r := m.advance; r != nil {
		m.advance = nil
		ok, err := r.next()
		if err != nil {
			return nil, err
		}
		if ok {
			heap.Fix(&m.h, 0)
		} else {
			heap.Pop(&m.h)
			r.f.Close()
		}
	}
	if len(m.h) == 0 {
		return nil, nil
	}
	m.advance = m.h[0]
	return m.h[0].rec, nil
}

func (m *merger) close() {
	for _, r := range m.h {
		r.f.Close()
	}
	m.h, m.advance = nil, nil
}

// reduceRuns merges the runs in groups of at most fanIn into longer runs
// under dir, removing the ones merged, until at most fanIn are left, so
// that the final merge's buffers fit mergeReadBudget. Runs hold every
// record's full sort key, so a group needs no particular runs: the final
// merge gives the same order whatever the grouping.
func reduceRuns(ctx context.Context, dir string, files []string, fanIn int, log *slog.Logger) ([]string, error) {
	for pass := 1; len(files) > fanIn; pass++ {
		var next []string
		for i := 0; i < len(files); i += fanIn {
			group := files[i:min(i+fanIn, len(files))]
			if len(group) == 1 {
				next = append(next, group[0])
				continue
			}
			log.InfoContext(ctx, "merging sorted runs of a large file", "pass", pass, "runs", fmt.Sprintf("%d-%d of %d", i+1, i+len(group), len(files)))
			name, err := mergeRuns(ctx, dir, group)
			if err != nil {
				return nil, err
			}
			for _, f := range group {
				if err := os.Remove(f); err != nil {
					return nil, fmt.Errorf("merge sorted runs: %w", err)
				}
			}
			next = append(next, name)
		}
		files = next
	}
	return files, nil
}

// mergeRuns merges sorted runs into a new one under dir and returns its
// name. On an error the ingest's directory, removed at its end, keeps
// whatever was written.
func mergeRuns(ctx context.Context, dir string, files []string) (string, error) {
	m, err := openMerger(files)
	if err != nil {
		return "", err
	}
	defer m.close()
	f, err := os.CreateTemp(dir, "merged-*")
	if err != nil {
		return "", fmt.Errorf("merge sorted runs: %w", err)
	}
	rf := newRunFile(f)
	for n := 0; ; n++ {
		if n%65536 == 0 {
			if err := ctx.Err(); err != nil {
				rf.close() //nolint:errcheck // the error that matters is err
				return "", err
			}
		}
		rec, err := m.next()
		if err != nil {
			rf.close() //nolint:errcheck // the error that matters is err
			return "", err
		}
		if rec == nil {
			break
		}
		rf.write(rec)
	}
	if err := rf.close(); err != nil {
		return "", fmt.Errorf("merge sorted runs: %w", err)
	}
	return f.Name(), nil
}
