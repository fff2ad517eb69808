package gateway_test

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/projections/allocation"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// sampleRules are pushed through IngestService: tag environment=dev to
// "dev", AWS EC2 to "compute", Azure storage 60/40 to "platform"/"data"
// (the rules of projections/allocation's TestSampleCoverage, whose comment
// derives the figures below from the CSV independently).
func pushSampleRules(t *testing.T, e *ledgerEnv, tenant string) {
	t.Helper()
	from := ts("2024-09-01T00:00:00Z")
	for _, r := range []*tallyv1.AllocationRuleSet{
		{RuleId: "dev", Version: 1, Priority: 10, EffectiveFrom: from, Split: tallyv1.SplitKind_SPLIT_KIND_DIRECT,
			Match:  &tallyv1.AllocationMatch{Tags: []*tallyv1.KeyValue{{Key: "environment", Value: "dev"}}},
			Shares: []*tallyv1.CostCenterShare{{CostCenter: "dev"}}},
		{RuleId: "ec2", Version: 1, Priority: 20, EffectiveFrom: from, Split: tallyv1.SplitKind_SPLIT_KIND_DIRECT,
			Match:  &tallyv1.AllocationMatch{Provider: "AWS", ServiceName: "Amazon Elastic Compute Cloud"},
			Shares: []*tallyv1.CostCenterShare{{CostCenter: "compute"}}},
		{RuleId: "azure-storage", Version: 1, Priority: 30, EffectiveFrom: from, Split: tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE,
			Match:  &tallyv1.AllocationMatch{Provider: "Microsoft", ServiceName: "Storage Accounts"},
			Shares: []*tallyv1.CostCenterShare{{CostCenter: "platform", Value: "60"}, {CostCenter: "data", Value: "40"}}},
	} {
		_, err := e.connect.SetAllocationRule(ctxT(t), connect.NewRequest(&tallyv1.SetAllocationRuleRequest{TenantId: tenant, Rule: r}))
		require.NoError(t, err)
	}
}

// TestAllocationServiceOnSample: rules pushed through IngestService, the
// real FOCUS sample uploaded, and every AllocationService query read back
// with min_seq (read your writes), through POST and HTTP GET.
func TestAllocationServiceOnSample(t *testing.T) {
	e := newLedgerEnv(t, true)
	pushSampleRules(t, e, "acme")
	seq := e.uploadSample(t, "acme", false)
	c := tallyv1connect.NewAllocationServiceClient(e.h2c, e.url)
	ctx := ctxT(t)

	cov, err := c.GetCoverage(ctx, connect.NewRequest(&tallyv1.GetCoverageRequest{TenantId: "acme", Period: "2024-09", MinSeq: seq}))
	require.NoError(t, err)
	require.Len(t, cov.Msg.GetCurrencies(), 1)
	got := cov.Msg.GetCurrencies()[0]
	require.Equal(t, "USD", got.GetCurrency())
	require.Equal(t, "13.0008829155", got.GetAllocated())   // 16 - 3 + 0.0008829155
	require.Equal(t, "1.97563127036", got.GetUnallocated()) // the rest of Azure
	require.Equal(t, "14.97651418586", got.GetTotal())
	require.Equal(t, "86.8085", got.GetPercent())
	require.Empty(t, cov.Msg.GetFailedDays())

	alloc, err := c.GetAllocation(ctx, connect.NewRequest(&tallyv1.GetAllocationRequest{TenantId: "acme", Period: "2024-09"}))
	require.NoError(t, err)
	byCC := map[string]string{}
	for _, r := range alloc.Msg.GetRows() {
		require.Nil(t, r.GetDay())
		byCC[r.GetCostCenter()] = r.GetAmount()
	}
	require.Equal(t, "16", byCC["dev"])
	require.Equal(t, "-3", byCC["compute"])
	require.Len(t, byCC, 4)

	// By day over a range of days: September 24 holds the EC2 credit.
	daily, err := c.GetAllocation(ctx, connect.NewRequest(&tallyv1.GetAllocationRequest{TenantId: "acme",
		From: ts("2024-09-24T00:00:00Z"), To: ts("2024-09-25T00:00:00Z"), GroupBy: tallyv1.AllocationGrouping_ALLOCATION_GROUPING_COST_CENTER_DAY}))
	require.NoError(t, err)
	day24 := map[string]string{}
	for _, r := range daily.Msg.GetRows() {
		require.Equal(t, time.Date(2024, 9, 24, 0, 0, 0, 0, time.UTC), r.GetDay().AsTime())
		day24[r.GetCostCenter()] = r.GetAmount()
	}
	require.Equal(t, "-3", day24["compute"])

	un, err := c.GetUnallocated(ctx, connect.NewRequest(&tallyv1.GetUnallocatedRequest{TenantId: "acme", Period: "2024-09", Top: 2}))
	require.NoError(t, err)
	require.Len(t, un.Msg.GetCurrencies(), 1)
	u := un.Msg.GetCurrencies()[0]
	require.Equal(t, "1.97563127036", u.GetTotal())
	require.Len(t, u.GetTopServices(), 2)
	require.Equal(t, "Azure Kubernetes Service", u.GetTopServices()[0].GetServiceName())
	require.Equal(t, "1.58088", u.GetTopServices()[0].GetAmount())
	require.Equal(t, "Azure DB for MySQL", u.GetTopServices()[1].GetServiceName())
	require.Equal(t, uint32(24), u.GetOtherServices())

	// A dry run of a catch-all Azure rule moves the Azure cost still
	// unallocated, and appends nothing.
	before := len(e.events(t, "acme"))
	dry, err := c.DryRunRule(ctx, connect.NewRequest(&tallyv1.DryRunRuleRequest{TenantId: "acme", Period: "2024-09",
		Change: &tallyv1.DryRunRuleRequest_Rule{Rule: &tallyv1.AllocationRuleSet{RuleId: "azure", Version: 1, Priority: 40,
			EffectiveFrom: ts("2024-09-01T00:00:00Z"), Split: tallyv1.SplitKind_SPLIT_KIND_DIRECT,
			Match:  &tallyv1.AllocationMatch{Provider: "Microsoft"},
			Shares: []*tallyv1.CostCenterShare{{CostCenter: "azure"}}}}}))
	require.NoError(t, err)
	moves := map[string][3]string{}
	for _, m := range dry.Msg.GetMovements() {
		moves[m.GetCostCenter()] = [3]string{m.GetBefore(), m.GetAfter(), m.GetDelta()}
	}
	require.Equal(t, [3]string{"1.97563127036", "0", "-1.97563127036"}, moves[""])
	require.Equal(t, [3]string{"0", "1.97563127036", "1.97563127036"}, moves["azure"])
	require.Equal(t, [3]string{"16", "16", "0"}, moves["dev"])
	require.Len(t, e.events(t, "acme"), before, "a dry run appends nothing")

	// Connect's GET encoding: the query is free of side effects.
	msg := `{"tenantId":"acme","period":"2024-09","minSeq":"` + strconv.FormatUint(seq, 10) + `"}`
	res, err := e.http1.Get(e.url + "/tally.v1.AllocationService/GetCoverage?encoding=json&message=" + url.QueryEscape(msg))
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", body)
	require.Contains(t, string(body), `"percent":"86.8085"`)
	getClient := tallyv1connect.NewAllocationServiceClient(e.http1, e.url, connect.WithHTTPGet())
	cov2, err := getClient.GetCoverage(ctx, connect.NewRequest(&tallyv1.GetCoverageRequest{TenantId: "acme", Period: "2024-09"}))
	require.NoError(t, err)
	require.Equal(t, "86.8085", cov2.Msg.GetCurrencies()[0].GetPercent())

	// Another tenant sees nothing of acme's.
	none, err := c.GetCoverage(ctx, connect.NewRequest(&tallyv1.GetCoverageRequest{TenantId: "globex", Period: "2024-09"}))
	require.NoError(t, err)
	require.Empty(t, none.Msg.GetCurrencies())
}

// TestAllocationMidMonthRule: a new rule version dated September 15, pushed
// after the lines, changes the allocation of September 15 onward only.
func TestAllocationMidMonthRule(t *testing.T) {
	e := newLedgerEnv(t, true)
	month := time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
	var lines []costLine
	for day := 1; day <= 30; day++ {
		lines = append(lines, costLine{provider: "AWS", account: "111", service: "Amazon EC2", month: month, day: day, billed: "10.00"})
	}
	set := func(version uint32, from, cc string) {
		_, err := e.connect.SetAllocationRule(ctxT(t), connect.NewRequest(&tallyv1.SetAllocationRuleRequest{TenantId: "acme",
			Rule: &tallyv1.AllocationRuleSet{RuleId: "ec2", Version: version, Priority: 1, EffectiveFrom: ts(from),
				Split: tallyv1.SplitKind_SPLIT_KIND_DIRECT, Match: &tallyv1.AllocationMatch{ServiceName: "Amazon EC2"},
				Shares: []*tallyv1.CostCenterShare{{CostCenter: cc}}}}))
		require.NoError(t, err)
	}
	set(1, "2024-09-01T00:00:00Z", "web")
	e.appendLines(t, "acme", lines)
	set(2, "2024-09-15T00:00:00Z", "data")
	head, err := e.store.LastSeq(ctxT(t))
	require.NoError(t, err)

	c := tallyv1connect.NewAllocationServiceClient(e.h2c, e.url)
	resp, err := c.GetAllocation(ctxT(t), connect.NewRequest(&tallyv1.GetAllocationRequest{TenantId: "acme", Period: "2024-09",
		GroupBy: tallyv1.AllocationGrouping_ALLOCATION_GROUPING_COST_CENTER_DAY, MinSeq: head}))
	require.NoError(t, err)
	require.Len(t, resp.Msg.GetRows(), 30)
	for _, r := range resp.Msg.GetRows() {
		want := "web"
		if r.GetDay().AsTime().Day() >= 15 {
			want = "data"
		}
		require.Equal(t, want, r.GetCostCenter(), r.GetDay().AsTime().Format(time.DateOnly))
		require.Equal(t, "10", r.GetAmount())
	}
}

// TestAllocationBadInput: every malformed request is refused with
// InvalidArgument naming the field, recorded once, and appends nothing.
func TestAllocationBadInput(t *testing.T) {
	e := newLedgerEnv(t, true)
	c := tallyv1connect.NewAllocationServiceClient(e.h2c, e.url)
	ctx := ctxT(t)
	rule := func(mut func(*tallyv1.AllocationRuleSet)) *tallyv1.DryRunRuleRequest {
		r := &tallyv1.AllocationRuleSet{RuleId: "r", Version: 1, EffectiveFrom: ts("2024-09-01T00:00:00Z"),
			Split:  tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE,
			Shares: []*tallyv1.CostCenterShare{{CostCenter: "a", Value: "60"}, {CostCenter: "b", Value: "40"}}}
		mut(r)
		return &tallyv1.DryRunRuleRequest{TenantId: "acme", Period: "2024-09", Change: &tallyv1.DryRunRuleRequest_Rule{Rule: r}}
	}
	alloc := func(m *tallyv1.GetAllocationRequest) error {
		_, err := c.GetAllocation(ctx, connect.NewRequest(m))
		return err
	}
	dry := func(m *tallyv1.DryRunRuleRequest) error {
		_, err := c.DryRunRule(ctx, connect.NewRequest(m))
		return err
	}
	tests := []struct {
		name, field string
		call        func() error
	}{
		{"no tenant", "tenant_id", func() error { return alloc(&tallyv1.GetAllocationRequest{Period: "2024-09"}) }},
		{"no period", "period", func() error { return alloc(&tallyv1.GetAllocationRequest{TenantId: "acme"}) }},
		{"bad period", "period", func() error { return alloc(&tallyv1.GetAllocationRequest{TenantId: "acme", Period: "2024-9"}) }},
		{"period and range", "period", func() error {
			return alloc(&tallyv1.GetAllocationRequest{TenantId: "acme", Period: "2024-09", From: ts("2024-09-01T00:00:00Z")})
		}},
		{"only from", "to", func() error {
			return alloc(&tallyv1.GetAllocationRequest{TenantId: "acme", From: ts("2024-09-01T00:00:00Z")})
		}},
		{"from not a day", "from", func() error {
			return alloc(&tallyv1.GetAllocationRequest{TenantId: "acme", From: ts("2024-09-01T12:00:00Z"), To: ts("2024-09-03T00:00:00Z")})
		}},
		{"to before from", "to", func() error {
			return alloc(&tallyv1.GetAllocationRequest{TenantId: "acme", From: ts("2024-09-03T00:00:00Z"), To: ts("2024-09-01T00:00:00Z")})
		}},
		{"bad grouping", "group_by", func() error {
			return alloc(&tallyv1.GetAllocationRequest{TenantId: "acme", Period: "2024-09", GroupBy: 9})
		}},
		{"top over limit", "top", func() error {
			_, err := c.GetUnallocated(ctx, connect.NewRequest(&tallyv1.GetUnallocatedRequest{TenantId: "acme", Period: "2024-09", Top: 5000}))
			return err
		}},
		{"coverage without period", "period", func() error {
			_, err := c.GetCoverage(ctx, connect.NewRequest(&tallyv1.GetCoverageRequest{TenantId: "acme"}))
			return err
		}},
		{"dry run without change", "change", func() error {
			return dry(&tallyv1.DryRunRuleRequest{TenantId: "acme", Period: "2024-09"})
		}},
		{"dry run percentages total 90", "rule.shares", func() error {
			return dry(rule(func(r *tallyv1.AllocationRuleSet) { r.Shares[1].Value = "30" }))
		}},
		{"dry run bad share value", "rule.shares[0].value", func() error {
			return dry(rule(func(r *tallyv1.AllocationRuleSet) { r.Shares[0].Value = "sixty" }))
		}},
		{"dry run bad glob", "rule.match.resource_id_pattern", func() error {
			return dry(rule(func(r *tallyv1.AllocationRuleSet) { r.Match = &tallyv1.AllocationMatch{ResourceIdPattern: `i-\`} }))
		}},
		{"dry run retirement without end", "retired.effective_to", func() error {
			return dry(&tallyv1.DryRunRuleRequest{TenantId: "acme", Period: "2024-09",
				Change: &tallyv1.DryRunRuleRequest_Retired{Retired: &tallyv1.AllocationRuleRetired{RuleId: "r"}}})
		}},
		{"dry run bad period", "period", func() error {
			return dry(&tallyv1.DryRunRuleRequest{TenantId: "acme", Period: "September",
				Change: &tallyv1.DryRunRuleRequest_Retired{Retired: &tallyv1.AllocationRuleRetired{RuleId: "r", EffectiveTo: ts("2024-09-10T00:00:00Z")}}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.rejections(t))
			err := tt.call()
			require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
			require.Contains(t, err.Error(), tt.field)
			rej := e.rejections(t)
			require.Len(t, rej, before+1)
			require.Equal(t, tt.field, rej[len(rej)-1].GetField())
		})
	}
	require.Empty(t, e.events(t, "acme"), "nothing appended to the tenant")

	// Retiring a rule the tenant does not have: NotFound.
	err := dry(&tallyv1.DryRunRuleRequest{TenantId: "acme", Period: "2024-09",
		Change: &tallyv1.DryRunRuleRequest_Retired{Retired: &tallyv1.AllocationRuleRetired{RuleId: "nope", EffectiveTo: timestamppb.New(allocation.Day(time.Now()))}}})
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "%v", err)
	require.Contains(t, err.Error(), `"nope"`)
}
