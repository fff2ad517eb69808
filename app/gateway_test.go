package app_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tally-ledger/tally/app"
	"github.com/tally-ledger/tally/gateway/tokens"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// adminToken reads the admin token r wrote to its data directory.
func adminToken(t *testing.T, r *running) string {
	t.Helper()
	b, err := os.ReadFile(app.AdminTokenPath(r.Config().DataDir))
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

type grpcBearer string

func (b grpcBearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (grpcBearer) RequireTransportSecurity() bool { return false }

// TestGatewayMounted: the app serves the Connect gateway on its one port,
// to gRPC clients over HTTP/2 without TLS and to HTTP/1.1 JSON clients,
// with the admin token it wrote; without a token, only health answers.
func TestGatewayMounted(t *testing.T) {
	r := start(t)
	token := adminToken(t, r)
	anon, err := grpc.NewClient(strings.TrimPrefix(r.base, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer anon.Close()
	h, err := healthpb.NewHealthClient(anon).Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, h.GetStatus())
	fx := &tallyv1.RecordFxRateRequest{
		TenantId: "acme", FxRate: &tallyv1.FxRateRecorded{FromCurrency: "EUR", ToCurrency: "USD", Rate: "1.08", Date: "2024-09-01"},
	}
	var resp tallyv1.RecordFxRateResponse
	err = anon.Invoke(t.Context(), "/tally.v1.IngestService/RecordFxRate", fx, &resp)
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)

	conn, err := grpc.NewClient(strings.TrimPrefix(r.base, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(grpcBearer(token)))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Invoke(t.Context(), "/tally.v1.IngestService/RecordFxRate", fx, &resp))
	require.Equal(t, uint64(1), resp.GetTenantSeq())

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, r.base+"/tally.v1.IngestService/RecordFxRate",
		bytes.NewBufferString(`{"tenantId":"acme","fxRate":{"fromCurrency":"EUR","toCurrency":"USD","rate":"1.08","date":"2024-09-01"}}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, 1, res.ProtoMajor, "HTTP/1.1 clients keep HTTP/1.1")
	require.NotEmpty(t, res.Header.Get("X-Request-Id"))
}

// TestAdminTokenFile: the first start writes an admin token for every
// tenant to <data-dir>/admin.token, mode 0600; a restart keeps it (and
// writes no other); once every admin token is revoked, the next start
// writes a new one.
func TestAdminTokenFile(t *testing.T) {
	pool, dbURL := pgtest.NewDB(t)
	cfg := app.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = dbURL

	r := startWith(t, cfg)
	path := app.AdminTokenPath(r.Config().DataDir)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	first := adminToken(t, r)
	store := tokens.NewStore(pool)
	tok, err := store.Authenticate(t.Context(), first)
	require.NoError(t, err)
	require.Equal(t, tokens.RoleAdmin, tok.Role)
	require.True(t, tok.AllTenants())
	r.stop(t)

	r = startWith(t, cfg)
	require.Equal(t, first, adminToken(t, r), "a restart reuses the token")
	list, err := store.List(t.Context())
	require.NoError(t, err)
	require.Len(t, list, 1)
	r.stop(t)

	_, err = store.Revoke(t.Context(), tok.ID)
	require.NoError(t, err)
	r = startWith(t, cfg)
	second := adminToken(t, r)
	require.NotEqual(t, first, second)
	_, err = store.Authenticate(t.Context(), second)
	require.NoError(t, err)
	r.stop(t)
}
