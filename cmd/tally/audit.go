package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/app"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
	"github.com/tally-ledger/tally/storage"
)

func newAuditCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Replay a tenant's events, verify its hash chain and close packages, list its configuration changes",
		Long: `Auditor commands, as clients of a running Tally (AuditService). They need a
token with the role auditor or admin; the system tenant "_system" (rejected
requests) needs one for every tenant.`,
	}
	cmd.AddCommand(newAuditReplayCmd(c), newAuditVerifyCmd(c), newAuditChangesCmd(c))
	return cmd
}

// auditClient is the common part of the audit commands.
type auditClient struct {
	tenant string
	server string
	auth   clientAuth
}

func (a *auditClient) flags(c *cli, cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&a.tenant, "tenant", "", "`tenant` id (required), or _system")
	fs.StringVar(&a.server, "server", defaultServer, "`url` of the Tally server")
	a.auth.flags(c, cmd)
}

func (a *auditClient) client() (tallyv1connect.AuditServiceClient, error) {
	if a.tenant == "" {
		return nil, errors.New("--tenant is required (or TALLY_TENANT)")
	}
	hc, baseURL, err := serverClient(a.server, &a.auth)
	if err != nil {
		return nil, err
	}
	return tallyv1connect.NewAuditServiceClient(hc, baseURL), nil
}

type replayOptions struct {
	auditClient
	kinds         []string
	fromSeq       uint64
	fromStreamSeq uint64
	from, to      string
	output        string
}

func newAuditReplayCmd(c *cli) *cobra.Command {
	o := replayOptions{output: "table"}
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Print a tenant's events as stored in the log, one line each",
		Long: `Print a tenant's events in log order, as stored, one line per event: its
position in the tenant's chain, the log message holding it, its kind, id,
recording time and chain hash. --output json prints each event (with its
envelope) as one line of protobuf JSON, for jq and scripts.

Example:
  tally audit replay --tenant acme --kind cost_line_restated --from-seq 1000 --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditReplay(cmd.Context(), c, o)
		},
	}
	o.auditClient.flags(c, cmd)
	fs := cmd.Flags()
	fs.StringSliceVar(&o.kinds, "kind", nil, "only events of these `kinds` (cost_line_recorded, usage_recorded, ...); repeatable or comma-separated")
	fs.Uint64Var(&o.fromSeq, "from-seq", 0, "start at this position `N` of the tenant's chain (tenant sequence)")
	fs.Uint64Var(&o.fromStreamSeq, "from-stream-seq", 0, "start at this log (stream) sequence `N`")
	fs.StringVar(&o.from, "from", "", "only events recorded at or after this `day` (YYYY-MM-DD, UTC) or instant (RFC 3339)")
	fs.StringVar(&o.to, "to", "", "only events recorded before this `day` or instant")
	fs.StringVarP(&o.output, "output", "o", o.output, "output `format`: table or json (one event per line)")
	declareEnv(fs)
	return cmd
}

func replayRequest(o replayOptions) (*tallyv1.ReplayEventsRequest, error) {
	if o.output != "table" && o.output != "json" {
		return nil, fmt.Errorf("--output %q: use table or json", o.output)
	}
	req := &tallyv1.ReplayEventsRequest{TenantId: o.tenant, FromTenantSeq: o.fromSeq, FromStreamSeq: o.fromStreamSeq}
	for _, k := range o.kinds {
		if k = strings.TrimSpace(k); k != "" {
			req.Kinds = append(req.Kinds, k)
		}
	}
	var err error
	if o.from != "" {
		if req.FromTime, err = parseInstant("--from", o.from); err != nil {
			return nil, err
		}
	}
	if o.to != "" {
		if req.ToTime, err = parseInstant("--to", o.to); err != nil {
			return nil, err
		}
	}
	return req, nil
}

func runAuditReplay(ctx context.Context, c *cli, o replayOptions) error {
	req, err := replayRequest(o)
	if err != nil {
		return err
	}
	client, err := o.client()
	if err != nil {
		return err
	}
	stream, err := client.ReplayEvents(ctx, connect.NewRequest(req))
	if err != nil {
		return describeQueryError(o.server, err)
	}
	defer stream.Close()
	// Lines are written as events arrive (no table alignment pass), so a
	// replay of any length runs in constant memory.
	if o.output == "table" {
		if _, err := fmt.Fprintf(c.stdout, "%-10s %-10s %-26s %-36s %-30s %s\n",
			"SEQ", "LOG_SEQ", "KIND", "EVENT_ID", "RECORDED_AT", "HASH"); err != nil {
			return err
		}
	}
	n := 0
	for stream.Receive() {
		n++
		if err := printReplayed(c.stdout, o.output, stream.Msg()); err != nil {
			return err
		}
	}
	if err := stream.Err(); err != nil {
		return describeQueryError(o.server, err)
	}
	if n == 0 && o.output == "table" {
		_, err := fmt.Fprintln(c.stdout, "no events")
		return err
	}
	return nil
}

func printReplayed(w io.Writer, output string, m *tallyv1.ReplayEventsResponse) error {
	if output == "json" {
		b, err := protojson.Marshal(m)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	env := m.GetEnvelope()
	_, err := fmt.Fprintf(w, "%-10d %-10d %-26s %-36s %-30s %s\n", m.GetTenantSeq(), m.GetStreamSeq(), m.GetKind(),
		env.GetEventId(), env.GetRecordedAt().AsTime().Format(time.RFC3339Nano), m.GetHash())
	return err
}

type verifyOptions struct {
	auditClient
	maxProblems uint32
	// With a period, the close packages are re-derived too.
	period, provider, tolerance string
	databaseURL                 string
}

// errChainBroken makes `tally audit verify` exit with status 1 once the
// report is printed.
var errChainBroken = errors.New("the hash chain is broken")

func newAuditVerifyCmd(c *cli) *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Recompute a tenant's hash chain from the log, and re-derive its close packages",
		Long: `Ask Tally to replay a tenant's events from the log and recompute its hash chain.
Prints OK with the chain's head (position, hash, log message), or the first
bad event (position, id, log message, what is wrong) and the other problems
found, and then exits with status 1.

With --period, once the chain verifies, the close packages of that month are
re-derived independently of Tally's read models: the tenant's close-package
events are replayed (AuditService.ReplayEvents) into a scratch PostgreSQL
database that this command creates and drops, folded there by the close
package's own code, and each close's package is rebuilt as of the chain head
the close recorded. Its SHA-256 is compared with the one in the PeriodClosed
event and with the live package (CloseService.GetClosePackage as of the same
head): MATCH, or DIFFERENT with the first differing field, and exit status 1.
A period not closed has its current package compared with the live one.
--tolerance overrides the tolerance each close recorded (closes recorded before
close events carried it used 1, the default).

The scratch database is created on the PostgreSQL that the other commands
use: --database-url (DATABASE_URL) as given, else the local server on
127.0.0.1:5432, else the private cluster under --data-dir; its role needs
CREATEDB. It is named tally_verify_<random> and dropped at the end.

Examples:
  tally audit verify --tenant acme
  tally audit verify --tenant acme --period 2024-09 --database-url postgres://auditor@localhost/postgres`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditVerify(cmd.Context(), c, o)
		},
	}
	o.auditClient.flags(c, cmd)
	fs := cmd.Flags()
	fs.Uint32Var(&o.maxProblems, "max-problems", 10, "list at most `N` problems (at most 100)")
	fs.StringVar(&o.period, "period", "", "also re-derive the close packages of this `month` (YYYY-MM) in a scratch database")
	fs.StringVar(&o.provider, "provider", "", "with --period: only the closes of this `provider`")
	fs.StringVar(&o.tolerance, "tolerance", "", "with --period: the reconciliation tolerance in `percent`; default: the one each close recorded (1 for older closes)")
	fs.Var(checkedString{&o.databaseURL, app.CheckDatabaseURL}, "database-url",
		"with --period: PostgreSQL `url` to create the scratch database beside; empty uses "+storage.DefaultLocalURL+" if it answers, else the private cluster in <data-dir>/postgres")
	declareEnv(fs)
	return cmd
}

func runAuditVerify(ctx context.Context, c *cli, o verifyOptions) error {
	if o.period != "" {
		if _, err := time.Parse("2006-01", o.period); err != nil || len(o.period) != 7 {
			return fmt.Errorf("--period %q: want a month such as 2024-09", o.period)
		}
	}
	client, err := o.client()
	if err != nil {
		return err
	}
	resp, err := client.VerifyChain(ctx, connect.NewRequest(&tallyv1.VerifyChainRequest{TenantId: o.tenant, MaxProblems: o.maxProblems}))
	if err != nil {
		return describeQueryError(o.server, err)
	}
	r := resp.Msg
	if r.GetOk() {
		if _, err := fmt.Fprintf(c.stdout, "OK tenant %s: %d events, head %d %s (log message %d)\n",
			r.GetTenantId(), r.GetEvents(), r.GetHeadTenantSeq(), r.GetHeadHash(), r.GetHeadStreamSeq()); err != nil {
			return err
		}
		if o.period == "" {
			return nil
		}
		hc, base, err := serverClient(o.server, &o.auth)
		if err != nil {
			return err
		}
		return verifyPeriod(ctx, c, o, client, tallyv1connect.NewCloseServiceClient(hc, base))
	}
	p := r.GetFirstProblem()
	fmt.Fprintf(c.stdout, "BROKEN tenant %s: %d events read; chain verifies up to %d %s\n",
		r.GetTenantId(), r.GetEvents(), r.GetHeadTenantSeq(), r.GetHeadHash())
	fmt.Fprintf(c.stdout, "first bad event: %d (id %s, log message %d): %s\n",
		p.GetTenantSeq(), orNone(p.GetEventId()), p.GetStreamSeq(), p.GetReason())
	if len(r.GetProblems()) > 1 {
		fmt.Fprintln(c.stdout, "problems:")
		for _, q := range r.GetProblems() {
			fmt.Fprintf(c.stdout, "  %d (id %s, log message %d): %s\n", q.GetTenantSeq(), orNone(q.GetEventId()), q.GetStreamSeq(), q.GetReason())
		}
		if r.GetProblemsTruncated() {
			fmt.Fprintln(c.stdout, "  ... more (--max-problems)")
		}
	}
	return fmt.Errorf("tenant %s: %w at event %d", r.GetTenantId(), errChainBroken, p.GetTenantSeq())
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

type changesOptions struct {
	auditClient
	kinds    []string
	since    string
	from, to string
	limit    int
	output   string
}

func newAuditChangesCmd(c *cli) *cobra.Command {
	o := changesOptions{output: "table"}
	cmd := &cobra.Command{
		Use:   "changes",
		Short: "List a tenant's configuration changes: who, approved by whom, when, and what changed",
		Long: `List a tenant's configuration changes from the change log, newest first:
allocation rules set and retired, budgets, invoices, period closes, FX rates and
resource tags, each with its actor, its approver, when the log recorded it, the
item it concerns and the fields it changed (before -> after). --output json
prints each change, with the item's whole JSON before and after, one per line.

Example:
  tally audit changes --tenant acme --kind budget_set --since 7d`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditChanges(cmd.Context(), c, o, time.Now())
		},
	}
	o.auditClient.flags(c, cmd)
	fs := cmd.Flags()
	fs.StringSliceVar(&o.kinds, "kind", nil, "only these `kinds` (allocation_rule_set, allocation_rule_retired, budget_set, invoice_recorded, period_closed, fx_rate_recorded, resource_tagged); repeatable or comma-separated")
	fs.StringVar(&o.since, "since", "", "only changes recorded in the last `duration`: 7d, 36h, 90m")
	fs.StringVar(&o.from, "from", "", "only changes recorded at or after this `day` (YYYY-MM-DD, UTC) or instant (RFC 3339)")
	fs.StringVar(&o.to, "to", "", "only changes recorded before this `day` or instant")
	fs.IntVar(&o.limit, "limit", 0, "list at most `N` changes (default: all)")
	fs.StringVarP(&o.output, "output", "o", o.output, "output `format`: table or json (one change per line)")
	declareEnv(fs)
	return cmd
}

// parseSince reads a duration with days ("7d") as well as Go's units ("36h", "90m").
func parseSince(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err == nil && days > 0 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("--since %q: want a positive duration such as 7d, 36h or 90m", v)
}

func changesRequest(o changesOptions, now time.Time) (*tallyv1.ListChangesRequest, error) {
	if o.output != "table" && o.output != "json" {
		return nil, fmt.Errorf("--output %q: use table or json", o.output)
	}
	if o.since != "" && o.from != "" {
		return nil, errors.New("--since and --from both set the start: give one")
	}
	req := &tallyv1.ListChangesRequest{TenantId: o.tenant}
	for _, k := range o.kinds {
		if k = strings.TrimSpace(k); k != "" {
			req.Kinds = append(req.Kinds, k)
		}
	}
	var err error
	if o.since != "" {
		d, err := parseSince(o.since)
		if err != nil {
			return nil, err
		}
		req.From = timestamppb.New(now.Add(-d))
	}
	if o.from != "" {
		if req.From, err = parseInstant("--from", o.from); err != nil {
			return nil, err
		}
	}
	if o.to != "" {
		if req.To, err = parseInstant("--to", o.to); err != nil {
			return nil, err
		}
	}
	if o.limit < 0 {
		return nil, fmt.Errorf("--limit %d: want a positive number", o.limit)
	}
	return req, nil
}

func runAuditChanges(ctx context.Context, c *cli, o changesOptions, now time.Time) error {
	req, err := changesRequest(o, now)
	if err != nil {
		return err
	}
	client, err := o.client()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	if o.output == "table" {
		fmt.Fprintln(tw, "SEQ\tRECORDED_AT\tKIND\tKEY\tACTOR\tAPPROVER\tCHANGES")
	}
	n := 0
	for {
		if o.limit > 0 {
			req.PageSize = uint32(min(o.limit-n, 1000))
		}
		resp, err := client.ListChanges(ctx, connect.NewRequest(req))
		if err != nil {
			return describeQueryError(o.server, err)
		}
		for _, ch := range resp.Msg.GetChanges() {
			n++
			if o.output == "json" {
				b, err := protojson.Marshal(ch)
				if err != nil {
					return err
				}
				fmt.Fprintln(c.stdout, string(b))
				continue
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", ch.GetTenantSeq(), ch.GetRecordedAt().AsTime().Format(time.RFC3339),
				ch.GetKind(), ch.GetKey(), actorName(ch.GetActor()), actorName(ch.GetApprover()), describeDiff(ch))
		}
		req.PageToken = resp.Msg.GetNextPageToken()
		if req.PageToken == "" || (o.limit > 0 && n >= o.limit) {
			break
		}
	}
	if o.output == "table" {
		if n == 0 {
			fmt.Fprintln(tw, "no changes")
		}
		return tw.Flush()
	}
	return nil
}

// actorName is "alice" for a user, "service:ecb-import" for a service, "-" for none.
func actorName(a *tallyv1.Actor) string {
	switch {
	case a.GetId() == "":
		return "-"
	case a.GetKind() == tallyv1.ActorKind_ACTOR_KIND_USER:
		return a.GetId()
	}
	return strings.ToLower(strings.TrimPrefix(a.GetKind().String(), "ACTOR_KIND_")) + ":" + a.GetId()
}

// describeDiff is "created" for an item's first event, else its changed fields,
// "amount: \"500\" -> \"650\"; ...".
func describeDiff(ch *tallyv1.ConfigChange) string {
	if ch.GetBeforeJson() == "null" {
		return "created"
	}
	if len(ch.GetDiff()) == 0 {
		return "no change"
	}
	parts := make([]string, len(ch.GetDiff()))
	for i, f := range ch.GetDiff() {
		parts[i] = f.GetField() + ": " + f.GetBeforeJson() + " -> " + f.GetAfterJson()
	}
	return strings.Join(parts, "; ")
}
