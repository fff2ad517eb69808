// Package eventstore owns Tally's event log: appending tenant events to NATS
// JetStream durably, idempotently and in hash-chained order, reading and
// replaying them, and verifying each tenant's chain. It also starts the
// embedded nats-server when no external one is configured.
//
// It must never import a read model, an ingestion adapter or the gateway:
// everything else stands on it, not the other way round.
//
// Layout of the log: one stream (TALLY by default) over subjects
// tally.<tenant>.<kind>. One JetStream message carries an EventBatch of
// consecutive events of one tenant and one kind, so that one fsync covers
// many events (group commit). Each tenant's events form a SHA-256 chain;
// appends carry the expected last sequence of the tenant's subjects
// (Nats-Expected-Last-Subject-Sequence with a wildcard subject), so two
// writers can never both extend the same head.
package eventstore
