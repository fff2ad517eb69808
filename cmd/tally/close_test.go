package main

import (
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/projections/changelog"
	"github.com/tally-ledger/tally/projections/closepkg"
)

// closeGateway serves a gateway beside a runner folding the close package and the change
// log. It returns the URL, an environment with an admin token named "cli-admin"
// (TALLY_TOKEN), the database, its URL, and a function that waits until the read models
// have caught up with the log.
func closeGateway(t *testing.T) (url string, env map[string]string, pool *pgxpool.Pool, dbURL string, caughtUp func()) {
	t.Helper()
	s := serve(t, closepkg.New(), changelog.New())
	env = map[string]string{"TALLY_TOKEN": s.token(t, tokens.Spec{Name: "cli-admin", Role: tokens.RoleAdmin, Kind: tokens.KindUser}),
		"TALLY_SERVER": s.url}
	return s.url, env, s.pool, s.dbURL, func() { s.caughtUp(t) }
}

// The FOCUS sample's September 2024 billing accounts.
const (
	cliAWS    = "1234567890123"
	cliMS     = "/providers/Microsoft.Billing/billingAccounts/8611537"
	cliOracle = "20209880"
)

func invoiceArgs(provider, account, id, amount string) []string {
	return []string{"close", "invoice", "--tenant", "acme", "--period", "2024-09", "--provider", provider,
		"--account", account, "--invoice-id", id, "--amount", amount}
}

// invoicedSample ingests the sample and records two of its invoices (AWS matching, Microsoft
// 2% off; Oracle's is missing), through the CLI.
func invoicedSample(t *testing.T, env map[string]string) {
	t.Helper()
	_, _, _, err := execute(t, env, "ingest", samplePath, "--tenant", "acme", "--final")
	require.NoError(t, err)
	for _, inv := range [][]string{
		invoiceArgs("AWS", cliAWS, "INV-AWS-0924", "18.01"),
		invoiceArgs("Microsoft", cliMS, "INV-MS-0924", "2.016"),
	} {
		_, out, _, err := execute(t, env, inv...)
		require.NoError(t, err)
		require.Contains(t, out, "recorded: event ")
	}
}

func TestCloseCommands(t *testing.T) {
	_, env, _, _, _ := closeGateway(t)
	invoicedSample(t, env)

	// The table: blocked, with the reconciliation (AWS matches, Microsoft is 1.96% off,
	// Oracle has no invoice).
	_, out, _, err := execute(t, env, "close", "package", "--tenant", "acme", "--period", "2024-09")
	require.NoError(t, err)
	require.Contains(t, out, "status:                  blocked")
	require.Regexp(t, `AWS\s+1234567890123\s+USD\s+18.0066386184\s+18.01\s+-0.0033613816\s+-0.02\s+match`, out)
	require.Regexp(t, `Microsoft\s+\S+\s+USD\s+1.97651418586\s+2.016\s+-0.03948581414\s+-1.96\s+mismatch`, out)
	require.Regexp(t, `Oracle\s+20209880\s+USD\s+0.29707392473\s+-\s+-\s+-\s+missing_invoice`, out)

	// JSON: the canonical bytes plus sha256; removing it gives the hashed bytes.
	_, out, _, err = execute(t, env, "close", "package", "--tenant", "acme", "--period", "2024-09", "--output", "json")
	require.NoError(t, err)
	var doc map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	var sum string
	require.NoError(t, json.Unmarshal(doc["sha256"], &sum))
	canon := strings.Replace(strings.TrimSpace(out), `,"sha256":"`+sum+`"`, "", 1)
	digest := sha256.Sum256([]byte(canon))
	require.Equal(t, hex.EncodeToString(digest[:]), sum)

	// CSV: one fact a row.
	_, out, _, err = execute(t, env, "close", "package", "--tenant", "acme", "--period", "2024-09", "--output", "csv")
	require.NoError(t, err)
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Equal(t, closepkg.CSVHeader, rows[0])
	require.Contains(t, rows, []string{"reconciliation", "Microsoft", cliMS, "USD", "status", "mismatch"})
	require.Contains(t, rows, []string{"package", "", "", "", "sha256", sum})

	// The caller cannot approve; a blocked package is not closed.
	_, _, _, err = execute(t, env, "close", "close", "--tenant", "acme", "--period", "2024-09", "--approver", "cli-admin")
	require.ErrorContains(t, err, `close refused: close refused: the approver must be a different principal from the actor: "cli-admin" asks to close 2024-09 and cannot also approve it`)
	_, _, _, err = execute(t, env, "close", "close", "--tenant", "acme", "--period", "2024-09", "--approver", "bob")
	require.ErrorContains(t, err, "the package is not ready: invoice mismatch: Microsoft/")

	// Corrected and missing invoices, then the close.
	for _, inv := range [][]string{invoiceArgs("Microsoft", cliMS, "INV-MS-0924", "1.98"), invoiceArgs("Oracle", cliOracle, "INV-OCI-0924", "0.30")} {
		_, _, _, err := execute(t, env, inv...)
		require.NoError(t, err)
	}
	_, out, _, err = execute(t, env, "close", "close", "--tenant", "acme", "--period", "2024-09", "--approver", "bob", "--note", "September books")
	require.NoError(t, err)
	require.Regexp(t, `^closed acme 2024-09 \(all providers\), approved by bob: event \S+ at position \d+\npackage sha256 [0-9a-f]{64}, chain head \d+ [0-9a-f]{64}\n$`, out)
	_, out, _, err = execute(t, env, "close", "package", "--tenant", "acme", "--period", "2024-09")
	require.NoError(t, err)
	require.Contains(t, out, "closed:                  true")
	require.Contains(t, out, "by ACTOR_KIND_USER:cli-admin, approved by ACTOR_KIND_USER:bob")

	// Flags checked before calling.
	_, _, _, err = execute(t, env, "close", "package", "--tenant", "acme")
	require.ErrorContains(t, err, "--period is required")
	_, _, _, err = execute(t, env, "close", "package", "--tenant", "acme", "--period", "2024-09", "--output", "xml")
	require.ErrorContains(t, err, `--output "xml"`)
	_, _, _, err = execute(t, env, "close", "invoice", "--tenant", "acme", "--period", "2024-09", "--provider", "AWS")
	require.ErrorContains(t, err, "--account is required")
	_, _, _, err = execute(t, env, "close", "close", "--tenant", "acme", "--period", "2024-09")
	require.ErrorContains(t, err, "--approver is required")
	// The server names a bad field.
	_, _, _, err = execute(t, env, invoiceArgs("AWS", cliAWS, "INV-X", "12,50")...)
	require.ErrorContains(t, err, "refused: invoice.amount")
}

// closeSeptember does what TestCloseCommands shows, quietly: the sample, its invoices (the
// Microsoft one corrected), and the close of September approved by bob.
func closeSeptember(t *testing.T, env map[string]string) {
	t.Helper()
	invoicedSample(t, env)
	for _, args := range [][]string{
		invoiceArgs("Microsoft", cliMS, "INV-MS-0924", "1.98"),
		invoiceArgs("Oracle", cliOracle, "INV-OCI-0924", "0.30"),
		{"close", "close", "--tenant", "acme", "--period", "2024-09", "--approver", "bob"},
	} {
		_, _, _, err := execute(t, env, args...)
		require.NoError(t, err, "%v", args)
	}
}
