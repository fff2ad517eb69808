package gateway_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

const chunkSize = 64 << 10

// uploadConnect streams data in chunks through the Connect client.
func uploadConnect(ctx context.Context, e *env, h *tallyv1.UploadFocusFileHeader, data []byte) (*tallyv1.UploadFocusFileResponse, error) {
	stream := e.connect.UploadFocusFile(ctx)
	if err := stream.Send(&tallyv1.UploadFocusFileRequest{Part: &tallyv1.UploadFocusFileRequest_Header{Header: h}}); err != nil {
		return nil, err
	}
	for off := 0; off < len(data); off += chunkSize {
		chunk := data[off:min(off+chunkSize, len(data))]
		if err := stream.Send(&tallyv1.UploadFocusFileRequest{Part: &tallyv1.UploadFocusFileRequest_Chunk{Chunk: chunk}}); err != nil {
			if err == io.EOF {
				break // the server answered early; CloseAndReceive has its answer
			}
			return nil, err
		}
	}
	resp, err := stream.CloseAndReceive()
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

func readSample(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(samplePath)
	require.NoError(t, err)
	return data
}

func checkSampleSummary(t *testing.T, s *tallyv1.UploadFocusFileResponse, size int) {
	t.Helper()
	require.Equal(t, int64(1000), s.GetRowsRead())
	require.Zero(t, s.GetRowsRejected())
	require.Equal(t, int64(size), s.GetBytesReceived())
	require.Equal(t, "focus_sample.csv", s.GetFileName())
	require.Equal(t, "1.0", s.GetFocusVersion())
	require.Positive(t, s.GetRecorded())
	require.Equal(t, s.GetLines(), s.GetRecorded(), "a first ingest records every line")
	require.Equal(t, uint64(s.GetAppended()), s.GetHeadSeq())
	require.NotEmpty(t, s.GetBilledTotals())
	for _, tot := range s.GetBilledTotals() {
		require.Len(t, tot.GetCurrency(), 3)
		require.NotContains(t, tot.GetAmount(), "e", "exact decimal text")
	}
}

func TestUploadSampleConnect(t *testing.T) {
	e := newEnv(t)
	data := readSample(t)
	sum, err := uploadConnect(ctxT(t), e, &tallyv1.UploadFocusFileHeader{TenantId: "acme", FileName: "focus_sample.csv", Size: int64(len(data))}, data)
	require.NoError(t, err)
	checkSampleSummary(t, sum, len(data))
	require.Len(t, e.events(t, "acme"), int(sum.GetAppended()))

	// The same bill again appends nothing.
	again, err := uploadConnect(ctxT(t), e, &tallyv1.UploadFocusFileHeader{TenantId: "acme", FileName: "focus_sample.csv"}, data)
	require.NoError(t, err)
	require.Zero(t, again.GetAppended())
	require.Equal(t, sum.GetLines(), again.GetUnchanged())
	require.Empty(t, e.rejections(t))
}

func TestUploadSampleGRPC(t *testing.T) {
	e := newEnv(t)
	data := readSample(t)
	conn := grpcConn(t, e)
	stream, err := conn.NewStream(ctxT(t), &grpc.StreamDesc{StreamName: "UploadFocusFile", ClientStreams: true},
		"/tally.v1.IngestService/UploadFocusFile")
	require.NoError(t, err)
	require.NoError(t, stream.SendMsg(&tallyv1.UploadFocusFileRequest{Part: &tallyv1.UploadFocusFileRequest_Header{
		Header: &tallyv1.UploadFocusFileHeader{TenantId: "globex", FileName: "focus_sample.csv", Final: true}}}))
	for off := 0; off < len(data); off += chunkSize {
		require.NoError(t, stream.SendMsg(&tallyv1.UploadFocusFileRequest{Part: &tallyv1.UploadFocusFileRequest_Chunk{
			Chunk: data[off:min(off+chunkSize, len(data))]}}))
	}
	require.NoError(t, stream.CloseSend())
	var sum tallyv1.UploadFocusFileResponse
	require.NoError(t, stream.RecvMsg(&sum))
	checkSampleSummary(t, &sum, len(data))
	require.Equal(t, sum.GetScopes(), sum.GetFinalized(), "--final finalizes every bill in the file")
}

// TestUploadRejected: a file with a bad row is refused whole, naming the
// row, with the summary as a detail, one audit event and nothing appended.
func TestUploadRejected(t *testing.T) {
	e := newEnv(t)
	// The first 19 data rows of the sample, the second with an unknown
	// currency (physical line 3).
	rd := csv.NewReader(bytes.NewReader(readSample(t)))
	var rows [][]string
	for len(rows) < 20 {
		rec, err := rd.Read()
		require.NoError(t, err)
		rows = append(rows, rec)
	}
	col := slices.IndexFunc(rows[0], func(h string) bool { return strings.TrimPrefix(h, "\ufeff") == "BillingCurrency" })
	require.GreaterOrEqual(t, col, 0)
	rows[2][col] = "XXX"
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	require.NoError(t, w.WriteAll(rows))
	bad := buf.Bytes()
	require.Equal(t, 20, bytes.Count(bad, []byte("\n")), "no quoted newlines: row 2 is on line 3")

	_, err := uploadConnect(ctxT(t), e, &tallyv1.UploadFocusFileHeader{TenantId: "acme", FileName: "bad.csv"}, bad)
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
	var ce *connect.Error
	require.ErrorAs(t, err, &ce)
	require.Contains(t, ce.Message(), "bad.csv:3")
	require.Contains(t, ce.Message(), "nothing was appended")
	var detail *tallyv1.UploadFocusFileResponse
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			detail, _ = v.(*tallyv1.UploadFocusFileResponse)
		}
	}
	require.NotNil(t, detail)
	require.Equal(t, int64(1), detail.GetRowsRejected())
	require.Len(t, detail.GetRejectedRows(), 1)
	require.Contains(t, detail.GetRejectedRows()[0], "bad.csv:3")

	require.Empty(t, e.events(t, "acme"))
	rej := e.rejections(t)
	require.Len(t, rej, 1)
	require.Equal(t, "/tally.v1.IngestService/UploadFocusFile", rej[0].GetProcedure())
	require.Equal(t, "acme", rej[0].GetClaimedTenant())

	// Partial ingestion appends the good rows and reports the bad one.
	sum, err := uploadConnect(ctxT(t), e, &tallyv1.UploadFocusFileHeader{TenantId: "acme", FileName: "bad.csv", Partial: true}, bad)
	require.NoError(t, err)
	require.Equal(t, int64(1), sum.GetRowsRejected())
	require.Equal(t, int64(18), sum.GetRowsRead())
}

func TestUploadBadHeader(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name  string
		h     *tallyv1.UploadFocusFileHeader
		data  []byte
		field string
	}{
		{"no tenant", &tallyv1.UploadFocusFileHeader{FileName: "f.csv"}, []byte("x"), "header.tenant_id"},
		{"bad tenant", &tallyv1.UploadFocusFileHeader{TenantId: "a b", FileName: "f.csv"}, []byte("x"), "header.tenant_id"},
		{"path in name", &tallyv1.UploadFocusFileHeader{TenantId: "acme", FileName: "../etc/passwd"}, []byte("x"), "header.file_name"},
		{"short upload", &tallyv1.UploadFocusFileHeader{TenantId: "acme", FileName: "f.csv", Size: 10}, []byte("x"), "chunk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.rejections(t))
			_, err := uploadConnect(ctxT(t), e, tc.h, tc.data)
			require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
			require.Contains(t, err.Error(), tc.field)
			rej := e.rejections(t)
			require.Len(t, rej, before+1)
			require.Equal(t, tc.field, rej[len(rej)-1].GetField())
		})
	}
	// A chunk first: gRPC sees the same code.
	conn := grpcConn(t, e)
	stream, err := conn.NewStream(ctxT(t), &grpc.StreamDesc{ClientStreams: true}, "/tally.v1.IngestService/UploadFocusFile")
	require.NoError(t, err)
	require.NoError(t, stream.SendMsg(&tallyv1.UploadFocusFileRequest{Part: &tallyv1.UploadFocusFileRequest_Chunk{Chunk: []byte("a,b")}}))
	require.NoError(t, stream.CloseSend())
	err = stream.RecvMsg(&tallyv1.UploadFocusFileResponse{})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Empty(t, e.events(t, "acme"))
}
