package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/exports"
	"github.com/tally-ledger/tally/projections/closepkg"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// ExportChunkBytes is the most data one ExportService message carries.
const ExportChunkBytes = 64 << 10

// PackSections gives the read models' CSV files of a tenant's compliance pack for a period
// (savings.csv, allocation.csv, changelog.csv), written after the pack's own files.
type PackSections func(tenant, period string) []exports.Section

// ExportServer serves tally.v1.ExportService: the ledger as FOCUS, close packages and
// compliance packs, each streamed in chunks of at most ExportChunkBytes as it is written
// (package exports), so the server's memory does not grow with the file.
//
// Tenant scoping: the request's tenant_id was checked against the token by the auth
// interceptor; every export reads that tenant only.
type ExportServer struct {
	store    *eventstore.Store
	pool     *pgxpool.Pool
	log      *slog.Logger
	sections PackSections
}

var _ tallyv1connect.ExportServiceHandler = (*ExportServer)(nil)

// NewExportServer reads cfg's pool and store. Compliance packs hold cfg.PackSections' files
// besides their own.
func NewExportServer(cfg Config) *ExportServer {
	return &ExportServer{store: cfg.Store, pool: cfg.Pool, log: cfg.Logger, sections: cfg.PackSections}
}

// chunker is an io.Writer that sends what it is given in messages of at most
// ExportChunkBytes.
type chunker struct {
	buf  []byte
	sent bool
	send func(data []byte, first bool) error
}

func newChunker(send func(data []byte, first bool) error) *chunker {
	return &chunker{buf: make([]byte, 0, ExportChunkBytes), send: send}
}

func (c *chunker) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), cap(c.buf)-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(c.buf) == cap(c.buf) {
			if err := c.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// flush sends what is buffered (the first message even when empty, for its file name).
func (c *chunker) flush() error {
	if len(c.buf) == 0 && c.sent {
		return nil
	}
	// Send marshals the message before it returns, so the buffer can be reused.
	err := c.send(c.buf, !c.sent)
	c.sent, c.buf = true, c.buf[:0]
	if err != nil {
		return &sendError{err}
	}
	return nil
}

// month checks a "YYYY-MM" field.
func month(field, v string, required bool) error {
	if v == "" && !required {
		return nil
	}
	if v == "" {
		return fieldErr(field, "is required (a month as YYYY-MM, such as \"2024-09\")")
	}
	if _, err := exports.ParseMonth(field, v); err != nil {
		return fieldErr(field, "%s is not a month as YYYY-MM (such as \"2024-09\")", quote(v))
	}
	return nil
}

// exportDone turns what a writer returned into the handler's result: a failure to send is
// the client's (returned as is), anything else goes through fail.
func (s *ExportServer) exportDone(ctx context.Context, c call, err error) error {
	if err == nil {
		return nil
	}
	if se := (*sendError)(nil); errors.As(err, &se) {
		return se.err
	}
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "42P01" {
		err = connect.NewError(connect.CodeFailedPrecondition,
			errors.New("a read model this export needs is not set up yet: start the projector (tally serve) and retry"))
	}
	return fail(ctx, s.store, s.log, c, err)
}

func (s *ExportServer) ExportFocus(ctx context.Context, req *connect.Request[tallyv1.ExportFocusRequest], stream *connect.ServerStream[tallyv1.ExportFocusResponse]) error {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	err := checkTenant("tenant_id", m.GetTenantId())
	if err == nil {
		err = month("period", m.GetPeriod(), true)
	}
	if err == nil {
		err = month("to_period", m.GetToPeriod(), false)
	}
	var rng exports.Range
	if err == nil {
		if rng, err = exports.MonthRange(m.GetTenantId(), m.GetPeriod(), m.GetToPeriod()); err != nil {
			err = fieldErr("to_period", "%s is before period %s", quote(m.GetToPeriod()), quote(m.GetPeriod()))
		}
	}
	write, ext, ctype := exports.WriteFOCUSCSV, "csv", "text/csv"
	switch m.GetFormat() {
	case tallyv1.FocusFormat_FOCUS_FORMAT_UNSPECIFIED, tallyv1.FocusFormat_FOCUS_FORMAT_CSV:
	case tallyv1.FocusFormat_FOCUS_FORMAT_PARQUET:
		write, ext, ctype = exports.WriteFOCUSParquet, "parquet", "application/vnd.apache.parquet"
	default:
		if err == nil {
			err = fieldErr("format", "%d is not a FOCUS format: use FOCUS_FORMAT_CSV or FOCUS_FORMAT_PARQUET", m.GetFormat())
		}
	}
	if err != nil {
		return fail(ctx, s.store, s.log, c, err)
	}
	periods := m.GetPeriod()
	if m.GetToPeriod() != "" && m.GetToPeriod() != m.GetPeriod() {
		periods += "_" + m.GetToPeriod()
	}
	name := fmt.Sprintf("%s-%s-focus.%s", m.GetTenantId(), periods, ext)
	w := newChunker(func(data []byte, first bool) error {
		resp := &tallyv1.ExportFocusResponse{Data: data}
		if first {
			resp.FileName, resp.ContentType = name, ctype
		}
		return stream.Send(resp)
	})
	_, err = write(ctx, w, exports.Source{DB: s.pool, Log: s.store}, rng)
	if err == nil {
		err = w.flush()
	}
	return s.exportDone(ctx, c, err)
}

func (s *ExportServer) ExportClosePackage(ctx context.Context, req *connect.Request[tallyv1.ExportClosePackageRequest], stream *connect.ServerStream[tallyv1.ExportClosePackageResponse]) error {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	// The same arguments as CloseService/GetClosePackage, checked the same way.
	tol, err := packageArgs(m.GetTenantId(), m.GetPeriod(), m.GetProvider(), m.GetTolerancePct())
	opts := closepkg.Options{TolerancePct: tol}
	render, ext, ctype := closepkg.WriteJSON, "json", "application/json"
	switch m.GetFormat() {
	case tallyv1.ClosePackageFormat_CLOSE_PACKAGE_FORMAT_UNSPECIFIED, tallyv1.ClosePackageFormat_CLOSE_PACKAGE_FORMAT_JSON:
	case tallyv1.ClosePackageFormat_CLOSE_PACKAGE_FORMAT_CSV:
		render, ext, ctype = closepkg.WriteCSV, "csv", "text/csv"
	default:
		if err == nil {
			err = fieldErr("format", "%d is not a close package format: use CLOSE_PACKAGE_FORMAT_JSON or CLOSE_PACKAGE_FORMAT_CSV", m.GetFormat())
		}
	}
	if err != nil {
		return fail(ctx, s.store, s.log, c, err)
	}
	pkg, err := closepkg.NewQueries(s.pool).Package(ctx, m.GetTenantId(), m.GetPeriod(), m.GetProvider(), opts)
	if err != nil {
		return s.exportDone(ctx, c, err)
	}
	provider := ""
	if m.GetProvider() != "" {
		provider = "-" + strings.ToLower(strings.Join(strings.Fields(m.GetProvider()), "_"))
	}
	name := fmt.Sprintf("%s-%s%s-close-package.%s", m.GetTenantId(), m.GetPeriod(), provider, ext)
	w := newChunker(func(data []byte, first bool) error {
		resp := &tallyv1.ExportClosePackageResponse{Data: data}
		if first {
			resp.FileName, resp.ContentType = name, ctype
		}
		return stream.Send(resp)
	})
	err = render(w, pkg)
	if err == nil {
		err = w.flush()
	}
	return s.exportDone(ctx, c, err)
}

func (s *ExportServer) ExportCompliancePack(ctx context.Context, req *connect.Request[tallyv1.ExportCompliancePackRequest], stream *connect.ServerStream[tallyv1.ExportCompliancePackResponse]) error {
	m := req.Msg
	c := callOf(req.Spec(), req.Peer(), m.GetTenantId())
	err := checkTenant("tenant_id", m.GetTenantId())
	if err == nil {
		err = month("period", m.GetPeriod(), true)
	}
	if err != nil {
		return fail(ctx, s.store, s.log, c, err)
	}
	a := requestActor(ctx)
	p := exports.Pack{Tenant: m.GetTenantId(), Period: m.GetPeriod(),
		CreatedBy: strings.ToLower(strings.TrimPrefix(a.GetKind().String(), "ACTOR_KIND_")) + ":" + a.GetId()}
	if s.sections != nil {
		p.Sections = s.sections(m.GetTenantId(), m.GetPeriod())
	}
	name := fmt.Sprintf("%s-%s-compliance-pack.zip", m.GetTenantId(), m.GetPeriod())
	w := newChunker(func(data []byte, first bool) error {
		resp := &tallyv1.ExportCompliancePackResponse{Data: data}
		if first {
			resp.FileName, resp.ContentType = name, "application/zip"
		}
		return stream.Send(resp)
	})
	_, err = exports.WritePack(ctx, w, s.pool, s.store, p)
	if err == nil {
		err = w.flush()
	}
	return s.exportDone(ctx, c, err)
}
