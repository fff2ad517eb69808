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
//  1. Rows are read and validated by services/focus, given their line key
//     (LineKey) and copied into a temporary staging table.
//  2. The tenant's ingest state (the current content of every line, folded
//     from the log's cost events into ingest_lines, with a checkpoint) is
//     caught up to the log's head.
//  3. PostgreSQL computes the difference between the staged lines (rows with
//     the same key summed) and the state of the scopes in the file.
//  4. The differences stream out as events with deterministic ids and are
//     appended on the condition that the tenant's log is still at the head
//     the state was caught up to. If another writer got there first, the
//     state catches up and the difference is computed again: two ingests of
//     the same bill cannot double count, and a retried ingest appends only
//     what is missing.
//
// It must never import a read model or the gateway.
package ingest
