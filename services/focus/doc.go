// Package focus owns reading and validating FOCUS cost-and-usage files
// (FOCUS 1.0 to 1.3) as CSV, gzip CSV or Parquet, one row at a time with
// bounded memory whatever the file size.
//
// It turns bytes into typed, validated rows and reports every problem as an
// *Error that names the file, the physical line and the column. Deciding what
// a row means for the ledger (events, line identity, restatements) belongs to
// the ingestion step built on top of it.
//
// This package must never import the event log (eventstore), the generated
// event schema (proto/gen) or any read model: it is a pure parser, so it can
// be fuzzed, benchmarked and reused by exports and tools without a server.
package focus
