package main

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/tally-ledger/tally/exports"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

func newExportCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Download a tenant's ledger as FOCUS, a close package, or a compliance pack",
		Long: `Exports, as clients of a running Tally (ExportService). The file streams from the
server as it is written, and is saved under the name the server suggests
(or -o FILE; -o - writes to stdout). A failed export leaves no file behind.

FOCUS and close package exports need a token with the role viewer, auditor or
admin; the compliance pack needs auditor or admin. tally export verify checks a
pack on disk and needs no server.`,
	}
	cmd.AddCommand(newExportFocusCmd(c), newExportCloseCmd(c), newExportPackCmd(c), newExportVerifyCmd(c))
	return cmd
}

// exportOptions are what every download shares.
type exportOptions struct {
	auditClient
	period string
	output string
}

func (o *exportOptions) flags(c *cli, cmd *cobra.Command) {
	o.auditClient.flags(c, cmd)
	fs := cmd.Flags()
	fs.StringVar(&o.period, "period", "", "billing `month`, YYYY-MM (required)")
	fs.StringVarP(&o.output, "output", "o", "", "write to this `file` (- for stdout); default: the server's file name in the current directory")
}

func (o *exportOptions) client() (tallyv1connect.ExportServiceClient, error) {
	if o.tenant == "" {
		return nil, errors.New("--tenant is required (or TALLY_TENANT)")
	}
	if o.period == "" {
		return nil, errors.New("--period is required (a month as YYYY-MM)")
	}
	hc, baseURL, err := serverClient(o.server, &o.auth)
	if err != nil {
		return nil, err
	}
	return tallyv1connect.NewExportServiceClient(hc, baseURL), nil
}

type exportChunk interface {
	GetData() []byte
	GetFileName() string
}

// download saves a stream of chunks to o.output (or the server's file name), through a
// temporary file renamed when the stream has ended well. It returns the path ("-" for
// stdout) and the bytes written.
func download[T any, P interface {
	*T
	exportChunk
}](c *cli, o *exportOptions, stream *connect.ServerStreamForClient[T]) (string, int64, error) {
	defer stream.Close()
	var (
		out  io.Writer
		tmp  *os.File
		path = o.output
		n    int64
	)
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	for stream.Receive() {
		m := P(stream.Msg())
		if out == nil {
			if path == "-" {
				out = c.stdout
			} else {
				if path == "" {
					path = filepath.Base(m.GetFileName())
					if path == "." || path == "/" || path == "" {
						return "", 0, errors.New("the server named no file: pass -o FILE")
					}
				}
				var err error
				if tmp, err = os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.part"); err != nil {
					return "", 0, err
				}
				out = tmp
			}
		}
		k, err := out.Write(m.GetData())
		n += int64(k)
		if err != nil {
			return "", n, err
		}
	}
	if err := stream.Err(); err != nil {
		return "", n, describeQueryError(o.server, err)
	}
	if out == nil {
		return "", 0, errors.New("the server sent nothing")
	}
	if tmp != nil {
		if err := tmp.Close(); err != nil {
			return "", n, err
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			return "", n, err
		}
		tmp = nil
	}
	return path, n, nil
}

// report says where the export went: on stdout, unless the export itself went there.
func (c *cli) reportExport(path string, n int64, extra string) error {
	w := c.stdout
	if path == "-" {
		w = c.stderr
		path = "stdout"
	}
	_, err := fmt.Fprintf(w, "wrote %s (%d bytes)%s\n", path, n, extra)
	return err
}

func newExportFocusCmd(c *cli) *cobra.Command {
	var o exportOptions
	var toPeriod, format string
	cmd := &cobra.Command{
		Use:   "focus",
		Short: "Download a tenant's ledger lines as a FOCUS 1.3 CSV or Parquet file",
		Long: `Download the ledger's lines of a tenant whose billing period is --period (through
--to-period) as a FOCUS 1.3 file. Ingesting it into an empty tenant gives the
same ledger.

Example:
  tally export focus --tenant acme --period 2024-09 --format parquet`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := tallyv1.FocusFormat_FOCUS_FORMAT_CSV
			switch strings.ToLower(format) {
			case "csv":
			case "parquet":
				f = tallyv1.FocusFormat_FOCUS_FORMAT_PARQUET
			default:
				return fmt.Errorf("--format %q: use csv or parquet", format)
			}
			client, err := o.client()
			if err != nil {
				return err
			}
			stream, err := client.ExportFocus(cmd.Context(), connect.NewRequest(&tallyv1.ExportFocusRequest{
				TenantId: o.tenant, Period: o.period, ToPeriod: toPeriod, Format: f}))
			if err != nil {
				return describeQueryError(o.server, err)
			}
			path, n, err := download(c, &o, stream)
			if err != nil {
				return err
			}
			return c.reportExport(path, n, "")
		},
	}
	o.flags(c, cmd)
	fs := cmd.Flags()
	fs.StringVar(&toPeriod, "to-period", "", "last billing `month`, YYYY-MM, inclusive; default: --period alone")
	fs.StringVar(&format, "format", "csv", "file `format`: csv or parquet")
	declareEnv(fs)
	return cmd
}

func newExportCloseCmd(c *cli) *cobra.Command {
	var o exportOptions
	var provider, format, tolerance string
	cmd := &cobra.Command{
		Use:   "close",
		Short: "Download the close package of a tenant's month as JSON or CSV",
		Long: `Download the close package of a tenant's month: totals preliminary and final,
restatements, post-close adjustments, invoice reconciliation, the chain head
and the package's SHA-256.

Example:
  tally export close --tenant acme --period 2024-09 --format csv -o close.csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := tallyv1.ClosePackageFormat_CLOSE_PACKAGE_FORMAT_JSON
			switch strings.ToLower(format) {
			case "json":
			case "csv":
				f = tallyv1.ClosePackageFormat_CLOSE_PACKAGE_FORMAT_CSV
			default:
				return fmt.Errorf("--format %q: use json or csv", format)
			}
			client, err := o.client()
			if err != nil {
				return err
			}
			stream, err := client.ExportClosePackage(cmd.Context(), connect.NewRequest(&tallyv1.ExportClosePackageRequest{
				TenantId: o.tenant, Period: o.period, Provider: provider, Format: f, TolerancePct: tolerance}))
			if err != nil {
				return describeQueryError(o.server, err)
			}
			path, n, err := download(c, &o, stream)
			if err != nil {
				return err
			}
			return c.reportExport(path, n, "")
		},
	}
	o.flags(c, cmd)
	fs := cmd.Flags()
	fs.StringVar(&provider, "provider", "", "the package of this `provider` only; default: every provider")
	fs.StringVar(&format, "format", "json", "file `format`: json or csv")
	fs.StringVar(&tolerance, "tolerance", "", "reconciliation tolerance in `percent` of the invoice; default 1")
	declareEnv(fs)
	return cmd
}

func newExportPackCmd(c *cli) *cobra.Command {
	var o exportOptions
	cmd := &cobra.Command{
		Use:   "pack",
		Short: "Download a tenant's compliance pack for a month (ZIP), and verify it",
		Long: `Download the compliance pack of a tenant's month: a ZIP of the close package (JSON
and CSV), the month's ledger as FOCUS, the allocation rules in force, the
projection checkpoints, the chain head, the read models' sections, and
manifest.json with the SHA-256 of every file. Once saved to a file, the pack
is verified against its manifest; its manifest's own SHA-256 is printed, for
recording elsewhere.

Example:
  tally export pack --tenant acme --period 2024-09`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := o.client()
			if err != nil {
				return err
			}
			stream, err := client.ExportCompliancePack(cmd.Context(), connect.NewRequest(&tallyv1.ExportCompliancePackRequest{
				TenantId: o.tenant, Period: o.period}))
			if err != nil {
				return describeQueryError(o.server, err)
			}
			path, n, err := download(c, &o, stream)
			if err != nil {
				return err
			}
			if path == "-" {
				return c.reportExport(path, n, "")
			}
			m, sum, err := verifyPackFile(path)
			if err != nil {
				return err
			}
			return c.reportExport(path, n, fmt.Sprintf("; verified: %d files match the manifest (sha256 %s); chain head %d %s",
				len(m.Files), sum, m.ChainHead.TenantSeq, m.ChainHead.Hash))
		},
	}
	o.flags(c, cmd)
	declareEnv(cmd.Flags())
	return cmd
}

// verifyPackFile checks a pack on disk and returns its manifest and the manifest's SHA-256.
func verifyPackFile(path string) (*exports.Manifest, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, "", err
	}
	m, err := exports.VerifyPack(f, st.Size())
	if err != nil {
		return m, "", fmt.Errorf("%s: %w", path, err)
	}
	// The manifest's digest: hash its bytes as stored in the ZIP.
	raw, err := manifestBytes(f, st.Size())
	if err != nil {
		return m, "", err
	}
	sum := sha256.Sum256(raw)
	return m, hex.EncodeToString(sum[:]), nil
}

func newExportVerifyCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a compliance pack against its manifest: every file there, with its SHA-256 and size",
		Long: `Check a compliance pack ZIP on disk: every file manifest.json lists must be in it
once, with the listed SHA-256 and size, and nothing else may be. Prints OK with
the pack's tenant, period and chain head, or every problem found and exits
with status 1. Needs no server.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, sum, err := verifyPackFile(args[0])
			var pe *exports.PackError
			if errors.As(err, &pe) {
				for _, p := range pe.Problems {
					fmt.Fprintln(c.stdout, "BAD", p)
				}
				return err
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.stdout, "OK %d files match the manifest (sha256 %s): tenant %s, period %s, chain head %d %s, created %s by %s\n",
				len(m.Files), sum, m.Tenant, m.Period, m.ChainHead.TenantSeq, m.ChainHead.Hash, m.CreatedAt.Format("2006-01-02T15:04:05Z"), m.CreatedBy)
			return err
		},
	}
}

// manifestBytes reads manifest.json out of a pack.
func manifestBytes(ra io.ReaderAt, size int64) ([]byte, error) {
	zr, err := zip.NewReader(ra, size)
	if err != nil {
		return nil, err
	}
	rc, err := zr.Open(exports.FileManifest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
