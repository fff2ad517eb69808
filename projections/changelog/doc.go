// Package changelog owns the change-log read model: every configuration event of a tenant
// (allocation rules set and retired, budgets, invoices, period closes, FX rates, resource tags)
// with who made it, who approved it, when, and the configuration item before and after it with
// the fields it changed. It holds the fold (changelog.go, items.go, schema.sql), the diff
// (diff.go) and the queries (query.go): List for the gateway's AuditService.ListChanges and
// WriteCSV for the compliance pack. It is run by the projections runner and must never import
// the gateway or an ingestion adapter.
//
// # Items and keys
//
// Each event concerns one configuration item, named by a type and a key:
//
//	kind                     item           key
//	allocation_rule_set      allocation_rule <rule_id>
//	allocation_rule_retired  allocation_rule <rule_id>
//	budget_set               budget          <budget_id>
//	invoice_recorded         invoice         <provider>/<invoice_id>
//	period_closed            period_close    <period> (all providers) or <period>/<provider>
//	fx_rate_recorded         fx_rate         <from>/<to>/<date>
//	resource_tagged          resource_tags   <provider>/<resource_id>
//
// The item's document is the event's body as protobuf JSON with proto field names (decimals
// and 64-bit integers as strings, timestamps in RFC 3339, enums by name), without the body's
// approver, which is the change's approval rather than part of the item. Two kinds build on
// the item's previous state instead of replacing it: a retirement adds
// {"retired": {"effective_to", "reason"}} to the rule (a later allocation_rule_set replaces the
// whole document, so a re-activated rule loses it), and a resource_tagged event sets its tags
// and removes its removed_keys from the resource's tag map {"provider", "resource_id",
// "effective_from", "tags": {key: value}}.
//
// # The fold
//
// The projection keeps the current document of every item (table items) and writes one row per
// event (table changes) with the document before (null for the item's first event) and after,
// and the diff: the leaf fields that differ, by path ("amount", "shares[1].value",
// "tags.team"), with their JSON values before and after (null when absent). A batch loads the
// documents of the items it touches, folds its events in log order in memory, then writes the
// changes with one COPY and the items with one upsert, so the rows do not depend on how the
// log is cut into batches.
//
// # Time
//
// A change's time is recorded_at, the instant the log appended it (set by the log, so it
// cannot be back-dated by a producer); occurred_at, the producer's time, is kept beside it.
// List's window and WriteCSV's period select on recorded_at.
package changelog
