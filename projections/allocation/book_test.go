package allocation

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

const (
	direct = tallyv1.SplitKind_SPLIT_KIND_DIRECT
	pct    = tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE
	even   = tallyv1.SplitKind_SPLIT_KIND_EVEN
	prop   = tallyv1.SplitKind_SPLIT_KIND_PROPORTIONAL
)

func selected(b *Book, day int, l Line) string {
	r := b.Select(date(day), l)
	if r == nil {
		return ""
	}
	return r.ID + "@" + string(rune('0'+r.Version))
}

func TestBookMidMonthChange(t *testing.T) {
	// v1 from March 1 sends EC2 to "web"; v2 from March 15 (a new version of the same rule)
	// sends it to "data". Days 1-14 use v1, 15 onward v2.
	b := NewBook()
	v1 := ruleEvent("ec2", 1, 10, 1, direct, "web", "")
	v1.Match.ServiceName = "Amazon EC2"
	v2 := ruleEvent("ec2", 2, 10, 15, direct, "data", "")
	v2.Match.ServiceName = "Amazon EC2"
	b.Set(mustRule(t, v1))
	b.Set(mustRule(t, v2))
	ec2 := Line{ServiceName: "Amazon EC2"}
	require.Equal(t, "", selected(b, 0, ec2), "Feb 28: before any version")
	require.Equal(t, "ec2@1", selected(b, 1, ec2))
	require.Equal(t, "ec2@1", selected(b, 14, ec2))
	require.Equal(t, "ec2@2", selected(b, 15, ec2))
	require.Equal(t, "ec2@2", selected(b, 31, ec2))

	// A version effective mid-day (March 20 12:00) counts from the next day: day 20 starts
	// at 00:00, before it.
	v3 := ruleEvent("ec2", 3, 10, 20, direct, "ml", "")
	v3.Match.ServiceName = "Amazon EC2"
	v3.EffectiveFrom = timestamppb.New(date(20).Add(12 * 3600e9))
	b.Set(mustRule(t, v3))
	require.Equal(t, "ec2@2", selected(b, 20, ec2))
	require.Equal(t, "ec2@3", selected(b, 21, ec2))

	// A bounded version: v4 for March 25-26 only, then v3 again (the highest in force).
	v4 := ruleEvent("ec2", 4, 10, 25, direct, "tmp", "")
	v4.EffectiveTo = timestamppb.New(date(27))
	b.Set(mustRule(t, v4))
	require.Equal(t, "ec2@4", selected(b, 26, ec2))
	require.Equal(t, "ec2@3", selected(b, 27, ec2))
}

func TestBookHighestVersionSupersedes(t *testing.T) {
	// v2 narrows the match to one account; v1 is superseded, not a fallback for other accounts.
	b := NewBook()
	b.Set(mustRule(t, ruleEvent("r", 1, 1, 1, direct, "web", "")))
	v2 := ruleEvent("r", 2, 1, 1, direct, "web", "")
	v2.Match.BillingAccountId = "111"
	b.Set(mustRule(t, v2))
	require.Equal(t, "r@2", selected(b, 5, Line{BillingAccountID: "111"}))
	require.Equal(t, "", selected(b, 5, Line{BillingAccountID: "222"}))
}

func TestBookPriority(t *testing.T) {
	// "tagged" (priority 1) beats "catchall" (priority 9) where both match; "b" and "a" tie at
	// priority 5 and the lower rule id, "a", wins.
	b := NewBook()
	tagged := ruleEvent("tagged", 1, 1, 1, direct, "web", "")
	tagged.Match.Tags = []*tallyv1.KeyValue{{Key: "team", Value: "web"}}
	b.Set(mustRule(t, ruleEvent("catchall", 1, 9, 1, direct, "shared", "")))
	b.Set(mustRule(t, tagged))
	web := Line{Tags: map[string]string{"team": "web"}}
	require.Equal(t, "tagged@1", selected(b, 3, web))
	require.Equal(t, "catchall@1", selected(b, 3, Line{}))

	b.Set(mustRule(t, ruleEvent("b", 1, 5, 1, direct, "x", "")))
	b.Set(mustRule(t, ruleEvent("a", 1, 5, 1, direct, "y", "")))
	require.Equal(t, "a@1", selected(b, 3, Line{}))
	ids := []string{}
	for _, r := range b.InForce(date(3)) {
		ids = append(ids, r.ID)
	}
	require.Equal(t, []string{"tagged", "a", "b", "catchall"}, ids)
}

func TestBookRetire(t *testing.T) {
	b := NewBook()
	b.Set(mustRule(t, ruleEvent("r", 1, 1, 1, direct, "web", "")))
	b.Set(mustRule(t, ruleEvent("fallback", 1, 9, 1, direct, "shared", "")))
	require.False(t, b.Retire("unknown", date(1)))
	require.True(t, b.Retire("r", date(10)))
	require.Equal(t, "r@1", selected(b, 9, Line{}))
	require.Equal(t, "fallback@1", selected(b, 10, Line{}), "retired from March 10: the next rule takes over")

	// A version set after the retirement brings the rule back from its own effective date.
	b.Set(mustRule(t, ruleEvent("r", 2, 1, 20, direct, "web", "")))
	require.Equal(t, "fallback@1", selected(b, 19, Line{}))
	require.Equal(t, "r@2", selected(b, 20, Line{}))

	// A clone does not share later changes.
	c := b.Clone()
	c.Retire("r", date(25))
	require.Equal(t, "r@2", selected(b, 26, Line{}))
	require.Equal(t, "fallback@1", selected(c, 26, Line{}))
}

func TestBookSetReplacesSameVersion(t *testing.T) {
	b := NewBook()
	b.Set(mustRule(t, ruleEvent("r", 1, 1, 1, direct, "web", "")))
	b.Set(mustRule(t, ruleEvent("r", 1, 1, 1, direct, "data", "")))
	require.Equal(t, "data", b.Select(date(2), Line{}).Shares[0].CostCenter)
	require.Len(t, b.InForce(date(2)), 1)
}
