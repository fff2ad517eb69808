package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/app"
	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/storage/pgtest"
)

func TestTokensCommands(t *testing.T) {
	pool, dbURL := pgtest.NewDB(t)
	env := map[string]string{"DATABASE_URL": dbURL}

	_, secret, errOut, err := execute(t, env, "tokens", "create", "--name", "billing-pipeline", "--role", "ingester", "--tenant", "acme")
	require.NoError(t, err)
	secret = strings.TrimSpace(secret)
	require.Regexp(t, `^tly_[A-Za-z0-9_-]{43}$`, secret, "the secret alone on stdout")
	require.Contains(t, errOut, "shown only this once")
	tok, err := tokens.NewStore(pool).Authenticate(t.Context(), secret)
	require.NoError(t, err)
	require.Equal(t, "acme", tok.Tenant)
	require.Equal(t, tokens.RoleIngester, tok.Role)
	require.Equal(t, tokens.KindService, tok.Kind)

	_, _, _, err = execute(t, env, "tokens", "create", "--name", "x", "--role", "root")
	require.ErrorContains(t, err, `unknown role "root"`)
	_, _, _, err = execute(t, env, "tokens", "create", "--name", "ops", "--role", "operator", "--tenant", "acme")
	require.ErrorContains(t, err, "operator token works across tenants")

	_, out, _, err := execute(t, env, "tokens", "list")
	require.NoError(t, err)
	require.Regexp(t, `ID\s+NAME\s+ROLE\s+TENANT\s+KIND\s+CREATED\s+REVOKED`, out)
	require.Regexp(t, regexp.QuoteMeta(tok.ID)+`\s+billing-pipeline\s+ingester\s+acme\s+service\s+\S+\s+-`, out)
	require.NotContains(t, out, strings.TrimPrefix(secret, "tly_"))

	_, out, _, err = execute(t, env, "tokens", "revoke", tok.ID)
	require.NoError(t, err)
	require.Contains(t, out, "revoked token "+tok.ID)
	_, _, _, err = execute(t, env, "tokens", "revoke", "0190b8f6-0000-7000-8000-000000000000")
	require.ErrorContains(t, err, "no token has id")

	_, out, _, err = execute(t, env, "tokens", "list", "-o", "json")
	require.NoError(t, err)
	var list []struct {
		ID        string  `json:"id"`
		Tenant    *string `json:"tenant"`
		RevokedAt *string `json:"revoked_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	require.Len(t, list, 1)
	require.Equal(t, tok.ID, list[0].ID)
	require.NotNil(t, list[0].RevokedAt)
	_, err = tokens.NewStore(pool).Authenticate(t.Context(), secret)
	require.ErrorIs(t, err, tokens.ErrRevoked)
}

// TestClientToken: ingest and costs send --token / TALLY_TOKEN, else the
// admin token in the data directory, and explain refusals.
func TestClientToken(t *testing.T) {
	url, pool := gatewayServer(t)
	dataDir := t.TempDir()
	admin := newToken(t, pool, tokens.Spec{Name: "admin", Role: tokens.RoleAdmin})
	require.NoError(t, os.WriteFile(app.AdminTokenPath(dataDir), []byte(admin+"\n"), 0o600))

	// The admin token from the data directory (TALLY_DATA_DIR, or --data-dir).
	_, out, _, err := execute(t, map[string]string{"TALLY_DATA_DIR": dataDir}, "ingest", samplePath, "--tenant", "acme", "--server", url)
	require.NoError(t, err)
	require.Regexp(t, `rows read\s+1000`, out)
	// (This gateway has no ledger; a validation error shows the token passed.)
	_, _, _, err = execute(t, nil, "costs", "--tenant", "acme", "--server", url, "--data-dir", dataDir, "--from", "2024-09-01", "--to", "2024-10-01",
		"--group-by", "colour")
	require.ErrorContains(t, err, `refused: group_by[0] "colour"`)

	// No token anywhere.
	_, _, _, err = execute(t, map[string]string{"TALLY_DATA_DIR": filepath.Join(dataDir, "elsewhere")}, "ingest", samplePath, "--tenant", "acme", "--server", url)
	require.ErrorContains(t, err, "no token: pass --token or set TALLY_TOKEN")

	// A token that may not: the refusal says so.
	viewer := newToken(t, pool, tokens.Spec{Name: "acme-dashboard", Role: tokens.RoleViewer, Tenant: "acme"})
	_, _, _, err = execute(t, map[string]string{"TALLY_TOKEN": viewer}, "ingest", samplePath, "--tenant", "acme", "--server", url)
	require.ErrorContains(t, err, "not allowed: token \"acme-dashboard\" has role viewer")
	_, _, _, err = execute(t, nil, "costs", "--token", viewer, "--tenant", "globex", "--server", url, "--from", "2024-09-01", "--to", "2024-10-01")
	require.ErrorContains(t, err, `may only act for tenant "acme"`)
	bogus, _ := tokens.NewSecret()
	_, _, _, err = execute(t, map[string]string{"TALLY_TOKEN": bogus}, "costs", "--tenant", "acme", "--server", url, "--from", "2024-09-01", "--to", "2024-10-01")
	require.ErrorContains(t, err, "the token was not accepted")
}
