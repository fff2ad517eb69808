package tokens_test

import (
	"encoding/hex"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/storage/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestCreateAuthenticateRevoke(t *testing.T) {
	pool, _ := pgtest.NewDB(t)
	ctx := t.Context()
	st := tokens.NewStore(pool)

	tok, secret, err := st.Create(ctx, tokens.Spec{Name: "billing-pipeline", Role: tokens.RoleIngester, Tenant: "acme"})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(secret, tokens.Prefix), secret)
	require.Len(t, secret, len(tokens.Prefix)+43, "32 bytes in unpadded base64url")
	require.Equal(t, tokens.KindService, tok.Kind, "ingesters are services by default")
	require.Equal(t, "acme", tok.Tenant)

	got, err := st.Authenticate(ctx, secret)
	require.NoError(t, err)
	require.Equal(t, tok.ID, got.ID)

	// Another secret of the right shape: its first random character changed (always to a
	// different one: replacing the last with "A" left it unchanged one time in 64).
	first := len(tokens.Prefix)
	other := byte('A')
	if secret[first] == 'A' {
		other = 'B'
	}
	_, err = st.Authenticate(ctx, secret[:first]+string(other)+secret[first+1:])
	require.ErrorIs(t, err, tokens.ErrUnknown)
	_, err = st.Authenticate(ctx, "Bearer nonsense")
	require.ErrorIs(t, err, tokens.ErrMalformed)

	// The table holds the SHA-256 of the secret, never the secret.
	var rows []string
	r, err := pool.Query(ctx, `SELECT t::text, encode(secret_hash, 'hex') FROM tokens t`)
	require.NoError(t, err)
	for r.Next() {
		var row, hash string
		require.NoError(t, r.Scan(&row, &hash))
		rows = append(rows, row)
		require.Equal(t, hex.EncodeToString(tokens.Hash(secret)), hash)
	}
	require.NoError(t, r.Err())
	require.Len(t, rows, 1)
	body := strings.TrimPrefix(secret, tokens.Prefix)
	require.NotContains(t, rows[0], body)
	require.NotContains(t, rows[0], hex.EncodeToString([]byte(secret)))

	revoked, err := st.Revoke(ctx, tok.ID)
	require.NoError(t, err)
	require.True(t, revoked.Revoked())
	again, err := st.Revoke(ctx, tok.ID)
	require.NoError(t, err)
	require.Equal(t, revoked.RevokedAt, again.RevokedAt, "revoking twice keeps the first time")
	got, err = st.Authenticate(ctx, secret)
	require.ErrorIs(t, err, tokens.ErrRevoked)
	require.Equal(t, tok.ID, got.ID, "a revoked token is named")

	_, err = st.Revoke(ctx, "0190b8f6-0000-7000-8000-000000000000")
	require.ErrorIs(t, err, tokens.ErrUnknown)
	_, err = st.Revoke(ctx, "nope")
	require.ErrorIs(t, err, tokens.ErrUnknown)

	list, err := st.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.True(t, list[0].Revoked())
}

func TestSpecValidate(t *testing.T) {
	for _, tc := range []struct {
		spec tokens.Spec
		err  string
	}{
		{tokens.Spec{Name: "", Role: "viewer"}, "name"},
		{tokens.Spec{Name: "x", Role: "root"}, `unknown role "root"`},
		{tokens.Spec{Name: "x", Role: "viewer", Tenant: "Acme Corp"}, "not a valid tenant id"},
		{tokens.Spec{Name: "x", Role: "operator", Tenant: "acme"}, "operator token works across tenants"},
		{tokens.Spec{Name: "x", Role: "viewer", Kind: "robot"}, `unknown kind "robot"`},
	} {
		err := tc.spec.Validate()
		require.ErrorContains(t, err, tc.err, "%+v", tc.spec)
	}
	s := tokens.Spec{Name: "ann", Role: "Auditor"}
	require.NoError(t, s.Validate())
	require.Equal(t, tokens.RoleAuditor, s.Role)
	require.Equal(t, tokens.KindUser, s.Kind)
}

// TestEnsureAdmin: one admin token however many processes start at once,
// none while a valid one exists, a new one once every admin is revoked.
func TestEnsureAdmin(t *testing.T) {
	pool, _ := pgtest.NewDB(t)
	ctx := t.Context()
	st := tokens.NewStore(pool)
	var mu sync.Mutex
	var saved []string
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = st.EnsureAdmin(ctx, "admin", func(_ tokens.Token, secret string) error {
				mu.Lock()
				defer mu.Unlock()
				saved = append(saved, secret)
				return nil
			})
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, saved, 1)
	tok, err := st.Authenticate(ctx, saved[0])
	require.NoError(t, err)
	require.Equal(t, tokens.RoleAdmin, tok.Role)
	require.True(t, tok.AllTenants())

	made, err := st.EnsureAdmin(ctx, "admin", func(tokens.Token, string) error { panic("not called") })
	require.NoError(t, err)
	require.False(t, made)

	_, err = st.Revoke(ctx, tok.ID)
	require.NoError(t, err)
	made, err = st.EnsureAdmin(ctx, "admin", func(tokens.Token, string) error { return nil })
	require.NoError(t, err)
	require.True(t, made)
}
