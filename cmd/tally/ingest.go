package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/parquet-go/parquet-go"
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
	prog.rows = countRows(f, st.Size())
	stop := prog.start()
	sum, err := upload(ctx, client, f, &tallyv1.UploadFocusFileHeader{
		TenantId: o.tenant, FileName: filepath.Base(path), Final: o.final, Partial: o.partial, Size: st.Size(),
	}, func(b []byte) {
		prog.rows.add(b)
		prog.sent.Add(int64(len(b)))
	}, func() {
		prog.rows.close()
		prog.serverWorking()
	})
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

// upload sends the header, then the file in chunks, handing each chunk to
// sent once it went out and calling done after the last.
func upload(ctx context.Context, client tallyv1connect.IngestServiceClient, r io.Reader, h *tallyv1.UploadFocusFileHeader,
	sent func([]byte), done func()) (*tallyv1.UploadFocusFileResponse, error) {
	stream := client.UploadFocusFile(ctx)
	err := stream.Send(&tallyv1.UploadFocusFileRequest{Part: &tallyv1.UploadFocusFileRequest_Header{Header: h}})
	buf := make([]byte, uploadChunk)
	for err == nil {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			err = stream.Send(&tallyv1.UploadFocusFileRequest{Part: &tallyv1.UploadFocusFileRequest_Chunk{Chunk: buf[:n]}})
			sent(buf[:n])
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			done()
			_, _ = stream.CloseAndReceive()
			return nil, fmt.Errorf("read %s: %w", h.GetFileName(), rerr)
		}
	}
	// io.EOF from Send: the server answered early; its answer (an error,
	// most likely) comes from CloseAndReceive.
	done()
	if err != nil && !errors.Is(err, io.EOF) {
		_, _ = stream.CloseAndReceive()
		return nil, err
	}
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
	if d := s.GetDuration().AsDuration(); d > 0 {
		row("rows/s", humanCount(float64(s.GetRowsRead())/d.Seconds()))
	}
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

// progress reports the upload: bytes and rows sent, rows/s and ETA, as a
// bar redrawn in place on a terminal and as a plain line every interval
// otherwise (logs, CI), then that the server is ingesting. Rows are counted
// on the client as the file goes out (countRows); the server reports its
// own rate in the summary.
type progress struct {
	w        io.Writer
	tty      bool
	size     int64
	interval time.Duration
	now      func() time.Time
	began    time.Time

	sent     atomic.Int64
	rows     *rowCounter
	uploaded atomic.Int64 // unix nanos when the last byte went out; 0 before
}

func newProgress(w io.Writer, size int64, interval time.Duration) *progress {
	p := &progress{w: w, size: size, interval: interval, now: time.Now}
	p.began = p.now()
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty, p.interval = true, 200*time.Millisecond
		}
	}
	return p
}

func (p *progress) serverWorking() { p.uploaded.Store(p.now().UnixNano()) }

// start prints until the returned stop is called; stop prints a last plain
// line (or clears the bar).
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
				} else if p.sent.Load() > 0 {
					fmt.Fprintln(p.w, p.finalLine())
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
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K"+p.bar())
		return
	}
	fmt.Fprintln(p.w, p.line())
}

// rates is what both forms show: bytes and rows sent, their rates over
// the upload so far, and its ETA (0 when unknown or done).
func (p *progress) rates() (sent, rows int64, bytesPerSec, rowsPerSec float64, eta time.Duration) {
	sent = p.sent.Load()
	if p.rows != nil {
		rows = p.rows.rows(sent)
	}
	end := p.now()
	if u := p.uploaded.Load(); u != 0 {
		end = time.Unix(0, u)
	}
	secs := max(end.Sub(p.began).Seconds(), 1e-3)
	bytesPerSec, rowsPerSec = float64(sent)/secs, float64(rows)/secs
	if bytesPerSec > 0 && sent < p.size {
		eta = time.Duration(float64(p.size-sent) / bytesPerSec * float64(time.Second))
	}
	return sent, rows, bytesPerSec, rowsPerSec, eta
}

// line is the plain form, one line a report.
func (p *progress) line() string {
	sent, rows, bps, rps, eta := p.rates()
	if u := p.uploaded.Load(); u != 0 {
		return fmt.Sprintf("uploaded %s, %s rows in %s (%s rows/s); server ingesting for %s",
			humanBytes(sent), rowCount(rows, p.rows), time.Unix(0, u).Sub(p.began).Round(time.Millisecond), humanCount(rps),
			p.now().Sub(time.Unix(0, u)).Round(time.Second))
	}
	line := fmt.Sprintf("sent %s of %s (%.0f%%), %s rows, %s rows/s, %.1f MB/s", humanBytes(sent), humanBytes(p.size),
		percent(sent, p.size), rowCount(rows, p.rows), humanCount(rps), bps/1e6)
	if eta > 0 {
		line += ", ETA " + eta.Round(time.Second).String()
	}
	return line
}

// finalLine is the plain form's last line, once the server answered.
func (p *progress) finalLine() string {
	sent, rows, _, rps, _ := p.rates()
	line := fmt.Sprintf("uploaded %s, %s rows (%s rows/s)", humanBytes(sent), rowCount(rows, p.rows), humanCount(rps))
	if u := p.uploaded.Load(); u != 0 {
		line += fmt.Sprintf(" in %s; the server answered %s later", time.Unix(0, u).Sub(p.began).Round(time.Millisecond),
			p.now().Sub(time.Unix(0, u)).Round(time.Millisecond))
	}
	return line
}

// bar is the terminal form, redrawn in place.
func (p *progress) bar() string {
	const width = 24
	sent, rows, _, rps, eta := p.rates()
	if u := p.uploaded.Load(); u != 0 {
		return fmt.Sprintf("uploaded %s rows (%s rows/s); server ingesting %s", rowCount(rows, p.rows), humanCount(rps),
			p.now().Sub(time.Unix(0, u)).Round(time.Second))
	}
	done := int(percent(sent, p.size) / 100 * width)
	b := "[" + strings.Repeat("=", done)
	if done < width {
		b += ">" + strings.Repeat(" ", width-done-1)
	}
	b += fmt.Sprintf("] %3.0f%% %s/%s %s rows %s rows/s", percent(sent, p.size), humanBytes(sent), humanBytes(p.size),
		rowCount(rows, p.rows), humanCount(rps))
	if eta > 0 {
		b += " ETA " + eta.Round(time.Second).String()
	}
	return b
}

func percent(n, of int64) float64 { return 100 * float64(n) / float64(max(of, 1)) }

// rowCount prints an estimate with a ~.
func rowCount(n int64, c *rowCounter) string {
	if c != nil && c.estimated {
		return "~" + strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10)
}

// humanCount is a rate without decimals, with thousands separated.
func humanCount(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// rowCounter counts the rows of the file as its bytes are sent: records of
// a CSV (newlines outside quotes, less the header), the same after
// decompression for gzip CSV, and for Parquet the footer's row count
// spread over the bytes (an estimate).
type rowCounter struct {
	mu        sync.Mutex
	csv       csvRows
	estimated bool
	total     int64 // Parquet
	size      int64
	gz        *io.PipeWriter
	gzDone    chan struct{}
}

// countRows sniffs the file's format from its first bytes and returns a
// counter for it, or nil when it cannot tell (the progress then shows bytes
// only).
func countRows(f *os.File, size int64) *rowCounter {
	var head [4]byte
	n, _ := f.ReadAt(head[:], 0)
	c := &rowCounter{size: size}
	switch {
	case n >= 4 && string(head[:4]) == "PAR1":
		pf, err := parquet.OpenFile(f, size)
		if err != nil {
			return nil
		}
		c.total, c.estimated = pf.NumRows(), true
	case n >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		pr, pw := io.Pipe()
		c.gz, c.gzDone = pw, make(chan struct{})
		go func() {
			defer close(c.gzDone)
			defer io.Copy(io.Discard, pr) //nolint:errcheck // drain: the upload must never wait on the count
			zr, err := gzip.NewReader(pr)
			if err != nil {
				return
			}
			buf := make([]byte, 64<<10)
			for {
				n, err := zr.Read(buf)
				c.mu.Lock()
				c.csv.count(buf[:n])
				c.mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	return c
}

// add counts the next bytes of the file.
func (c *rowCounter) add(b []byte) {
	switch {
	case c == nil || c.total > 0:
	case c.gz != nil:
		c.gz.Write(b) //nolint:errcheck // the reader drains whatever happens
	default:
		c.mu.Lock()
		c.csv.count(b)
		c.mu.Unlock()
	}
}

// close ends the count once the whole file went out.
func (c *rowCounter) close() {
	if c == nil {
		return
	}
	if c.gz != nil {
		c.gz.Close()
		<-c.gzDone
	}
	c.mu.Lock()
	c.csv.end()
	c.mu.Unlock()
}

// rows counted so far, sent bytes of the file having gone out.
func (c *rowCounter) rows(sent int64) int64 {
	if c.total > 0 {
		return c.total * sent / max(c.size, 1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.csv.records-1, 0) // less the header
}

// csvRows counts CSV records: line ends outside quoted fields (a doubled
// quote inside a field toggles twice), and a last line with no line end.
type csvRows struct {
	records int64
	quoted  bool
	open    bool // a record has started and not ended
}

func (r *csvRows) count(b []byte) {
	for len(b) > 0 {
		if !r.quoted {
			i := bytes.IndexAny(b, "\"\n")
			if i < 0 {
				r.open = true
				return
			}
			if b[i] == '\n' {
				r.records++
				r.open = false
			} else {
				r.quoted, r.open = true, true
			}
			b = b[i+1:]
			continue
		}
		i := bytes.IndexByte(b, '"')
		if i < 0 {
			return
		}
		r.quoted = false
		b = b[i+1:]
	}
}

func (r *csvRows) end() {
	if r.open {
		r.records++
		r.open = false
	}
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
