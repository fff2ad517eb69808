// Package savings owns the realized-savings read model: each remediation action measured from
// the bill, not from the tool's estimate. It folds remediation_executed, the cost line events
// and billing_period_finalized (savings.go, fold.go, schema.sql), measures actions
// (measure.go) and answers queries and exports (query.go, csv.go). It is run by the
// projections runner and must never import the gateway or an ingestion adapter.
//
// # What the fold keeps
//
// Its own copy of what it measures from: it never reads the ledger's schema, whose checkpoint
// is not its own. Per cost line (tenant, provider, billing account, billing period start, line
// key) that names a resource: the resource id, the UTC day of its charge period start (billing
// period start when it has none), its billing currency, its EFFECTIVE cost (amortized: what
// FinOps measures savings in; a commitment's upfront fee is spread over the days it covers
// instead of landing on the purchase day) and the event that last set it. A restatement
// replaces the values; a retraction removes the line. Resource id, day and currency are part
// of the line key (docs/events.md), so a line never moves between resources or days. Lines
// are attributed whole to their start day: daily-granular FOCUS exports (the norm at resource
// level) make that exact; a line spanning a month counts on its first day. Lines without a
// resource id are not kept (no action can name them). Also kept: the finalized bills (the
// first billing_period_finalized of each wins) and the actions.
//
// # An action
//
// Identity: (tenant, action_id); action ids must be unique within a tenant across tools (a
// tool-prefixed id is a good habit). A later remediation_executed with the same action id
// redefines the action (a correction: other windows, another resource) and the history shows
// it. The resource's lines are those of the action's provider and resource id and, when the
// action names a billing account, of that account only; otherwise of any account.
//
// Windows, in UTC days, for an action executed on day A (the UTC day of executed_at) with
// baseline B, gap G and measurement M days (0 in the event means the defaults 7, 1, 7; each
// at most 366, else the action is unmeasurable):
//
//	baseline    = [A−B, A−1]        ends the day before the action day
//	gap         = [A, A+G−1]        starts with the action day, never measured
//	measurement = [A+G, A+G+M−1]
//
// Executed 2024-09-10T14:00Z with the defaults: baseline 2024-09-03..09, gap 09-10,
// measurement 09-11..17.
//
// # Complete, final, pending
//
// Only FINAL lines count: a line is final when its bill (provider, account, billing period) is
// finalized. An action is measured once both windows are complete, that is:
//
//   - every day of both windows is covered by a finalized bill (its billing period spans the
//     whole day) of the action's billing account, or, when the action names none, of every
//     account that has lines of the resource in the windows (with no such line and no account
//     named, nothing can prove the windows complete: pending); a finalized bill covering the
//     measurement window also means the window has ended, so no wall clock is involved and a
//     rebuild measures exactly as the live fold did;
//   - no preliminary line of the resource is dated in either window.
//
// Until then the status is pending, with the reason (how many days are not covered, first
// one; or how many preliminary lines), and no amounts. A day with no line at all but covered
// by a final bill counts as zero cost: that is what a stopped or deleted resource looks like.
// Final lines in more than one currency make the action unmeasurable (amounts are never
// converted).
//
// # Figures and rounding
//
//	baseline_total    = Σ effective cost of the final lines in the baseline window (exact)
//	measurement_total = Σ the same over the measurement window (exact)
//	baseline_daily    = baseline_total / B         rounded to 10 places, half away from zero
//	measurement_daily = measurement_total / M      rounded to 10 places, half away from zero
//	realized_daily    = baseline_daily − measurement_daily     (exact, signed)
//	realized_monthly  = realized_daily × 30.4375   rounded to 10 places, half away from zero
//
// 30.4375 = 365.25 / 12, the mean month (MonthlyMultiplier). Rounding happens only in those
// three places (Realize; decimal.DivRound and decimal.Round, both half away from zero).
// A realized_daily below zero is a cost increase: status cost_increase, the negative figures
// kept as they are, never clamped to zero; zero or more is measured. Amounts are in the lines'
// billing currency; the expected saving stays in the tool's currency, beside it.
//
// # History
//
// After every event (not every batch) the fold re-measures the actions the event touches: a
// line of the action's resource dated in its windows, a finalized bill of its account (any
// account when it names none) overlapping its windows, or its own remediation_executed. When
// the figures (status, currency, totals, line counts, daily and monthly amounts; the reason
// only explains them) differ from the action's current ones, or the event is the action's own
// remediation_executed, the action gets a new revision and a history row naming the event
// (event id, tenant sequence, kind). So a restatement of a final line in a window shows as two
// rows, the figure before and after, and the history is the same however the log is cut into
// batches: a rebuild gives identical rows.
//
// # Bulk
//
// A batch costs a fixed number of statements whatever its size: one lookup of retracted
// lines' resources, one load of the actions the batch may change, one of their lines, one of
// their finalized bills; then the batch is replayed in memory over that state (the lines of
// the touched resources only), and written with COPY and set-based upserts: lines, finalized
// bills, changed actions, history rows.
//
// # Evidence and exports
//
// Queries.Evidence lists every line of the action's resource in its windows (final or not,
// with the event that last set it); the final ones of a window sum to its total.
// WriteEvidenceCSV exports them, WriteCSV the actions of a period with their figures. Period
// means the UTC month of the action day.
package savings
