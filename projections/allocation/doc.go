// Package allocation owns cost allocation: which allocation rule applies to a cost line on a
// day, how the cost a rule matches is split between cost centers, and (to come) the
// allocation read model built from rule and cost-line events. The pure core here has no
// database and is what the read model, the dry run and the tests share. It must never import
// the gateway or an ingestion adapter.
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
// # The read model (planned, not built yet)
//
// The projection "allocation" folds allocation_rule_set / allocation_rule_retired and the cost
// line events. Since a day's proportional split depends on every other line of that day, and
// a rule change re-allocates every day from its effective date, the fold does not update
// allocations event by event: it keeps its own copy of what allocation needs (rules, and per
// line the match fields, tags, effective cost, currency and day, updated by restatements and
// retractions; it must not read the ledger's schema, whose checkpoint is not its own), marks
// the (tenant, day) pairs a batch touched (a line's day; every day from a rule's effective
// date up to the last day with lines), and at the end of the batch recomputes each marked day
// in full with AllocateDay, replacing its rows in allocated_daily (tenant, day, cost center,
// currency, rule id, version, amount) and unallocated_daily (tenant, day, currency, service,
// amount). That is deterministic however the log is cut into batches. Coverage per period is
// a query: sum(allocated) / (sum(allocated) + sum(unallocated)) per currency (Coverage). The
// dry run loads the tenant's book and the period's lines from the read model, applies the
// proposed event to a Book.Clone and calls DryRun, writing nothing.
package allocation
