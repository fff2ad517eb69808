package eventstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/uuid"
)

// idIndex is the writer's id index: for each tenant, every event id with its
// content digest, and the tenant's chain head as of the last message
// indexed. It lives in a pebble LSM, on disk when Options.IndexDir is set
// (it then survives restarts) and in memory otherwise.
//
// It is a cache of the log, never a source of truth: writes are not synced,
// a crash leaves it behind the log, and a tenant's first use checks its head
// against the log and catches up from there, or drops the tenant's entries
// and rebuilds them when the log no longer holds that head (see
// Store.loadTenant).
//
// Keys:
//
//	m "stream"               → identity of the stream the index caches
//	h <tenant>               → head (indexHeadSize bytes)
//	i <tenant> 0x00 <id 16>  → content digest (8 bytes, big endian)
//
// A tenant id never holds a 0x00 byte, so "i <tenant> 0x00" is a prefix of
// that tenant's ids only.
type idIndex struct {
	db  *pebble.DB
	dir string // "" in memory
}

// Sizes of the index's memory: pebble's block cache and one memtable (at
// most two exist at once, one being flushed). With these, the process keeps
// a flat footprint whatever the number of events (see BenchmarkIndexMemory).
const (
	indexCacheBytes    = 16 << 20
	indexMemTableBytes = 4 << 20
	// indexBloomBits per key: about 1% false positives, so that a Get of an
	// id not in the index (every new event) rarely reads a data block.
	indexBloomBits = 10
)

const (
	indexPrefixMeta = 'm'
	indexPrefixHead = 'h'
	indexPrefixID   = 'i'
)

// indexFormat is part of the stored identity: a change of the layout drops
// an index written by an older build instead of misreading it.
const indexFormat = "tally-eventindex/1"

var indexKeyIdentity = []byte{indexPrefixMeta, 's', 't', 'r', 'e', 'a', 'm'}

// indexWriteOpts: the log is the truth, so the index never waits for a sync.
var indexWriteOpts = pebble.NoSync

// glibc malloc settings for pebble's memory (see tuneMalloc): the defaults
// of glibc before it adapts the mmap threshold, and two arenas.
const (
	mallocArenas        = 2
	mallocMmapThreshold = 128 << 10
)

var tuneMallocOnce sync.Once

// openIndex opens (or creates) the index in dir, or in memory when dir is
// "". Pebble locks the directory: a second process (or Store) on it fails.
func openIndex(dir string, log *slog.Logger) (*idIndex, error) {
	tuneMallocOnce.Do(func() {
		if tuneMalloc(os.Getenv) {
			log.Debug("event index: glibc malloc set to 2 arenas and a fixed mmap threshold (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_ override)")
		}
	})
	opts := &pebble.Options{
		CacheSize:    indexCacheBytes,
		MemTableSize: indexMemTableBytes,
		// No WAL: a crash loses at most the memtables, and the index is
		// then behind the log, which the tenant's next load catches up.
		// Close flushes, so a clean stop keeps everything.
		DisableWAL:         true,
		FormatMajorVersion: pebble.FormatNewest,
		// Ids are random, so every flushed table overlaps the whole base
		// level: let more of them gather in L0 before a compaction rewrites
		// it. Measured: write amplification 7.4 → 5.0 over 3M random keys,
		// and the store's CPU 16.7-19.2 → 14.5-14.7 µs an event over 2M
		// events (BenchmarkIndexMemory); Bloom filters keep lookups in the
		// extra L0 tables cheap.
		L0CompactionThreshold: 16,
		L0StopWritesThreshold: 64,
		Logger:                pebbleLogger{log: log.With("component", "eventindex")},
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(indexBloomBits)
		// Keys are random ids and values digests: compression would cost
		// CPU on every flush and compaction and save nothing.
		opts.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	where := dir
	if dir == "" {
		opts.FS = vfs.NewMem()
		where = "in memory"
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("event index %s: create directory: %w", dir, err)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		if dir != "" {
			return nil, fmt.Errorf("event index %s: open (is another tally process using this directory? the index is a cache of the log: if it is damaged, delete the directory and it is rebuilt): %w", dir, err)
		}
		return nil, fmt.Errorf("event index %s: open: %w", where, err)
	}
	return &idIndex{db: db, dir: dir}, nil
}

// close flushes the memtable (there is no WAL) and closes the index.
func (x *idIndex) close() error {
	ferr := x.db.Flush()
	cerr := x.db.Close()
	if err := errors.Join(ferr, cerr); err != nil {
		return fmt.Errorf("event index %s: close: %w", x.where(), err)
	}
	return nil
}

func (x *idIndex) where() string {
	if x.dir == "" {
		return "in memory"
	}
	return x.dir
}

// checkIdentity drops every entry when the index was built from another
// stream (another identity) and records identity. It returns the identity
// found before ("" for a new index) and whether entries were dropped.
func (x *idIndex) checkIdentity(identity string) (old string, dropped bool, err error) {
	v, closer, err := x.db.Get(indexKeyIdentity)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return "", false, fmt.Errorf("event index %s: read identity: %w", x.where(), err)
	default:
		old = string(v)
		_ = closer.Close()
	}
	if old == identity {
		return old, false, nil
	}
	b := x.db.NewBatch()
	defer b.Close()
	if old != "" {
		// Everything but the identity itself sorts in [0x00, 0xff).
		if err := b.DeleteRange([]byte{0}, []byte{0xff}, nil); err != nil {
			return old, false, fmt.Errorf("event index %s: drop entries: %w", x.where(), err)
		}
	}
	if err := b.Set(indexKeyIdentity, []byte(identity), nil); err != nil {
		return old, false, fmt.Errorf("event index %s: record identity: %w", x.where(), err)
	}
	if err := b.Commit(indexWriteOpts); err != nil {
		return old, false, fmt.Errorf("event index %s: record identity: %w", x.where(), err)
	}
	// Not needed for correctness (a later write never outlives an earlier
	// one), but a new identity is worth keeping at once.
	if err := x.db.Flush(); err != nil {
		return old, false, fmt.Errorf("event index %s: record identity: %w", x.where(), err)
	}
	return old, old != "", nil
}

// indexHead is a tenant's head as the index last recorded it.
type indexHead struct {
	StreamSeq uint64 // stream sequence of the tenant's newest message indexed
	Seq       uint64 // tenant sequence of its newest event
	Hash      Hash   // that event's chain hash
}

const indexHeadVersion = 1

// indexHeadSize: version, stream seq, tenant seq, hash.
const indexHeadSize = 1 + 8 + 8 + HashSize

func (h indexHead) encode(b []byte) []byte {
	b = append(b, indexHeadVersion)
	b = binary.BigEndian.AppendUint64(b, h.StreamSeq)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	return append(b, h.Hash[:]...)
}

func decodeIndexHead(v []byte) (indexHead, bool) {
	if len(v) != indexHeadSize || v[0] != indexHeadVersion {
		return indexHead{}, false
	}
	h := indexHead{StreamSeq: binary.BigEndian.Uint64(v[1:]), Seq: binary.BigEndian.Uint64(v[9:])}
	copy(h.Hash[:], v[17:])
	return h, true
}

func headKey(buf []byte, tenant string) []byte {
	buf = append(buf[:0], indexPrefixHead)
	return append(buf, tenant...)
}

func idKey(buf []byte, tenant string, id uuid.UUID) []byte {
	buf = append(buf[:0], indexPrefixID)
	buf = append(buf, tenant...)
	buf = append(buf, 0)
	return append(buf, id[:]...)
}

// head reads the tenant's recorded head. ok is false when the index has
// none, or one it cannot read (another format): the tenant is then rebuilt.
func (x *idIndex) head(tenant string) (h indexHead, found, ok bool, err error) {
	v, closer, err := x.db.Get(headKey(nil, tenant))
	if errors.Is(err, pebble.ErrNotFound) {
		return indexHead{}, false, false, nil
	}
	if err != nil {
		return indexHead{}, false, false, fmt.Errorf("event index %s: tenant %q: read head: %w", x.where(), tenant, err)
	}
	defer closer.Close()
	h, ok = decodeIndexHead(v)
	return h, true, ok, nil
}

// dropTenant deletes the tenant's head and ids, in one batch.
func (x *idIndex) dropTenant(tenant string) error {
	b := x.db.NewBatch()
	defer b.Close()
	lo := append(append([]byte{indexPrefixID}, tenant...), 0)
	hi := append(append([]byte{indexPrefixID}, tenant...), 1)
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		return fmt.Errorf("event index %s: tenant %q: drop ids: %w", x.where(), tenant, err)
	}
	if err := b.Delete(headKey(nil, tenant), nil); err != nil {
		return fmt.Errorf("event index %s: tenant %q: drop head: %w", x.where(), tenant, err)
	}
	if err := b.Commit(indexWriteOpts); err != nil {
		return fmt.Errorf("event index %s: tenant %q: drop: %w", x.where(), tenant, err)
	}
	return nil
}

// lookupIterOptions: most ids looked up are new, so the Bloom filters of
// every level are worth reading, the last one's too (pebble skips it by
// default). Measured on 5M ids: 3 µs a lookup with, 35 µs without.
var lookupIterOptions = pebble.IterOptions{UseL6Filters: true}

// lookup looks the tenant's ids up and calls found for each one the index
// holds, with its position in ids and its digest. It seeks one iterator in
// key order (each seek consults the tables' Bloom filters): measured, about
// half the cost of a Get per id, which sets up an iterator each time. key is scratch space, returned for reuse.
func (x *idIndex) lookup(key []byte, tenant string, ids []uuid.UUID, found func(i int, digest uint64) error) ([]byte, error) {
	order := make([]int32, len(ids))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return bytes.Compare(ids[a][:], ids[b][:]) })
	it, err := x.db.NewIter(&lookupIterOptions)
	if err != nil {
		return key, fmt.Errorf("event index %s: tenant %q: look ids up: %w", x.where(), tenant, err)
	}
	for _, i := range order {
		key = idKey(key, tenant, ids[i])
		if !it.SeekPrefixGE(key) || !bytes.Equal(it.Key(), key) {
			continue
		}
		v, err := it.ValueAndErr()
		if err == nil && len(v) != 8 {
			err = fmt.Errorf("digest of %d bytes, want 8", len(v))
		}
		if err != nil {
			_ = it.Close()
			return key, fmt.Errorf("event index %s: tenant %q: id %s: %w", x.where(), tenant, ids[i], err)
		}
		if err := found(int(i), binary.BigEndian.Uint64(v)); err != nil {
			_ = it.Close()
			return key, err
		}
	}
	if err := it.Close(); err != nil {
		return key, fmt.Errorf("event index %s: tenant %q: look ids up: %w", x.where(), tenant, err)
	}
	return key, nil
}

// indexWrite collects one message's ids and the tenant's new head, written
// in one batch: the ids and the head never disagree.
type indexWrite struct {
	x      *idIndex
	tenant string
	b      *pebble.Batch
	key    []byte
	val    [indexHeadSize]byte
}

// release frees the batch of a write that was not committed.
func (w *indexWrite) release() {
	if w.b != nil {
		_ = w.b.Close()
		w.b = nil
	}
}

func (x *idIndex) newWrite(tenant string, key []byte) *indexWrite {
	return &indexWrite{x: x, tenant: tenant, b: x.db.NewBatch(), key: key}
}

func (w *indexWrite) id(id uuid.UUID, digest uint64) error {
	w.key = idKey(w.key, w.tenant, id)
	binary.BigEndian.PutUint64(w.val[:8], digest)
	if err := w.b.Set(w.key, w.val[:8], nil); err != nil {
		return fmt.Errorf("event index %s: tenant %q: id %s: %w", w.x.where(), w.tenant, id, err)
	}
	return nil
}

// commit records head with the ids and releases the batch.
func (w *indexWrite) commit(h indexHead) error {
	defer w.release()
	w.key = headKey(w.key, w.tenant)
	if err := w.b.Set(w.key, h.encode(w.val[:0]), nil); err != nil {
		return fmt.Errorf("event index %s: tenant %q: head: %w", w.x.where(), w.tenant, err)
	}
	if err := w.b.Commit(indexWriteOpts); err != nil {
		return fmt.Errorf("event index %s: tenant %q: record log message %d: %w", w.x.where(), w.tenant, h.StreamSeq, err)
	}
	return nil
}

// pebbleLogger sends pebble's messages to slog.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
}

// Fatalf must not return: pebble calls it on broken invariants.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg)
	panic("event index: " + msg)
}
