package gateway_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/gateway"
	"github.com/tally-ledger/tally/gateway/tokens"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
	"github.com/tally-ledger/tally/storage/pgtest"
)

const samplePath = "../testdata/focus/FOCUS-1.0/focus_sample.csv"

// env is a gateway served over h2c and HTTP/1.1 on a loopback port, on a
// real JetStream and a fresh PostgreSQL database. Its clients carry token,
// an admin token for every tenant.
type env struct {
	store *eventstore.Store
	pool  *pgxpool.Pool
	url   string // http://127.0.0.1:port
	addr  string // 127.0.0.1:port
	token string
	// h2c is an HTTP client speaking HTTP/2 without TLS, as gRPC needs;
	// http1 speaks HTTP/1.1. Both send token.
	h2c     *http.Client
	http1   *http.Client
	connect tallyv1connect.IngestServiceClient
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.Run(t)
	pool, _ := pgtest.NewDB(t)
	return serveGateway(t, gateway.Config{
		Store: srv.Store(), Pool: pool, TempDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
}

// serveGateway serves a gateway over cfg on a loopback port, makes an admin
// token in cfg.Pool, and returns clients that send it.
func serveGateway(t *testing.T, cfg gateway.Config) *env {
	t.Helper()
	mux := http.NewServeMux()
	gateway.New(cfg).Mount(mux)
	ts := httptest.NewUnstartedServer(mux)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	ts.Config.Protocols = &p
	ts.Start()
	t.Cleanup(ts.Close)

	token := newToken(t, cfg.Pool, tokens.Spec{Name: "test-admin", Role: tokens.RoleAdmin})
	h2c, http1 := h2cClient(t, token), http1Client(t, token)
	return &env{
		store: cfg.Store, pool: cfg.Pool, url: ts.URL, addr: strings.TrimPrefix(ts.URL, "http://"), token: token,
		h2c: h2c, http1: http1, connect: tallyv1connect.NewIngestServiceClient(h2c, ts.URL),
	}
}

// newToken makes a token in pool and returns its secret.
func newToken(t *testing.T, pool *pgxpool.Pool, spec tokens.Spec) string {
	t.Helper()
	_, secret, err := tokens.NewStore(pool).Create(t.Context(), spec)
	require.NoError(t, err)
	return secret
}

// h2cClient speaks HTTP/2 without TLS and sends token ("" sends none).
func h2cClient(t *testing.T, token string) *http.Client {
	var cp http.Protocols
	cp.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &cp}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: bearer{token: token, next: tr}}
}

// http1Client speaks HTTP/1.1 and sends token.
func http1Client(t *testing.T, token string) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: bearer{token: token, next: tr}}
}

// bearer adds "Authorization: Bearer token" to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.token == "" {
		return b.next.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// grpcBearer is gRPC call credentials sending a token over plain-text h2c.
type grpcBearer string

func (b grpcBearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (grpcBearer) RequireTransportSecurity() bool { return false }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// events reads a tenant's events (eventstore.SystemTenant for the audit).
func (e *env) events(t *testing.T, tenant string) []*tallyv1.Envelope {
	t.Helper()
	var out []*tallyv1.Envelope
	require.NoError(t, e.store.Read(ctxT(t), eventstore.ReadFilter{Tenant: tenant}, func(ev eventstore.Event) error {
		out = append(out, ev.Envelope)
		return nil
	}))
	return out
}

// rejections are the system tenant's RequestRejected events.
func (e *env) rejections(t *testing.T) []*tallyv1.RequestRejected {
	t.Helper()
	var out []*tallyv1.RequestRejected
	for _, env := range e.events(t, eventstore.SystemTenant) {
		if r := env.GetRequestRejected(); r != nil {
			out = append(out, r)
		}
	}
	return out
}

func ts(s string) *timestamppb.Timestamp {
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return timestamppb.New(tm)
}

func usage() *tallyv1.UsageRecorded {
	return &tallyv1.UsageRecorded{
		Provider: "AWS", BillingAccountId: "123456789012", ResourceId: "i-0abc", Metric: "cpu_hours",
		Quantity: "12.50", Unit: "Hours",
		PeriodStart: ts("2024-09-01T00:00:00Z"), PeriodEnd: ts("2024-09-01T01:00:00Z"),
		Attributes: []*tallyv1.KeyValue{{Key: "team", Value: "web"}, {Key: "env", Value: "prod"}},
	}
}

func invoice() *tallyv1.InvoiceRecorded {
	return &tallyv1.InvoiceRecorded{
		InvoiceId: "INV-2024-09",
		Scope: &tallyv1.BillScope{Provider: "AWS", BillingAccountId: "123456789012",
			BillingPeriodStart: ts("2024-09-01T00:00:00Z"), BillingPeriodEnd: ts("2024-10-01T00:00:00Z")},
		Amount: "1234.56", Currency: "USD", IssuedAt: ts("2024-10-03T00:00:00Z"),
	}
}
