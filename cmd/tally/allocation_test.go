package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/projections/allocation"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// allocationGateway serves a gateway beside a runner folding the allocation
// read model. It returns the URL, an environment holding an admin token, an
// IngestService client sending it, and a function that waits until the
// read model has caught up with the log.
func allocationGateway(t *testing.T) (string, map[string]string, tallyv1connect.IngestServiceClient, func()) {
	t.Helper()
	s := serve(t, allocation.New())
	token := s.token(t, tokens.Spec{Name: "cli-test", Role: tokens.RoleAdmin})
	hc, base, err := serverClient(s.url, &clientAuth{token: token})
	require.NoError(t, err)
	return s.url, map[string]string{"TALLY_TOKEN": token}, tallyv1connect.NewIngestServiceClient(hc, base), func() { s.caughtUp(t) }
}

// TestAllocationCommand: the real FOCUS sample with three rules (tag
// environment=dev, AWS EC2, Azure storage 60/40; figures derived from the
// CSV in projections/allocation's TestSampleCoverage), read with every
// allocation command, as tables and JSON.
func TestAllocationCommand(t *testing.T) {
	url, env, ingest, caughtUp := allocationGateway(t)
	from := timestamppb.New(time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC))
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
		_, err := ingest.SetAllocationRule(t.Context(), connect.NewRequest(&tallyv1.SetAllocationRuleRequest{TenantId: "acme", Rule: r}))
		require.NoError(t, err)
	}
	_, _, _, err := execute(t, env, "ingest", samplePath, "--tenant", "acme", "--server", url)
	require.NoError(t, err)
	caughtUp()
	env = with(env, "TALLY_SERVER", url)

	_, out, _, err := execute(t, env, "allocation", "--tenant", "acme", "--period", "2024-09")
	require.NoError(t, err)
	require.Regexp(t, `COST CENTER\s+CURRENCY\s+AMOUNT`, out)
	require.Regexp(t, `(?m)^compute\s+USD\s+-3\s*$`, out)
	require.Regexp(t, `(?m)^dev\s+USD\s+16\s*$`, out)
	require.Regexp(t, `(?m)^TOTAL\s+USD\s+13.0008829155\s*$`, out)

	_, out, _, err = execute(t, env, "allocation", "coverage", "--tenant", "acme", "--period", "2024-09")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^USD\s+13.0008829155\s+1.97563127036\s+14.97651418586\s+86.8085%\s*$`, out)

	_, out, _, err = execute(t, env, "allocation", "unallocated", "--tenant", "acme", "--period", "2024-09", "--top", "1")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^USD\s+Azure Kubernetes Service\s+1.58088\s*$`, out)
	require.Regexp(t, `(?m)^USD\s+\(25 other services\)\s+0.39475127036\s*$`, out) // 1.97563127036 - 1.58088
	require.Regexp(t, `(?m)^USD\s+TOTAL\s+1.97563127036\s*$`, out)

	// A dry run from a rule file: all of Azure to "azure".
	rule := filepath.Join(t.TempDir(), "rule.json")
	require.NoError(t, os.WriteFile(rule, []byte(`{"ruleId": "azure", "version": 1, "priority": 40,
		"effectiveFrom": "2024-09-01T00:00:00Z", "split": "SPLIT_KIND_DIRECT",
		"match": {"provider": "Microsoft"}, "shares": [{"costCenter": "azure"}]}`), 0o600))
	_, out, _, err = execute(t, env, "allocation", "dry-run", "--tenant", "acme", "--period", "2024-09", "--rule", rule)
	require.NoError(t, err)
	require.Regexp(t, `(?m)^\(unallocated\)\s+USD\s+1.97563127036\s+0\s+-1.97563127036\s*$`, out)
	require.Regexp(t, `(?m)^azure\s+USD\s+0\s+1.97563127036\s+\+1.97563127036\s*$`, out)

	// Retiring "dev" from September 1, as JSON: its 16 (all EC2 lines) falls to
	// the next rule that matches, "ec2", and nothing more is unallocated.
	_, out, _, err = execute(t, env, "allocation", "dry-run", "--tenant", "acme", "--period", "2024-09",
		"--retire", "dev", "--effective-to", "2024-09-01", "--output", "json")
	require.NoError(t, err)
	var resp struct {
		Movements []struct{ CostCenter, Before, After, Delta string }
	}
	require.NoError(t, json.Unmarshal([]byte(out), &resp), "%s", out)
	deltas := map[string]string{}
	for _, m := range resp.Movements {
		deltas[m.CostCenter] = m.Delta
	}
	require.Equal(t, map[string]string{"": "0", "compute": "16", "dev": "-16", "platform": "0", "data": "0"}, deltas)

	// JSON of the allocation by day.
	_, out, _, err = execute(t, env, "allocation", "--tenant", "acme", "--period", "2024-09", "--by-day", "-o", "json")
	require.NoError(t, err)
	var rows struct {
		Rows []struct{ Day, CostCenter, Amount string }
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rows), "%s", out)
	require.NotEmpty(t, rows.Rows)
	for _, r := range rows.Rows {
		require.NotEmpty(t, r.Day)
	}

	// Refusals name the flag (client side) or the field (server side).
	_, _, _, err = execute(t, env, "allocation", "coverage", "--tenant", "acme")
	require.ErrorContains(t, err, "--period is required")
	_, _, _, err = execute(t, env, "allocation", "coverage", "--period", "2024-09")
	require.ErrorContains(t, err, "--tenant is required")
	_, _, _, err = execute(t, env, "allocation", "coverage", "--tenant", "acme", "--period", "2024-9")
	require.ErrorContains(t, err, `refused: period "2024-9" is not a month written YYYY-MM`)
	_, _, _, err = execute(t, env, "allocation", "--tenant", "acme", "--period", "2024-09", "-o", "yaml")
	require.ErrorContains(t, err, `--output "yaml"`)
	_, _, _, err = execute(t, env, "allocation", "dry-run", "--tenant", "acme", "--period", "2024-09")
	require.ErrorContains(t, err, "no change")
	_, _, _, err = execute(t, env, "allocation", "dry-run", "--tenant", "acme", "--period", "2024-09", "--retire", "nope", "--effective-to", "2024-09-10")
	require.ErrorContains(t, err, `not found`)
	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"ruleId": "x", "version": 1, "effectiveFrom": "2024-09-01T00:00:00Z",
		"split": "SPLIT_KIND_PERCENTAGE", "shares": [{"costCenter": "a", "value": "60"}, {"costCenter": "b", "value": "30"}]}`), 0o600))
	_, _, _, err = execute(t, env, "allocation", "dry-run", "--tenant", "acme", "--period", "2024-09", "--rule", bad)
	require.ErrorContains(t, err, "refused: rule.shares percentages total 90")
}
