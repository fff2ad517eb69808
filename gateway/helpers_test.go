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
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
	"github.com/tally-ledger/tally/storage/pgtest"
)

const samplePath = "../testdata/focus/FOCUS-1.0/focus_sample.csv"

// env is a gateway served over h2c and HTTP/1.1 on a loopback port, on a
// real JetStream and a fresh PostgreSQL database.
type env struct {
	store *eventstore.Store
	pool  *pgxpool.Pool
	url   string // http://127.0.0.1:port
	addr  string // 127.0.0.1:port
	// h2c is an HTTP client speaking HTTP/2 without TLS, as gRPC needs.
	h2c     *http.Client
	connect tallyv1connect.IngestServiceClient
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.Run(t)
	store := srv.Store()
	pool, _ := pgtest.NewDB(t)
	gw := gateway.New(gateway.Config{
		Store: store, Pool: pool, TempDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	mux := http.NewServeMux()
	gw.Mount(mux)
	ts := httptest.NewUnstartedServer(mux)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	ts.Config.Protocols = &p
	ts.Start()
	t.Cleanup(ts.Close)

	var cp http.Protocols
	cp.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: &http.Transport{Protocols: &cp}}
	t.Cleanup(h2c.CloseIdleConnections)
	return &env{
		store: store, pool: pool, url: ts.URL, addr: strings.TrimPrefix(ts.URL, "http://"), h2c: h2c,
		connect: tallyv1connect.NewIngestServiceClient(h2c, ts.URL),
	}
}

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
