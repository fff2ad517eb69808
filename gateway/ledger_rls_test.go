package gateway_test

import (
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// TestLedgerQueriesRunBehindTheWall: LedgerService reads through PostgreSQL's row-level
// security, not around it. With the ledger's policies made to refuse every row, GetCost and
// GetTotals answer nothing although the rows are there; with the reader's SELECT revoked
// they fail; once the runner puts the wall back (Setup), they answer again.
func TestLedgerQueriesRunBehindTheWall(t *testing.T) {
	e := newLedgerEnv(t, true)
	month := time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
	seq := e.appendLines(t, "acme", []costLine{
		{provider: "AWS", account: "1", service: "Amazon EC2", month: month, day: 3, billed: "10", tags: map[string]string{"team": "web"}},
	})
	byService := func(tagged bool) *tallyv1.GetCostRequest {
		req := &tallyv1.GetCostRequest{TenantId: "acme", From: ts("2024-09-01T00:00:00Z"), To: ts("2024-10-01T00:00:00Z"),
			GroupBy: []string{"service"}, MinSeq: seq}
		if tagged { // answered from the lines instead of the daily rollup
			req.Tags = []*tallyv1.TagFilter{{Key: "team", Values: []string{"web"}}}
		}
		return req
	}
	totals := &tallyv1.GetTotalsRequest{TenantId: "acme", From: ts("2024-09-01T00:00:00Z"), To: ts("2024-10-01T00:00:00Z")}
	answers := func() (rows int, err error) {
		for _, tagged := range []bool{false, true} {
			resp, err := e.ledger.GetCost(ctxT(t), connect.NewRequest(byService(tagged)))
			if err != nil {
				return 0, err
			}
			rows += len(resp.Msg.GetRows())
		}
		resp, err := e.ledger.GetTotals(ctxT(t), connect.NewRequest(totals))
		if err != nil {
			return 0, err
		}
		return rows + len(resp.Msg.GetTotals()), nil
	}
	rows, err := answers()
	require.NoError(t, err)
	require.Equal(t, 3, rows)

	ctx := t.Context()
	_, err = e.pool.Exec(ctx, `
		DROP POLICY tenant_isolation ON ledger.lines; CREATE POLICY tenant_isolation ON ledger.lines USING (false);
		DROP POLICY tenant_isolation ON ledger.daily; CREATE POLICY tenant_isolation ON ledger.daily USING (false)`)
	require.NoError(t, err)
	rows, err = answers()
	require.NoError(t, err)
	require.Zero(t, rows, "the policies decide what a ledger query sees")

	_, err = e.pool.Exec(ctx, `REVOKE SELECT ON ledger.lines, ledger.daily FROM tally_reader;
		DROP POLICY tenant_isolation ON ledger.lines; DROP POLICY tenant_isolation ON ledger.daily`)
	require.NoError(t, err)
	_, err = answers()
	require.Equal(t, connect.CodeInternal, connect.CodeOf(err), "without the grant the reader is refused: %v", err)

	require.NoError(t, e.runner.Setup(ctx))
	rows, err = answers()
	require.NoError(t, err)
	require.Equal(t, 3, rows)
}
