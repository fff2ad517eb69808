package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// savingsBill appends, for tenant, September 2024 lines of resource i-web in account 111: 10.00
// a day on 09-03..09-09 and 2.00 a day on 09-11..09-17 (and 6.00 on the action day 09-10),
// then (when final) the bill's finalization. It returns the stream sequence of the last event.
func savingsBill(t *testing.T, e *ledgerEnv, tenant string, final bool) uint64 {
	t.Helper()
	month := time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
	scope := &tallyv1.BillScope{Provider: "AWS", BillingAccountId: "111",
		BillingPeriodStart: timestamppb.New(month), BillingPeriodEnd: timestamppb.New(month.AddDate(0, 1, 0))}
	var events []*tallyv1.Envelope
	for d := 3; d <= 17; d++ {
		cost := "10.00"
		switch {
		case d == 10:
			cost = "6.00"
		case d > 10:
			cost = "2.00"
		}
		start := month.AddDate(0, 0, d-1)
		events = append(events, &tallyv1.Envelope{
			EventId:    eventstore.DeterministicID(tenant, fmt.Sprintf("savings-line-%d", d)),
			OccurredAt: timestamppb.New(start),
			Body: &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: &tallyv1.CostLine{
				LineKey: fmt.Sprintf("web-%02d", d), Scope: scope, ResourceId: "i-web", ServiceName: "Amazon EC2",
				ChargePeriodStart: timestamppb.New(start), ChargePeriodEnd: timestamppb.New(start.Add(24 * time.Hour)),
				BilledCost: cost, EffectiveCost: cost, BillingCurrency: "USD",
			}}},
		})
	}
	if final {
		events = append(events, &tallyv1.Envelope{
			EventId:    eventstore.DeterministicID(tenant, "savings-final"),
			OccurredAt: timestamppb.New(month.AddDate(0, 1, 2)),
			Body:       &tallyv1.Envelope_BillingPeriodFinalized{BillingPeriodFinalized: &tallyv1.BillingPeriodFinalized{Scope: scope}},
		})
	}
	res, err := e.store.Append(ctxT(t), tenant, events)
	require.NoError(t, err)
	return res.Head.StreamSeq
}

// recordStop pushes a stop of i-web on 2024-09-10 through IngestService, as a tool would.
func recordStop(t *testing.T, e *ledgerEnv, tenant string) {
	t.Helper()
	_, err := e.connect.RecordRemediation(ctxT(t), connect.NewRequest(&tallyv1.RecordRemediationRequest{TenantId: tenant,
		Remediation: &tallyv1.RemediationExecuted{ActionId: "act-1", Provider: "AWS", BillingAccountId: "111", ResourceId: "i-web",
			Kind: tallyv1.RemediationKind_REMEDIATION_KIND_STOP, ExpectedDailySavings: "9", Currency: "USD",
			ExecutedAt: ts("2024-09-10T12:00:00Z"), Tool: "optimizer"}}))
	require.NoError(t, err)
}

// TestSavingsService: an action pushed through the API and measured from a final bill is
// served with its figures, history and evidence, over POST and GET, to its tenant only.
func TestSavingsService(t *testing.T) {
	e := newLedgerEnv(t, true)
	ctx := ctxT(t)
	client := tallyv1connect.NewSavingsServiceClient(e.h2c, e.url)
	getClient := tallyv1connect.NewSavingsServiceClient(e.http1, e.url, connect.WithHTTPGet())

	recordStop(t, e, "acme")
	seq := savingsBill(t, e, "acme", false)
	list, err := client.ListSavings(ctx, connect.NewRequest(&tallyv1.ListSavingsRequest{TenantId: "acme", MinSeq: seq}))
	require.NoError(t, err)
	require.Len(t, list.Msg.GetActions(), 1)
	require.Equal(t, tallyv1.SavingsStatus_SAVINGS_STATUS_PENDING, list.Msg.GetActions()[0].GetFigures().GetStatus(), "preliminary bill")
	require.Empty(t, list.Msg.GetActions()[0].GetFigures().GetRealizedDaily())

	seq = savingsBill(t, e, "acme", true)
	savingsBill(t, e, "globex", true)
	// baseline 09-03..09 = 7 × 10.00 = 70, daily 10; measurement 09-11..17 = 7 × 2.00 = 14,
	// daily 2; realized 10 − 2 = 8 a day; monthly 8 × 30.4375 = 243.5.
	got, err := getClient.GetSavings(ctx, connect.NewRequest(&tallyv1.GetSavingsRequest{TenantId: "acme", ActionId: "act-1", MinSeq: seq}))
	require.NoError(t, err)
	a := got.Msg.GetAction()
	require.Equal(t, "act-1", a.GetActionId())
	require.Equal(t, tallyv1.RemediationKind_REMEDIATION_KIND_STOP, a.GetKind())
	require.Equal(t, "test-admin", a.GetActor().GetId(), "the token that pushed it")
	require.Equal(t, &tallyv1.SavingsWindow{Start: "2024-09-03", End: "2024-09-09", Days: 7}, a.GetBaseline())
	require.Equal(t, &tallyv1.SavingsWindow{Start: "2024-09-11", End: "2024-09-17", Days: 7}, a.GetMeasurement())
	f := a.GetFigures()
	require.Equal(t, tallyv1.SavingsStatus_SAVINGS_STATUS_MEASURED, f.GetStatus())
	require.Equal(t, "70", f.GetBaselineTotal())
	require.Equal(t, "14", f.GetMeasurementTotal())
	require.Equal(t, "8", f.GetRealizedDaily())
	require.Equal(t, "243.5", f.GetRealizedMonthly())
	require.Equal(t, "30.4375", a.GetMonthlyMultiplier())
	require.Equal(t, "9", a.GetExpectedDailySavings())
	require.Len(t, got.Msg.GetHistory(), 2)
	require.Equal(t, "billing_period_finalized", got.Msg.GetHistory()[1].GetEventKind())

	ev, err := client.GetSavingsEvidence(ctx, connect.NewRequest(&tallyv1.GetSavingsEvidenceRequest{TenantId: "acme", ActionId: "act-1"}))
	require.NoError(t, err)
	require.Len(t, ev.Msg.GetLines(), 14, "7 baseline and 7 measurement lines; the action day is not evidence")
	require.Equal(t, "baseline", ev.Msg.GetLines()[0].GetWindow())
	require.Equal(t, "2024-09-03", ev.Msg.GetLines()[0].GetDay())
	require.Equal(t, "measurement", ev.Msg.GetLines()[13].GetWindow())
	require.True(t, ev.Msg.GetLines()[13].GetFinal())

	// Filters, and tenants apart (globex has the lines but no action).
	for _, tc := range []struct {
		req  *tallyv1.ListSavingsRequest
		want int
	}{
		{&tallyv1.ListSavingsRequest{TenantId: "acme", Status: tallyv1.SavingsStatus_SAVINGS_STATUS_MEASURED}, 1},
		{&tallyv1.ListSavingsRequest{TenantId: "acme", Status: tallyv1.SavingsStatus_SAVINGS_STATUS_PENDING}, 0},
		{&tallyv1.ListSavingsRequest{TenantId: "acme", Period: "2024-09", ResourceId: "i-web"}, 1},
		{&tallyv1.ListSavingsRequest{TenantId: "acme", Period: "2024-10"}, 0},
		{&tallyv1.ListSavingsRequest{TenantId: "acme", ResourceId: "i-other"}, 0},
		{&tallyv1.ListSavingsRequest{TenantId: "globex"}, 0},
	} {
		resp, err := getClient.ListSavings(ctx, connect.NewRequest(tc.req))
		require.NoError(t, err)
		require.Len(t, resp.Msg.GetActions(), tc.want, "%v", tc.req)
	}

	// An unknown action is NotFound, and not a refusal to audit.
	before := len(e.rejections(t))
	_, err = client.GetSavings(ctx, connect.NewRequest(&tallyv1.GetSavingsRequest{TenantId: "globex", ActionId: "act-1"}))
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "%v", err)
	require.Len(t, e.rejections(t), before)
}

// TestSavingsBadInput: every malformed query is InvalidArgument naming the field, recorded
// once as RequestRejected, and appends nothing to any tenant.
func TestSavingsBadInput(t *testing.T) {
	e := newLedgerEnv(t, true)
	client := tallyv1connect.NewSavingsServiceClient(e.h2c, e.url)
	list := func(m *tallyv1.ListSavingsRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := client.ListSavings(ctx, connect.NewRequest(m)); return err }
	}
	for _, tc := range []struct {
		name, field, msg string
		call             func(context.Context) error
	}{
		{"missing tenant", "tenant_id", "tenant_id is required", list(&tallyv1.ListSavingsRequest{})},
		{"bad tenant", "tenant_id", "is not a valid tenant id", list(&tallyv1.ListSavingsRequest{TenantId: "Acme"})},
		{"bad period", "period", `period "2024-9" is not a month`, list(&tallyv1.ListSavingsRequest{TenantId: "acme", Period: "2024-9"})},
		{"bad month", "period", "is not a month", list(&tallyv1.ListSavingsRequest{TenantId: "acme", Period: "2024-13"})},
		{"bad status", "status", "99 is not a savings status", list(&tallyv1.ListSavingsRequest{TenantId: "acme", Status: 99})},
		{"overlong resource", "resource_id", "over the limit", list(&tallyv1.ListSavingsRequest{TenantId: "acme", ResourceId: strings.Repeat("r", 300)})},
		{"missing action", "action_id", "action_id is required", func(ctx context.Context) error {
			_, err := client.GetSavings(ctx, connect.NewRequest(&tallyv1.GetSavingsRequest{TenantId: "acme"}))
			return err
		}},
		{"control character in action", "action_id", "contains a control character", func(ctx context.Context) error {
			_, err := client.GetSavingsEvidence(ctx, connect.NewRequest(&tallyv1.GetSavingsEvidenceRequest{TenantId: "acme", ActionId: "a\x01"}))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.rejections(t))
			err := tc.call(ctxT(t))
			require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
			var ce *connect.Error
			require.ErrorAs(t, err, &ce)
			require.Contains(t, ce.Message(), tc.msg)
			var br *errdetails.BadRequest
			for _, d := range ce.Details() {
				if v, derr := d.Value(); derr == nil {
					if b, ok := v.(*errdetails.BadRequest); ok {
						br = b
					}
				}
			}
			require.NotNil(t, br)
			require.Equal(t, tc.field, br.GetFieldViolations()[0].GetField())
			rej := e.rejections(t)
			require.Len(t, rej, before+1)
			require.Equal(t, tc.field, rej[len(rej)-1].GetField())
			require.Contains(t, rej[len(rej)-1].GetProcedure(), "/tally.v1.SavingsService/")
		})
	}
	require.Empty(t, e.events(t, "acme"))
}
