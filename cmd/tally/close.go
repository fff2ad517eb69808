package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/projections/closepkg"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

func newCloseCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "close",
		Short: "Month-end close: the close package, provider invoices, and closing a period",
		Long: `Month-end close, as a client of a running Tally (CloseService, and
IngestService for invoices):

  tally close package  the close package of a period: totals preliminary and
                       final, restatements, post-close adjustments, invoice
                       reconciliation, the chain head and the SHA-256
  tally close invoice  record a provider's invoice for reconciliation
  tally close close    close the period, with an approver other than you

Reading a package needs a token that may read the ledger (viewer, auditor,
admin); recording an invoice one that may ingest (ingester, admin); closing an
admin token. The close's actor is the token's name.`,
	}
	cmd.AddCommand(newClosePackageCmd(c), newCloseInvoiceCmd(c), newCloseCloseCmd(c))
	return cmd
}

// closeFlags are the flags every close command shares.
type closeFlags struct {
	tenant, period, provider string
	server                   string
	output                   string
	auth                     clientAuth
}

func (f *closeFlags) declare(c *cli, cmd *cobra.Command, outputs string) {
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&f.tenant, "tenant", "", "`tenant` id (required)")
	fs.StringVar(&f.period, "period", "", "billing `month`, YYYY-MM (required)")
	fs.StringVar(&f.provider, "provider", "", "`provider` (FOCUS ServiceProviderName, such as AWS); empty for all")
	f.output = "table"
	fs.StringVarP(&f.output, "output", "o", f.output, "output `format`: "+outputs)
	fs.StringVar(&f.server, "server", defaultServer, "`url` of the Tally server")
	f.auth.flags(c, cmd)
}

func (f *closeFlags) check(outputs ...string) error {
	if f.tenant == "" {
		return errors.New("--tenant is required (or TALLY_TENANT)")
	}
	if f.period == "" {
		return errors.New("--period is required: the billing month, such as 2024-09")
	}
	for _, o := range outputs {
		if f.output == o {
			return nil
		}
	}
	return fmt.Errorf("--output %q: use %s", f.output, strings.Join(outputs, ", "))
}

func newClosePackageCmd(c *cli) *cobra.Command {
	var f closeFlags
	var tolerance string
	var asOf uint64
	cmd := &cobra.Command{
		Use:   "package",
		Short: "Print the close package of a period",
		Long: `Print the close package of a tenant's billing month, built from everything the
tenant's log holds when asked: a summary table, the canonical JSON with its
sha256 (--output json, the export; removing "sha256" gives the hashed bytes),
or CSV, one fact a row. The hash is checked against the JSON before printing.

Example:
  tally close package --tenant acme --period 2024-09 --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check("table", "json", "csv"); err != nil {
				return err
			}
			hc, base, err := serverClient(f.server, &f.auth)
			if err != nil {
				return err
			}
			resp, err := tallyv1connect.NewCloseServiceClient(hc, base).GetClosePackage(cmd.Context(), connect.NewRequest(
				&tallyv1.GetClosePackageRequest{TenantId: f.tenant, Period: f.period, Provider: f.provider, TolerancePct: tolerance,
					AsOfSeq: asOf, WaitForHead: asOf == 0}))
			if err != nil {
				return describeQueryError(f.server, err)
			}
			p, err := packageOf(resp.Msg)
			if err != nil {
				return err
			}
			switch f.output {
			case "json":
				return closepkg.WriteJSON(c.stdout, p)
			case "csv":
				return closepkg.WriteCSV(c.stdout, p)
			}
			return printPackage(c.stdout, p)
		},
	}
	f.declare(c, cmd, "table, json or csv")
	fs := cmd.Flags()
	fs.StringVar(&tolerance, "tolerance", "", "reconciliation tolerance in `percent` of the invoice (decimal); default 1")
	fs.Uint64Var(&asOf, "as-of-seq", 0, "derive the package from the tenant's events up to this chain position `N` only (as a close did)")
	declareEnv(fs)
	return cmd
}

// packageOf decodes a package from its canonical JSON and checks that the SHA-256 the server
// sent is that of the bytes it sent.
func packageOf(m *tallyv1.GetClosePackageResponse) (*closepkg.Package, error) {
	var p closepkg.Package
	if err := json.Unmarshal([]byte(m.GetCanonicalJson()), &p); err != nil {
		return nil, fmt.Errorf("the server's package is not valid JSON: %w", err)
	}
	sum, err := closepkg.Hash(&p)
	if err != nil {
		return nil, err
	}
	if sum != m.GetSha256() {
		return nil, fmt.Errorf("the server's package does not hash to the sha256 it sent (%s, computed %s)", m.GetSha256(), sum)
	}
	p.SHA256 = sum
	return &p, nil
}

func printPackage(w io.Writer, p *closepkg.Package) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	provider := p.Provider
	if provider == "" {
		provider = "all providers"
	}
	fmt.Fprintf(tw, "Close package %s %s (%s), tolerance %s%%\n", p.Tenant, p.Period, provider, p.TolerancePct)
	fmt.Fprintf(tw, "status:\t%s\n", p.Status)
	for _, r := range p.Reasons {
		fmt.Fprintf(tw, "  blocked:\t%s\n", r)
	}
	fmt.Fprintf(tw, "closed:\t%t\n", p.Closed)
	for _, c := range p.Closes {
		fmt.Fprintf(tw, "  close at seq %d:\t%s by %s, approved by %s, package %s\n", c.Seq, orAll(c.Provider), c.Actor, c.Approver, c.PackageSHA256)
	}
	fmt.Fprintf(tw, "lines:\t%d final, %d preliminary\n", p.Lines.Final, p.Lines.Preliminary)
	for _, t := range p.Totals {
		fmt.Fprintf(tw, "total %s:\t%s (final %s, preliminary %s)\n", t.Currency, t.Total, t.Final, t.Preliminary)
	}
	fmt.Fprintf(tw, "restatements:\t%d\n", p.Restatements.Count)
	fmt.Fprintf(tw, "post-close adjustments:\t%d\n", p.PostClose.Count)
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "PROVIDER\tACCOUNT\tCURRENCY\tLEDGER_FINAL\tINVOICE\tVARIANCE\tVARIANCE_%\tSTATUS")
	opt := func(s *string) string {
		if s == nil {
			return "-"
		}
		return *s
	}
	for _, r := range p.Reconciliation {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Provider, r.BillingAccountID, r.Currency, r.LedgerFinal,
			opt(r.Invoice), opt(r.Variance), opt(r.VariancePct), r.Status)
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "chain head:\t%d %s\n", p.ChainHead.Seq, p.ChainHead.Hash)
	fmt.Fprintf(tw, "sha256:\t%s\n", p.SHA256)
	return tw.Flush()
}

func orAll(provider string) string {
	if provider == "" {
		return "all providers"
	}
	return provider
}

func newCloseInvoiceCmd(c *cli) *cobra.Command {
	var f closeFlags
	var account, id, amount, currency, issued, key string
	cmd := &cobra.Command{
		Use:   "invoice",
		Short: "Record a provider's invoice for a period (IngestService/RecordInvoice)",
		Long: `Record a provider's invoice for one billing account and month; the close
package reconciles the ledger's final cost against it. Recording the same invoice
id again with another amount corrects it. The same invoice sent twice is
recorded once.

Example:
  tally close invoice --tenant acme --period 2024-09 --provider AWS \
    --account 1234567890123 --invoice-id INV-0924 --amount 18.01 --currency USD`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check("table", "json"); err != nil {
				return err
			}
			start, err := time.Parse("2006-01", f.period)
			if err != nil {
				return fmt.Errorf("--period %q: want a month such as 2024-09", f.period)
			}
			for _, r := range []struct{ flag, v string }{{"--provider", f.provider}, {"--account", account}, {"--invoice-id", id}, {"--amount", amount}} {
				if r.v == "" {
					return fmt.Errorf("%s is required", r.flag)
				}
			}
			at := start.AddDate(0, 1, 0)
			if issued != "" {
				ts, err := parseInstant("--issued", issued)
				if err != nil {
					return err
				}
				at = ts.AsTime()
			}
			hc, base, err := serverClient(f.server, &f.auth)
			if err != nil {
				return err
			}
			resp, err := tallyv1connect.NewIngestServiceClient(hc, base).RecordInvoice(cmd.Context(), connect.NewRequest(&tallyv1.RecordInvoiceRequest{
				TenantId: f.tenant, IdempotencyKey: key,
				Invoice: &tallyv1.InvoiceRecorded{InvoiceId: id, Amount: amount, Currency: currency, IssuedAt: timestamppb.New(at),
					Scope: &tallyv1.BillScope{Provider: f.provider, BillingAccountId: account,
						BillingPeriodStart: timestamppb.New(start), BillingPeriodEnd: timestamppb.New(start.AddDate(0, 1, 0))}},
			}))
			if err != nil {
				return describeQueryError(f.server, err)
			}
			if f.output == "json" {
				return printProtoJSON(c.stdout, resp.Msg)
			}
			if resp.Msg.GetDuplicate() {
				_, err = fmt.Fprintf(c.stdout, "invoice %s already recorded (event %s): nothing appended\n", id, resp.Msg.GetEventId())
				return err
			}
			_, err = fmt.Fprintf(c.stdout, "invoice %s recorded: event %s at position %d of %s's chain\n", id, resp.Msg.GetEventId(), resp.Msg.GetTenantSeq(), f.tenant)
			return err
		},
	}
	f.declare(c, cmd, "table or json")
	fs := cmd.Flags()
	fs.StringVar(&account, "account", "", "billing `account` id the invoice is for (required)")
	fs.StringVar(&id, "invoice-id", "", "the provider's invoice `number` (required)")
	fs.StringVar(&amount, "amount", "", "invoice total, a decimal `amount` such as 18.01 (required)")
	fs.StringVar(&currency, "currency", "USD", "ISO 4217 `code`")
	fs.StringVar(&issued, "issued", "", "invoice `day` (YYYY-MM-DD) or instant; default: the first day after the period")
	fs.StringVar(&key, "idempotency-key", "", "`key` making a retry safe; default: derived from the invoice")
	declareEnv(fs)
	return cmd
}

func newCloseCloseCmd(c *cli) *cobra.Command {
	var f closeFlags
	var approver, note, reason, tolerance string
	var force bool
	cmd := &cobra.Command{
		Use:   "close",
		Short: "Close a period: record the close package's hash with an approver",
		Long: `Close a tenant's billing month: Tally builds the close package from everything
the tenant's log holds, checks it (the approver is not you, the period is not
closed yet, the package is ready unless --force with --reason) and appends a
PeriodClosed event with the package's SHA-256 and chain head. If anything is
appended to the tenant meanwhile (a concurrent close, a late invoice), the close
is refused: look at the package again and retry.

Example:
  tally close close --tenant acme --period 2024-09 --approver bob --note "September books"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check("table", "json"); err != nil {
				return err
			}
			if approver == "" {
				return errors.New("--approver is required: the user id of the person who approved the close (not you)")
			}
			hc, base, err := serverClient(f.server, &f.auth)
			if err != nil {
				return err
			}
			resp, err := tallyv1connect.NewCloseServiceClient(hc, base).ClosePeriod(cmd.Context(), connect.NewRequest(&tallyv1.ClosePeriodRequest{
				TenantId: f.tenant, Period: f.period, Provider: f.provider, Approver: approver, Note: note, Force: force, Reason: reason,
				TolerancePct: tolerance}))
			if err != nil {
				return describeCloseError(f.server, err)
			}
			if f.output == "json" {
				return printProtoJSON(c.stdout, resp.Msg)
			}
			r := resp.Msg
			_, err = fmt.Fprintf(c.stdout, "closed %s %s (%s), approved by %s: event %s at position %d\npackage sha256 %s, chain head %d %s\n",
				f.tenant, f.period, orAll(f.provider), approver, r.GetEventId(), r.GetTenantSeq(), r.GetPackageSha256(), r.GetChainHeadSeq(), r.GetChainHead())
			return err
		},
	}
	f.declare(c, cmd, "table or json")
	fs := cmd.Flags()
	fs.StringVar(&approver, "approver", "", "user `id` of the person who approved the close; must not be you (required)")
	fs.StringVar(&note, "note", "", "free `text` recorded with the close")
	fs.BoolVar(&force, "force", false, "close a blocked package (needs --reason)")
	fs.StringVar(&reason, "reason", "", "why a blocked package is closed (`text`)")
	fs.StringVar(&tolerance, "tolerance", "", "reconciliation tolerance in `percent` (decimal); default 1")
	declareEnv(fs)
	return cmd
}

// describeCloseError explains the refusals of a close a person can act on.
func describeCloseError(server string, err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		switch ce.Code() {
		case connect.CodeFailedPrecondition:
			return fmt.Errorf("close refused: %s", ce.Message())
		case connect.CodeAborted:
			return fmt.Errorf("close not recorded: the tenant's log moved while the package was built (%s); check the package (tally close package) and retry", ce.Message())
		}
	}
	return describeQueryError(server, err)
}

func printProtoJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
