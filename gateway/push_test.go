package gateway_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

func grpcConn(t *testing.T, e *env) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(grpcBearer(e.token)))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestPushUsageConnectAndIdempotentRetry(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	req := &tallyv1.RecordUsageRequest{TenantId: "acme", IdempotencyKey: "usage-1", Usage: usage()}
	first, err := e.connect.RecordUsage(ctx, connect.NewRequest(req))
	require.NoError(t, err)
	require.NotEmpty(t, first.Header().Get("X-Request-Id"))
	require.Equal(t, eventstore.DeterministicID("acme", "usage-1"), first.Msg.GetEventId())
	require.Equal(t, uint64(1), first.Msg.GetTenantSeq())
	require.False(t, first.Msg.GetDuplicate())

	again, err := e.connect.RecordUsage(ctx, connect.NewRequest(&tallyv1.RecordUsageRequest{TenantId: "acme", IdempotencyKey: "usage-1", Usage: usage()}))
	require.NoError(t, err)
	require.True(t, again.Msg.GetDuplicate())
	require.Equal(t, first.Msg.GetEventId(), again.Msg.GetEventId())

	// The same key for another fact is refused, and audited.
	other := usage()
	other.Quantity = "13"
	_, err = e.connect.RecordUsage(ctx, connect.NewRequest(&tallyv1.RecordUsageRequest{TenantId: "acme", IdempotencyKey: "usage-1", Usage: other}))
	require.Equal(t, connect.CodeAlreadyExists, connect.CodeOf(err), "%v", err)

	// Without a key, the content is the key: resending the same fact is a no-op.
	noKey := func() (*connect.Response[tallyv1.RecordUsageResponse], error) {
		return e.connect.RecordUsage(ctx, connect.NewRequest(&tallyv1.RecordUsageRequest{TenantId: "acme", Usage: usage()}))
	}
	a, err := noKey()
	require.NoError(t, err)
	require.False(t, a.Msg.GetDuplicate())
	b, err := noKey()
	require.NoError(t, err)
	require.True(t, b.Msg.GetDuplicate())
	require.Equal(t, a.Msg.GetEventId(), b.Msg.GetEventId())

	evs := e.events(t, "acme")
	require.Len(t, evs, 2)
	u := evs[0].GetUsageRecorded()
	require.NotNil(t, u)
	require.Equal(t, "12.50", u.GetQuantity())
	require.Equal(t, "env", u.GetAttributes()[0].GetKey(), "attributes are sorted by key")
	require.Equal(t, "usage-1", evs[0].GetIdempotencyKey())
	require.Equal(t, "api", evs[0].GetSource().GetAdapter())
	require.Equal(t, first.Header().Get("X-Request-Id"), evs[0].GetCorrelationId())

	rej := e.rejections(t)
	require.Len(t, rej, 1)
	require.Equal(t, "already_exists", rej[0].GetCode())
	require.Equal(t, "acme", rej[0].GetClaimedTenant())
}

// TestGRPCClient pushes through grpc-go (no generated gRPC stubs needed:
// the method path and the protobuf messages are enough), checks health and
// that errors arrive as gRPC status codes.
func TestGRPCClient(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	conn := grpcConn(t, e)

	var resp tallyv1.RecordUsageResponse
	err := conn.Invoke(ctx, "/tally.v1.IngestService/RecordUsage",
		&tallyv1.RecordUsageRequest{TenantId: "acme", IdempotencyKey: "g-1", Usage: usage()}, &resp)
	require.NoError(t, err)
	require.Equal(t, uint64(1), resp.GetTenantSeq())
	require.Equal(t, eventstore.DeterministicID("acme", "g-1"), resp.GetEventId())

	bad := usage()
	bad.Quantity = "1,5"
	err = conn.Invoke(ctx, "/tally.v1.IngestService/RecordUsage",
		&tallyv1.RecordUsageRequest{TenantId: "acme", Usage: bad}, &resp)
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), `usage.quantity "1,5" is not a decimal`)

	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "tally.v1.IngestService"})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, h.GetStatus())
	require.Len(t, e.events(t, "acme"), 1)
	require.Len(t, e.rejections(t), 1)
}

func TestHTTPJSON(t *testing.T) {
	e := newEnv(t)
	post := func(body string) (int, map[string]any) {
		req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, e.url+"/tally.v1.IngestService/RecordInvoice", bytes.NewBufferString(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		resp, err := e.http1.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var out map[string]any
		require.NoError(t, json.Unmarshal(b, &out), string(b))
		return resp.StatusCode, out
	}
	code, out := post(`{"tenantId":"acme","idempotencyKey":"inv-1","invoice":{"invoiceId":"INV-1",
		"scope":{"provider":"AWS","billingAccountId":"123","billingPeriodStart":"2024-09-01T00:00:00Z","billingPeriodEnd":"2024-10-01T00:00:00Z"},
		"amount":"1234.5600","currency":"usd","issuedAt":"2024-10-03T00:00:00Z"}}`)
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, eventstore.DeterministicID("acme", "inv-1"), out["eventId"])
	require.Equal(t, "1", out["tenantSeq"], "uint64 is a string in proto JSON")

	code, out = post(`{"tenantId":"acme","invoice":{"invoiceId":"INV-2",
		"scope":{"provider":"AWS","billingAccountId":"123","billingPeriodStart":"2024-09-01T00:00:00Z","billingPeriodEnd":"2024-10-01T00:00:00Z"},
		"amount":"12","currency":"XXX","issuedAt":"2024-10-03T00:00:00Z"}}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "invalid_argument", out["code"])
	require.Contains(t, out["message"], `invoice.currency "XXX" is not an ISO 4217 code`)

	evs := e.events(t, "acme")
	require.Len(t, evs, 1)
	require.Equal(t, "USD", evs[0].GetInvoiceRecorded().GetCurrency())
	require.Equal(t, "1234.5600", evs[0].GetInvoiceRecorded().GetAmount())
	require.Len(t, e.rejections(t), 1)
}
