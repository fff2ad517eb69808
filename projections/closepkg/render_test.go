package closepkg_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/projections/closepkg"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

func samplePackage(t *testing.T, status string, closed bool) *closepkg.Package {
	t.Helper()
	inv, v, pct := "100", "2", "2.00"
	p := &closepkg.Package{Tenant: "acme", Period: "2024-09", Provider: "AWS", TolerancePct: "1", Status: status,
		Reasons: []string{}, Closed: closed, Closes: []closepkg.PeriodClose{},
		ChainHead: closepkg.ChainHead{Seq: 42, Hash: "ab"}, Lines: closepkg.LineCounts{Final: 2, Total: 2},
		Totals:       []closepkg.CurrencyTotal{{Currency: "USD", Final: "102", Preliminary: "0", Total: "102", FinalLines: 2}},
		Restatements: closepkg.Changes{ByCurrency: []closepkg.CurrencyDelta{}, Items: []closepkg.ChangeItem{}},
		PostClose:    closepkg.Changes{ByCurrency: []closepkg.CurrencyDelta{}, Items: []closepkg.ChangeItem{}},
		Reconciliation: []closepkg.Reconciliation{{Provider: "AWS", BillingAccountID: "a<&>", Currency: "USD",
			LedgerFinal: "102", LedgerPrelim: "0", FinalLines: 2, Invoice: &inv, InvoiceIDs: []string{"I-1"},
			Variance: &v, VariancePct: &pct, Status: closepkg.RecMismatch}}}
	if status == closepkg.StatusBlocked {
		p.Reasons = []string{"invoice mismatch: AWS/a<&>/USD: variance 2 (2.00%)"}
	}
	var err error
	p.SHA256, err = closepkg.Hash(p)
	require.NoError(t, err)
	return p
}

func TestRenderings(t *testing.T) {
	p := samplePackage(t, closepkg.StatusBlocked, false)
	canon, err := closepkg.Canonical(p)
	require.NoError(t, err)
	require.Contains(t, string(canon), `"billing_account_id":"a<&>"`, "no HTML escaping")
	var compact bytes.Buffer
	require.NoError(t, json.Compact(&compact, canon))
	require.Equal(t, compact.String(), string(canon), "no whitespace between tokens")
	require.NotContains(t, string(canon), "sha256")

	// JSON export: the canonical object plus its sha256.
	var buf bytes.Buffer
	require.NoError(t, closepkg.WriteJSON(&buf, p))
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(buf.Bytes(), &m))
	require.JSONEq(t, `"`+p.SHA256+`"`, string(m["sha256"]))
	delete(m, "sha256")
	var rest bytes.Buffer
	enc := json.NewEncoder(&rest)
	enc.SetEscapeHTML(false)
	require.NoError(t, enc.Encode(m))
	require.Equal(t, string(canon)+"\n", rest.String())

	// A package whose content changed after hashing is refused.
	tampered := *p
	tampered.Status = closepkg.StatusReady
	require.Error(t, closepkg.WriteJSON(&bytes.Buffer{}, &tampered))

	buf.Reset()
	require.NoError(t, closepkg.WriteCSV(&buf, p))
	rows, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Equal(t, closepkg.CSVHeader, rows[0])
	require.Contains(t, rows, []string{"package", "", "", "", "sha256", p.SHA256})
	require.Contains(t, rows, []string{"totals", "", "", "USD", "final", "102"})
	require.Contains(t, rows, []string{"reconciliation", "AWS", "a<&>", "USD", "variance_pct", "2.00"})
	require.Contains(t, rows, []string{"reconciliation", "AWS", "a<&>", "USD", "status", "mismatch"})
}

func TestCloseRules(t *testing.T) {
	service := &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "alice"}
	tests := []struct {
		name    string
		pkg     *closepkg.Package
		req     closepkg.CloseRequest
		wantErr error
		note    string
	}{
		{"ready", samplePackage(t, closepkg.StatusReady, false), closepkg.CloseRequest{Actor: user("alice"), Approver: user("bob"), Note: "ok"}, nil, "ok"},
		{"self approval", samplePackage(t, closepkg.StatusReady, false), closepkg.CloseRequest{Actor: user("alice"), Approver: user("alice")}, closepkg.ErrSelfApproval, ""},
		{"same id, other kind of principal", samplePackage(t, closepkg.StatusReady, false), closepkg.CloseRequest{Actor: user("alice"), Approver: service}, nil, ""},
		{"no approver", samplePackage(t, closepkg.StatusReady, false), closepkg.CloseRequest{Actor: user("alice")}, closepkg.ErrInvalid, ""},
		{"already closed", samplePackage(t, closepkg.StatusReady, true), closepkg.CloseRequest{Actor: user("alice"), Approver: user("bob")}, closepkg.ErrAlreadyClosed, ""},
		{"blocked", samplePackage(t, closepkg.StatusBlocked, false), closepkg.CloseRequest{Actor: user("alice"), Approver: user("bob")}, closepkg.ErrNotReady, ""},
		{"forced without reason", samplePackage(t, closepkg.StatusBlocked, false), closepkg.CloseRequest{Actor: user("alice"), Approver: user("bob"), Force: true, Reason: " "}, closepkg.ErrInvalid, ""},
		{"forced", samplePackage(t, closepkg.StatusBlocked, false), closepkg.CloseRequest{Actor: user("alice"), Approver: user("bob"), Force: true, Reason: "AWS credit note pending"},
			nil, "forced: AWS credit note pending (blocked: invoice mismatch: AWS/a<&>/USD: variance 2 (2.00%))"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := closepkg.Close(tt.pkg, tt.req)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			pc := ev.GetPeriodClosed()
			require.Equal(t, "acme", ev.GetTenantId())
			require.Equal(t, tt.pkg.SHA256, pc.GetPackageSha256())
			require.Equal(t, uint64(42), pc.GetChainHeadSeq())
			require.Equal(t, "AWS", pc.GetProvider())
			require.Equal(t, tt.note, pc.GetNote())
			require.Equal(t, tt.req.Approver.GetId(), pc.GetApprover().GetId())
		})
	}
	// A precondition error is one a gateway can branch on.
	_, err := closepkg.Close(samplePackage(t, closepkg.StatusBlocked, false), closepkg.CloseRequest{Actor: user("a"), Approver: user("b")})
	require.ErrorIs(t, err, closepkg.ErrPrecondition)
}
