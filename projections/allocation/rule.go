package allocation

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/shopspring/decimal"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// ErrInvalidRule is wrapped by every error NewRule returns; the message names the field.
var ErrInvalidRule = errors.New("allocation: invalid rule")

// RuleError is the error NewRule returns: the field of the AllocationRuleSet that is wrong
// ("shares[1].value") and what is wrong with it. It wraps ErrInvalidRule.
type RuleError struct {
	Field string
	Msg   string
}

func (e *RuleError) Error() string { return ErrInvalidRule.Error() + ": " + e.Field + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrInvalidRule) hold.
func (e *RuleError) Unwrap() error { return ErrInvalidRule }

// SplitKind is how a rule divides the cost it matches.
type SplitKind int

// Split kinds, as in tally.v1.SplitKind.
const (
	Direct       SplitKind = SplitKind(tallyv1.SplitKind_SPLIT_KIND_DIRECT)
	Percentage   SplitKind = SplitKind(tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE)
	FixedAmount  SplitKind = SplitKind(tallyv1.SplitKind_SPLIT_KIND_FIXED_AMOUNT)
	Proportional SplitKind = SplitKind(tallyv1.SplitKind_SPLIT_KIND_PROPORTIONAL)
	Even         SplitKind = SplitKind(tallyv1.SplitKind_SPLIT_KIND_EVEN)
)

func (k SplitKind) String() string {
	switch k {
	case Direct:
		return "direct"
	case Percentage:
		return "percentage"
	case FixedAmount:
		return "fixed_amount"
	case Proportional:
		return "proportional"
	case Even:
		return "even"
	}
	return fmt.Sprintf("SplitKind(%d)", int(k))
}

// Line is what a rule looks at in a cost line. Matching is exact and case-sensitive.
type Line struct {
	Provider         string
	BillingAccountID string
	ServiceName      string
	RegionID         string
	ResourceID       string
	Tags             map[string]string
}

// Match selects lines; an empty field matches every line, and every set field must match.
type Match struct {
	Provider          string
	BillingAccountID  string
	ServiceName       string
	RegionID          string
	ResourceIDPattern string // glob, see glob.go
	Tags              map[string]string
}

// Share is one cost center of a rule with its value: a percentage (0-100] for percentage
// splits, a non-negative amount for fixed amounts, zero otherwise.
type Share struct {
	CostCenter string
	Value      decimal.Decimal
}

// Rule is one version of an allocation rule, valid by construction (NewRule). Shares are
// sorted by cost center.
type Rule struct {
	ID            string
	Version       uint32
	Priority      int32
	EffectiveFrom time.Time
	EffectiveTo   time.Time // zero: open-ended
	Match         Match
	Kind          SplitKind
	Shares        []Share
	Remainder     string // fixed amounts only
	Description   string
}

// NewRule validates an AllocationRuleSet event and returns its rule. It refuses: an empty rule
// id; version 0; no effective_from, or an effective_to not after it; an unknown split kind; no
// shares, an empty or repeated cost center; a direct split with other than one share; a
// percentage that does not parse or is not in (0, 100], or percentages that do not total
// exactly 100; a fixed amount that is negative; a fixed-amount split with no remainder cost
// center; a malformed resource id pattern; a tag with an empty key.
func NewRule(ev *tallyv1.AllocationRuleSet) (*Rule, error) {
	bad := func(field, format string, args ...any) error {
		return &RuleError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if ev == nil {
		return nil, bad("rule", "missing")
	}
	r := &Rule{
		ID:          ev.GetRuleId(),
		Version:     ev.GetVersion(),
		Priority:    ev.GetPriority(),
		Kind:        SplitKind(ev.GetSplit()),
		Remainder:   ev.GetRemainderCostCenter(),
		Description: ev.GetDescription(),
	}
	if r.ID == "" {
		return nil, bad("rule_id", "required")
	}
	if r.Version == 0 {
		return nil, bad("version", "must be at least 1")
	}
	if ev.GetEffectiveFrom() == nil {
		return nil, bad("effective_from", "required")
	}
	r.EffectiveFrom = ev.GetEffectiveFrom().AsTime()
	if ev.GetEffectiveTo() != nil {
		r.EffectiveTo = ev.GetEffectiveTo().AsTime()
		if !r.EffectiveTo.After(r.EffectiveFrom) {
			return nil, bad("effective_to", "%s is not after effective_from %s",
				r.EffectiveTo.Format(time.RFC3339), r.EffectiveFrom.Format(time.RFC3339))
		}
	}

	m := ev.GetMatch()
	r.Match = Match{
		Provider:          m.GetProvider(),
		BillingAccountID:  m.GetBillingAccountId(),
		ServiceName:       m.GetServiceName(),
		RegionID:          m.GetRegionId(),
		ResourceIDPattern: m.GetResourceIdPattern(),
	}
	if err := validGlob(r.Match.ResourceIDPattern); err != nil {
		return nil, bad("match.resource_id_pattern", "%q: %v", r.Match.ResourceIDPattern, err)
	}
	for _, kv := range m.GetTags() {
		if kv.GetKey() == "" {
			return nil, bad("match.tags", "empty key")
		}
		if r.Match.Tags == nil {
			r.Match.Tags = map[string]string{}
		}
		if v, dup := r.Match.Tags[kv.GetKey()]; dup && v != kv.GetValue() {
			return nil, bad("match.tags", "key %q asks for both %q and %q", kv.GetKey(), v, kv.GetValue())
		}
		r.Match.Tags[kv.GetKey()] = kv.GetValue()
	}

	if len(ev.GetShares()) == 0 {
		return nil, bad("shares", "at least one cost center required")
	}
	seen := map[string]bool{}
	total := decimal.Zero
	for i, s := range ev.GetShares() {
		field := fmt.Sprintf("shares[%d]", i)
		if s.GetCostCenter() == "" {
			return nil, bad(field+".cost_center", "required")
		}
		if seen[s.GetCostCenter()] {
			return nil, bad(field+".cost_center", "%q appears twice", s.GetCostCenter())
		}
		seen[s.GetCostCenter()] = true
		sh := Share{CostCenter: s.GetCostCenter()}
		switch r.Kind {
		case Percentage, FixedAmount:
			v, err := decimal.NewFromString(s.GetValue())
			if err != nil {
				return nil, bad(field+".value", "%q is not a decimal", s.GetValue())
			}
			if r.Kind == Percentage && (!v.IsPositive() || v.GreaterThan(decimal.NewFromInt(100))) {
				return nil, bad(field+".value", "percentage %s is not in (0, 100]", v)
			}
			if r.Kind == FixedAmount && v.IsNegative() {
				return nil, bad(field+".value", "fixed amount %s is negative", v)
			}
			sh.Value = v
			total = total.Add(v)
		}
		r.Shares = append(r.Shares, sh)
	}
	sort.Slice(r.Shares, func(i, j int) bool { return r.Shares[i].CostCenter < r.Shares[j].CostCenter })

	switch r.Kind {
	case Direct:
		if len(r.Shares) != 1 {
			return nil, bad("shares", "a direct split has exactly one cost center, got %d", len(r.Shares))
		}
	case Percentage:
		if !total.Equal(decimal.NewFromInt(100)) {
			return nil, bad("shares", "percentages total %s, want exactly 100", total)
		}
	case FixedAmount:
		if r.Remainder == "" {
			return nil, bad("remainder_cost_center", "required for a fixed-amount split")
		}
	case Proportional, Even:
	default:
		return nil, bad("split", "unknown split kind %d", int(r.Kind))
	}
	return r, nil
}

// Matches reports whether the rule's match selects line.
func (r *Rule) Matches(line Line) bool { return r.Match.Matches(line) }

// Matches reports whether every set field of m matches line: provider, billing account,
// service and region equal; the resource id matches the glob; and each tag key is present on
// the line with the same value.
func (m Match) Matches(line Line) bool {
	if m.Provider != "" && m.Provider != line.Provider {
		return false
	}
	if m.BillingAccountID != "" && m.BillingAccountID != line.BillingAccountID {
		return false
	}
	if m.ServiceName != "" && m.ServiceName != line.ServiceName {
		return false
	}
	if m.RegionID != "" && m.RegionID != line.RegionID {
		return false
	}
	if m.ResourceIDPattern != "" && !globMatch(m.ResourceIDPattern, line.ResourceID) {
		return false
	}
	for k, v := range m.Tags {
		if got, ok := line.Tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Split divides amount (in currency) between the rule's cost centers. direct holds each cost
// center's direct cost of the same day and currency, the weights of a proportional split (see
// SplitProportional); other kinds ignore it. Parts are sorted by cost center and sum exactly
// to amount.
func (r *Rule) Split(amount decimal.Decimal, currency string, direct map[string]decimal.Decimal) ([]Part, error) {
	var (
		parts []Part
		err   error
	)
	switch r.Kind {
	case Direct:
		parts = []Part{{CostCenter: r.Shares[0].CostCenter, Amount: amount}}
	case Percentage:
		ws := make([]Weight, len(r.Shares))
		for i, s := range r.Shares {
			ws[i] = Weight{CostCenter: s.CostCenter, Weight: s.Value}
		}
		parts, err = SplitByWeights(amount, currency, ws)
	case FixedAmount:
		fs := make([]FixedShare, len(r.Shares))
		for i, s := range r.Shares {
			fs[i] = FixedShare{CostCenter: s.CostCenter, Amount: s.Value}
		}
		parts, err = SplitFixed(amount, currency, fs, r.Remainder)
	case Proportional:
		ws := make([]Weight, len(r.Shares))
		for i, s := range r.Shares {
			ws[i] = Weight{CostCenter: s.CostCenter, Weight: direct[s.CostCenter]}
		}
		parts, err = SplitProportional(amount, currency, ws)
	case Even:
		ccs := make([]string, len(r.Shares))
		for i, s := range r.Shares {
			ccs[i] = s.CostCenter
		}
		parts, err = SplitEven(amount, currency, ccs)
	default:
		err = fmt.Errorf("%w: unknown split kind %d", ErrSplit, int(r.Kind))
	}
	if err != nil {
		return nil, fmt.Errorf("rule %s v%d: %w", r.ID, r.Version, err)
	}
	return parts, nil
}
