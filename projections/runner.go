package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-retry"

	"github.com/tally-ledger/tally/eventstore"
)

// Options configures a Runner. The zero value is usable.
type Options struct {
	// BatchEvents: a batch is committed once it holds at least this many events (whole log
	// messages are never split, so a batch may hold more). Default 10,000. A fold's memory
	// grows with its batches, not with the log: a BatchPreparer such as the ledger holds two
	// prepared batches (one committing, one being built), a Preparer also the batch being read,
	// decoded (see foldCommitted). Folding 1M cost events into the ledger (make bench's project
	// stage, load average 2-3; ratio to raw CopyFrom of the same rows in the same run, and
	// Tally's peak RSS): 20,000 a batch (no BatchBytes) 0.77x and 266 MiB, 10,000 0.72x and
	// 193 MiB, 5,000 0.66x and 161 MiB; ratios moved by up to 0.1 between runs on the shared
	// machine. 10,000 keeps a fold well under 256 MiB at most of 20,000's speed. A live tail's
	// batches are smaller anyway: a batch takes what the log has.
	BatchEvents int
	// BatchBytes also ends a batch, at the first message boundary once its events take this
	// many bytes as stored in the log: a batch's memory follows its bytes, so large events make
	// smaller batches. Default 16 MiB: make bench's cost events, about 1.1 KB each, reach it
	// near 15,000 events (20,000 a batch then peaked at 230-235 MiB).
	BatchBytes int
	// PollInterval: how often an idle worker asks the log for new events. Default 100 ms.
	PollInterval time.Duration
	// Partitions splits each projection's work by tenant (see the package doc). Default 1.
	Partitions int
	// MaxOwned caps how many partitions of a projection this runner folds at once; 0 means
	// as many as it can lock.
	MaxOwned int
	// Registerer receives the lag and checkpoint gauges; nil registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// BeforeCommit, when set, runs inside every batch transaction after the read model has
	// been written and before the checkpoint moves and the transaction commits; an error
	// rolls the batch back. It exists so tests can crash the runner at the worst moment.
	BeforeCommit func(ctx context.Context, checkpoint string, seq uint64) error
}

func (o *Options) defaults() {
	if o.BatchEvents <= 0 {
		o.BatchEvents = 10_000
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 16 << 20
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.Partitions <= 0 {
		o.Partitions = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// errMoved: the checkpoint row no longer holds the position a batch was read from (another
// worker or a rebuild swap moved it), or its version is not the code's. The batch is dropped
// and the worker reloads.
var errMoved = errors.New("projection checkpoint moved")

// ErrUnknownProjection is returned for a name no registered projection has.
var ErrUnknownProjection = errors.New("unknown projection")

// Runner folds the log into the read models of its projections. It is safe for concurrent
// use; several runners (processes) may share a log and a database.
type Runner struct {
	pool  *pgxpool.Pool
	log   Log
	opts  Options
	projs []Projection
	lg    *slog.Logger

	lagGauge, cpGauge *prometheus.GaugeVec

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever a checkpoint moves here
}

// NewRunner returns a runner for the given projections. It registers its gauges on
// opts.Registerer (reusing ones already registered there). log may be nil for a runner that
// only reports from the database (CheckpointStatus) or sets projections up (Setup).
func NewRunner(pool *pgxpool.Pool, log Log, opts Options, ps ...Projection) (*Runner, error) {
	opts.defaults()
	seen := map[string]bool{}
	for _, p := range ps {
		if !validName(p.Name()) {
			return nil, fmt.Errorf("projection name %q: use lower-case letters, digits and '_'", p.Name())
		}
		if seen[p.Name()] {
			return nil, fmt.Errorf("projection %q registered twice", p.Name())
		}
		seen[p.Name()] = true
		for _, k := range p.Kinds() {
			if !eventstore.IsKind(k) {
				return nil, fmt.Errorf("projection %q: unknown event kind %q", p.Name(), k)
			}
		}
	}
	r := &Runner{pool: pool, log: log, opts: opts, projs: ps, changed: make(chan struct{}),
		lg: opts.Logger.With("component", "projections")}
	r.lagGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tally_projection_lag_events",
		Help: "Stream head minus the projection's checkpoint (lowest over its partitions), in log messages.",
	}, []string{"projection"})
	r.cpGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tally_projection_checkpoint",
		Help: "Stream sequence the projection has folded up to (lowest over its partitions).",
	}, []string{"projection"})
	if opts.Registerer != nil {
		var err error
		if r.lagGauge, err = register(opts.Registerer, r.lagGauge); err != nil {
			return nil, err
		}
		if r.cpGauge, err = register(opts.Registerer, r.cpGauge); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func register(reg prometheus.Registerer, g *prometheus.GaugeVec) (*prometheus.GaugeVec, error) {
	if err := reg.Register(g); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.GaugeVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("register projection metrics: %w", err)
	}
	return g, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 40 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

func (r *Runner) projection(name string) (Projection, error) {
	for _, p := range r.projs {
		if p.Name() == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownProjection, name)
}

// Run folds every projection until ctx ends: it sets up new projections, rebuilds those whose
// stored version is not the code's, takes the partitions it may own and keeps them current.
// It returns ctx's error.
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, p := range r.projs {
		wg.Go(func() { r.runProjection(ctx, p) })
	}
	wg.Go(func() { r.refreshMetrics(ctx) })
	wg.Wait()
	return ctx.Err()
}

func (r *Runner) runProjection(ctx context.Context, p Projection) {
	var stale bool
	b := newBackoff()
	for {
		var err error
		if stale, err = r.ensure(ctx, p); err == nil {
			break
		}
		if !r.retry(ctx, b, "set up projection", p.Name(), err) {
			return
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if stale {
		wg.Go(func() {
			b := newBackoff()
			for {
				err := r.rebuild(ctx, p, true, r.logProgress)
				if err == nil || !r.retry(ctx, b, "rebuild projection", p.Name(), err) {
					return
				}
			}
		})
	}
	b = newBackoff()
	for {
		err := r.own(ctx, p)
		if !r.retry(ctx, b, "own projection partitions", p.Name(), err) {
			return
		}
	}
}

// retry logs err and waits b's next delay; false when ctx has ended.
func (r *Runner) retry(ctx context.Context, b retry.Backoff, msg, name string, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	d, _ := b.Next()
	r.lg.WarnContext(ctx, msg, "projection", name, "err", err, "retry_in", d)
	return sleep(ctx, d)
}

// newBackoff is the wait between retries of failures in a row (the database or the log
// down): 100 ms doubling up to 5 s, with 20% jitter so that projections and partitions do
// not retry in step. A success starts a new one.
func newBackoff() retry.Backoff {
	return retry.WithJitterPercent(20, retry.WithCappedDuration(5*time.Second, retry.NewExponential(100*time.Millisecond)))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *Runner) logProgress(p Progress) {
	r.lg.Info("projection rebuild", "projection", p.Projection, "seq", p.Seq, "head", p.Head,
		"events", p.Events, "events_per_sec", int64(p.EventsPerSec), "eta", p.ETA.Round(time.Second))
}

// own takes free partitions of p (advisory locks on a connection of its own) and runs a worker
// for each, until ctx ends or the lock connection fails (then every worker stops: another
// runner may already own their partitions).
func (r *Runner) own(ctx context.Context, p Projection) error {
	c, err := r.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// Out of the pool: the session holds the locks for as long as it lives.
	conn := c.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	parts := r.opts.Partitions
	owned := map[int]bool{}
	tick := time.NewTicker(max(r.opts.PollInterval*5, 200*time.Millisecond))
	defer tick.Stop()
	for {
		for part := range parts {
			if owned[part] || (r.opts.MaxOwned > 0 && len(owned) >= r.opts.MaxOwned) {
				continue
			}
			var ok bool
			if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", lockKey(p.Name()), int32(part)).Scan(&ok); err != nil {
				return fmt.Errorf("take partition lock: %w", err)
			}
			if ok {
				owned[part] = true
				r.lg.InfoContext(ctx, "projection partition owned", "projection", p.Name(), "partition", part, "partitions", parts)
				wg.Go(func() {
					r.work(ctx, target{p: p, schema: p.Name(), checkpoint: checkpointName(p.Name(), part, parts), part: part, parts: parts})
				})
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := conn.Ping(ctx); err != nil {
			return fmt.Errorf("partition lock session: %w", err)
		}
	}
}

// target is one checkpoint row and the schema it folds into.
type target struct {
	p           Projection
	schema      string
	checkpoint  string
	part, parts int // parts <= 1: every tenant
}

// work keeps one partition current until ctx ends.
func (r *Runner) work(ctx context.Context, t target) {
	b := newBackoff()
	for ctx.Err() == nil {
		pos, version, err := loadCheckpoint(ctx, r.pool, t.checkpoint)
		if err == nil && version == t.p.Version() {
			_, err = r.foldCommitted(ctx, t, pos, nil)
			if errors.Is(err, errMoved) {
				continue
			}
		}
		if errors.Is(err, pgx.ErrNoRows) {
			err = nil // not set up yet, or between a rebuild's delete and insert
		}
		if err != nil && ctx.Err() == nil {
			d, _ := b.Next()
			r.lg.WarnContext(ctx, "projection batch failed", "projection", t.p.Name(), "checkpoint", t.checkpoint, "err", err, "retry_in", d)
			sleep(ctx, d)
			continue
		}
		b = newBackoff()
		sleep(ctx, r.opts.PollInterval)
	}
}

// Setup creates the schema, tables and checkpoints of every projection that has none yet,
// and folds nothing: it needs no log. Stale projections are left as they are (CatchUp, Run or
// Rebuild rebuilds them).
func (r *Runner) Setup(ctx context.Context) error {
	for _, p := range r.projs {
		if _, err := r.ensure(ctx, p); err != nil {
			return fmt.Errorf("set up projection %s: %w", p.Name(), err)
		}
	}
	return nil
}

// CatchUp folds every partition of every projection up to the log's head as it is now, in
// this goroutine, then returns: for tests, tools and a one-shot `tally projections catch-up`.
// It sets projections up and rebuilds stale ones first.
func (r *Runner) CatchUp(ctx context.Context) error {
	for _, p := range r.projs {
		stale, err := r.ensure(ctx, p)
		if err != nil {
			return err
		}
		if stale {
			if err := r.rebuild(ctx, p, true, nil); err != nil {
				return err
			}
		}
		for part := range r.opts.Partitions {
			t := target{p: p, schema: p.Name(), checkpoint: checkpointName(p.Name(), part, r.opts.Partitions), part: part, parts: r.opts.Partitions}
			for {
				pos, _, err := loadCheckpoint(ctx, r.pool, t.checkpoint)
				if err != nil {
					return fmt.Errorf("projection %s: %w", t.checkpoint, err)
				}
				if _, err = r.foldCommitted(ctx, t, pos, nil); !errors.Is(err, errMoved) {
					if err != nil {
						return fmt.Errorf("projection %s: %w", t.checkpoint, err)
					}
					break
				}
			}
		}
	}
	return nil
}

// foldCommitted folds t from pos to the log's head, committing each batch with its checkpoint.
// It returns the new position; onCommit, if set, hears of each commit. Reading (and preparing,
// for a Preparer) the next batch overlaps with committing the previous one: the log reader
// and PostgreSQL work at the same time. A failed commit stops the batches after it.
//
// Memory: a job on its way to the committer carries a prepared batch, not its events. A
// BatchPreparer's batch is prepared event by event as the log is read, so no batch of decoded
// events is ever held; a Preparer's batch is held decoded until it is prepared, and dropped
// then. Only a projection that is no Preparer has its events in the job (Apply needs them in
// the transaction), so up to two batches of them are held: the one committing, the one read.
func (r *Runner) foldCommitted(ctx context.Context, t target, pos uint64, onCommit func(seq uint64, events int)) (uint64, error) {
	type job struct {
		events   []eventstore.Event // for a projection that is no Preparer
		prepared any
		n        int
		from     uint64
		upTo     uint64
	}
	prep, _ := t.p.(Preparer)
	jobs := make(chan job)
	done := make(chan struct{})
	committed := pos
	var commitErr error
	go func() {
		defer close(done)
		for j := range jobs {
			apply := func(ctx context.Context, tx pgx.Tx) error {
				if prep != nil {
					return prep.ApplyPrepared(ctx, tx, t.schema, j.prepared)
				}
				return t.p.Apply(ctx, tx, t.schema, j.events)
			}
			if j.n == 0 {
				apply = nil
			}
			if err := r.commit(ctx, t, j.from, j.upTo, j.n, apply); err != nil {
				commitErr = err
				return
			}
			committed = j.upTo
			if onCommit != nil {
				onCommit(j.upTo, j.n)
			}
		}
	}()

	// add takes the batch's next event; take ends the batch (of n events) and returns its job.
	var (
		add  func(eventstore.Event) error
		take func(n int) (job, error)
	)
	switch bp, _ := t.p.(BatchPreparer); {
	case bp != nil:
		var b PreparingBatch
		add = func(ev eventstore.Event) error {
			if b == nil {
				b = bp.NewBatch()
			}
			ev.Raw = nil
			if err := b.Add(ev); err != nil {
				return fmt.Errorf("prepare event seq %d.%d for %s: %w", ev.StreamSeq, ev.Index, t.schema, err)
			}
			return nil
		}
		take = func(n int) (job, error) {
			if b == nil {
				return job{}, nil
			}
			prepared, err := b.Prepared()
			b = nil
			return job{prepared: prepared, n: n}, err
		}
	case prep != nil:
		var c collector
		add = c.add
		take = func(n int) (job, error) {
			if n == 0 {
				return job{}, nil
			}
			prepared, err := prep.Prepare(c.events)
			c.reset() // the batch is prepared: its decoded events may go
			return job{prepared: prepared, n: n}, err
		}
	default:
		var c collector
		add = c.add
		take = func(n int) (job, error) {
			j := job{events: c.events, n: n}
			c.events = make([]eventstore.Event, 0, len(j.events)) // the job keeps the slice
			return j, nil
		}
	}
	_, readErr := r.gather(ctx, t, pos, add, func(from, upTo uint64, n int) error {
		j, err := take(n)
		if err != nil {
			return fmt.Errorf("prepare %d events up to seq %d for %s: %w", n, upTo, t.schema, err)
		}
		j.from, j.upTo = from, upTo
		select {
		case jobs <- j:
			return nil
		case <-done:
			return errCommitStopped
		}
	})
	close(jobs)
	<-done
	if commitErr != nil {
		return committed, commitErr
	}
	return committed, readErr
}

// collector holds a batch's decoded events (without Raw, which no fold reads).
type collector struct{ events []eventstore.Event }

func (c *collector) add(ev eventstore.Event) error {
	ev.Raw = nil
	c.events = append(c.events, ev)
	return nil
}

// reset drops the events and keeps the slice for the next batch.
func (c *collector) reset() {
	clear(c.events)
	c.events = c.events[:0]
}

// errCommitStopped: the committer of a pipelined fold has stopped on an error of its own,
// which foldCommitted returns instead.
var errCommitStopped = errors.New("projection committer stopped")

// gather reads t's events after pos up to the log's head, hands each to add, and cuts them
// into batches of whole log messages: cut(from, upTo, n) ends a batch of n events that moves
// the position from from to upTo (n may be 0 when only events of other kinds or partitions lay
// between). A batch ends at the first message boundary once it holds Options.BatchEvents events
// or Options.BatchBytes bytes of them. It returns the last position cut accepted.
func (r *Runner) gather(ctx context.Context, t target, pos uint64, add func(eventstore.Event) error, cut func(from, upTo uint64, n int) error) (uint64, error) {
	head, err := r.log.LastSeq(ctx)
	if err != nil {
		return pos, err
	}
	if head <= pos {
		return pos, nil
	}
	var (
		n, size int
		cur     uint64 // stream sequence of the message being gathered
	)
	flush := func(upTo uint64) error {
		if upTo <= pos {
			return nil
		}
		if err := cut(pos, upTo, n); err != nil {
			return err
		}
		pos, n, size = upTo, 0, 0
		return nil
	}
	err = r.log.Read(ctx, eventstore.ReadFilter{Kinds: t.p.Kinds(), FromStreamSeq: pos + 1}, func(ev eventstore.Event) error {
		if ev.StreamSeq != cur {
			if n >= r.opts.BatchEvents || size >= r.opts.BatchBytes {
				if err := flush(cur); err != nil {
					return err
				}
			}
			cur = ev.StreamSeq
		}
		if t.parts > 1 && Partition(ev.Envelope.GetTenantId(), t.parts) != t.part {
			return nil
		}
		n++
		size += len(ev.Raw)
		return add(ev)
	})
	if err != nil {
		return pos, err
	}
	// Read delivered every matching message up to at least head: messages of other kinds
	// up to there are passed too.
	return pos, flush(max(cur, head))
}

// commit writes one batch of n events (apply, nil when there are none) and moves t's
// checkpoint from from to upTo, in one transaction.
func (r *Runner) commit(ctx context.Context, t target, from, upTo uint64, n int, apply func(context.Context, pgx.Tx) error) error {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var seq int64
	var version int
	err = tx.QueryRow(ctx, "SELECT last_seq, version FROM projection_checkpoints WHERE name = $1 FOR UPDATE", t.checkpoint).Scan(&seq, &version)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && (uint64(seq) != from || version != t.p.Version())) {
		return errMoved
	}
	if err != nil {
		return fmt.Errorf("lock checkpoint %s: %w", t.checkpoint, err)
	}
	if apply != nil {
		if err := apply(ctx, tx); err != nil {
			return fmt.Errorf("apply %d events up to seq %d to %s: %w", n, upTo, t.schema, err)
		}
	}
	if r.opts.BeforeCommit != nil {
		if err := r.opts.BeforeCommit(ctx, t.checkpoint, upTo); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, "UPDATE projection_checkpoints SET last_seq = $2, updated_at = now() WHERE name = $1", t.checkpoint, int64(upTo)); err != nil {
		return fmt.Errorf("move checkpoint %s: %w", t.checkpoint, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit %s at seq %d: %w", t.checkpoint, upTo, err)
	}
	r.notify()
	return nil
}

func (r *Runner) notify() {
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *Runner) changedCh() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// layout is the checkpoint rows a projection has with parts partitions.
func layout(name string, parts int) []string {
	out := make([]string, parts)
	for i := range parts {
		out[i] = checkpointName(name, i, parts)
	}
	return out
}

// ensure sets a new projection up (schema, tables, checkpoints at 0) and reports whether an
// existing one is stale: stored version or partition layout not the code's, or schema gone.
func (r *Runner) ensure(ctx context.Context, p Projection) (stale bool, err error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, -2)", lockKey(p.Name())); err != nil {
		return false, err
	}
	rows, err := liveRows(ctx, tx, p.Name(), false)
	if err != nil {
		return false, err
	}
	exists, err := schemaExists(ctx, tx, p.Name())
	if err != nil {
		return false, err
	}
	if len(rows) == 0 && !exists {
		if err := createSchema(ctx, tx, p, p.Name()); err != nil {
			return false, err
		}
		if err := insertCheckpoints(ctx, tx, p, r.opts.Partitions, 0); err != nil {
			return false, err
		}
		return false, tx.Commit(ctx)
	}
	if exists { // set up before the tenant wall (rls.go): put it up now
		if err := SecureSchema(ctx, tx, p.Name()); err != nil {
			return false, err
		}
	}
	return isStale(p, r.opts.Partitions, rows, exists), tx.Commit(ctx)
}

func isStale(p Projection, parts int, rows []checkpointRow, exists bool) bool {
	if !exists {
		return true
	}
	names := make([]string, len(rows))
	for i, row := range rows {
		names[i] = row.name
		if row.version != p.Version() {
			return true
		}
	}
	want := layout(p.Name(), parts)
	slices.Sort(want)
	return !slices.Equal(names, want)
}

func createSchema(ctx context.Context, tx pgx.Tx, p Projection, schema string) error {
	if _, err := tx.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("create schema %s: %w", schema, err)
	}
	if err := p.Setup(ctx, tx, schema); err != nil {
		return fmt.Errorf("set up %s in schema %s: %w", p.Name(), schema, err)
	}
	return SecureSchema(ctx, tx, schema)
}

func schemaExists(ctx context.Context, q querier, schema string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&ok)
	return ok, err
}
