package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configures a Store.
type Options struct {
	// Stream name; default "TALLY".
	Stream string
	// SubjectPrefix; default "tally".
	SubjectPrefix string
	// Replicas of the stream: 1 embedded, 3 in a cluster.
	Replicas int
	// DuplicateWindow of JetStream's Nats-Msg-Id dedupe; default 2 minutes.
	// Beyond it, idempotency rests on event ids (see Append).
	DuplicateWindow time.Duration
	// MaxMessageBytes caps the payload of one log message (a chunk of
	// events); default DefaultMessageBytes, or less when the server's max
	// payload (less 64 KiB for headers) is smaller.
	MaxMessageBytes int
	// AllowDelete leaves the stream's deny-delete and deny-purge off. Only
	// tests that play an attacker set it: the log is append-only.
	AllowDelete bool
	// RequestTimeout bounds each JetStream request; default 30 s.
	RequestTimeout time.Duration
	// IndexDir holds the writer's id index (event id → content digest, and
	// each tenant's head), which makes appends idempotent beyond the dedupe
	// window. Set, the index lives on disk in bounded memory and survives
	// restarts: a tenant's first append catches up only what the log holds
	// beyond it. Empty, the index is kept in memory and rebuilt from the log
	// on each tenant's first use: fine for tests and for stores that only
	// read. One process at a time may use a directory. It is a cache of the
	// log: deleting it loses nothing.
	IndexDir string
	Logger   *slog.Logger
}

func (o *Options) defaults() {
	if o.Stream == "" {
		o.Stream = "TALLY"
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = "tally"
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// DefaultMessageBytes is the default size of one log message: about 2,000
// cost-line events, one fsync. Measured with 300,000 events on our 2-core
// machines (noisy, shared): 1-2 MiB messages appended at least as fast as
// ~8 MiB ones and left nats-server's file-store write cache smaller (about
// 190 MiB against 260 MiB of heap after the run). It also fits an external
// server's default max_payload of 1 MiB.
const DefaultMessageBytes = 1 << 20

// Store is the event log. It is safe for concurrent use; appends to one
// tenant are serialised in this process, and across processes by
// JetStream's expected-last-sequence check.
type Store struct {
	opts   Options
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	log    *slog.Logger

	mu      sync.Mutex
	tenants map[string]*tenantState

	idx *idIndex
	// closeMu: appends and head reads hold it to read while they use idx;
	// Close holds it to write.
	closeMu sync.RWMutex
	closed  bool
	// caughtUp counts the log messages catchUp has folded (for tests).
	caughtUp atomic.Uint64
}

// Open makes sure the stream exists with the expected configuration, opens
// the id index (see Options.IndexDir) and returns a Store over them. Close
// the Store to close the index; the connection stays the caller's to close.
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Store, error) {
	opts.defaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = min(DefaultMessageBytes, int(nc.MaxPayload())-64<<10)
		if opts.MaxMessageBytes < 64<<10 {
			opts.MaxMessageBytes = int(nc.MaxPayload()) / 2
		}
	}
	cfg := jetstream.StreamConfig{
		Name:        opts.Stream,
		Description: "Tally event log: immutable, hash-chained tenant events",
		Subjects:    []string{opts.SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    opts.Replicas,
		Duplicates:  opts.DuplicateWindow,
		MaxMsgSize:  int32(nc.MaxPayload()),
		AllowDirect: true,
		DenyDelete:  !opts.AllowDelete,
		DenyPurge:   !opts.AllowDelete,
	}
	cctx, cancel := context.WithTimeout(ctx, opts.RequestTimeout)
	defer cancel()
	// Keep the stream's metadata (ours and the server's) across updates, and
	// give a new log its id.
	cfg.Metadata = map[string]string{}
	if existing, err := js.Stream(cctx, opts.Stream); err == nil {
		for k, v := range existing.CachedInfo().Config.Metadata {
			cfg.Metadata[k] = v
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: look up stream %s: %w", ErrUnavailable, opts.Stream, err)
	}
	if cfg.Metadata[MetadataLogID] == "" {
		cfg.Metadata[MetadataLogID] = uuid.Must(uuid.NewV7()).String()
	}
	stream, err := js.CreateOrUpdateStream(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: create or update stream %s: %w", ErrUnavailable, opts.Stream, err)
	}
	s := &Store{
		opts:    opts,
		nc:      nc,
		js:      js,
		stream:  stream,
		log:     opts.Logger.With("component", "eventstore"),
		tenants: map[string]*tenantState{},
	}
	if s.idx, err = openIndex(opts.IndexDir, s.log); err != nil {
		return nil, err
	}
	if err := s.checkIndexIdentity(ctx); err != nil {
		_ = s.idx.close()
		return nil, err
	}
	return s, nil
}

// streamIdentity names the stream the index caches: a stream deleted and
// created again, even under the same name, has another creation time and
// log id.
func (s *Store) streamIdentity() string {
	info := s.stream.CachedInfo()
	return fmt.Sprintf("%s stream=%s created=%s log_id=%s", indexFormat, info.Config.Name,
		info.Created.UTC().Format(time.RFC3339Nano), info.Config.Metadata[MetadataLogID])
}

// checkIndexIdentity drops the whole index when it was built from another
// stream (or by a build with another layout).
func (s *Store) checkIndexIdentity(ctx context.Context) error {
	identity := s.streamIdentity()
	old, dropped, err := s.idx.checkIdentity(identity)
	if err != nil {
		return err
	}
	if dropped {
		s.log.WarnContext(ctx, "event index: dropping every entry, built from another stream; each tenant is rebuilt from the log on first use",
			"index", s.idx.where(), "index_stream", old, "stream", identity)
	}
	return nil
}

// Close closes the id index, once the appends under way have finished;
// later appends fail with ErrUnavailable. Reads keep working until the
// connection closes. Close is idempotent.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.idx.close()
}

// useIndex holds the index open for an append or a head read; call the
// returned func when done.
func (s *Store) useIndex() (func(), error) {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return nil, fmt.Errorf("%w: the event store is closed", ErrUnavailable)
	}
	return s.closeMu.RUnlock, nil
}

// MetadataLogID is the stream metadata key holding the log's id: a UUID given
// to the stream when Tally creates it. Read models record the id of the log
// they were folded from, so a database is never silently paired with another
// log.
const MetadataLogID = "tally_log_id"

// LogID is the id of this log (see MetadataLogID).
func (s *Store) LogID() string { return s.stream.CachedInfo().Config.Metadata[MetadataLogID] }

// StreamName is the JetStream stream the store writes.
func (s *Store) StreamName() string { return s.opts.Stream }

// JetStream exposes the JetStream context for consumers (projections).
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// TenantSubjects is the wildcard subject of every event of a tenant.
func (s *Store) TenantSubjects(tenant string) string {
	return s.opts.SubjectPrefix + "." + tenant + ".>"
}

func (s *Store) subject(tenant, kind string) string {
	return s.opts.SubjectPrefix + "." + tenant + "." + kind
}

// LastSeq is the stream sequence of the newest message in the log (0 when
// empty): a read model that has projected up to it is current.
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	cctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	info, err := s.stream.Info(cctx)
	if err != nil {
		return 0, fmt.Errorf("%w: stream info: %w", ErrUnavailable, err)
	}
	return info.State.LastSeq, nil
}

// Ping checks that the log answers.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.LastSeq(ctx)
	return err
}

// unavailable wraps transport failures so callers can retry on them.
func unavailable(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}
