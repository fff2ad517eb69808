// Package exports writes a tenant's evidence as files, streamed: the ledger as FOCUS 1.3 CSV
// or Parquet (WriteFOCUSCSV, WriteFOCUSParquet), and the compliance pack, a ZIP of the close
// package, the FOCUS export, the allocation rules in force, the projection checkpoints, the
// chain head, the read models' CSV sections given by the caller, and a manifest of SHA-256
// digests (WritePack, checked by VerifyPack). Close packages themselves are rendered by
// projections/closepkg (WriteJSON, WriteCSV).
//
// # Bounded memory
//
// Nothing is held whole. The ledger's lines are read with one query whose rows are iterated
// as they arrive (pgx), and written as they are read; the CSV writer flushes as it goes; the
// Parquet writer closes a row group every ParquetRowGroupRows rows; the ZIP is written
// sequentially (data descriptors, no seeking), each file hashed while it is written.
//
// # Where a FOCUS line's columns come from
//
// The ledger (projections/ledger) keeps 30 of FOCUS's 65 columns: the ones it groups and sums
// by. Eight columns it does not keep are part of a line's identity (ChargeFrequency,
// SkuPriceId, CommitmentDiscountId and Status, CapacityReservationId and Status,
// AllocatedMethodId, AllocatedResourceId; see docs/events.md, "Cost line identity"), and
// FOCUS requires others (ChargeDescription, InvoiceIssuerName, HostProviderName...). An
// export of the ledger's columns alone would therefore not re-ingest to the same lines (keys
// would change and lines that differ only in those columns would merge), nor pass a FOCUS
// validator. So each line is joined with the event that last recorded or restated it (the
// ledger's last_event_id), which holds the whole FOCUS line: the ledger's lines are read
// ordered by the log position of that event (updated_seq), and merge-joined with the
// tenant's cost events read from the log from the first such position on (Store.Read, in
// log order). The join holds the lines of one log message at a time (at most a message's
// events). Columns the ledger keeps are written from the ledger (they are what close
// packages sum); the others from the event. A ledger line whose event is not where the ledger
// says is an error, never a line written with guessed columns.
//
// # Formats
//
//   - Column names are the FOCUS 1.3 Column IDs exactly as services/focus reads them
//     (focus.ColumnNames(focus.V1_3)), all 65, sorted by name. ServiceProviderName and the
//     deprecated ProviderName both hold the ledger's provider.
//   - Timestamps: RFC 3339 in UTC with Z ("2024-09-01T00:00:00Z", fractional seconds only
//     when there are some) in CSV; in Parquet INT64 TIMESTAMP(MICROS, isAdjustedToUTC) (the
//     ledger keeps microseconds).
//   - Decimals: the exact decimal text the ledger holds (NUMERIC::text) or the event holds,
//     never a float. In Parquet they are BYTE_ARRAY UTF8 strings, not the DECIMAL logical
//     type: DECIMAL fixes one scale and precision per column, while ledger amounts carry the
//     provider's own scale line by line (up to 20 places and more), which a string keeps
//     exactly; services/focus reads both the same way.
//   - Nulls: an empty field in CSV, a null in Parquet (every column is OPTIONAL).
//   - Tags and AllocatedTags: a JSON object with keys sorted, no HTML escaping; null when
//     the line has none. SkuPriceDetails, ContractApplied and AllocatedMethodDetails: the
//     JSON text as ingested.
//   - Enumerations: the canonical FOCUS spelling ingestion stored.
//   - Columns outside FOCUS (x_ and others) are not exported: the ledger does not keep them,
//     and the events' extension names are only known after reading every line.
//
// Re-ingesting an export into an empty tenant, with the same final flag as the original
// ingests, yields the same ledger lines (every column but the tenant, event ids and log
// positions; TestFOCUSRoundTrip). What does not travel: finality (not a FOCUS column; it
// comes from the ingest's final flag), post_close (it depends on the target tenant's closed
// periods) and extension columns. A line that summed several rows of its source file is one
// row of the export.
//
// It reads the read models through a database handle and the log through eventstore; it never
// writes either, and must never import the gateway.
package exports
