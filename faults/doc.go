// Package faults is Tally's crash and restart suite: tests that run the real
// `tally serve` binary, a real nats-server and a real PostgreSQL as separate
// processes, break them the way production breaks them, and check that no
// money and no event is lost or counted twice.
//
//   - TestKill9Serve: `kill -9` of tally serve at seeded random moments while a
//     FOCUS file is being appended and while the projections fold it; after
//     each restart the interrupted `tally ingest` is run again. The ledger must
//     equal totals recomputed from the input CSV files alone (encoding/csv and
//     decimal, not services/focus or services/ingest), to the last decimal, and
//     every event id in the log must be unique with every tenant's chain
//     intact.
//   - TestDependencyOutages: an external nats-server killed and restarted, then
//     a private PostgreSQL stopped and restarted, in the middle of ingestion;
//     tally serve must report each outage (/healthz, tally_dependency_up, its
//     log), recover by itself without a restart, and end with exact totals.
//   - TestClusterNodeKill: a three-node JetStream cluster on loopback (R3
//     stream, sync_interval: always); the stream leader is killed while
//     events are appended, appends go on, every acknowledged event is in the
//     log afterwards, and the node rejoins and catches up.
//
// The package holds tests only (and this file). `go test -short` skips it; a
// plain `go test` runs a reduced suite (a few kills); TALLY_FAULTS=full runs
// the full one (`make test-faults`). Kill moments come from a seed that the
// tests log; TALLY_FAULTS_SEED=<n> replays a seed's choices (the timing of the
// machine still varies). Each test logs the counts it achieved (kills,
// restarts, ingest runs, events) on a line starting "faults:".
package faults
