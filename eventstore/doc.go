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
//
// Idempotency beyond JetStream's dedupe window rests on the writer's id index
// (event id → content digest, and each tenant's head) in a pebble LSM, on
// disk in bounded memory when Options.IndexDir is set. It is a cache of the
// log: checked against the log on each tenant's first use, caught up from
// it, and dropped and rebuilt from it when they disagree.
package eventstore
