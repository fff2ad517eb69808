package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// defaultServer is where `tally serve` listens by default.
const defaultServer = "http://127.0.0.1:8080"

// uploadChunk: 1 MiB messages, well under the gateway's 8 MiB limit.
const uploadChunk = 1 << 20

type ingestOptions struct {
	tenant   string
	server   string
	final    bool
	partial  bool
	interval time.Duration // progress line period when stderr is not a terminal
	auth     clientAuth
}

func newIngestCmd(c *cli) *cobra.Command {
	o := ingestOptions{server: defaultServer, interval: 5 * time.Second}
	cmd := &cobra.Command{
		Use:   "ingest FILE",
		Short: "Upload a FOCUS file (CSV, gzip CSV or Parquet) to a running Tally",
		Long: `Upload a FOCUS cost-and-usage file to a running Tally, which appends what
differs from the tenant's ledger: new lines recorded, changed lines restated,
missing lines retracted. Re-ingesting an unchanged bill appends nothing.

By default a file with any bad row is refused whole and nothing is appended;
--partial appends the good rows and lists the bad ones. --final marks the
bills in the file as final (the provider will not revise them).

Exits non-zero when the file is refused, printing the reasons.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runIngest(cmd.Context(), c, o, args[0])
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&o.tenant, "tenant", "", "`tenant` id the bill belongs to (required)")
	fs.BoolVar(&o.final, "final", false, "the provider will not revise these bills any more: finalize them")
	fs.BoolVar(&o.partial, "partial", false, "append the good rows of a file with bad rows, and list the bad ones")
	fs.StringVar(&o.server, "server", o.server, "`url` of the Tally server")
	o.auth.flags(c, cmd)
	declareEnv(fs)
	return cmd
}

func runIngest(ctx context.Context, c *cli, o ingestOptions, path string) error {
	if o.tenant == "" {
		return errors.New("--tenant is required (or TALLY_TENANT)")
	}
	hc, baseURL, err := serverClient(o.server, &o.auth)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	client := tallyv1connect.NewIngestServiceClient(hc, baseURL)

	prog := newProgress(c.stderr, st.Size(), o.interval)
	stop := prog.start()
	sum, err := upload(ctx, client, f, &tallyv1.UploadFocusFileHeader{
		TenantId: o.tenant, FileName: filepath.Base(path), Final: o.final, Partial: o.partial, Size: st.Size(),
	}, &prog.sent, prog.serverWorking)
	stop()
	if err != nil {
		return describeUploadError(c.stderr, o.server, err)
	}
	return printSummary(c.stdout, sum)
}

// serverClient checks --server and resolves the token: the HTTP client and
// base URL every client command (ingest, costs, audit) talks through.
func serverClient(server string, auth *clientAuth) (*http.Client, string, error) {
	base, err := url.Parse(server)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, "", fmt.Errorf("--server %q: want http://host:port or https://host:port", server)
	}
	token, err := auth.resolve()
	if err != nil {
		return nil, "", err
	}
	return httpClient(base, token), strings.TrimRight(server, "/"), nil
}

// httpClient speaks HTTP/2 without TLS to http:// servers (client streaming
// over gRPC and Connect needs HTTP/2 end to end), and the usual TLS with
// ALPN to https:// ones. Every request carries token.
func httpClient(u *url.URL, token string) *http.Client {
	var tr http.RoundTripper = http.DefaultTransport
	if u.Scheme != "https" {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr = &http.Transport{Protocols: &p, Proxy: http.ProxyFromEnvironment}
	}
	return &http.Client{Transport: bearerTransport{token: token, next: tr}}
}

// describeAuthError explains a refusal for who the caller is, or returns nil.
func describeAuthError(ce *connect.Error) error {
	switch ce.Code() {
	case connect.CodeUnauthenticated:
		return fmt.Errorf("the token was not accepted (--token, TALLY_TOKEN or <data-dir>/admin.token): %s", ce.Message())
	case connect.CodePermissionDenied:
		return fmt.Errorf("not allowed: %s", ce.Message())
	}
	return nil
}

// upload sends the header, then the file in chunks, counting bytes sent.
func upload(ctx context.Context, client tallyv1connect.IngestServiceClient, r io.Reader, h *tallyv1.UploadFocusFileHeader,
	sent *atomic.Int64, done func()) (*tallyv1.UploadFocusFileResponse, error) {
	stream := client.UploadFocusFile(ctx)
	err := stream.Send(&tallyv1.UploadFocusFileRequest{Part: &tallyv1.UploadFocusFileRequest_Header{Header: h}})
	buf := make([]byte, uploadChunk)
	for err == nil {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			err = stream.Send(&tallyv1.UploadFocusFileRequest{Part: &tallyv1.UploadFocusFileRequest_Chunk{Chunk: buf[:n]}})
			sent.Add(int64(n))
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			_, _ = stream.CloseAndReceive()
			return nil, fmt.Errorf("read %s: %w", h.GetFileName(), rerr)
		}
	}
	// io.EOF from Send: the server answered early; its answer (an error,
	// most likely) comes from CloseAndReceive.
	if err != nil && !errors.Is(err, io.EOF) {
		_, _ = stream.CloseAndReceive()
		return nil, err
	}
	done()
	resp, err := stream.CloseAndReceive()
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// describeUploadError prints what a person needs to act on and returns the
// error that makes the command exit non-zero.
func describeUploadError(w io.Writer, server string, err error) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err
	}
	switch ce.Code() {
	case connect.CodeInvalidArgument:
		fmt.Fprintln(w, "refused:", ce.Message())
		for _, d := range ce.Details() {
			v, derr := d.Value()
			if derr != nil {
				continue
			}
			if sum, ok := v.(*tallyv1.UploadFocusFileResponse); ok && len(sum.GetRejectedRows()) > 0 {
				fmt.Fprintf(w, "%d of %d rows rejected; the first ones:\n", sum.GetRowsRejected(), sum.GetRowsRejected()+sum.GetRowsRead())
				for _, row := range sum.GetRejectedRows() {
					fmt.Fprintln(w, "  "+strings.ReplaceAll(row, "\n", "\n  "))
				}
			}
		}
		return errors.New("the file was refused; nothing was appended")
	case connect.CodeUnauthenticated, connect.CodePermissionDenied:
		return describeAuthError(ce)
	case connect.CodeUnavailable:
		return fmt.Errorf("cannot reach Tally at %s (is `tally serve` running? set --server or TALLY_SERVER): %w", server, err)
	}
	return err
}

func printSummary(w io.Writer, s *tallyv1.UploadFocusFileResponse) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\t\n", k, v) }
	fmt.Fprintf(w, "%s (FOCUS %s, %s) ingested in %s\n", s.GetFileName(), s.GetFocusVersion(),
		humanBytes(s.GetBytesReceived()), s.GetDuration().AsDuration().Round(time.Millisecond))
	row("rows read", s.GetRowsRead())
	row("rows rejected", s.GetRowsRejected())
	row("bills (scopes)", s.GetScopes())
	row("lines", s.GetLines())
	row("recorded", s.GetRecorded())
	row("restated", s.GetRestated())
	row("retracted", s.GetRetracted())
	row("unchanged", s.GetUnchanged())
	if s.GetPostClose() > 0 {
		row("post-close adjustments", s.GetPostClose())
	}
	if s.GetFinalized() > 0 {
		row("bills finalized", s.GetFinalized())
	}
	row("events appended", s.GetAppended())
	row("chain head", s.GetHeadSeq())
	for _, t := range s.GetBilledTotals() {
		row("billed "+t.GetCurrency(), t.GetAmount())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.GetRejectedRows()) > 0 {
		fmt.Fprintf(w, "rejected rows (first %d):\n", len(s.GetRejectedRows()))
		for _, r := range s.GetRejectedRows() {
			fmt.Fprintln(w, "  "+strings.ReplaceAll(r, "\n", "\n  "))
		}
	}
	return nil
}

// progress reports bytes sent, rate and ETA: a line rewritten in place on
// a terminal, a plain line every interval otherwise.
type progress struct {
	w        io.Writer
	tty      bool
	size     int64
	interval time.Duration
	sent     atomic.Int64
	uploaded atomic.Bool
	began    time.Time
}

func newProgress(w io.Writer, size int64, interval time.Duration) *progress {
	p := &progress{w: w, size: size, interval: interval, began: time.Now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty, p.interval = true, 200*time.Millisecond
		}
	}
	return p
}

func (p *progress) serverWorking() { p.uploaded.Store(true) }

// start prints until the returned stop is called.
func (p *progress) start() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(p.interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				if p.tty {
					fmt.Fprint(p.w, "\r\033[K")
				}
				return
			case <-t.C:
				p.print()
			}
		}
	}()
	return func() { close(done); <-finished }
}

func (p *progress) print() {
	sent, el := p.sent.Load(), time.Since(p.began)
	rate := float64(sent) / max(el.Seconds(), 1e-3)
	line := fmt.Sprintf("sent %s of %s (%.0f%%) at %.1f MB/s", humanBytes(sent), humanBytes(p.size),
		100*float64(sent)/float64(max(p.size, 1)), rate/1e6)
	if p.uploaded.Load() {
		line += ", server ingesting..."
	} else if rate > 0 && sent < p.size {
		line += ", ETA " + (time.Duration(float64(p.size-sent)/rate) * time.Second).Round(time.Second).String()
	}
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K"+line)
		return
	}
	fmt.Fprintln(p.w, line)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
