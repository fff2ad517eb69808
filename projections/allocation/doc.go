// Package allocation owns cost allocation: which allocation rule applies to a cost line on a
// day, how the cost a rule matches is split between cost centers, and the allocation read
// model built from rule and cost-line events. The pure core here has no database and is what
// the read model, the dry run and the tests share. It must never import the gateway or an
// ingestion adapter.
//
// # Money
//
// Amounts are shopspring decimals, never float64. Every split is by the largest remainder
// method (SplitByWeights), so the parts sum exactly to the source amount: the amount is
// counted in units of the currency's minor unit (ISO 4217 table in MinorUnit: 2 places by
// default, 0 for JPY, 3 for KWD), each part gets the whole units of its exact quota, and the
// few units left go to the largest fractional remainders, ties to the cost center first by
// name, so that the order shares are listed in never changes a result. An amount with more
// places than the minor unit (raw cloud line costs have 10 and more) is split at its own
// precision, since splitting it at cents could not sum back to it; rounding to cents for
// display is left to presentation. A credit (negative amount) is split as its absolute value
// and every part negated, so signs are preserved and no part ever has the opposite sign of
// the source (FuzzSplit checks this and the exact sum).
//
// # Splits
//
//   - direct: all to the one cost center.
//   - percentage: shares in (0, 100] that total exactly 100 (checked when the rule is built).
//   - fixed amounts: non-negative amounts, per day and per currency pool, in the pool's
//     currency, exact at its minor unit; the rest to the remainder cost center. A pool smaller
//     than the fixed amounts is split in proportion to them (the remainder gets zero, never a
//     negative part); a pool that nets to a credit goes wholly to the remainder cost center.
//   - proportional (shared cost): by each listed cost center's direct cost of the same day and
//     currency, that is what non-proportional rules allocated to it; a negative direct cost
//     counts as zero, and when no listed cost center has a positive one, the split is even.
//   - even: equal parts by largest remainder.
//
// # Rules
//
// NewRule validates an AllocationRuleSet event (ErrInvalidRule names the field). A match is
// exact and case-sensitive on provider, billing account, service and region; every tag
// key=value must be on the line; the resource id pattern is a glob where "*" crosses "/" and
// ":" (see glob.go for why path.Match is not used). Book holds a tenant's rule versions and
// retirements and selects: on a day (its 00:00 UTC instant), of each rule id the highest
// version in force and not retired applies, and the applying rules are tried by priority
// (lowest first), ties by rule id; the first match wins.
//
// # A day's allocation
//
// AllocateDay sums the lines each rule selects into one pool per currency and splits each pool
// once (one rounding per rule and day, not one per line), in two passes: non-proportional
// pools first, whose parts are the direct costs, then the proportional pools weighted by
// them. Lines no rule matches are unallocated, kept per service so the largest gaps can be
// named. DryRun runs two books over the same days and reports what a change moves.
//
// # The read model
//
// The projection "allocation" (projection.go, fold.go, schema.sql) folds
// allocation_rule_set / allocation_rule_retired and the cost line events. It keeps its own copy
// of what allocation needs (never the ledger's schema, whose checkpoint is not its own): per
// line the match fields, tags, effective cost, currency, day and the rule version that selects
// it (lines; an empty rule_id when none), every rule event in log order (rules; the book is
// rebuilt from them, since a retirement stops the versions held when it arrives), and totals
// of the lines per (tenant, day, currency, rule version, service, scale) with their number of
// lines (pool_totals). A rule's pool on a day is the sum of its rows; the service is kept for
// the unallocated cost and for a failed day; the scale (decimal places of the lines' amounts)
// so that a pool sums to the scale a sum of its current lines has, whatever lines came and
// went.
//
// A batch first COPYs its rule events into rules and rebuilds the books of its tenants from
// them, then matches each of its recorded and restated lines in Go with the book as it stands
// after the batch (the rules in force computed once per tenant and day), and COPYs the line
// events, with their rules, into a stage. Set-based SQL then keeps the last event of each line
// in the batch, turns each line's state before (as stored, with its stored rule) and after
// into -/+ deltas of pool_totals summed per row, upserts or removes the lines, applies the
// deltas (a row left with no line is removed) and marks the (tenant, day) pairs whose totals
// changed. That costs the batch's lines and the totals rows they move, never the rest of their
// days: the existing lines are looked up one by one through the primary key (a LATERAL
// subquery, so that the planner cannot turn it into a scan of every line), and retracted ones
// deleted by row id.
//
// A valid rule event can change which rule selects a line only on the days from its first day
// (the UTC date of effective_from, or of effective_to for a retirement; a version replacing
// the same (rule, version) reaches back to the replaced one's). For those days with lines
// (found in pool_totals), the lines are matched again with the new book (one row per set of
// lines no rule can tell apart and that add to the same pool_totals row, grouped by hashing),
// the rule of those whose rule changed is stored by row id and their sums moved from the old
// rule's pool_totals rows to the new one's; every such day is marked, since a rule's shares
// may have changed where the lines it selects did not. This costs the lines of those days;
// rule events are rare.
//
// At the end of the batch each marked day is split from its pool_totals rows (a few per rule
// version and service, whatever the number of lines) by the same code AllocateDay uses after
// summing lines (dayPools.split), with the rules in force that day, and its rows in
// allocated_daily (tenant, day, cost center, currency, rule id, version, amount),
// unallocated_daily (tenant, day, currency, service, amount) and failed_days replaced. A pool's
// total is the exact sum of the lines the rule selects, in the scale that sum has, so the
// split is AllocateDay's for the day's lines: one split per pool and day, proportional pools
// weighted by the day's direct costs of the same pass; a whole day is split again rather than
// only its changed pools, since a day has few pools and its proportional pools and a failure
// depend on all of them. A day's rows depend only on the lines and rules after the batch, so
// the result is the same however the log is cut into batches (TestBatchCutDeterminism; and
// TestRandomBatchCuts, which folds random logs cut at random and compares every row, each
// line's rule and pool_totals with a from-scratch AllocateDay of every day). A rule event
// NewRule refuses is kept with the reason and never applies; a day whose split fails (a fixed
// amount finer than the currency's minor unit) is left unallocated and listed in failed_days,
// instead of stopping the projection.
//
// Queries (query.go, csv.go) read in one repeatable-read snapshot as the tenant-scoped reader
// role (row-level security on every table, besides the tenant filter in the SQL): Allocated,
// Unallocated with its top services, Coverage per currency (allocated / (allocated +
// unallocated), see Coverage), DryRun (the tenant's book and the period's lines from the read
// model, the proposed event applied to a Book.Clone, writing nothing), RuleVersions (the rules
// in force on a day with the events that set them) and WriteCSV.
//
// Cost: folding lines is linear in the lines (BenchmarkProjectAllocation, figures in
// docs/architecture.md); a rule change costs the lines of the days from its first day
// (BenchmarkRuleChange); a dry run reads the period's lines (BenchmarkDryRun).
package allocation
