// Package ingest turns FOCUS bills into cost events: recorded, restated (with
// the delta) and retracted lines, and finalized billing periods.
//
// A bill is a snapshot of one or more scopes (provider, billing account,
// billing period). Ingesting a file appends only what differs from what the
// log already holds for those scopes, so re-ingesting an unchanged bill
// appends nothing and a revised bill appends its differences.
//
// How, with bounded memory whatever the file size:
//
//  1. Rows are read and validated by services/focus in one goroutine, given
//     their scope and line key (LineKey) and encoded on every core, and
//     collected into runs of Options.RunBytes (32 MiB), each sorted by
//     scope key, line key and row number and spilled to a file under
//     Options.TempDir (runs.go). The directory goes when the ingest ends.
//  2. The tenant's ingest state (the current content of every line, folded
//     from the log's cost events into ingest_lines, with a checkpoint) is
//     caught up to the log's head.
//  3. A k-way merge of the runs (their read buffers share 4 MiB; a file of
//     more than 512 runs has them merged in groups first) yields the file's
//     lines in key order, the rows of one key summed (the first row's
//     attributes kept, amounts added exactly); per scope it is merge-joined
//     with the scope's state, read in primary key order in one snapshot
//     (diff.go). No sort happens in PostgreSQL and nothing of the file is
//     copied into it.
//  4. The differences stream out as events with deterministic ids and are
//     appended in batches of Options.BatchEvents, each grouped by kind
//     (recorded, restated, retracted, finalized; in line key order within
//     a kind) so that a revised bill, whose kinds interleave, takes a log
//     message per kind rather than one per change of kind. A batch never
//     holds two events of one line, so the regrouping changes nothing a
//     line's history depends on. Each batch is appended on the condition
//     that the tenant's log is still where the previous one left it (the
//     first: the head the state was caught up to). Diff, append and fold
//     run as a pipeline (appender.go); the fold holds the tenant's state
//     lock from its first batch to its commit, and is fenced on the
//     checkpoint. If another writer got there first, the state catches up
//     and the difference is computed again from the same runs: two ingests
//     of the same bill cannot double count, and a retried ingest appends
//     only what is missing.
//
// It must never import a read model or the gateway.
package ingest
