package closepkg

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tally-ledger/tally/eventstore"
)

// Options of a package.
type Options struct {
	// TolerancePct is the reconciliation tolerance in percent of the invoice amount; nil means
	// DefaultTolerancePct (1). Give decimal.Zero for exact matching.
	TolerancePct *decimal.Decimal
	// AsOfSeq derives the package from the tenant's events up to this tenant sequence only; 0
	// means every event folded so far. ClosedPackage uses it to reproduce a closed package.
	AsOfSeq uint64
}

// DB is what the queries need of a database; *pgxpool.Pool has it.
type DB interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Queries reads the live close-package tables.
type Queries struct {
	db     DB
	schema string
}

// NewQueries returns queries over the live schema of db.
func NewQueries(db DB) *Queries { return &Queries{db: db, schema: Name} }

// NewQueriesIn returns queries over schema (a rebuild's copy, in tests).
func NewQueriesIn(db DB, schema string) *Queries { return &Queries{db: db, schema: schema} }

// Package builds the close package of tenant's period ("YYYY-MM") for provider ("" for all).
// It reads in one repeatable-read snapshot, so a batch committed meanwhile is either wholly
// in it or not at all. To include events just appended, wait for the projection first
// (projections.WaitFor up to the append's stream sequence).
//
// Errors: ErrInvalid (bad tenant, period or tolerance); database errors.
func (q *Queries) Package(ctx context.Context, tenant, period, provider string, opts Options) (*Package, error) {
	if err := eventstore.ValidateTenant(tenant); err != nil {
		return nil, fmt.Errorf("%w: tenant: %w", ErrInvalid, err)
	}
	if _, err := time.Parse("2006-01", period); err != nil || len(period) != 7 {
		return nil, fmt.Errorf("%w: period %q is not YYYY-MM", ErrInvalid, period)
	}
	tol := DefaultTolerancePct
	if opts.TolerancePct != nil {
		tol = *opts.TolerancePct
	}
	if tol.IsNegative() {
		return nil, fmt.Errorf("%w: tolerance %s%% is negative", ErrInvalid, tol)
	}
	asOf := int64(math.MaxInt64)
	if opts.AsOfSeq > 0 && opts.AsOfSeq < math.MaxInt64 {
		asOf = int64(opts.AsOfSeq)
	}
	tx, err := q.db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("closepkg: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()

	r := &reader{tx: tx, schema: q.schema, args: []any{tenant, period, provider, asOf}}
	p := &Package{Tenant: tenant, Period: period, Provider: provider, TolerancePct: amount(tol),
		Reasons: []string{}, Closes: []PeriodClose{}, Totals: []CurrencyTotal{}, Reconciliation: []Reconciliation{}}
	if err := r.head(ctx, p); err != nil {
		return nil, err
	}
	if err := r.closes(ctx, p); err != nil {
		return nil, err
	}
	accounts, err := r.lines(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := r.changes(ctx, p); err != nil {
		return nil, err
	}
	invoices, err := r.invoices(ctx)
	if err != nil {
		return nil, err
	}
	reconcile(p, accounts, invoices, tol)
	decide(p)
	if p.SHA256, err = Hash(p); err != nil {
		return nil, err
	}
	return p, nil
}

// reader runs the package's queries; args are $1 tenant, $2 period, $3 provider (empty for all),
// $4 the last tenant sequence to include.
type reader struct {
	tx     pgx.Tx
	schema string
	args   []any
}

func (r *reader) sql(q string) string { return inSchema(q, r.schema) }

// In the package: rows of the tenant and period, of the provider unless $3 is empty, up to $4.
const inPackage = `tenant_id = $1 AND period = $2 AND ($3 = '' OR provider = $3) AND tenant_seq <= $4`

// Closes concern a package when they close its provider or every provider.
const closeInPackage = `tenant_id = $1 AND period = $2 AND ($3 = '' OR provider IN ($3, '')) AND tenant_seq <= $4`

func (r *reader) head(ctx context.Context, p *Package) error {
	q := r.sql(`SELECT tenant_seq, chain_hash FROM (
    (SELECT tenant_seq, chain_hash FROM closepkg_schema.line_events WHERE ` + inPackage + ` ORDER BY tenant_seq DESC LIMIT 1)
    UNION ALL (SELECT tenant_seq, chain_hash FROM closepkg_schema.finalized WHERE ` + inPackage + ` ORDER BY tenant_seq DESC LIMIT 1)
    UNION ALL (SELECT tenant_seq, chain_hash FROM closepkg_schema.invoices WHERE ` + inPackage + ` ORDER BY tenant_seq DESC LIMIT 1)
    UNION ALL (SELECT tenant_seq, chain_hash FROM closepkg_schema.closes WHERE ` + closeInPackage + ` ORDER BY tenant_seq DESC LIMIT 1)
) h ORDER BY tenant_seq DESC LIMIT 1`)
	var seq int64
	err := r.tx.QueryRow(ctx, q, r.args...).Scan(&seq, &p.ChainHead.Hash)
	if err == pgx.ErrNoRows {
		p.ChainHead = ChainHead{Hash: fmt.Sprintf("%x", eventstore.ZeroHash[:])}
		return nil
	}
	if err != nil {
		return fmt.Errorf("closepkg: chain head: %w", err)
	}
	p.ChainHead.Seq = uint64(seq)
	return nil
}

func (r *reader) closes(ctx context.Context, p *Package) error {
	rows, err := r.tx.Query(ctx, r.sql(`SELECT provider, actor_kind || ':' || actor_id, approver_kind || ':' || approver_id,
    package_sha256, chain_head_seq, chain_head, note, tenant_seq
FROM closepkg_schema.closes WHERE `+closeInPackage+` ORDER BY tenant_seq`), r.args...)
	if err != nil {
		return fmt.Errorf("closepkg: closes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c PeriodClose
		var headSeq, seq int64
		if err := rows.Scan(&c.Provider, &c.Actor, &c.Approver, &c.PackageSHA256, &headSeq, &c.ChainHead, &c.Note, &seq); err != nil {
			return err
		}
		c.ChainHeadSeq, c.Seq = uint64(headSeq), uint64(seq)
		if c.Provider == "" || c.Provider == p.Provider {
			p.Closed = true
		}
		p.Closes = append(p.Closes, c)
	}
	return rows.Err()
}

// accountKey is one reconciliation row's key.
type accountKey struct{ provider, account, currency string }

type ledgerSide struct {
	final, prelim           decimal.Decimal
	finalLines, prelimLines int64
}

// lines folds the current lines (the last event of each line up to $4, unless a retraction)
// into p's totals and line counts, and returns the per-account figures for reconciliation.
// A line is final when its bill's finalization is among the events.
func (r *reader) lines(ctx context.Context, p *Package) (map[accountKey]*ledgerSide, error) {
	rows, err := r.tx.Query(ctx, r.sql(`
WITH last AS (
    SELECT DISTINCT ON (provider, billing_account_id, billing_period_start, line_key) *
    FROM closepkg_schema.line_events WHERE `+inPackage+`
    ORDER BY provider, billing_account_id, billing_period_start, line_key, tenant_seq DESC),
fin AS (SELECT DISTINCT provider, billing_account_id, billing_period_start FROM closepkg_schema.finalized WHERE `+inPackage+`)
SELECT l.provider, l.billing_account_id, l.billing_currency, f.provider IS NOT NULL, count(*), trim_scale(sum(l.billed_cost))::text
FROM last l LEFT JOIN fin f USING (provider, billing_account_id, billing_period_start)
WHERE l.op <> 'retracted'
GROUP BY 1, 2, 3, 4`), r.args...)
	if err != nil {
		return nil, fmt.Errorf("closepkg: lines: %w", err)
	}
	defer rows.Close()
	accounts := map[accountKey]*ledgerSide{}
	totals := map[string]*CurrencyTotal{}
	sums := map[string]*[2]decimal.Decimal{} // final, preliminary
	for rows.Next() {
		var k accountKey
		var final bool
		var n int64
		var sum string
		if err := rows.Scan(&k.provider, &k.account, &k.currency, &final, &n, &sum); err != nil {
			return nil, err
		}
		d, err := decimal.NewFromString(sum)
		if err != nil {
			return nil, fmt.Errorf("closepkg: sum %q: %w", sum, err)
		}
		a := accounts[k]
		if a == nil {
			a = &ledgerSide{}
			accounts[k] = a
		}
		t := totals[k.currency]
		if t == nil {
			t = &CurrencyTotal{Currency: k.currency}
			totals[k.currency] = t
			sums[k.currency] = &[2]decimal.Decimal{}
		}
		if final {
			a.final, a.finalLines = a.final.Add(d), a.finalLines+n
			sums[k.currency][0] = sums[k.currency][0].Add(d)
			t.FinalLines += n
			p.Lines.Final += n
		} else {
			a.prelim, a.prelimLines = a.prelim.Add(d), a.prelimLines+n
			sums[k.currency][1] = sums[k.currency][1].Add(d)
			t.PreliminaryLines += n
			p.Lines.Preliminary += n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	p.Lines.Total = p.Lines.Final + p.Lines.Preliminary
	for _, cur := range sortedKeys(totals) {
		t, s := totals[cur], sums[cur]
		t.Final, t.Preliminary, t.Total = amount(s[0]), amount(s[1]), amount(s[0].Add(s[1]))
		p.Totals = append(p.Totals, *t)
	}
	return accounts, nil
}

// changes fills p.Restatements and p.PostClose. An event is post-close when flagged so, or
// when it is newer than the chain head of the earliest close (up to $4) that covers its
// provider: the closed package was built without it.
func (r *reader) changes(ctx context.Context, p *Package) error {
	rows, err := r.tx.Query(ctx, r.sql(`
WITH ev AS (SELECT * FROM closepkg_schema.line_events WHERE `+inPackage+`),
heads AS (
    SELECT pr.provider, min(c.chain_head_seq) AS head
    FROM (SELECT DISTINCT provider FROM ev) pr
    JOIN closepkg_schema.closes c ON c.tenant_id = $1 AND c.period = $2 AND c.tenant_seq <= $4 AND c.provider IN (pr.provider, '')
    GROUP BY pr.provider)
SELECT e.provider, e.billing_account_id, e.billing_currency, e.op,
    e.post_close OR (h.head IS NOT NULL AND e.tenant_seq > h.head),
    count(*), trim_scale(sum(e.billed_delta))::text, trim_scale(sum(abs(e.billed_delta)))::text
FROM ev e LEFT JOIN heads h USING (provider)
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5`), r.args...)
	if err != nil {
		return fmt.Errorf("closepkg: changes: %w", err)
	}
	defer rows.Close()
	var restated, post changeSet
	for rows.Next() {
		var it ChangeItem
		var isPost bool
		if err := rows.Scan(&it.Provider, &it.BillingAccountID, &it.Currency, &it.Op, &isPost, &it.Count, &it.Net, &it.Absolute); err != nil {
			return err
		}
		if it.Op != "recorded" {
			if err := restated.add(it); err != nil {
				return err
			}
		}
		if isPost {
			if err := post.add(it); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	p.Restatements, p.PostClose = restated.changes(), post.changes()
	return nil
}

// changeSet sums ChangeItems; items of the same key (post-close and not) are merged.
type changeSet struct {
	items map[ChangeItem]*[3]decimal.Decimal // key with amounts cleared → count, net, abs
	order []ChangeItem
}

func (c *changeSet) add(it ChangeItem) error {
	net, err := decimal.NewFromString(it.Net)
	if err != nil {
		return err
	}
	abs, err := decimal.NewFromString(it.Absolute)
	if err != nil {
		return err
	}
	key := ChangeItem{Provider: it.Provider, BillingAccountID: it.BillingAccountID, Currency: it.Currency, Op: it.Op}
	if c.items == nil {
		c.items = map[ChangeItem]*[3]decimal.Decimal{}
	}
	s := c.items[key]
	if s == nil {
		s = &[3]decimal.Decimal{}
		c.items[key] = s
		c.order = append(c.order, key)
	}
	s[0], s[1], s[2] = s[0].Add(decimal.NewFromInt(it.Count)), s[1].Add(net), s[2].Add(abs)
	return nil
}

func (c *changeSet) changes() Changes {
	out := Changes{ByCurrency: []CurrencyDelta{}, Items: []ChangeItem{}}
	byCur := map[string]*[2]decimal.Decimal{}
	sort.Slice(c.order, func(i, j int) bool { return itemLess(c.order[i], c.order[j]) })
	for _, k := range c.order {
		s := c.items[k]
		n := s[0].IntPart()
		k.Count, k.Net, k.Absolute = n, amount(s[1]), amount(s[2])
		out.Items = append(out.Items, k)
		out.Count += n
		switch k.Op {
		case "recorded":
			out.Recorded += n
		case "restated":
			out.Restated += n
		case "retracted":
			out.Retracted += n
		}
		b := byCur[k.Currency]
		if b == nil {
			b = &[2]decimal.Decimal{}
			byCur[k.Currency] = b
		}
		b[0], b[1] = b[0].Add(s[1]), b[1].Add(s[2])
	}
	for _, cur := range sortedKeys(byCur) {
		out.ByCurrency = append(out.ByCurrency, CurrencyDelta{Currency: cur, Net: amount(byCur[cur][0]), Absolute: amount(byCur[cur][1])})
	}
	return out
}

func itemLess(a, b ChangeItem) bool {
	if a.Provider != b.Provider {
		return a.Provider < b.Provider
	}
	if a.BillingAccountID != b.BillingAccountID {
		return a.BillingAccountID < b.BillingAccountID
	}
	if a.Currency != b.Currency {
		return a.Currency < b.Currency
	}
	return a.Op < b.Op
}

type invoiceSide struct {
	amount decimal.Decimal
	ids    []string
}

// invoices returns the invoiced amount per account: the last event of each invoice id.
func (r *reader) invoices(ctx context.Context) (map[accountKey]*invoiceSide, error) {
	rows, err := r.tx.Query(ctx, r.sql(`
SELECT DISTINCT ON (provider, billing_account_id, invoice_id) provider, billing_account_id, invoice_id, currency, amount::text
FROM closepkg_schema.invoices WHERE `+inPackage+`
ORDER BY provider, billing_account_id, invoice_id, tenant_seq DESC`), r.args...)
	if err != nil {
		return nil, fmt.Errorf("closepkg: invoices: %w", err)
	}
	defer rows.Close()
	out := map[accountKey]*invoiceSide{}
	for rows.Next() {
		var k accountKey
		var id, amt string
		if err := rows.Scan(&k.provider, &k.account, &id, &k.currency, &amt); err != nil {
			return nil, err
		}
		d, err := decimal.NewFromString(amt)
		if err != nil {
			return nil, err
		}
		s := out[k]
		if s == nil {
			s = &invoiceSide{}
			out[k] = s
		}
		s.amount = s.amount.Add(d)
		s.ids = append(s.ids, id) // in invoice id order, from the ORDER BY
	}
	return out, rows.Err()
}

func reconcile(p *Package, ledger map[accountKey]*ledgerSide, invoices map[accountKey]*invoiceSide, tol decimal.Decimal) {
	keys := map[accountKey]bool{}
	for k := range ledger {
		keys[k] = true
	}
	for k := range invoices {
		keys[k] = true
	}
	sorted := make([]accountKey, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.provider != b.provider {
			return a.provider < b.provider
		}
		if a.account != b.account {
			return a.account < b.account
		}
		return a.currency < b.currency
	})
	for _, k := range sorted {
		l, inv := ledger[k], invoices[k]
		if l == nil {
			l = &ledgerSide{}
		}
		rec := Reconciliation{Provider: k.provider, BillingAccountID: k.account, Currency: k.currency,
			LedgerFinal: amount(l.final), LedgerPrelim: amount(l.prelim), FinalLines: l.finalLines,
			PreliminaryLines: l.prelimLines, InvoiceIDs: []string{}}
		switch {
		case inv == nil:
			rec.Status = RecMissingInvoice
		case ledger[k] == nil:
			rec.Status = RecInvoiceWithoutLedger
		}
		if inv != nil {
			s, v := amount(inv.amount), l.final.Sub(inv.amount)
			vs := amount(v)
			rec.Invoice, rec.InvoiceIDs, rec.Variance, rec.VariancePct = &s, inv.ids, &vs, variancePct(v, inv.amount)
			if rec.Status == "" {
				rec.Status = RecMismatch
				if within(v, inv.amount, tol) {
					rec.Status = RecMatch
				}
			}
		}
		p.Reconciliation = append(p.Reconciliation, rec)
	}
}

// decide sets p's status and the reasons it is blocked, in this order: no lines, preliminary
// lines left, then each reconciliation row that is not a match, in row order.
func decide(p *Package) {
	if p.Lines.Total == 0 {
		p.Reasons = append(p.Reasons, "no cost lines in period")
	}
	if p.Lines.Preliminary > 0 {
		p.Reasons = append(p.Reasons, fmt.Sprintf("preliminary data left: %d lines", p.Lines.Preliminary))
	}
	for _, r := range p.Reconciliation {
		where := r.Provider + "/" + r.BillingAccountID + "/" + r.Currency
		switch r.Status {
		case RecMismatch:
			pct := "n/a"
			if r.VariancePct != nil {
				pct = *r.VariancePct + "%"
			}
			p.Reasons = append(p.Reasons, fmt.Sprintf("invoice mismatch: %s: variance %s (%s)", where, *r.Variance, pct))
		case RecMissingInvoice:
			p.Reasons = append(p.Reasons, "missing invoice: "+where)
		case RecInvoiceWithoutLedger:
			p.Reasons = append(p.Reasons, "invoice without ledger: "+where)
		}
	}
	p.Status = StatusReady
	if len(p.Reasons) > 0 {
		p.Status = StatusBlocked
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
