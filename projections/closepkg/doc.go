// Package closepkg owns the month-end close read model: per tenant, billing period and
// provider, the cost line events, bill finalizations, provider invoices and period closes; the
// fold that records them (closepkg.go, schema.sql); the close package derived from them
// (query.go), its canonical JSON, hash and CSV (render.go); and the validation that turns a
// close request into a PeriodClosed event (close.go). It is run by the projections runner and
// must never import the gateway or an ingestion adapter.
//
// # What the fold keeps, and why
//
// One row per event, with the event's tenant sequence and chain hash, rather than running
// totals. A package is then a function of "the tenant's events up to sequence N" (Options.
// AsOfSeq), which is what an immutable close and an auditor's replay need: the package a close
// was built from can be derived again at any later time, from the live tables or from a
// database folded from scratch, and must give the same bytes. The cost is that a package
// aggregates the period's line events when asked (one DISTINCT ON over them), which is fine at
// month-end cadence; a running-total table beside it is the optimisation if that ever shows.
//
// The period of a bill is the UTC month of its billing_period_start ("YYYY-MM"), as ingestion
// decides post_close. A line is final when a billing_period_finalized of its bill is among the
// events; its billed cost is the one set by its last recorded or restated event, and a
// retracted line is gone.
//
// # The package
//
//   - totals per currency, final and preliminary, with line counts (never summed across
//     currencies);
//   - restatements: the restated and retracted events of the period's lines, counted, with
//     net (signed) and absolute sums of their billed deltas per currency and per account;
//   - post-close adjustments: line events (recorded, restated or retracted) flagged post_close
//     by their producer, or newer than the chain head of the earliest close covering their
//     provider (a close with provider "" covers all);
//   - reconciliation per (provider, billing account, currency): the ledger's FINAL billed
//     total against the sum of that account's invoices (the last event of each invoice id;
//     a re-recorded id replaces the amount). Variance = ledger final − invoice.
//     Variance % = variance × 100 / invoice, rounded half away from zero to 2 places and
//     always written with 2 ("-1.96"), null for no or a zero invoice. Status match iff
//     |variance| × 100 ≤ tolerance% × |invoice| exactly (not on the rounded %), else
//     mismatch; missing_invoice when the ledger has lines and no invoice; invoice_without_ledger
//     the other way round. The tolerance is in percent, 1 by default;
//   - status ready, or blocked with its reasons in a fixed order: "no cost lines in period",
//     "preliminary data left: N lines", then per reconciliation row "invoice mismatch: ...",
//     "missing invoice: ...", "invoice without ledger: ...";
//   - closed, and the closes of the period that concern it;
//   - the chain head and the SHA-256.
//
// # Chain head: stored by the fold, not given by the caller
//
// The chain head of a package is the chain link (tenant sequence and hex hash) of the newest
// event the package depends on: the newest line event, finalization or invoice of its period
// and provider, or close concerning it. It is not the tenant's log head. The fold stores each
// event's link, so the head comes from the same snapshot as the figures: a caller-supplied
// head (eventstore.Store.Head) could be newer than what the projection had folded, and the
// package would claim events it does not contain. And events that do not touch the package
// (another month, usage, rules) do not change its hash. An auditor verifies the chain up to
// the head and replays the events up to it. To include events just appended, wait for the
// projection (projections.WaitFor) before building.
//
// # Canonical JSON and hash
//
// SHA256 is the hex SHA-256 of the package's canonical JSON: the package without its sha256
// field, one JSON object whose keys (at every level) are sorted bytewise, with no whitespace,
// strings escaped as encoding/json does but without HTML escaping, amounts as decimal strings
// (exact, no exponent, trailing zeros dropped: "18.0066386184", "0"), percentages with 2
// decimals, counts and sequences as JSON integers, empty lists as [] and absent values as
// null. There is no wall-clock time in a package, so the same events give the same bytes.
// WriteJSON exports that object with "sha256" added; WriteCSV renders the same facts one a row.
//
// # Closing, and immutability
//
// Close checks a request against a package just built: actor and approver set and different
// principals (kind and id; ErrSelfApproval), not already closed (ErrAlreadyClosed), and ready
// (ErrNotReady) unless forced with a reason, which goes into the event's note with the
// blocking reasons; all three wrap ErrPrecondition (FailedPrecondition at the gateway). It
// returns the PeriodClosed event, with the package's hash and chain head and an id derived
// from them, for the caller to append.
//
// A closed package is immutable in the simplest way that stays correct: it is never stored,
// it is the package derived from the events up to the close's chain head, and events are never
// edited. ClosedPackage re-derives it and checks it against the hash the close recorded. Every
// later change to the period's lines is newer than that head, so the next package built for
// the period (Queries.Package after the close) shows it under post-close adjustments, with its
// figures moved accordingly, while the closed one stays as it was.
package closepkg
