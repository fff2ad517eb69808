package app_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// TestGatewayMounted: the app serves the Connect gateway on its one port,
// to gRPC clients over HTTP/2 without TLS and to HTTP/1.1 JSON clients.
func TestGatewayMounted(t *testing.T) {
	r := start(t)
	conn, err := grpc.NewClient(strings.TrimPrefix(r.base, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	h, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, h.GetStatus())

	var resp tallyv1.RecordFxRateResponse
	require.NoError(t, conn.Invoke(t.Context(), "/tally.v1.IngestService/RecordFxRate", &tallyv1.RecordFxRateRequest{
		TenantId: "acme", FxRate: &tallyv1.FxRateRecorded{FromCurrency: "EUR", ToCurrency: "USD", Rate: "1.08", Date: "2024-09-01"},
	}, &resp))
	require.Equal(t, uint64(1), resp.GetTenantSeq())

	res, err := http.Post(r.base+"/tally.v1.IngestService/RecordFxRate", "application/json",
		bytes.NewBufferString(`{"tenantId":"acme","fxRate":{"fromCurrency":"EUR","toCurrency":"USD","rate":"1.08","date":"2024-09-01"}}`))
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, 1, res.ProtoMajor, "HTTP/1.1 clients keep HTTP/1.1")
	require.NotEmpty(t, res.Header.Get("X-Request-Id"))
}
