package gateway

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// Defaults of Config.
const (
	// DefaultMaxMessageBytes bounds one request message (an upload chunk, a
	// push). Clients send uploads in chunks well under it.
	DefaultMaxMessageBytes = 8 << 20
	// DefaultMaxUploadBytes bounds one uploaded file on the server's disk.
	DefaultMaxUploadBytes int64 = 64 << 30
)

// Config is what the gateway needs; the process that mounts it owns each
// part and closes it.
type Config struct {
	Store  *eventstore.Store
	Pool   *pgxpool.Pool
	Logger *slog.Logger
	// TempDir holds uploads while they are ingested; default os.TempDir().
	TempDir string
	// MaxMessageBytes and MaxUploadBytes: 0 means the defaults above.
	MaxMessageBytes int
	MaxUploadBytes  int64
	// Runner, when this process projects, wakes ledger queries waiting for
	// min_seq as soon as the ledger moves; without it they poll Pool.
	Runner *projections.Runner
	// Auth checks the bearer token of every call of the Tally services
	// (health and reflection stay open). Nil means the tokens table in
	// Pool, which is what tally serve uses; there is no way to turn
	// authentication off.
	Auth Authenticator
	// PackSections, when set, gives the read models' CSV files of a compliance pack
	// (ExportService/ExportCompliancePack).
	PackSections PackSections
}

// Gateway is the Connect API surface.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	ingest  *IngestServer
	ledger  *LedgerServer
	audit   *AuditServer
	savings *SavingsServer
	close   *CloseServer
	export  *ExportServer
	alloc   *AllocationServer
}

// New builds the gateway's services over cfg.
func New(cfg Config) *Gateway {
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.TempDir = cmp.Or(cfg.TempDir, os.TempDir())
	cfg.MaxMessageBytes = cmp.Or(cfg.MaxMessageBytes, DefaultMaxMessageBytes)
	cfg.MaxUploadBytes = cmp.Or(cfg.MaxUploadBytes, DefaultMaxUploadBytes)
	if cfg.Auth == nil {
		cfg.Auth = noTokens{}
		if cfg.Pool != nil {
			cfg.Auth = tokens.NewStore(cfg.Pool)
		}
	}
	if cfg.PackSections == nil && cfg.Pool != nil {
		cfg.PackSections = readModelSections(cfg.Pool)
	}
	return &Gateway{cfg: cfg, log: cfg.Logger, ingest: NewIngestServer(cfg), ledger: NewLedgerServer(cfg),
		audit: NewAuditServer(cfg), close: NewCloseServer(cfg), export: NewExportServer(cfg),
		savings: NewSavingsServer(cfg), alloc: NewAllocationServer(cfg)}
}

// services served, for reflection and health.
var services = []string{
	tallyv1connect.IngestServiceName,
	tallyv1connect.LedgerServiceName,
	tallyv1connect.AuditServiceName,
	tallyv1connect.CloseServiceName,
	tallyv1connect.ExportServiceName,
	tallyv1connect.SavingsServiceName,
	tallyv1connect.AllocationServiceName,
}

// Mount registers every service, gRPC health (grpc.health.v1) and gRPC
// reflection (v1 and v1alpha) on mux. The Tally services authenticate every
// call (see auth.go and the package documentation); health and reflection are open. The
// server must accept HTTP/2 without TLS (http.Protocols.SetUnencryptedHTTP2)
// for plain-text gRPC clients.
func (g *Gateway) Mount(mux *http.ServeMux) {
	opts := []connect.HandlerOption{connect.WithReadMaxBytes(g.cfg.MaxMessageBytes)}
	authed := append(opts[:len(opts):len(opts)], connect.WithInterceptors(
		&authInterceptor{auth: g.cfg.Auth, store: g.cfg.Store, log: g.log}))
	handle := func(path string, h http.Handler) { mux.Handle(path, withRequestID(h)) }

	handle(tallyv1connect.NewIngestServiceHandler(g.ingest, authed...))
	handle(tallyv1connect.NewLedgerServiceHandler(g.ledger, authed...))
	handle(tallyv1connect.NewAuditServiceHandler(g.audit, authed...))
	handle(tallyv1connect.NewCloseServiceHandler(g.close, authed...))
	handle(tallyv1connect.NewExportServiceHandler(g.export, authed...))
	handle(tallyv1connect.NewSavingsServiceHandler(g.savings, authed...))
	handle(tallyv1connect.NewAllocationServiceHandler(g.alloc, authed...))
	handle(grpchealth.NewHandler(&healthChecker{store: g.cfg.Store, pool: g.cfg.Pool}, opts...))
	reflector := grpcreflect.NewStaticReflector(append([]string{grpchealth.HealthV1ServiceName}, services...)...)
	handle(grpcreflect.NewHandlerV1(reflector, opts...))
	handle(grpcreflect.NewHandlerV1Alpha(reflector, opts...))
}

// healthChecker answers grpc.health.v1: serving while the event log (and the
// database, when there is one) answers.
type healthChecker struct {
	store *eventstore.Store
	pool  *pgxpool.Pool
}

var _ grpchealth.Checker = (*healthChecker)(nil)

func (h *healthChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" && req.Service != grpchealth.HealthV1ServiceName {
		known := false
		for _, s := range services {
			known = known || s == req.Service
		}
		if !known {
			return nil, connect.NewError(connect.CodeNotFound, errUnknownService(req.Service))
		}
	}
	if h.store != nil && h.store.Ping(ctx) != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	if h.pool != nil && h.pool.Ping(ctx) != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}

type errUnknownService string

func (e errUnknownService) Error() string { return "unknown service " + quote(string(e)) }

// noTokens is the Authenticator of a gateway with no database: it accepts
// no token.
type noTokens struct{}

func (noTokens) Authenticate(context.Context, string) (tokens.Token, error) {
	return tokens.Token{}, connect.NewError(connect.CodeUnavailable,
		errors.New("this server has no database to check tokens against"))
}
