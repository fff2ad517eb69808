// Package storage owns connecting to PostgreSQL: opening a tuned pgx pool, and choosing the
// server to use — the configured DATABASE_URL, else the local server on 127.0.0.1:5432, else a
// private cluster it starts from the PostgreSQL binaries on the machine under the data
// directory. Its subpackage pgtest gives each test a fresh migrated database.
//
// It must never import read models or the gateway: they depend on it, not the other way round.
package storage
