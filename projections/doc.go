// Package projections owns reading the event log into PostgreSQL read models exactly once. It
// holds the runner every read model uses; each read model is a package below it (ledger, ...)
// that implements Projection. It must never import the gateway or an ingestion adapter: they
// stand on it, not the other way round.
//
// # Exactly once
//
// A projection's position in the log is a checkpoint row in projection_checkpoints (the
// stream sequence of the last log message folded). The runner reads from the checkpoint with
// eventstore.Read, gathers whole log messages into a batch, and in ONE transaction locks the
// checkpoint row (SELECT ... FOR UPDATE), checks that it still holds the position the batch
// was read from, lets the projection write the batch (bulk SQL, never a statement per event),
// and moves the checkpoint. A crash anywhere before the commit leaves the read model and the
// checkpoint as they were, and the batch is read again; a crash after it reads on from the
// new checkpoint. The compare-and-lock step also fences stale workers: a transaction that
// finds the checkpoint moved (by another worker, or by a rebuild swap) writes nothing and the
// worker reloads its position.
//
// # Memory
//
// A fold's memory is bounded by its batches (Options.BatchEvents and BatchBytes), not by the
// log. A batch's decoded events are dropped as soon as it is prepared: the job handed to the
// committer carries the prepared rows, and a projection that implements BatchPreparer (the
// ledger) prepares each event as it is read, so that no batch of decoded events is held at
// all, only two prepared batches (one committing, one being built). Events reach projections
// without Raw, which no fold reads.
//
// # Schemas and rebuild
//
// Each read model lives in its own PostgreSQL schema named after the projection ("ledger"), so
// a rebuild can build a second copy beside it: Rebuild creates "<name>_next", replays the log
// into it from the beginning while the live schema keeps serving queries and the live workers
// keep folding, and once it has caught up swaps the two in one transaction: it locks every live
// checkpoint row (which pauses the live workers at a batch boundary), folds the last few events
// into the new copy, renames the schemas (live to "<name>_old", next to live), moves the
// checkpoints, and commits. The old copy is dropped afterwards. Queries name the live schema,
// so they see either the old or the new copy, never a half-built one. A projection whose code
// Version differs from the stored one is rebuilt the same way when the runner starts; until the
// swap its workers do not fold (the old code's tables keep serving, with growing lag).
//
// # Scale-out by tenant partition
//
// With Options.Partitions = P > 1, a projection's work is split into P partitions by tenant:
// partition(tenant) = FNV-1a(tenant) mod P. Each partition has its own checkpoint row
// ("ledger#3/8"), and a worker folds a partition only while it holds the PostgreSQL session
// advisory lock (hash(projection), partition) on a connection of its own. Start the same binary
// (--roles=projector) on several machines against the same log and database: each worker takes
// free partitions (at most Options.MaxOwned), and when a worker dies its session ends, its locks
// are released and another worker takes its partitions over, resuming from their checkpoints.
// The advisory lock only avoids wasted work; correctness rests on the checkpoint fencing above,
// so even two workers folding one partition at once never apply a batch twice. Each partition
// worker reads every message of the projection's kinds and skips other tenants' events (the
// log is per-tenant subjects; subject-mapped partitions in JetStream would let it read only its
// own, see the README of this package's issue). Changing P needs a rebuild.
//
// # Lag and read-your-writes
//
// Status reports, per projection, the checkpoint (the lowest over its partitions), the stream
// head and the lag between them; the gauges tally_projection_lag_events and
// tally_projection_checkpoint carry the same figures. WaitFor returns once a projection has
// folded a given stream sequence, so a caller that appended an event can query its effect.
// A tool that cannot reach the log (`tally projections status` with no NATS URL) builds a
// Runner with a nil Log and asks CheckpointStatus: the same figures from PostgreSQL alone,
// with the head and the lag unknown.
package projections
