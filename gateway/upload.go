package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/services/focus"
	"github.com/tally-ledger/tally/services/ingest"
)

// maxRejectedInMessage: rejected rows named in the error message; the
// error's detail (an UploadFocusFileResponse) carries more.
const (
	maxRejectedInMessage = 10
	maxRejectedInSummary = 100
)

// UploadFocusFile receives the file into a temporary file (memory stays
// bounded by one chunk whatever the file size), then ingests it.
func (s *IngestServer) UploadFocusFile(ctx context.Context, stream *connect.ClientStream[tallyv1.UploadFocusFileRequest]) (*connect.Response[tallyv1.UploadFocusFileResponse], error) {
	c := callOf(stream.Spec(), stream.Peer(), "")
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			return nil, fail(ctx, s.store, s.log, c, err)
		}
		return nil, fail(ctx, s.store, s.log, c, fieldErr("header", "is required: the first message of an upload is its header"))
	}
	h := stream.Msg().GetHeader()
	if h == nil {
		return nil, fail(ctx, s.store, s.log, c, fieldErr("header", "is required: the first message of an upload is its header, not a chunk"))
	}
	c.tenant = h.GetTenantId()
	name, err := checkHeader(h)
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	tmp, size, err := s.receive(stream, h.GetSize())
	if tmp != nil {
		defer func() {
			tmp.Close()
			os.Remove(tmp.Name())
		}()
	}
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}

	id := RequestID(ctx)
	log := s.log.With(slog.String("request_id", id), slog.String("tenant", c.tenant), slog.String("file", name))
	r, err := focus.NewReaderAt(tmp, size, name, focus.FormatAuto)
	if err != nil {
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	defer r.Close()
	log.InfoContext(ctx, "ingesting uploaded file", slog.Int64("bytes", size))
	sum, err := ingest.Ingest(ctx, s.store, s.cfg.Pool, c.tenant, r, ingest.Options{
		Final: h.GetFinal(), Partial: h.GetPartial(), Actor: requestActor(ctx), Logger: log,
	})
	resp := summaryProto(sum, size)
	if err != nil {
		if errors.Is(err, ingest.ErrRejected) {
			err = rejectedError(err, sum, resp)
		}
		return nil, fail(ctx, s.store, s.log, c, err)
	}
	log.InfoContext(ctx, "ingested uploaded file", slog.Int64("rows", sum.RowsRead), slog.Int64("appended", sum.Appended),
		slog.Duration("took", sum.Duration))
	return connect.NewResponse(resp), nil
}

func checkHeader(h *tallyv1.UploadFocusFileHeader) (string, error) {
	if err := checkTenant("header.tenant_id", h.GetTenantId()); err != nil {
		return "", err
	}
	name := h.GetFileName()
	if err := requireID("header.file_name", name); err != nil {
		return "", err
	}
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", fieldErr("header.file_name", "%s must be a base name, without directories", quote(name))
	}
	if h.GetSize() < 0 {
		return "", fieldErr("header.size", "is negative")
	}
	return filepath.Base(name), nil
}

// receive copies the chunks into a new temporary file and returns it
// (rewound) with its size. The caller removes the file.
func (s *IngestServer) receive(stream *connect.ClientStream[tallyv1.UploadFocusFileRequest], want int64) (*os.File, int64, error) {
	if want > s.cfg.MaxUploadBytes {
		return nil, 0, connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("the file is %d bytes, over this server's upload limit of %d", want, s.cfg.MaxUploadBytes))
	}
	if err := os.MkdirAll(s.cfg.TempDir, 0o700); err != nil {
		return nil, 0, fmt.Errorf("upload directory: %w", err)
	}
	tmp, err := os.CreateTemp(s.cfg.TempDir, "tally-upload-*")
	if err != nil {
		return nil, 0, fmt.Errorf("create upload file: %w", err)
	}
	var size int64
	for stream.Receive() {
		chunk := stream.Msg().GetChunk()
		if stream.Msg().GetHeader() != nil {
			return tmp, 0, fieldErr("header", "was sent twice: send it once, first")
		}
		if size+int64(len(chunk)) > s.cfg.MaxUploadBytes {
			return tmp, 0, connect.NewError(connect.CodeResourceExhausted,
				fmt.Errorf("the upload passed this server's limit of %d bytes", s.cfg.MaxUploadBytes))
		}
		if _, err := tmp.Write(chunk); err != nil {
			return tmp, 0, fmt.Errorf("write upload file: %w", err)
		}
		size += int64(len(chunk))
	}
	if err := stream.Err(); err != nil {
		return tmp, 0, err
	}
	if want > 0 && size != want {
		return tmp, 0, fieldErr("chunk", "data ended after %d of the %d bytes the header announced", size, want)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return tmp, 0, fmt.Errorf("rewind upload file: %w", err)
	}
	return tmp, size, nil
}

// rejectedError is InvalidArgument naming the first bad rows, with the
// summary attached as a detail for clients that print more.
func rejectedError(err error, sum ingest.Summary, resp *tallyv1.UploadFocusFileResponse) error {
	var b strings.Builder
	b.WriteString(err.Error())
	if n := len(sum.Rejected); n > 1 {
		fmt.Fprintf(&b, "\nfirst rejected rows:")
		for _, row := range sum.Rejected[:min(n, maxRejectedInMessage)] {
			b.WriteString("\n  " + strings.ReplaceAll(row.Error(), "\n", "\n  "))
		}
		if sum.RowsBad > maxRejectedInMessage {
			fmt.Fprintf(&b, "\n  ... and %d more", sum.RowsBad-maxRejectedInMessage)
		}
	}
	ce := connect.NewError(connect.CodeInvalidArgument, errors.New(b.String()))
	if d, derr := connect.NewErrorDetail(resp); derr == nil {
		ce.AddDetail(d)
	}
	return ce
}

func summaryProto(sum ingest.Summary, size int64) *tallyv1.UploadFocusFileResponse {
	out := &tallyv1.UploadFocusFileResponse{
		FileName:      sum.File,
		RunId:         sum.RunID,
		FocusVersion:  string(sum.FileVersion),
		BytesReceived: size,
		RowsRead:      sum.RowsRead,
		RowsRejected:  sum.RowsBad,
		Lines:         sum.Lines,
		Recorded:      sum.Recorded,
		Restated:      sum.Restated,
		Retracted:     sum.Retracted,
		Unchanged:     sum.Unchanged,
		PostClose:     sum.PostClose,
		Finalized:     sum.Finalized,
		Appended:      sum.Appended,
		Duplicates:    sum.Duplicates,
		Scopes:        int64(sum.Scopes),
		HeadSeq:       sum.HeadSeq,
		StreamSeq:     sum.StreamSeq,
		Duration:      durationpb.New(sum.Duration),
	}
	for _, t := range sum.Totals {
		out.BilledTotals = append(out.BilledTotals, &tallyv1.CurrencyAmount{Currency: t.Currency, Amount: t.Billed.String()})
	}
	for _, row := range sum.Rejected[:min(len(sum.Rejected), maxRejectedInSummary)] {
		out.RejectedRows = append(out.RejectedRows, row.Error())
	}
	return out
}
