package gateway_test

import (
	"archive/zip"
	"bytes"
	"io"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/exports"
	"github.com/tally-ledger/tally/projections/allocation"
	"github.com/tally-ledger/tally/projections/changelog"
	"github.com/tally-ledger/tally/projections/closepkg"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/projections/savings"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// TestCompliancePackReadModels: a gateway configured as tally serve configures it (no
// PackSections) puts the finance read models in the pack: the period's savings and their
// evidence, the allocation and the change log, each with the manifest's digest.
func TestCompliancePackReadModels(t *testing.T) {
	e := newLedgerEnv(t, true)
	ctx := ctxT(t)
	e.uploadSample(t, "acme", true)
	c := clientsFor(t, e.env, e.token)
	_, err := c.ingest.SetAllocationRule(ctx, connect.NewRequest(&tallyv1.SetAllocationRuleRequest{TenantId: "acme",
		Rule: &tallyv1.AllocationRuleSet{RuleId: "split-all", Version: 1, EffectiveFrom: ts("2024-09-01T00:00:00Z"),
			Split:  tallyv1.SplitKind_SPLIT_KIND_PERCENTAGE,
			Shares: []*tallyv1.CostCenterShare{{CostCenter: "web", Value: "60"}, {CostCenter: "data", Value: "40"}}}}))
	require.NoError(t, err)
	head, err := e.store.LastSeq(ctx)
	require.NoError(t, err)
	for _, p := range []string{ledger.Name, closepkg.Name, allocation.Name, savings.Name, changelog.Name} {
		require.NoError(t, e.runner.WaitFor(ctx, p, head), p)
	}

	s, err := c.export.ExportCompliancePack(ctx, connect.NewRequest(&tallyv1.ExportCompliancePackRequest{TenantId: "acme", Period: "2024-09"}))
	require.NoError(t, err)
	data, _, _, err := collect(t, s)
	require.NoError(t, err)
	m, err := exports.VerifyPack(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err, "every manifest digest matches its file")
	files := map[string]string{}
	var names []string
	for _, f := range m.Files {
		names = append(names, f.Name)
		files[f.Name] = readZipFile(t, data, f.Name)
	}
	require.Equal(t, []string{"chain-head.json", "checkpoints.json", "close-package.json", "close-package.csv", "focus.csv",
		"rules.json", "savings.csv", "savings-evidence.csv", "allocation.csv", "changelog.csv"}, names)
	require.Contains(t, files["changelog.csv"], "split-all", "the rule's change is in the change log")
	require.Contains(t, files["allocation.csv"], "web", "the period's cost is allocated to the rule's cost centers")
	require.Contains(t, files["allocation.csv"], "data")
	require.Contains(t, files["savings.csv"], "action_id", "no action this period: the header only")
}

// readZipFile returns one file of a zip archive.
func readZipFile(t *testing.T, zipData []byte, name string) string {
	t.Helper()
	r, err := zip.NewReader(bytes.NewReader(zipData), int64(len(zipData)))
	require.NoError(t, err)
	for _, f := range r.File {
		if f.Name == name {
			rc, err := f.Open()
			require.NoError(t, err)
			defer rc.Close()
			b, err := io.ReadAll(rc)
			require.NoError(t, err)
			return string(b)
		}
	}
	t.Fatalf("no %s in the pack", name)
	return ""
}
