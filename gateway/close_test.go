package gateway_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/gateway"
	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/changelog"
	"github.com/tally-ledger/tally/projections/closepkg"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// closeEnv is env with a projector folding the close package and the change log (given to
// the gateway, as in tally serve), and CloseService clients.
type closeEnv struct {
	*env
	runner   *projections.Runner
	close    tallyv1connect.CloseServiceClient
	closeGET tallyv1connect.CloseServiceClient
	audit    tallyv1connect.AuditServiceClient
}

func newCloseEnv(t *testing.T) *closeEnv {
	t.Helper()
	store := natstest.Run(t).Store()
	pool, _ := pgtest.NewDB(t)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	runner, err := projections.NewRunner(pool, store, projections.Options{PollInterval: 20 * time.Millisecond, Logger: logger},
		closepkg.New(), changelog.New())
	require.NoError(t, err)
	require.NoError(t, runner.Setup(t.Context()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = runner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e := serveGateway(t, gateway.Config{Store: store, Pool: pool, TempDir: t.TempDir(), Logger: logger, Runner: runner})
	return &closeEnv{env: e, runner: runner,
		close:    tallyv1connect.NewCloseServiceClient(e.h2c, e.url),
		closeGET: tallyv1connect.NewCloseServiceClient(e.http1, e.url, connect.WithHTTPGet()),
		audit:    tallyv1connect.NewAuditServiceClient(e.h2c, e.url)}
}

// The FOCUS sample's September 2024 bills (see projections/closepkg/close_test.go for the
// sums by hand from its BilledCost column).
const (
	sampleAWS    = "1234567890123"
	sampleMS     = "/providers/Microsoft.Billing/billingAccounts/8611537"
	sampleOracle = "20209880"
)

var september = time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)

func sampleInvoice(provider, account, id, amount string) *tallyv1.InvoiceRecorded {
	return &tallyv1.InvoiceRecorded{InvoiceId: id, Amount: amount, Currency: "USD", IssuedAt: timestamppb.New(september.AddDate(0, 1, 3)),
		Scope: &tallyv1.BillScope{Provider: provider, BillingAccountId: account,
			BillingPeriodStart: timestamppb.New(september), BillingPeriodEnd: timestamppb.New(september.AddDate(0, 1, 0))}}
}

func (e *closeEnv) recordInvoice(t *testing.T, tenant string, inv *tallyv1.InvoiceRecorded) uint64 {
	t.Helper()
	res, err := e.connect.RecordInvoice(ctxT(t), connect.NewRequest(&tallyv1.RecordInvoiceRequest{TenantId: tenant, Invoice: inv}))
	require.NoError(t, err)
	return res.Msg.GetTenantSeq()
}

func (e *closeEnv) pkg(t *testing.T, req *tallyv1.GetClosePackageRequest) *tallyv1.GetClosePackageResponse {
	t.Helper()
	req.WaitForHead = true
	res, err := e.close.GetClosePackage(ctxT(t), connect.NewRequest(req))
	require.NoError(t, err)
	return res.Msg
}

// TestCloseOnSample is the close of the real FOCUS sample through the gateway: invoices
// recorded with RecordInvoice (one matching, one 2% off, one missing), the package's
// statuses, variances and hash checked by hand, the same actor as approver refused, the close
// with an approver, and the closed package re-derived from the events to the same SHA-256.
func TestCloseOnSample(t *testing.T) {
	e := newCloseEnv(t)
	ctx := ctxT(t)
	_, err := uploadConnect(ctx, e.env, &tallyv1.UploadFocusFileHeader{TenantId: "acme", FileName: "focus_sample.csv", Final: true}, readSample(t))
	require.NoError(t, err)
	e.recordInvoice(t, "acme", sampleInvoice("AWS", sampleAWS, "INV-AWS-0924", "18.01"))
	msSeq := e.recordInvoice(t, "acme", sampleInvoice("Microsoft", sampleMS, "INV-MS-0924", "2.0160"))
	head, err := e.store.Head(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, msSeq, head.Seq)

	res := e.pkg(t, &tallyv1.GetClosePackageRequest{TenantId: "acme", Period: "2024-09"})
	p := res.GetPackage()
	require.Equal(t, "blocked", p.GetStatus())
	require.Len(t, p.GetReconciliation(), 3)
	aws, ms, oracle := p.GetReconciliation()[0], p.GetReconciliation()[1], p.GetReconciliation()[2]
	// AWS: 18.0066386184 − 18.01 = −0.0033613816; × 100 / 18.01 = −0.01866… → −0.02%: match.
	require.Equal(t, []string{"18.0066386184", "-0.0033613816", "-0.02", "match"},
		[]string{aws.GetLedgerFinal(), aws.GetVariance(), aws.GetVariancePct(), aws.GetStatus()})
	// Microsoft: 1.97651418586 − 2.016 = −0.03948581414; × 100 / 2.016 = −1.9586… → −1.96%:
	// over the 1% tolerance.
	require.Equal(t, []string{"1.97651418586", "2.016", "-0.03948581414", "-1.96", "mismatch"},
		[]string{ms.GetLedgerFinal(), ms.GetInvoice(), ms.GetVariance(), ms.GetVariancePct(), ms.GetStatus()})
	// Oracle: no invoice.
	require.Equal(t, "0.29707392473", oracle.GetLedgerFinal())
	require.Nil(t, oracle.Invoice)
	require.Nil(t, oracle.VariancePct)
	require.Equal(t, "missing_invoice", oracle.GetStatus())

	// The package hash by hand: SHA-256 of this canonical JSON; the chain head is the
	// Microsoft invoice's link.
	lines := p.GetLines().GetTotal()
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
		hex.EncodeToString(head.Hash[:]), head.Seq, lines, lines, sampleMS, aws.GetFinalLines(), sampleMS, ms.GetFinalLines(), oracle.GetFinalLines(), lines)
	require.Equal(t, want, res.GetCanonicalJson())
	digest := sha256.Sum256([]byte(want))
	require.Equal(t, hex.EncodeToString(digest[:]), res.GetSha256())
	require.Equal(t, res.GetSha256(), p.GetSha256())

	// The same over HTTP GET (the method is free of side effects).
	got, err := e.closeGET.GetClosePackage(ctx, connect.NewRequest(&tallyv1.GetClosePackageRequest{TenantId: "acme", Period: "2024-09"}))
	require.NoError(t, err)
	require.Equal(t, res.GetSha256(), got.Msg.GetSha256())
	// A tolerance of 2.5% turns Microsoft's −1.96% into a match (and changes the hash).
	loose := e.pkg(t, &tallyv1.GetClosePackageRequest{TenantId: "acme", Period: "2024-09", TolerancePct: "2.5"})
	require.Equal(t, "match", loose.GetPackage().GetReconciliation()[1].GetStatus())
	require.Equal(t, "2.5", loose.GetPackage().GetTolerancePct())
	require.NotEqual(t, res.GetSha256(), loose.GetSha256())

	// The caller (the admin token "test-admin") cannot approve its own close; a blocked
	// package is not closed. Neither appends anything.
	before := len(e.events(t, "acme"))
	_, err = e.close.ClosePeriod(ctx, connect.NewRequest(&tallyv1.ClosePeriodRequest{TenantId: "acme", Period: "2024-09", Approver: "test-admin"}))
	require.Equal(t, connect.CodeFailedPrecondition, connect.CodeOf(err), "%v", err)
	require.ErrorContains(t, err, `"test-admin" asks to close 2024-09 and cannot also approve it`)
	_, err = e.close.ClosePeriod(ctx, connect.NewRequest(&tallyv1.ClosePeriodRequest{TenantId: "acme", Period: "2024-09", Approver: "bob"}))
	require.Equal(t, connect.CodeFailedPrecondition, connect.CodeOf(err), "%v", err)
	require.ErrorContains(t, err, "not ready: invoice mismatch: Microsoft/")
	require.Len(t, e.events(t, "acme"), before)

	// The corrected Microsoft invoice and Oracle's make the package ready; bob approves.
	e.recordInvoice(t, "acme", sampleInvoice("Microsoft", sampleMS, "INV-MS-0924", "1.98"))
	e.recordInvoice(t, "acme", sampleInvoice("Oracle", sampleOracle, "INV-OCI-0924", "0.30"))
	ready := e.pkg(t, &tallyv1.GetClosePackageRequest{TenantId: "acme", Period: "2024-09"})
	require.Equal(t, "ready", ready.GetPackage().GetStatus(), ready.GetPackage().GetReasons())
	closed, err := e.close.ClosePeriod(ctx, connect.NewRequest(&tallyv1.ClosePeriodRequest{TenantId: "acme", Period: "2024-09",
		Approver: "bob", Note: "September books"}))
	require.NoError(t, err)
	c := closed.Msg
	require.Equal(t, ready.GetSha256(), c.GetPackageSha256(), "the close records the package as it was asked for")
	require.Equal(t, ready.GetPackage().GetChainHeadSeq(), c.GetChainHeadSeq())
	evs := e.events(t, "acme")
	last := evs[len(evs)-1]
	require.Equal(t, c.GetEventId(), last.GetEventId())
	require.Equal(t, c.GetTenantSeq(), last.GetTenantSeq())
	pc := last.GetPeriodClosed()
	require.Equal(t, "USER:test-admin", fmt.Sprintf("%s:%s", last.GetActor().GetKind().String()[len("ACTOR_KIND_"):], last.GetActor().GetId()))
	require.Equal(t, "bob", pc.GetApprover().GetId())
	require.Equal(t, c.GetPackageSha256(), pc.GetPackageSha256())
	require.Equal(t, "September books", pc.GetNote())
	require.Equal(t, "1", pc.GetTolerancePct(), "the close records the tolerance its package was reconciled with")

	// Closing again is refused.
	_, err = e.close.ClosePeriod(ctx, connect.NewRequest(&tallyv1.ClosePeriodRequest{TenantId: "acme", Period: "2024-09", Approver: "carol"}))
	require.Equal(t, connect.CodeFailedPrecondition, connect.CodeOf(err), "%v", err)
	require.ErrorContains(t, err, "already closed")

	// Re-deriving the closed package: from the live read model as of the close's chain head,
	// and from a database folded from scratch from the log, both give the recorded SHA-256.
	asOf := e.pkg(t, &tallyv1.GetClosePackageRequest{TenantId: "acme", Period: "2024-09", AsOfSeq: pc.GetChainHeadSeq()})
	require.Equal(t, pc.GetPackageSha256(), asOf.GetSha256())
	scratch, _ := pgtest.NewDB(t)
	r, err := projections.NewRunner(scratch, e.store, projections.Options{BatchEvents: 7}, closepkg.New())
	require.NoError(t, err)
	require.NoError(t, r.CatchUp(ctx))
	again, err := closepkg.NewQueries(scratch).ClosedPackage(ctx, "acme", "2024-09", "", closepkg.Options{})
	require.NoError(t, err)
	require.Equal(t, pc.GetPackageSha256(), again.SHA256)
	// The live package now shows the close.
	now := e.pkg(t, &tallyv1.GetClosePackageRequest{TenantId: "acme", Period: "2024-09"})
	require.True(t, now.GetPackage().GetClosed())
	require.Len(t, now.GetPackage().GetCloses(), 1)
	require.Equal(t, "ACTOR_KIND_USER:bob", now.GetPackage().GetCloses()[0].GetApprover())
}

// readyPeriod appends one final, invoiced AWS line for month, so its package is ready.
func readyPeriod(t *testing.T, store *eventstore.Store, tenant string, month time.Time) {
	t.Helper()
	scope := &tallyv1.BillScope{Provider: "AWS", BillingAccountId: "111", BillingPeriodStart: timestamppb.New(month),
		BillingPeriodEnd: timestamppb.New(month.AddDate(0, 1, 0))}
	key := month.Format("2006-01")
	ev := func(k string) *tallyv1.Envelope {
		return &tallyv1.Envelope{EventId: eventstore.DeterministicID(tenant, k+key), OccurredAt: timestamppb.New(month)}
	}
	line, fin, inv := ev("line"), ev("final"), ev("invoice")
	line.Body = &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: &tallyv1.CostLine{LineKey: "l1", Scope: scope,
		BilledCost: "10.50", BillingCurrency: "USD", ChargePeriodStart: timestamppb.New(month), ChargePeriodEnd: timestamppb.New(month.AddDate(0, 0, 1))}}}
	fin.Body = &tallyv1.Envelope_BillingPeriodFinalized{BillingPeriodFinalized: &tallyv1.BillingPeriodFinalized{Scope: scope}}
	inv.Body = &tallyv1.Envelope_InvoiceRecorded{InvoiceRecorded: &tallyv1.InvoiceRecorded{InvoiceId: "i-" + key, Scope: scope, Amount: "10.5", Currency: "USD"}}
	_, err := store.Append(ctxT(t), tenant, []*tallyv1.Envelope{line, fin, inv})
	require.NoError(t, err)
}

// TestClosePeriodRace: two ClosePeriod calls at once for the same period: one closes it, the
// other is refused (Aborted when it lost the append, FailedPrecondition when it saw the close),
// and the log holds one close. Repeated over several periods.
func TestClosePeriodRace(t *testing.T) {
	e := newCloseEnv(t)
	// Two admins, so that each may be the other's approver.
	alice := tallyv1connect.NewCloseServiceClient(h2cClient(t, newToken(t, e.pool, tokens.Spec{Name: "alice", Role: tokens.RoleAdmin, Kind: tokens.KindUser})), e.url)
	bob := tallyv1connect.NewCloseServiceClient(h2cClient(t, newToken(t, e.pool, tokens.Spec{Name: "bob", Role: tokens.RoleAdmin, Kind: tokens.KindUser})), e.url)
	for m := range 6 {
		month := time.Date(2025, time.Month(1+m), 1, 0, 0, 0, 0, time.UTC)
		period := month.Format("2006-01")
		readyPeriod(t, e.store, "acme", month)
		p := e.pkg(t, &tallyv1.GetClosePackageRequest{TenantId: "acme", Period: period})
		require.Equal(t, "ready", p.GetPackage().GetStatus(), p.GetPackage().GetReasons())

		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, c := range []struct {
			client   tallyv1connect.CloseServiceClient
			approver string
		}{{alice, "bob"}, {bob, "alice"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = c.client.ClosePeriod(ctxT(t), connect.NewRequest(&tallyv1.ClosePeriodRequest{TenantId: "acme", Period: period, Approver: c.approver}))
			}()
		}
		wg.Wait()
		ok, refused := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case connect.CodeOf(err) == connect.CodeAborted, connect.CodeOf(err) == connect.CodeFailedPrecondition:
				refused++
			default:
				t.Fatalf("%s: unexpected error %v", period, err)
			}
		}
		require.Equal(t, [2]int{1, 1}, [2]int{ok, refused}, "%s: %v", period, errs)
		t.Logf("%s: %v", period, errs)
		closes := 0
		for _, ev := range e.events(t, "acme") {
			if ev.GetPeriodClosed().GetPeriod() == period {
				closes++
			}
		}
		require.Equal(t, 1, closes, period)
	}
}

// TestCloseBadInput: each malformed request is refused with InvalidArgument naming the field,
// and nothing is appended to the tenant.
func TestCloseBadInput(t *testing.T) {
	e := newCloseEnv(t)
	ctx := ctxT(t)
	for _, tc := range []struct {
		name  string
		req   *tallyv1.ClosePeriodRequest
		field string
	}{
		{"no tenant", &tallyv1.ClosePeriodRequest{Period: "2024-09", Approver: "bob"}, "tenant_id"},
		{"no period", &tallyv1.ClosePeriodRequest{TenantId: "acme", Approver: "bob"}, "period"},
		{"bad period", &tallyv1.ClosePeriodRequest{TenantId: "acme", Period: "2024-9", Approver: "bob"}, "period"},
		{"month 13", &tallyv1.ClosePeriodRequest{TenantId: "acme", Period: "2024-13", Approver: "bob"}, "period"},
		{"no approver", &tallyv1.ClosePeriodRequest{TenantId: "acme", Period: "2024-09"}, "approver"},
		{"bad tolerance", &tallyv1.ClosePeriodRequest{TenantId: "acme", Period: "2024-09", Approver: "bob", TolerancePct: "1%"}, "tolerance_pct"},
		{"negative tolerance", &tallyv1.ClosePeriodRequest{TenantId: "acme", Period: "2024-09", Approver: "bob", TolerancePct: "-1"}, "tolerance_pct"},
		{"forced without reason", &tallyv1.ClosePeriodRequest{TenantId: "acme", Period: "2024-09", Approver: "bob", Force: true}, "reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.close.ClosePeriod(ctx, connect.NewRequest(tc.req))
			require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
			require.ErrorContains(t, err, tc.field)
			rej := e.rejections(t)
			require.Equal(t, tc.field, rej[len(rej)-1].GetField())
			require.Empty(t, e.events(t, "acme"))
		})
	}
	_, err := e.close.GetClosePackage(ctx, connect.NewRequest(&tallyv1.GetClosePackageRequest{TenantId: "acme", Period: "September"}))
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
	require.ErrorContains(t, err, `period "September" is not a month`)

	// A forced close of a blocked package, with a reason: recorded in the note.
	res, err := e.close.ClosePeriod(ctx, connect.NewRequest(&tallyv1.ClosePeriodRequest{TenantId: "acme", Period: "2024-09",
		Approver: "bob", Force: true, Reason: "no AWS account that month"}))
	require.NoError(t, err)
	require.Equal(t, "blocked", res.Msg.GetPackage().GetStatus())
	evs := e.events(t, "acme")
	require.Len(t, evs, 1)
	require.Equal(t, "forced: no AWS account that month (blocked: no cost lines in period)", evs[0].GetPeriodClosed().GetNote())
}
