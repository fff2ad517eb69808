package allocation

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

var march1 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func date(day int) time.Time { return march1.AddDate(0, 0, day-1) }

// ruleEvent is a valid rule event: rule id, version, priority, from day (of March 2026), split,
// and cost center=value pairs; mutate the result to test one field.
func ruleEvent(id string, version uint32, priority int32, fromDay int, kind tallyv1.SplitKind, shares ...string) *tallyv1.AllocationRuleSet {
	ev := &tallyv1.AllocationRuleSet{
		RuleId: id, Version: version, Priority: priority,
		EffectiveFrom: timestamppb.New(date(fromDay)),
		Split:         kind,
		Match:         &tallyv1.AllocationMatch{},
	}
	for i := 0; i+1 < len(shares); i += 2 {
		ev.Shares = append(ev.Shares, &tallyv1.CostCenterShare{CostCenter: shares[i], Value: shares[i+1]})
	}
	return ev
}

func mustRule(t *testing.T, ev *tallyv1.AllocationRuleSet) *Rule {
	t.Helper()
	r, err := NewRule(ev)
	require.NoError(t, err)
	return r
}

func TestNewRuleRefuses(t *testing.T) {
	pct := tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE
	fixed := tallyv1.SplitKind_SPLIT_KIND_FIXED_AMOUNT
	tests := []struct {
		name  string
		ev    *tallyv1.AllocationRuleSet
		field string
	}{
		{"nil", nil, "rule"},
		{"no rule id", ruleEvent("", 1, 1, 1, pct, "a", "100"), "rule_id"},
		{"version 0", ruleEvent("r", 0, 1, 1, pct, "a", "100"), "version"},
		{"no effective_from", func() *tallyv1.AllocationRuleSet {
			ev := ruleEvent("r", 1, 1, 1, pct, "a", "100")
			ev.EffectiveFrom = nil
			return ev
		}(), "effective_from"},
		{"effective_to not after from", func() *tallyv1.AllocationRuleSet {
			ev := ruleEvent("r", 1, 1, 5, pct, "a", "100")
			ev.EffectiveTo = timestamppb.New(date(5))
			return ev
		}(), "effective_to"},
		{"unknown split", ruleEvent("r", 1, 1, 1, tallyv1.SplitKind_SPLIT_KIND_UNSPECIFIED, "a", ""), "split"},
		{"no shares", ruleEvent("r", 1, 1, 1, tallyv1.SplitKind_SPLIT_KIND_EVEN), "shares"},
		{"empty cost center", ruleEvent("r", 1, 1, 1, tallyv1.SplitKind_SPLIT_KIND_EVEN, "", ""), "shares[0].cost_center"},
		{"repeated cost center", ruleEvent("r", 1, 1, 1, tallyv1.SplitKind_SPLIT_KIND_EVEN, "a", "", "a", ""), "shares[1].cost_center"},
		{"direct with two", ruleEvent("r", 1, 1, 1, tallyv1.SplitKind_SPLIT_KIND_DIRECT, "a", "", "b", ""), "shares"},
		{"percentages total 99.99", ruleEvent("r", 1, 1, 1, pct, "a", "60", "b", "39.99"), "shares"},
		{"percentages total 100.01", ruleEvent("r", 1, 1, 1, pct, "a", "60", "b", "40.01"), "shares"},
		{"percentage not a decimal", ruleEvent("r", 1, 1, 1, pct, "a", "sixty", "b", "40"), "shares[0].value"},
		{"negative percentage", ruleEvent("r", 1, 1, 1, pct, "a", "110", "b", "-10"), "shares[0].value"},
		{"zero percentage", ruleEvent("r", 1, 1, 1, pct, "a", "100", "b", "0"), "shares[1].value"},
		{"negative fixed amount", func() *tallyv1.AllocationRuleSet {
			ev := ruleEvent("r", 1, 1, 1, fixed, "a", "-1.00")
			ev.RemainderCostCenter = "p"
			return ev
		}(), "shares[0].value"},
		{"fixed without remainder", ruleEvent("r", 1, 1, 1, fixed, "a", "30.00"), "remainder_cost_center"},
		{"bad glob", func() *tallyv1.AllocationRuleSet {
			ev := ruleEvent("r", 1, 1, 1, pct, "a", "100")
			ev.Match.ResourceIdPattern = `i-\`
			return ev
		}(), "match.resource_id_pattern"},
		{"tag without key", func() *tallyv1.AllocationRuleSet {
			ev := ruleEvent("r", 1, 1, 1, pct, "a", "100")
			ev.Match.Tags = []*tallyv1.KeyValue{{Key: "", Value: "x"}}
			return ev
		}(), "match.tags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRule(tt.ev)
			require.ErrorIs(t, err, ErrInvalidRule)
			require.Contains(t, err.Error(), tt.field+":")
		})
	}
}

func TestNewRuleAccepts(t *testing.T) {
	r := mustRule(t, ruleEvent("r", 2, 5, 1, tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE, "web", "33.33", "data", "66.67"))
	require.Equal(t, Percentage, r.Kind)
	require.Equal(t, []string{"data", "web"}, []string{r.Shares[0].CostCenter, r.Shares[1].CostCenter}, "shares sorted")
	ev := ruleEvent("f", 1, 1, 1, tallyv1.SplitKind_SPLIT_KIND_FIXED_AMOUNT, "a", "0")
	ev.RemainderCostCenter = "p"
	mustRule(t, ev) // a zero fixed amount is allowed
}

func TestMatch(t *testing.T) {
	line := Line{
		Provider: "AWS", BillingAccountID: "111", ServiceName: "Amazon EC2", RegionID: "us-east-1",
		ResourceID: "arn:aws:ec2:us-east-1:111:instance/i-0abc",
		Tags:       map[string]string{"team": "web", "env": "prod"},
	}
	tests := []struct {
		name string
		m    Match
		want bool
	}{
		{"empty matches all", Match{}, true},
		{"provider", Match{Provider: "AWS"}, true},
		{"provider is case-sensitive", Match{Provider: "aws"}, false},
		{"all fields", Match{Provider: "AWS", BillingAccountID: "111", ServiceName: "Amazon EC2", RegionID: "us-east-1"}, true},
		{"one field off", Match{Provider: "AWS", RegionID: "eu-west-1"}, false},
		{"glob star crosses slashes", Match{ResourceIDPattern: "arn:aws:ec2:*"}, true},
		{"glob star in the middle", Match{ResourceIDPattern: "arn:*:instance/i-*"}, true},
		{"glob question mark", Match{ResourceIDPattern: "arn:aws:ec2:us-east-1:111:instance/i-0ab?"}, true},
		{"glob must match whole id", Match{ResourceIDPattern: "arn:aws:ec2"}, false},
		{"glob other service", Match{ResourceIDPattern: "arn:aws:s3:*"}, false},
		{"tag", Match{Tags: map[string]string{"team": "web"}}, true},
		{"two tags", Match{Tags: map[string]string{"team": "web", "env": "prod"}}, true},
		{"tag other value", Match{Tags: map[string]string{"team": "data"}}, false},
		{"tag missing", Match{Tags: map[string]string{"owner": "x"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.m.Matches(line))
		})
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "anything/at:all", true},
		{"?", "", false},
		{"?", "é", true},
		{"a*b*c", "a/x/b/y/c", true},
		{"a*b*c", "a/x/b/y/d", false},
		{"*vm?", "/subscriptions/1/virtualMachines/vm1", true},
		{`i-\*`, "i-*", true},
		{`i-\*`, "i-1", false},
		{`a\?`, "ab", false},
		{"[abc]", "[abc]", true}, // no character classes: "[" is literal
		{"**a", "xxa", true},
		{"a*", "b", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, globMatch(tt.pattern, tt.s), "%q ~ %q", tt.pattern, tt.s)
	}
	require.Error(t, validGlob(`abc\`))
	require.NoError(t, validGlob(`abc\\`))
}
