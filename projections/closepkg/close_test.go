package closepkg_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tally-ledger/tally/projections/closepkg"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/services/ingest"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// The real FOCUS 1.0 sample's September 2024 bills, summed by hand from its BilledCost column
// (exact decimal sums of the rows, trailing zeros dropped):
//
//	AWS       1234567890123                                         942 rows  18.0066386184
//	Microsoft /providers/Microsoft.Billing/billingAccounts/8611537   51 rows   1.97651418586
//	Oracle    20209880                                                6 rows   0.29707392473
//	total                                                                     20.28022672899
//
// (Oracle's one October row is another period.)
const (
	awsAccount   = "1234567890123"
	msAccount    = "/providers/Microsoft.Billing/billingAccounts/8611537"
	oracleAcct   = "20209880"
	awsFinal     = "18.0066386184"
	msFinal      = "1.97651418586"
	oracleFinal  = "0.29707392473"
	septemberSum = "20.28022672899"
)

func TestClosePackageOnSample(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	const tenant = "acme"
	sum := ingestSample(t, e, tenant, ingest.Options{Final: true, Actor: &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "focus-import"}})
	require.Positive(t, sum.Finalized)

	// Invoices: AWS matches within 1%, Microsoft is about 2% off, Oracle has none.
	appendEvents(t, e.store, tenant, invoice(tenant, "AWS", awsAccount, "INV-AWS-0924", "18.01"))
	res := appendEvents(t, e.store, tenant, invoice(tenant, "Microsoft", msAccount, "INV-MS-0924", "2.0160"))
	head := closepkg.ChainHead{Seq: res.Head.Seq, Hash: hex.EncodeToString(res.Head.Hash[:])}

	catchUp(t, e.store, e.pool, 100)
	q := closepkg.NewQueries(e.pool)
	p, err := q.Package(ctx, tenant, "2024-09", "", closepkg.Options{})
	require.NoError(t, err)

	require.Equal(t, septemberSum, decimal.RequireFromString(awsFinal).Add(decimal.RequireFromString(msFinal)).Add(decimal.RequireFromString(oracleFinal)).String())
	require.Equal(t, head, p.ChainHead, "built from the newest event it depends on: the Microsoft invoice")
	require.Equal(t, closepkg.StatusBlocked, p.Status)
	require.Len(t, p.Reconciliation, 3)
	aws, ms, oracle := p.Reconciliation[0], p.Reconciliation[1], p.Reconciliation[2]

	// AWS: variance = 18.0066386184 − 18.01 = −0.0033613816;
	// % = −0.0033613816 × 100 / 18.01 = −0.018664... → −0.02; |−0.33613816| ≤ 1 × 18.01: match.
	require.Equal(t, awsFinal, aws.LedgerFinal)
	require.Equal(t, "-0.0033613816", *aws.Variance)
	require.Equal(t, "-0.02", *aws.VariancePct)
	require.Equal(t, closepkg.RecMatch, aws.Status)
	// Microsoft: variance = 1.97651418586 − 2.016 = −0.03948581414;
	// % = −3.948581414 / 2.016 = −1.958621... → −1.96; 3.948581414 > 1 × 2.016: mismatch.
	require.Equal(t, msFinal, ms.LedgerFinal)
	require.Equal(t, "2.016", *ms.Invoice)
	require.Equal(t, "-0.03948581414", *ms.Variance)
	require.Equal(t, "-1.96", *ms.VariancePct)
	require.Equal(t, closepkg.RecMismatch, ms.Status)
	// Oracle: no invoice.
	require.Equal(t, oracleFinal, oracle.LedgerFinal)
	require.Nil(t, oracle.Invoice)
	require.Equal(t, closepkg.RecMissingInvoice, oracle.Status)
	require.Equal(t, []string{
		"invoice mismatch: Microsoft/" + msAccount + "/USD: variance -0.03948581414 (-1.96%)",
		"missing invoice: Oracle/" + oracleAcct + "/USD",
	}, p.Reasons)

	// The hash, by hand: SHA-256 of this canonical JSON (keys sorted, no whitespace, amounts as
	// strings; the chain head is the Microsoft invoice's link, which the log stamps).
	lines := p.Lines.Total
	want := fmt.Sprintf(`{"chain_head":{"hash":"%s","seq":%d},"closed":false,"closes":[],`+
		`"lines":{"final":%d,"preliminary":0,"total":%d},"period":"2024-09",`+
		`"post_close_adjustments":{"by_currency":[],"count":0,"items":[],"recorded":0,"restated":0,"retracted":0},`+
		`"provider":"","reasons":["invoice mismatch: Microsoft/%s/USD: variance -0.03948581414 (-1.96%%)","missing invoice: Oracle/20209880/USD"],`+
		`"reconciliation":[`+
		`{"billing_account_id":"1234567890123","currency":"USD","final_lines":%d,"invoice":"18.01","invoice_ids":["INV-AWS-0924"],"ledger_final":"18.0066386184","ledger_preliminary":"0","preliminary_lines":0,"provider":"AWS","status":"match","variance":"-0.0033613816","variance_pct":"-0.02"},`+
		`{"billing_account_id":"%s","currency":"USD","final_lines":%d,"invoice":"2.016","invoice_ids":["INV-MS-0924"],"ledger_final":"1.97651418586","ledger_preliminary":"0","preliminary_lines":0,"provider":"Microsoft","status":"mismatch","variance":"-0.03948581414","variance_pct":"-1.96"},`+
		`{"billing_account_id":"20209880","currency":"USD","final_lines":%d,"invoice":null,"invoice_ids":[],"ledger_final":"0.29707392473","ledger_preliminary":"0","preliminary_lines":0,"provider":"Oracle","status":"missing_invoice","variance":null,"variance_pct":null}],`+
		`"restatements":{"by_currency":[],"count":0,"items":[],"recorded":0,"restated":0,"retracted":0},`+
		`"status":"blocked","tenant":"acme","tolerance_pct":"1",`+
		`"totals":[{"currency":"USD","final":"20.28022672899","final_lines":%d,"preliminary":"0","preliminary_lines":0,"total":"20.28022672899"}]}`,
		head.Hash, head.Seq, lines, lines, msAccount, aws.FinalLines, msAccount, ms.FinalLines, oracle.FinalLines, lines)
	require.Equal(t, sum.Lines-1, lines, "every line of the file is in September but Oracle's October one")
	canon, err := closepkg.Canonical(p)
	require.NoError(t, err)
	require.Equal(t, want, string(canon))
	digest := sha256.Sum256([]byte(want))
	require.Equal(t, hex.EncodeToString(digest[:]), p.SHA256)

	// Closing: the actor cannot approve; a blocked package is not closed unless forced with a reason.
	_, err = closepkg.Close(p, closepkg.CloseRequest{Actor: user("alice"), Approver: user("alice")})
	require.ErrorIs(t, err, closepkg.ErrSelfApproval)
	require.ErrorIs(t, err, closepkg.ErrPrecondition)
	_, err = closepkg.Close(p, closepkg.CloseRequest{Actor: user("alice"), Approver: user("bob")})
	require.ErrorIs(t, err, closepkg.ErrNotReady)
	_, err = closepkg.Close(p, closepkg.CloseRequest{Actor: user("alice"), Approver: user("bob"), Force: true})
	require.ErrorIs(t, err, closepkg.ErrInvalid)

	// Corrected Microsoft invoice (same id, replaces the first) and Oracle's: now ready.
	// Microsoft: 1.97651418586 − 1.98 = −0.00348581414, −0.348581414 / 1.98 = −0.1760... → −0.18.
	// Oracle: 0.29707392473 − 0.30 = −0.00292607527, −0.292607527 / 0.30 = −0.9753... → −0.98.
	appendEvents(t, e.store, tenant, invoice(tenant, "Microsoft", msAccount, "INV-MS-0924", "1.98"),
		invoice(tenant, "Oracle", oracleAcct, "INV-OCI-0924", "0.30"))
	catchUp(t, e.store, e.pool, 100)
	p, err = q.Package(ctx, tenant, "2024-09", "", closepkg.Options{})
	require.NoError(t, err)
	require.Equal(t, closepkg.StatusReady, p.Status, p.Reasons)
	require.Equal(t, "-0.18", *p.Reconciliation[1].VariancePct)
	require.Equal(t, "-0.00292607527", *p.Reconciliation[2].Variance)
	require.Equal(t, "-0.98", *p.Reconciliation[2].VariancePct)
	// A 0.5% tolerance turns Oracle's −0.98% into a mismatch.
	half := decimal.RequireFromString("0.5")
	strict, err := q.Package(ctx, tenant, "2024-09", "", closepkg.Options{TolerancePct: &half})
	require.NoError(t, err)
	require.Equal(t, closepkg.RecMismatch, strict.Reconciliation[2].Status)
	require.NotEqual(t, p.SHA256, strict.SHA256)

	closed, err := closepkg.Close(p, closepkg.CloseRequest{Actor: user("alice"), Approver: user("bob"), Note: "September books"})
	require.NoError(t, err)
	pc := closed.GetPeriodClosed()
	require.Equal(t, p.SHA256, pc.GetPackageSha256())
	require.Equal(t, p.ChainHead.Seq, pc.GetChainHeadSeq())
	require.Equal(t, p.ChainHead.Hash, pc.GetChainHead())
	appendEvents(t, e.store, tenant, closed)
	catchUp(t, e.store, e.pool, 100)

	after, err := q.Package(ctx, tenant, "2024-09", "", closepkg.Options{})
	require.NoError(t, err)
	require.True(t, after.Closed)
	require.Len(t, after.Closes, 1)
	require.Equal(t, "USER:bob", after.Closes[0].Approver[len("ACTOR_KIND_"):])
	_, err = closepkg.Close(after, closepkg.CloseRequest{Actor: user("alice"), Approver: user("bob")})
	require.ErrorIs(t, err, closepkg.ErrAlreadyClosed)
	// A close of every provider closes each provider's package too.
	awsOnly, err := q.Package(ctx, tenant, "2024-09", "AWS", closepkg.Options{})
	require.NoError(t, err)
	require.True(t, awsOnly.Closed)

	// The closed package re-derives from the events to the hash the close recorded: from the
	// live tables, and from a second database folded from scratch in small batches.
	again, err := q.ClosedPackage(ctx, tenant, "2024-09", "", closepkg.Options{})
	require.NoError(t, err)
	require.Equal(t, p, again)
	pool2, _ := pgtest.NewDB(t)
	catchUp(t, e.store, pool2, 7)
	q2 := closepkg.NewQueries(pool2)
	again2, err := q2.ClosedPackage(ctx, tenant, "2024-09", "", closepkg.Options{})
	require.NoError(t, err)
	require.Equal(t, p.SHA256, again2.SHA256)
	now2, err := q2.Package(ctx, tenant, "2024-09", "", closepkg.Options{})
	require.NoError(t, err)
	require.Equal(t, after.SHA256, now2.SHA256)
	// A rebuild beside the live tables (zero downtime) gives the same package.
	r := catchUp(t, e.store, e.pool, 1000)
	require.NoError(t, r.Rebuild(ctx, closepkg.Name, nil))
	rebuilt, err := q.Package(ctx, tenant, "2024-09", "", closepkg.Options{})
	require.NoError(t, err)
	require.Equal(t, after.SHA256, rebuilt.SHA256)

	// After the close, AWS restates a line by +1.25 (not flagged by its producer): it is newer
	// than the close's chain head, so a post-close adjustment. A late line flagged post_close
	// is one too.
	rec := firstRecorded(t, e.store, tenant, "AWS")
	line := rec.GetCostLineRecorded().GetLine()
	line.BilledCost = decimal.RequireFromString(line.GetBilledCost()).Add(decimal.RequireFromString("1.25")).String()
	restated := envelope(tenant, "late-restatement", user("focus-import"))
	restated.Body = &tallyv1.Envelope_CostLineRestated{CostLineRestated: &tallyv1.CostLineRestated{Line: line,
		Delta: &tallyv1.CostDelta{BilledCost: "1.25", BillingCurrency: "USD"}, PreviousEventId: rec.GetEventId()}}
	late := proto.Clone(line).(*tallyv1.CostLine)
	late.LineKey, late.BilledCost = "late-line", "-0.5"
	lateRec := envelope(tenant, "late-line", user("focus-import"))
	lateRec.Body = &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: late, PostClose: true}}
	appendEvents(t, e.store, tenant, restated, lateRec)
	catchUp(t, e.store, e.pool, 100)

	next, err := q.Package(ctx, tenant, "2024-09", "", closepkg.Options{})
	require.NoError(t, err)
	require.Equal(t, int64(2), next.PostClose.Count)
	require.Equal(t, int64(1), next.PostClose.Restated)
	require.Equal(t, int64(1), next.PostClose.Recorded)
	// net = 1.25 + (−0.5) = 0.75; absolute = 1.25 + 0.5 = 1.75.
	require.Equal(t, []closepkg.CurrencyDelta{{Currency: "USD", Net: "0.75", Absolute: "1.75"}}, next.PostClose.ByCurrency)
	require.Equal(t, int64(1), next.Restatements.Count)
	// Totals now: 20.28022672899 + 0.75 = 21.03022672899; AWS final 18.0066386184 + 0.75.
	require.Equal(t, "21.03022672899", next.Totals[0].Total)
	require.Equal(t, "18.7566386184", next.Reconciliation[0].LedgerFinal)
	// The closed package is immutable: it still re-derives to its recorded hash.
	still, err := q.ClosedPackage(ctx, tenant, "2024-09", "", closepkg.Options{})
	require.NoError(t, err)
	require.Equal(t, p.SHA256, still.SHA256)
	require.Zero(t, still.PostClose.Count)
}
