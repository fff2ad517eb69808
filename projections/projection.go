package projections

import (
	"context"
	"hash/fnv"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/tally-ledger/tally/eventstore"
)

// Projection is one read model. The runner calls its methods inside transactions it owns; a
// projection never commits, and never reads the log itself.
type Projection interface {
	// Name is the projection's name and the name of its live PostgreSQL schema: a lower-case
	// SQL identifier such as "ledger".
	Name() string
	// Version of the projection's code: bump it when the fold or the tables change, and the
	// runner rebuilds the read model on start.
	Version() int
	// Kinds are the event kinds (eventstore.Kinds) the projection folds.
	Kinds() []string
	// Setup creates the projection's tables in schema, which exists and is empty.
	Setup(ctx context.Context, tx pgx.Tx, schema string) error
	// Apply folds events, in log order, into the tables in schema. It must write in bulk
	// (COPY, set-based SQL), not a statement per event, and must be deterministic: folding the
	// same events gives the same rows, however they are cut into batches. The runner hands
	// events over without Raw (nil: the decoded Envelope is what a fold reads; Hash is kept),
	// and may reuse the slice once Apply returns.
	Apply(ctx context.Context, tx pgx.Tx, schema string, events []eventstore.Event) error
}

// Preparer is implemented by a projection that can do part of a batch's work without the
// database (decoding, building rows). The runner then prepares a batch while the previous
// one commits, and calls ApplyPrepared in the batch's transaction instead of Apply. Apply must
// stay equivalent to ApplyPrepared(Prepare(events)): the runner still calls it where it does
// not pipeline (the last events of a rebuild, folded inside the swap transaction).
//
// Prepare must not keep the events slice: the runner reuses it, and drops the batch's decoded
// events as soon as the batch is prepared, so that the only decoded batch in memory is the one
// being read. Whatever the prepared batch keeps of their Envelopes stays in memory until it is
// committed: keep rows, not Envelopes. ApplyPrepared is called at most once per prepared batch.
type Preparer interface {
	Prepare(events []eventstore.Event) (any, error)
	ApplyPrepared(ctx context.Context, tx pgx.Tx, schema string, prepared any) error
}

// BatchPreparer is a Preparer that prepares a batch one event at a time, as the log is read:
// the runner then holds no batch of decoded events at all, only the log message being read
// and the prepared batches (the one committing and the one being built). Prepare(events) must
// stay equivalent to adding the events to a NewBatch one by one.
type BatchPreparer interface {
	Preparer
	// NewBatch starts preparing a batch.
	NewBatch() PreparingBatch
}

// PreparingBatch is a batch a BatchPreparer is preparing.
type PreparingBatch interface {
	// Add takes the batch's next event, in log order (Raw is nil). It must not keep ev's
	// Envelope: values copied out of it (strings included) are fine.
	Add(ev eventstore.Event) error
	// Prepared ends the batch and returns what ApplyPrepared takes. The batch is not used
	// after it.
	Prepared() (any, error)
}

// Log is what the runner needs of the event log; *eventstore.Store has it.
type Log interface {
	Read(ctx context.Context, f eventstore.ReadFilter, fn func(eventstore.Event) error) error
	LastSeq(ctx context.Context) (uint64, error)
}

var _ Log = (*eventstore.Store)(nil)

// Partition is the partition, of n, that holds tenant's events.
func Partition(tenant string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(tenant))
	return int(h.Sum32() % uint32(n))
}

// checkpointName is the projection_checkpoints row of one partition.
func checkpointName(name string, part, parts int) string {
	if parts <= 1 {
		return name
	}
	return name + "#" + strconv.Itoa(part) + "/" + strconv.Itoa(parts)
}

// nextSchema is where a rebuild builds the new copy; oldSchema is where the swap parks the
// copy it replaces until it is dropped.
func nextSchema(name string) string { return name + "_next" }
func oldSchema(name string) string  { return name + "_old" }

// lockKey is the first advisory-lock key of a projection (the second is the partition, or -1
// for the rebuild lock).
func lockKey(name string) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte("tally.projection." + name))
	return int32(h.Sum32())
}
