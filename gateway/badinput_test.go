package gateway_test

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// TestBadInput: every malformed push is InvalidArgument naming the field,
// leaves exactly one RequestRejected event on the system tenant and appends
// nothing to any tenant.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	type client = tallyv1connect.IngestServiceClient
	usageWith := func(f func(*tallyv1.UsageRecorded)) func(context.Context, client) error {
		return func(ctx context.Context, c client) error {
			u := usage()
			f(u)
			_, err := c.RecordUsage(ctx, connect.NewRequest(&tallyv1.RecordUsageRequest{TenantId: "acme", Usage: u}))
			return err
		}
	}
	invoiceWith := func(f func(*tallyv1.InvoiceRecorded)) func(context.Context, client) error {
		return func(ctx context.Context, c client) error {
			inv := invoice()
			f(inv)
			_, err := c.RecordInvoice(ctx, connect.NewRequest(&tallyv1.RecordInvoiceRequest{TenantId: "acme", Invoice: inv}))
			return err
		}
	}
	for _, tc := range []struct {
		name   string
		call   func(context.Context, client) error
		field  string
		msg    string
		tenant string // claimed tenant recorded in the audit
	}{
		{"missing tenant", func(ctx context.Context, c client) error {
			_, err := c.RecordUsage(ctx, connect.NewRequest(&tallyv1.RecordUsageRequest{Usage: usage()}))
			return err
		}, "tenant_id", "tenant_id is required", ""},
		{"bad tenant", func(ctx context.Context, c client) error {
			_, err := c.RecordUsage(ctx, connect.NewRequest(&tallyv1.RecordUsageRequest{TenantId: "Acme.*", Usage: usage()}))
			return err
		}, "tenant_id", `tenant_id "Acme.*" is not a valid tenant id`, "Acme.*"},
		{"system tenant", func(ctx context.Context, c client) error {
			_, err := c.RecordUsage(ctx, connect.NewRequest(&tallyv1.RecordUsageRequest{TenantId: "_system", Usage: usage()}))
			return err
		}, "tenant_id", "is not a valid tenant id", "_system"},
		{"missing body", func(ctx context.Context, c client) error {
			_, err := c.RecordUsage(ctx, connect.NewRequest(&tallyv1.RecordUsageRequest{TenantId: "acme"}))
			return err
		}, "usage", "usage is required", "acme"},
		{"bad decimal", usageWith(func(u *tallyv1.UsageRecorded) { u.Quantity = "12,5" }), "usage.quantity", `usage.quantity "12,5" is not a decimal`, "acme"},
		{"float-ish NaN", usageWith(func(u *tallyv1.UsageRecorded) { u.Quantity = "NaN" }), "usage.quantity", "is not a decimal", "acme"},
		{"missing quantity", usageWith(func(u *tallyv1.UsageRecorded) { u.Quantity = "" }), "usage.quantity", "usage.quantity is required", "acme"},
		{"end before start", usageWith(func(u *tallyv1.UsageRecorded) { u.PeriodStart, u.PeriodEnd = u.PeriodEnd, u.PeriodStart }),
			"usage.period_end", "must be after usage.period_start", "acme"},
		{"missing resource id", usageWith(func(u *tallyv1.UsageRecorded) { u.ResourceId = "" }), "usage.resource_id", "usage.resource_id is required", "acme"},
		{"duplicate attribute", usageWith(func(u *tallyv1.UsageRecorded) {
			u.Attributes = append(u.Attributes, &tallyv1.KeyValue{Key: "team", Value: "db"})
		}), "usage.attributes", `has the key "team" twice`, "acme"},
		{"unknown currency", invoiceWith(func(i *tallyv1.InvoiceRecorded) { i.Currency = "XXX" }), "invoice.currency", `invoice.currency "XXX" is not an ISO 4217 code`, "acme"},
		{"missing invoice id", invoiceWith(func(i *tallyv1.InvoiceRecorded) { i.InvoiceId = " " }), "invoice.invoice_id", "invoice.invoice_id is required", "acme"},
		{"missing account", invoiceWith(func(i *tallyv1.InvoiceRecorded) { i.Scope.BillingAccountId = "" }), "invoice.scope.billing_account_id", "is required", "acme"},
		{"invoice period reversed", invoiceWith(func(i *tallyv1.InvoiceRecorded) { i.Scope.BillingPeriodEnd = i.Scope.BillingPeriodStart }),
			"invoice.scope.billing_period_end", "must be after", "acme"},
		{"missing issued_at", invoiceWith(func(i *tallyv1.InvoiceRecorded) { i.IssuedAt = nil }), "invoice.issued_at", "is required", "acme"},
		{"fx same currency", func(ctx context.Context, c client) error {
			_, err := c.RecordFxRate(ctx, connect.NewRequest(&tallyv1.RecordFxRateRequest{TenantId: "acme",
				FxRate: &tallyv1.FxRateRecorded{FromCurrency: "EUR", ToCurrency: "eur", Rate: "1", Date: "2024-09-01"}}))
			return err
		}, "fx_rate.to_currency", "must differ", "acme"},
		{"fx bad date", func(ctx context.Context, c client) error {
			_, err := c.RecordFxRate(ctx, connect.NewRequest(&tallyv1.RecordFxRateRequest{TenantId: "acme",
				FxRate: &tallyv1.FxRateRecorded{FromCurrency: "EUR", ToCurrency: "USD", Rate: "1.1", Date: "01/09/2024"}}))
			return err
		}, "fx_rate.date", "is not a day as YYYY-MM-DD", "acme"},
		{"fx zero rate", func(ctx context.Context, c client) error {
			_, err := c.RecordFxRate(ctx, connect.NewRequest(&tallyv1.RecordFxRateRequest{TenantId: "acme",
				FxRate: &tallyv1.FxRateRecorded{FromCurrency: "EUR", ToCurrency: "USD", Rate: "0", Date: "2024-09-01"}}))
			return err
		}, "fx_rate.rate", "must be positive", "acme"},
		{"remediation without kind", func(ctx context.Context, c client) error {
			_, err := c.RecordRemediation(ctx, connect.NewRequest(&tallyv1.RecordRemediationRequest{TenantId: "acme",
				Remediation: &tallyv1.RemediationExecuted{ActionId: "a1", Provider: "AWS", ResourceId: "i-1", ExecutedAt: ts("2024-09-01T00:00:00Z")}}))
			return err
		}, "remediation.kind", "remediation.kind is required", "acme"},
		{"tag without change", func(ctx context.Context, c client) error {
			_, err := c.TagResource(ctx, connect.NewRequest(&tallyv1.TagResourceRequest{TenantId: "acme",
				Tagged: &tallyv1.ResourceTagged{Provider: "AWS", ResourceId: "i-1", EffectiveFrom: ts("2024-09-01T00:00:00Z")}}))
			return err
		}, "tagged.tags", "changes nothing", "acme"},
		{"rule percentages", func(ctx context.Context, c client) error {
			_, err := c.SetAllocationRule(ctx, connect.NewRequest(&tallyv1.SetAllocationRuleRequest{TenantId: "acme",
				Rule: &tallyv1.AllocationRuleSet{RuleId: "r1", Version: 1, EffectiveFrom: ts("2024-09-01T00:00:00Z"),
					Split:  tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE,
					Shares: []*tallyv1.CostCenterShare{{CostCenter: "a", Value: "60"}, {CostCenter: "b", Value: "30.5"}}}}))
			return err
		}, "rule.shares", "percentages total 90.5, not exactly 100", "acme"},
		{"retire without rule id", func(ctx context.Context, c client) error {
			_, err := c.RetireAllocationRule(ctx, connect.NewRequest(&tallyv1.RetireAllocationRuleRequest{TenantId: "acme",
				Retired: &tallyv1.AllocationRuleRetired{EffectiveTo: ts("2024-09-01T00:00:00Z")}}))
			return err
		}, "retired.rule_id", "is required", "acme"},
		{"budget negative", func(ctx context.Context, c client) error {
			_, err := c.SetBudget(ctx, connect.NewRequest(&tallyv1.SetBudgetRequest{TenantId: "acme",
				Budget: &tallyv1.BudgetSet{BudgetId: "b1", Amount: "-5", Currency: "USD", EffectiveFrom: ts("2024-09-01T00:00:00Z")}}))
			return err
		}, "budget.amount", "must not be negative", "acme"},
		{"overlong idempotency key", func(ctx context.Context, c client) error {
			_, err := c.RecordUsage(ctx, connect.NewRequest(&tallyv1.RecordUsageRequest{TenantId: "acme", IdempotencyKey: strings.Repeat("k", 300), Usage: usage()}))
			return err
		}, "idempotency_key", "over the limit", "acme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.rejections(t))
			err := tc.call(ctxT(t), e.connect)
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
			require.NotNil(t, br, "the error carries a BadRequest detail")
			require.Equal(t, tc.field, br.GetFieldViolations()[0].GetField())

			rej := e.rejections(t)
			require.Len(t, rej, before+1, "exactly one audit event per refusal")
			last := rej[len(rej)-1]
			require.Equal(t, "invalid_argument", last.GetCode())
			require.Equal(t, tc.field, last.GetField())
			require.Equal(t, tc.tenant, last.GetClaimedTenant())
			require.Contains(t, last.GetProcedure(), "/tally.v1.IngestService/")
			require.NotEmpty(t, last.GetRequestId())
			require.Contains(t, last.GetReason(), tc.msg)
		})
	}
	require.Empty(t, e.events(t, "acme"), "a refused request appends nothing to the tenant")
}
