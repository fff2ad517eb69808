// Package focusgen writes realistic, deterministic FOCUS 1.3 cost-and-usage
// CSV files for tests and benchmarks: the same seed, billing period and row
// count always give the same bytes, and a revision mode writes the provider's
// "revised bill" with a known set of restated, dropped and added lines.
//
// The bills span four providers (AWS, Microsoft, Google Cloud, Oracle) with
// their own billing accounts, sub accounts, services, SKUs, regions and
// resource ids; usage, negative credits, tax, commitment purchases, and
// usage covered (or left unused) by commitment discounts; team / env /
// cost-center tags; billing currency mostly USD with some EUR accounts. All
// amounts are computed with shopspring/decimal.
//
// # Line identity
//
// No two generated rows share the same FOCUS dimensions. Each row is unique
// by (ResourceId, ChargeCategory, CommitmentDiscountStatus,
// ChargePeriodStart) alone:
//   - usage, credit and tax rows hang off a resource-hour slot: the resource
//     id embeds the resource number, the slot gives one hour per resource,
//     and credit and tax rows differ from their usage row by ChargeCategory;
//   - commitment purchases use the commitment id as ResourceId over the whole
//     month, and "Unused" commitment rows use it per hour with status Unused;
//   - lines added by a revision belong to resources numbered after every
//     resource of the original bill.
//
// So any line identity key that includes those four columns (the one the
// ingester should use includes them and more, see services/focus) sees every
// generated line as distinct.
//
// This package imports services/focus only for the column list; it must
// never import the event log or read models.
package focusgen
