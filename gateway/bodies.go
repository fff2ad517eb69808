package gateway

import (
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"google.golang.org/protobuf/types/known/timestamppb"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// Each validator checks one pushed body, canonicalises it in place (decimal
// text, currency case, sorted tags) and returns when the fact happened,
// which becomes the envelope's occurred_at. Field names are prefixed with
// the request field that holds the body.

var hundred = decimal.NewFromInt(100)

func validateUsage(f string, u *tallyv1.UsageRecorded) (*timestamppb.Timestamp, error) {
	if u == nil {
		return nil, fieldErr(f, "is required")
	}
	for _, c := range []struct{ name, v string }{
		{"provider", u.GetProvider()}, {"resource_id", u.GetResourceId()}, {"metric", u.GetMetric()},
	} {
		if err := requireID(f+"."+c.name, c.v); err != nil {
			return nil, err
		}
	}
	for _, c := range []struct{ name, v string }{{"billing_account_id", u.GetBillingAccountId()}, {"unit", u.GetUnit()}} {
		if err := optionalID(f+"."+c.name, c.v); err != nil {
			return nil, err
		}
	}
	if _, err := setDecimal(f+".quantity", &u.Quantity); err != nil {
		return nil, err
	}
	if err := checkPeriod(f+".period_start", f+".period_end", u.GetPeriodStart(), u.GetPeriodEnd()); err != nil {
		return nil, err
	}
	if err := checkKeyValues(f+".attributes", u.GetAttributes()); err != nil {
		return nil, err
	}
	return u.GetPeriodStart(), nil
}

func validateRemediation(f string, r *tallyv1.RemediationExecuted) (*timestamppb.Timestamp, error) {
	if r == nil {
		return nil, fieldErr(f, "is required")
	}
	for _, c := range []struct{ name, v string }{
		{"action_id", r.GetActionId()}, {"provider", r.GetProvider()}, {"resource_id", r.GetResourceId()},
	} {
		if err := requireID(f+"."+c.name, c.v); err != nil {
			return nil, err
		}
	}
	for _, c := range []struct{ name, v string }{{"billing_account_id", r.GetBillingAccountId()}, {"tool", r.GetTool()}} {
		if err := optionalID(f+"."+c.name, c.v); err != nil {
			return nil, err
		}
	}
	if err := checkText(f+".description", r.GetDescription(), maxTextLen); err != nil {
		return nil, err
	}
	if r.GetKind() == tallyv1.RemediationKind_REMEDIATION_KIND_UNSPECIFIED {
		return nil, fieldErr(f+".kind", "is required")
	}
	if _, ok := tallyv1.RemediationKind_name[int32(r.GetKind())]; !ok {
		return nil, fieldErr(f+".kind", "%d is not a remediation kind", r.GetKind())
	}
	if r.GetExpectedDailySavings() != "" || r.GetCurrency() != "" {
		if _, err := setDecimal(f+".expected_daily_savings", &r.ExpectedDailySavings); err != nil {
			return nil, err
		}
		if err := setCurrency(f+".currency", &r.Currency); err != nil {
			return nil, err
		}
	}
	if err := requireTime(f+".executed_at", r.GetExecutedAt()); err != nil {
		return nil, err
	}
	const maxDays = 366
	for _, c := range []struct {
		name string
		v    uint32
	}{{"baseline_days", r.GetBaselineDays()}, {"gap_days", r.GetGapDays()}, {"measurement_days", r.GetMeasurementDays()}} {
		if c.v > maxDays {
			return nil, fieldErr(f+"."+c.name, "is %d, over the limit of %d days", c.v, maxDays)
		}
	}
	return r.GetExecutedAt(), nil
}

func validateTagged(f string, t *tallyv1.ResourceTagged) (*timestamppb.Timestamp, error) {
	if t == nil {
		return nil, fieldErr(f, "is required")
	}
	if err := requireID(f+".provider", t.GetProvider()); err != nil {
		return nil, err
	}
	if err := requireID(f+".resource_id", t.GetResourceId()); err != nil {
		return nil, err
	}
	if len(t.GetTags()) == 0 && len(t.GetRemovedKeys()) == 0 {
		return nil, fieldErr(f+".tags", "is required (or removed_keys): the request changes nothing")
	}
	if err := checkKeyValues(f+".tags", t.GetTags()); err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(t.GetTags()))
	for _, kv := range t.GetTags() {
		set[kv.GetKey()] = true
	}
	for i, k := range t.GetRemovedKeys() {
		if err := requireID(fmt.Sprintf("%s.removed_keys[%d]", f, i), k); err != nil {
			return nil, err
		}
		if set[k] {
			return nil, fieldErr(fmt.Sprintf("%s.removed_keys[%d]", f, i), "%s is also set in tags", quote(k))
		}
	}
	if err := requireTime(f+".effective_from", t.GetEffectiveFrom()); err != nil {
		return nil, err
	}
	return t.GetEffectiveFrom(), nil
}

func validateMatch(f string, m *tallyv1.AllocationMatch) error {
	if m == nil {
		return nil
	}
	for _, c := range []struct{ name, v string }{
		{"provider", m.GetProvider()}, {"billing_account_id", m.GetBillingAccountId()}, {"service_name", m.GetServiceName()},
		{"region_id", m.GetRegionId()}, {"resource_id_pattern", m.GetResourceIdPattern()},
	} {
		if err := optionalID(f+"."+c.name, c.v); err != nil {
			return err
		}
	}
	return checkKeyValues(f+".tags", m.GetTags())
}

func validateRule(f string, r *tallyv1.AllocationRuleSet) (*timestamppb.Timestamp, error) {
	if r == nil {
		return nil, fieldErr(f, "is required")
	}
	if err := requireID(f+".rule_id", r.GetRuleId()); err != nil {
		return nil, err
	}
	if r.GetVersion() == 0 {
		return nil, fieldErr(f+".version", "is required (1 for a new rule, then one more per change)")
	}
	if err := requireTime(f+".effective_from", r.GetEffectiveFrom()); err != nil {
		return nil, err
	}
	if r.GetEffectiveTo() != nil {
		if err := checkPeriod(f+".effective_from", f+".effective_to", r.GetEffectiveFrom(), r.GetEffectiveTo()); err != nil {
			return nil, err
		}
	}
	if err := validateMatch(f+".match", r.GetMatch()); err != nil {
		return nil, err
	}
	if err := checkText(f+".description", r.GetDescription(), maxTextLen); err != nil {
		return nil, err
	}
	if err := checkActor(f+".approver", r.GetApprover()); err != nil {
		return nil, err
	}
	if err := validateShares(f, r); err != nil {
		return nil, err
	}
	return r.GetEffectiveFrom(), nil
}

func validateShares(f string, r *tallyv1.AllocationRuleSet) error {
	shares := r.GetShares()
	if len(shares) == 0 {
		return fieldErr(f+".shares", "is required: name at least one cost center")
	}
	seen := map[string]bool{}
	total := decimal.Zero
	for i, s := range shares {
		sf := fmt.Sprintf("%s.shares[%d]", f, i)
		if s == nil {
			return fieldErr(sf, "is empty")
		}
		if err := requireID(sf+".cost_center", s.GetCostCenter()); err != nil {
			return err
		}
		if seen[s.GetCostCenter()] {
			return fieldErr(sf+".cost_center", "%s appears twice", quote(s.GetCostCenter()))
		}
		seen[s.GetCostCenter()] = true
		switch r.GetSplit() {
		case tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE, tallyv1.SplitKind_SPLIT_KIND_FIXED_AMOUNT:
			d, err := setDecimal(sf+".value", &s.Value)
			if err != nil {
				return err
			}
			if !d.IsPositive() {
				return fieldErr(sf+".value", "%s must be positive", quote(s.GetValue()))
			}
			total = total.Add(d)
		default:
			if s.GetValue() != "" {
				return fieldErr(sf+".value", "must be empty for a %s split", splitName(r.GetSplit()))
			}
		}
	}
	switch r.GetSplit() {
	case tallyv1.SplitKind_SPLIT_KIND_UNSPECIFIED:
		return fieldErr(f+".split", "is required")
	case tallyv1.SplitKind_SPLIT_KIND_DIRECT:
		if len(shares) != 1 {
			return fieldErr(f+".shares", "must name exactly one cost center for a direct split, not %d", len(shares))
		}
	case tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE:
		if !total.Equal(hundred) {
			return fieldErr(f+".shares", "percentages total %s, not exactly 100", total.String())
		}
	case tallyv1.SplitKind_SPLIT_KIND_FIXED_AMOUNT:
		if err := requireID(f+".remainder_cost_center", r.GetRemainderCostCenter()); err != nil {
			return err
		}
	case tallyv1.SplitKind_SPLIT_KIND_PROPORTIONAL, tallyv1.SplitKind_SPLIT_KIND_EVEN:
		if len(shares) < 2 {
			return fieldErr(f+".shares", "must name at least two cost centers for a %s split", splitName(r.GetSplit()))
		}
	default:
		return fieldErr(f+".split", "%d is not a split kind", r.GetSplit())
	}
	return optionalID(f+".remainder_cost_center", r.GetRemainderCostCenter())
}

func splitName(k tallyv1.SplitKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "SPLIT_KIND_"))
}

func validateRetired(f string, r *tallyv1.AllocationRuleRetired) (*timestamppb.Timestamp, error) {
	if r == nil {
		return nil, fieldErr(f, "is required")
	}
	if err := requireID(f+".rule_id", r.GetRuleId()); err != nil {
		return nil, err
	}
	if err := requireTime(f+".effective_to", r.GetEffectiveTo()); err != nil {
		return nil, err
	}
	if err := checkText(f+".reason", r.GetReason(), maxTextLen); err != nil {
		return nil, err
	}
	if err := checkActor(f+".approver", r.GetApprover()); err != nil {
		return nil, err
	}
	return r.GetEffectiveTo(), nil
}

func validateScope(f string, s *tallyv1.BillScope) error {
	if s == nil {
		return fieldErr(f, "is required")
	}
	if err := requireID(f+".provider", s.GetProvider()); err != nil {
		return err
	}
	if err := requireID(f+".billing_account_id", s.GetBillingAccountId()); err != nil {
		return err
	}
	return checkPeriod(f+".billing_period_start", f+".billing_period_end", s.GetBillingPeriodStart(), s.GetBillingPeriodEnd())
}

func validateInvoice(f string, inv *tallyv1.InvoiceRecorded) (*timestamppb.Timestamp, error) {
	if inv == nil {
		return nil, fieldErr(f, "is required")
	}
	if err := requireID(f+".invoice_id", inv.GetInvoiceId()); err != nil {
		return nil, err
	}
	if err := validateScope(f+".scope", inv.GetScope()); err != nil {
		return nil, err
	}
	if _, err := setDecimal(f+".amount", &inv.Amount); err != nil {
		return nil, err
	}
	if err := setCurrency(f+".currency", &inv.Currency); err != nil {
		return nil, err
	}
	if err := requireTime(f+".issued_at", inv.GetIssuedAt()); err != nil {
		return nil, err
	}
	return inv.GetIssuedAt(), nil
}

func validateFxRate(f string, r *tallyv1.FxRateRecorded) (*timestamppb.Timestamp, error) {
	if r == nil {
		return nil, fieldErr(f, "is required")
	}
	if err := setCurrency(f+".from_currency", &r.FromCurrency); err != nil {
		return nil, err
	}
	if err := setCurrency(f+".to_currency", &r.ToCurrency); err != nil {
		return nil, err
	}
	if r.GetFromCurrency() == r.GetToCurrency() {
		return nil, fieldErr(f+".to_currency", "must differ from from_currency (%s)", r.GetFromCurrency())
	}
	d, err := setDecimal(f+".rate", &r.Rate)
	if err != nil {
		return nil, err
	}
	if !d.IsPositive() {
		return nil, fieldErr(f+".rate", "%s must be positive", quote(r.GetRate()))
	}
	day, err := time.Parse(time.DateOnly, r.GetDate())
	if err != nil {
		if r.GetDate() == "" {
			return nil, fieldErr(f+".date", "is required (YYYY-MM-DD)")
		}
		return nil, fieldErr(f+".date", "%s is not a day as YYYY-MM-DD", quote(r.GetDate()))
	}
	if err := optionalID(f+".source", r.GetSource()); err != nil {
		return nil, err
	}
	return timestamppb.New(day), nil
}

func validateBudget(f string, b *tallyv1.BudgetSet) (*timestamppb.Timestamp, error) {
	if b == nil {
		return nil, fieldErr(f, "is required")
	}
	if err := requireID(f+".budget_id", b.GetBudgetId()); err != nil {
		return nil, err
	}
	if err := optionalID(f+".name", b.GetName()); err != nil {
		return nil, err
	}
	if err := optionalID(f+".cost_center", b.GetCostCenter()); err != nil {
		return nil, err
	}
	if err := validateMatch(f+".scope", b.GetScope()); err != nil {
		return nil, err
	}
	d, err := setDecimal(f+".amount", &b.Amount)
	if err != nil {
		return nil, err
	}
	if d.IsNegative() {
		return nil, fieldErr(f+".amount", "%s must not be negative", quote(b.GetAmount()))
	}
	if err := setCurrency(f+".currency", &b.Currency); err != nil {
		return nil, err
	}
	for i := range b.GetAlertThresholds() {
		tf := fmt.Sprintf("%s.alert_thresholds[%d]", f, i)
		d, err := setDecimal(tf, &b.AlertThresholds[i])
		if err != nil {
			return nil, err
		}
		if !d.IsPositive() {
			return nil, fieldErr(tf, "%s must be a positive percentage", quote(b.AlertThresholds[i]))
		}
	}
	if err := requireTime(f+".effective_from", b.GetEffectiveFrom()); err != nil {
		return nil, err
	}
	if err := checkActor(f+".approver", b.GetApprover()); err != nil {
		return nil, err
	}
	return b.GetEffectiveFrom(), nil
}
