package closepkg

import (
	"errors"

	"github.com/shopspring/decimal"
)

// Package statuses.
const (
	StatusReady   = "ready"
	StatusBlocked = "blocked"
)

// Reconciliation statuses.
const (
	RecMatch                = "match"
	RecMismatch             = "mismatch"
	RecMissingInvoice       = "missing_invoice"
	RecInvoiceWithoutLedger = "invoice_without_ledger"
)

// DefaultTolerancePct is the reconciliation tolerance when Options leaves it unset: 1 (%).
var DefaultTolerancePct = decimal.NewFromInt(1)

// ErrInvalid: a request the caller must fix (bad period, tenant, tolerance, close request
// fields). The gateway maps it to InvalidArgument.
var ErrInvalid = errors.New("invalid close request")

// Package is a month-end close package: the figures of one tenant's billing period for one
// provider (or all), derived from the events up to ChainHead. Amounts are exact decimal
// strings in billing currency (never summed across currencies). See the package doc for the
// canonical JSON and its hash.
type Package struct {
	Tenant string `json:"tenant"`
	Period string `json:"period"`
	// Provider is "" for all providers.
	Provider string `json:"provider"`
	// TolerancePct is the reconciliation tolerance in percent of the invoice amount.
	TolerancePct string `json:"tolerance_pct"`
	// ChainHead is the chain link of the newest event the package was derived from.
	ChainHead ChainHead `json:"chain_head"`
	Status    string    `json:"status"`
	// Reasons the package is blocked, in a fixed order; empty when ready.
	Reasons []string `json:"reasons"`
	// Closed: a PeriodClosed covering this period and provider is among the events (a
	// close of provider "" covers every provider). Closing again is refused.
	Closed bool `json:"closed"`
	// Closes of the period that concern this package, in log order.
	Closes []PeriodClose `json:"closes"`
	// Lines counts the current (not retracted) lines of the period.
	Lines LineCounts `json:"lines"`
	// Totals per currency, in currency order.
	Totals []CurrencyTotal `json:"totals"`
	// Restatements are the restated and retracted events of the period's lines (post-close
	// ones included).
	Restatements Changes `json:"restatements"`
	// PostClose are the changes (recorded, restated, retracted) made to the period's lines
	// after it was closed: flagged post_close by ingestion, or newer than the chain head of
	// the close that covers them.
	PostClose Changes `json:"post_close_adjustments"`
	// Reconciliation per provider, billing account and currency, in that order.
	Reconciliation []Reconciliation `json:"reconciliation"`
	// SHA256 is the hex SHA-256 of the canonical JSON of every other field.
	SHA256 string `json:"sha256,omitempty"`
}

// ChainHead is one link of a tenant's chain: its tenant sequence and hex hash.
type ChainHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// PeriodClose is a PeriodClosed event as folded.
type PeriodClose struct {
	Provider      string `json:"provider"`
	Actor         string `json:"actor"`
	Approver      string `json:"approver"`
	PackageSHA256 string `json:"package_sha256"`
	ChainHeadSeq  uint64 `json:"chain_head_seq"`
	ChainHead     string `json:"chain_head"`
	Note          string `json:"note"`
	// Seq is the tenant sequence of the close event itself.
	Seq uint64 `json:"seq"`
}

// LineCounts counts lines by state.
type LineCounts struct {
	Final       int64 `json:"final"`
	Preliminary int64 `json:"preliminary"`
	Total       int64 `json:"total"`
}

// CurrencyTotal is the billed total of the period's lines in one currency.
type CurrencyTotal struct {
	Currency         string `json:"currency"`
	Final            string `json:"final"`
	Preliminary      string `json:"preliminary"`
	Total            string `json:"total"`
	FinalLines       int64  `json:"final_lines"`
	PreliminaryLines int64  `json:"preliminary_lines"`
}

// Changes summarizes line events: how many, and their billed deltas per currency.
type Changes struct {
	Count     int64 `json:"count"`
	Recorded  int64 `json:"recorded"`
	Restated  int64 `json:"restated"`
	Retracted int64 `json:"retracted"`
	// ByCurrency: net (signed sum) and absolute (sum of absolute values) of the deltas.
	ByCurrency []CurrencyDelta `json:"by_currency"`
	// Items per provider, billing account, currency and op.
	Items []ChangeItem `json:"items"`
}

// CurrencyDelta is the net and absolute billed delta of some changes in one currency.
type CurrencyDelta struct {
	Currency string `json:"currency"`
	Net      string `json:"net"`
	Absolute string `json:"absolute"`
}

// ChangeItem is the changes of one provider, billing account, currency and op.
type ChangeItem struct {
	Provider         string `json:"provider"`
	BillingAccountID string `json:"billing_account_id"`
	Currency         string `json:"currency"`
	Op               string `json:"op"`
	Count            int64  `json:"count"`
	Net              string `json:"net"`
	Absolute         string `json:"absolute"`
}

// Reconciliation compares the ledger's FINAL billed total of one provider, billing account and
// currency with the invoices recorded for it. Variance is ledger final minus invoice;
// VariancePct is Variance / Invoice × 100 rounded half away from zero to 2 places (null when
// there is no invoice or it is zero). Match iff |Variance| × 100 ≤ tolerance × |Invoice|,
// compared exactly (not on the rounded percentage).
type Reconciliation struct {
	Provider         string   `json:"provider"`
	BillingAccountID string   `json:"billing_account_id"`
	Currency         string   `json:"currency"`
	LedgerFinal      string   `json:"ledger_final"`
	LedgerPrelim     string   `json:"ledger_preliminary"`
	FinalLines       int64    `json:"final_lines"`
	PreliminaryLines int64    `json:"preliminary_lines"`
	Invoice          *string  `json:"invoice"`
	InvoiceIDs       []string `json:"invoice_ids"`
	Variance         *string  `json:"variance"`
	VariancePct      *string  `json:"variance_pct"`
	Status           string   `json:"status"`
}

// amount is the text form of an exact amount in a package: shopspring's String, which never
// uses an exponent and drops trailing zeros ("18.0066386184", "0", "-0.5").
func amount(d decimal.Decimal) string { return d.String() }

// variancePct is v / invoice × 100 rounded half away from zero to 2 places, always written
// with 2 decimals ("-1.96", "0.00"); nil for a zero invoice.
func variancePct(v, invoice decimal.Decimal) *string {
	if invoice.IsZero() {
		return nil
	}
	s := v.Mul(decimal.NewFromInt(100)).DivRound(invoice, 2).StringFixed(2)
	return &s
}

// within reports |v| × 100 ≤ tolPct × |invoice|, exactly.
func within(v, invoice, tolPct decimal.Decimal) bool {
	return v.Abs().Mul(decimal.NewFromInt(100)).LessThanOrEqual(tolPct.Mul(invoice.Abs()))
}
