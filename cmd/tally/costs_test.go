package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/projections/ledger"
)

// projectedGatewayURL serves a gateway beside a runner folding the ledger,
// and returns a function that waits until the ledger has caught up with
// the log, and an environment holding an admin token (TALLY_TOKEN).
func projectedGatewayURL(t *testing.T) (string, map[string]string, func()) {
	t.Helper()
	s := serve(t, ledger.New())
	env := map[string]string{"TALLY_TOKEN": s.token(t, tokens.Spec{Name: "cli-test", Role: tokens.RoleAdmin})}
	return s.url, env, func() { s.caughtUp(t) }
}

func TestCostsCommand(t *testing.T) {
	url, env, caughtUp := projectedGatewayURL(t)
	_, _, _, err := execute(t, env, "ingest", samplePath, "--tenant", "acme", "--server", url)
	require.NoError(t, err)
	caughtUp()

	// Table, grouped by provider, with a total line.
	_, out, _, err := execute(t, with(env, "TALLY_SERVER", url), "costs", "--tenant", "acme",
		"--from", "2024-09-01", "--to", "2024-11-01", "--group-by", "provider")
	require.NoError(t, err)
	require.Regexp(t, `PROVIDER\s+CURRENCY\s+BILLED\s+PRELIMINARY\s+FINAL\s+EFFECTIVE\s+LINES`, out)
	require.Regexp(t, `AWS\s+USD\s+18.0066386184\s+18.0066386184\s+0\s`, out)
	require.Regexp(t, `Microsoft\s+USD\s+1.97651418586\s`, out)
	require.Regexp(t, `Oracle\s+USD\s+0.53707392473\s`, out)
	require.Regexp(t, `TOTAL\s+USD\s+20.52022672899\s`, out)

	// JSON, by month and service, filtered to one provider.
	_, out, _, err = execute(t, env, "costs", "--tenant", "acme", "--server", url, "--from", "2024-09-01", "--to", "2024-11-01",
		"--group-by", "service", "--granularity", "month", "--filter", "provider=Oracle", "--output", "json")
	require.NoError(t, err)
	var resp struct {
		Groups []string
		Rows   []struct {
			PeriodStart string
			Groups      []string
			Currency    string
			Total       struct{ Billed string }
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &resp), "%s", out)
	require.Equal(t, []string{"service_name"}, resp.Groups)
	billed := map[string]string{}
	for _, r := range resp.Rows {
		require.Equal(t, "2024-09-01T00:00:00Z", r.PeriodStart)
		billed[r.Groups[0]] = r.Total.Billed
	}
	require.Equal(t, map[string]string{"BLOCK_STORAGE": "0.00107392473", "COMPUTE": "0.536", "NETWORK": "0"}, billed)

	// Another tenant sees nothing.
	_, out, _, err = execute(t, env, "costs", "--tenant", "globex", "--server", url, "--from", "2024-09-01", "--to", "2024-11-01")
	require.NoError(t, err)
	require.Contains(t, out, "no cost in this range")

	// Refusals name the field (server side) or the flag (client side).
	_, _, _, err = execute(t, env, "costs", "--tenant", "acme", "--server", url, "--from", "2024-09-01", "--to", "2024-11-01", "--group-by", "colour")
	require.ErrorContains(t, err, `refused: group_by[0] "colour" is not a dimension`)
	_, _, _, err = execute(t, env, "costs", "--tenant", "acme", "--server", url, "--from", "2024-11-01", "--to", "2024-09-01")
	require.ErrorContains(t, err, "refused: to (2024-09-01T00:00:00Z) must be after from")
	_, _, _, err = execute(t, env, "costs", "--tenant", "acme", "--server", url, "--from", "Sept", "--to", "2024-11-01")
	require.ErrorContains(t, err, `--from "Sept"`)
	_, _, _, err = execute(t, env, "costs", "--server", url, "--from", "2024-09-01", "--to", "2024-11-01")
	require.ErrorContains(t, err, "--tenant is required")
	_, _, _, err = execute(t, env, "costs", "--tenant", "acme", "--server", url, "--from", "2024-09-01", "--to", "2024-11-01", "--granularity", "week")
	require.ErrorContains(t, err, `--granularity "week"`)
}
