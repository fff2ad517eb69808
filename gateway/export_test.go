package gateway_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/exports"
	"github.com/tally-ledger/tally/gateway"
	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/closepkg"
	"github.com/tally-ledger/tally/projections/ledger"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// exportEnv is env with a projector folding the ledger and the close package, compliance
// packs with one extra section, and an ExportService client.
type exportEnv struct {
	*env
	runner *projections.Runner
	export tallyv1connect.ExportServiceClient
}

const packSection = "cost_center,amount\nweb,1.00\n"

func newExportEnv(t *testing.T) *exportEnv {
	t.Helper()
	store := natstest.Run(t).Store()
	pool, _ := pgtest.NewDB(t)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	runner, err := projections.NewRunner(pool, store, projections.Options{PollInterval: 20 * time.Millisecond, Logger: logger},
		ledger.New(), closepkg.New())
	require.NoError(t, err)
	require.NoError(t, runner.Setup(t.Context()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = runner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e := serveGateway(t, gateway.Config{Store: store, Pool: pool, TempDir: t.TempDir(), Logger: logger, Runner: runner,
		PackSections: func(tenant, period string) []exports.Section {
			return []exports.Section{{Name: "allocation.csv", Write: func(_ context.Context, w io.Writer) error {
				_, err := io.WriteString(w, packSection)
				return err
			}}}
		}})
	return &exportEnv{env: e, runner: runner, export: tallyv1connect.NewExportServiceClient(e.h2c, e.url)}
}

// uploadSample ingests the FOCUS sample for tenant and waits until both projections have it.
func (e *exportEnv) uploadSample(t *testing.T, tenant string) {
	t.Helper()
	sum, err := uploadConnect(ctxT(t), e.env, &tallyv1.UploadFocusFileHeader{TenantId: tenant, FileName: "focus_sample.csv", Final: true}, readSample(t))
	require.NoError(t, err)
	for _, p := range []string{ledger.Name, closepkg.Name} {
		require.NoError(t, e.runner.WaitFor(ctxT(t), p, sum.GetStreamSeq()))
	}
}

// chunk is what every export response carries.
type chunk interface {
	GetData() []byte
	GetFileName() string
	GetContentType() string
}

// collect reads a server stream of chunks into one file, checking that every chunk is at
// most ExportChunkBytes and that only the first names the file.
func collect[T any, P interface {
	*T
	chunk
}](t *testing.T, s *connect.ServerStreamForClient[T]) (data []byte, name, ctype string, err error) {
	t.Helper()
	var b bytes.Buffer
	first := true
	for s.Receive() {
		m := P(s.Msg())
		require.LessOrEqual(t, len(m.GetData()), gateway.ExportChunkBytes)
		if first {
			name, ctype, first = m.GetFileName(), m.GetContentType(), false
		} else {
			require.Empty(t, m.GetFileName())
		}
		b.Write(m.GetData())
	}
	return b.Bytes(), name, ctype, s.Err()
}

func TestExportFocus(t *testing.T) {
	e := newExportEnv(t)
	e.uploadSample(t, "acme")
	ctx := ctxT(t)
	src := exports.Source{DB: e.pool, Log: e.store}

	// CSV: the stream is exactly what the exports package writes, in several chunks.
	s, err := e.export.ExportFocus(ctx, connect.NewRequest(&tallyv1.ExportFocusRequest{TenantId: "acme", Period: "2024-09", ToPeriod: "2024-10"}))
	require.NoError(t, err)
	data, name, ctype, err := collect(t, s)
	require.NoError(t, err)
	require.Equal(t, "acme-2024-09_2024-10-focus.csv", name)
	require.Equal(t, "text/csv", ctype)
	require.Greater(t, len(data), 2*gateway.ExportChunkBytes, "the sample's export takes several chunks")
	var want bytes.Buffer
	n, err := exports.WriteFOCUSCSV(ctx, &want, src, exports.Range{Tenant: "acme", From: september, To: september.AddDate(0, 2, 0)})
	require.NoError(t, err)
	require.Equal(t, want.String(), string(data))

	// Parquet: a FOCUS 1.3 file with every line.
	s, err = e.export.ExportFocus(ctx, connect.NewRequest(&tallyv1.ExportFocusRequest{TenantId: "acme", Period: "2024-09", ToPeriod: "2024-10",
		Format: tallyv1.FocusFormat_FOCUS_FORMAT_PARQUET}))
	require.NoError(t, err)
	data, name, _, err = collect(t, s)
	require.NoError(t, err)
	require.Equal(t, "acme-2024-09_2024-10-focus.parquet", name)
	r, err := focus.NewReader(bytes.NewReader(data), name, focus.FormatAuto)
	require.NoError(t, err)
	require.Equal(t, focus.FormatParquet, r.Format())
	require.Equal(t, focus.V1_3, r.Version())
	rows, err := r.Scan(ctx, focus.RejectFile, func(focus.Row) error { return nil })
	require.NoError(t, err)
	require.EqualValues(t, n, rows.Rows)

	// Re-uploading the export into an empty tenant gives the same totals.
	sum, err := uploadConnect(ctx, e.env, &tallyv1.UploadFocusFileHeader{TenantId: "copy", FileName: name, Final: true}, data)
	require.NoError(t, err)
	require.NoError(t, e.runner.WaitFor(ctx, ledger.Name, sum.GetStreamSeq()))
	lc := tallyv1connect.NewLedgerServiceClient(e.h2c, e.url)
	totals := func(tenant string) *tallyv1.GetTotalsResponse {
		resp, err := lc.GetTotals(ctx, connect.NewRequest(&tallyv1.GetTotalsRequest{TenantId: tenant,
			From: ts("2024-09-01T00:00:00Z"), To: ts("2024-11-01T00:00:00Z")}))
		require.NoError(t, err)
		return resp.Msg
	}
	want0, got0 := totals("acme"), totals("copy")
	require.NotEmpty(t, want0.GetTotals())
	require.True(t, proto.Equal(want0, got0), "totals of acme %v, of its copy %v", want0, got0)
}

func TestExportClosePackage(t *testing.T) {
	e := newExportEnv(t)
	e.uploadSample(t, "acme")
	ctx := ctxT(t)
	pkg, err := closepkg.NewQueries(e.pool).Package(ctx, "acme", "2024-09", "", closepkg.Options{})
	require.NoError(t, err)
	for _, tc := range []struct {
		format tallyv1.ClosePackageFormat
		render func(io.Writer, *closepkg.Package) error
		name   string
	}{
		{tallyv1.ClosePackageFormat_CLOSE_PACKAGE_FORMAT_UNSPECIFIED, closepkg.WriteJSON, "acme-2024-09-close-package.json"},
		{tallyv1.ClosePackageFormat_CLOSE_PACKAGE_FORMAT_CSV, closepkg.WriteCSV, "acme-2024-09-close-package.csv"},
	} {
		s, err := e.export.ExportClosePackage(ctx, connect.NewRequest(&tallyv1.ExportClosePackageRequest{TenantId: "acme", Period: "2024-09", Format: tc.format}))
		require.NoError(t, err)
		data, name, _, err := collect(t, s)
		require.NoError(t, err)
		require.Equal(t, tc.name, name)
		var want bytes.Buffer
		require.NoError(t, tc.render(&want, pkg))
		require.Equal(t, want.String(), string(data))
		require.Contains(t, string(data), pkg.SHA256)
	}
}

func TestExportCompliancePack(t *testing.T) {
	e := newExportEnv(t)
	e.uploadSample(t, "acme")
	ctx := ctxT(t)
	auditor := newToken(t, e.pool, tokens.Spec{Name: "kim", Role: tokens.RoleAuditor, Tenant: "acme", Kind: tokens.KindUser})
	c := tallyv1connect.NewExportServiceClient(h2cClient(t, auditor), e.url)
	s, err := c.ExportCompliancePack(ctx, connect.NewRequest(&tallyv1.ExportCompliancePackRequest{TenantId: "acme", Period: "2024-09"}))
	require.NoError(t, err)
	data, name, ctype, err := collect(t, s)
	require.NoError(t, err, "an auditor scoped to the tenant may export its pack")
	require.Equal(t, "acme-2024-09-compliance-pack.zip", name)
	require.Equal(t, "application/zip", ctype)

	m, err := exports.VerifyPack(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err, "every manifest digest matches its file")
	require.Equal(t, "user:kim", m.CreatedBy)
	head, err := e.store.Head(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, head.Seq, m.ChainHead.TenantSeq)
	var names []string
	for _, f := range m.Files {
		names = append(names, f.Name)
	}
	require.Equal(t, []string{"chain-head.json", "checkpoints.json", "close-package.json", "close-package.csv", "focus.csv",
		"rules.json", "allocation.csv"}, names)
}

// TestExportBadRequests: each malformed request is InvalidArgument naming the field, recorded
// once as a rejection, with nothing sent and nothing appended to the tenant.
func TestExportBadRequests(t *testing.T) {
	e := newExportEnv(t)
	ctx := ctxT(t)
	focusReq := func(m *tallyv1.ExportFocusRequest) func() ([]byte, error) {
		return func() ([]byte, error) {
			s, err := e.export.ExportFocus(ctx, connect.NewRequest(m))
			require.NoError(t, err)
			data, _, _, err := collect(t, s)
			return data, err
		}
	}
	closeReq := func(m *tallyv1.ExportClosePackageRequest) func() ([]byte, error) {
		return func() ([]byte, error) {
			s, err := e.export.ExportClosePackage(ctx, connect.NewRequest(m))
			require.NoError(t, err)
			data, _, _, err := collect(t, s)
			return data, err
		}
	}
	packReq := func(m *tallyv1.ExportCompliancePackRequest) func() ([]byte, error) {
		return func() ([]byte, error) {
			s, err := e.export.ExportCompliancePack(ctx, connect.NewRequest(m))
			require.NoError(t, err)
			data, _, _, err := collect(t, s)
			return data, err
		}
	}
	for _, tc := range []struct {
		name  string
		call  func() ([]byte, error)
		field string
	}{
		{"focus: no tenant", focusReq(&tallyv1.ExportFocusRequest{Period: "2024-09"}), "tenant_id"},
		{"focus: bad tenant", focusReq(&tallyv1.ExportFocusRequest{TenantId: "Acme Corp", Period: "2024-09"}), "tenant_id"},
		{"focus: no period", focusReq(&tallyv1.ExportFocusRequest{TenantId: "acme"}), "period"},
		{"focus: bad period", focusReq(&tallyv1.ExportFocusRequest{TenantId: "acme", Period: "2024-9"}), "period"},
		{"focus: bad to_period", focusReq(&tallyv1.ExportFocusRequest{TenantId: "acme", Period: "2024-09", ToPeriod: "October"}), "to_period"},
		{"focus: to_period before period", focusReq(&tallyv1.ExportFocusRequest{TenantId: "acme", Period: "2024-09", ToPeriod: "2024-08"}), "to_period"},
		{"focus: bad format", focusReq(&tallyv1.ExportFocusRequest{TenantId: "acme", Period: "2024-09", Format: 9}), "format"},
		{"close: bad period", closeReq(&tallyv1.ExportClosePackageRequest{TenantId: "acme", Period: "2024-13"}), "period"},
		{"close: bad tolerance", closeReq(&tallyv1.ExportClosePackageRequest{TenantId: "acme", Period: "2024-09", TolerancePct: "1%"}), "tolerance_pct"},
		{"close: negative tolerance", closeReq(&tallyv1.ExportClosePackageRequest{TenantId: "acme", Period: "2024-09", TolerancePct: "-1"}), "tolerance_pct"},
		{"close: bad format", closeReq(&tallyv1.ExportClosePackageRequest{TenantId: "acme", Period: "2024-09", Format: 7}), "format"},
		{"pack: no period", packReq(&tallyv1.ExportCompliancePackRequest{TenantId: "acme"}), "period"},
		{"pack: no tenant", packReq(&tallyv1.ExportCompliancePackRequest{Period: "2024-09"}), "tenant_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.rejections(t))
			data, err := tc.call()
			require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
			var ce *connect.Error
			require.ErrorAs(t, err, &ce)
			require.True(t, strings.HasPrefix(ce.Message(), tc.field+" "), "%q names %s", ce.Message(), tc.field)
			require.Empty(t, data, "nothing sent")
			rej := e.rejections(t)
			require.Len(t, rej, before+1)
			require.Equal(t, tc.field, rej[len(rej)-1].GetField())
			require.Empty(t, e.events(t, "acme"), "nothing appended to the tenant")
		})
	}
}
