package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

func newAuditCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Replay a tenant's events from the log and verify its hash chain",
		Long: `Auditor commands, as clients of a running Tally (AuditService). They need a
token with the role auditor or admin; the system tenant "_system" (rejected
requests) needs one for every tenant.`,
	}
	cmd.AddCommand(newAuditReplayCmd(c), newAuditVerifyCmd(c))
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
}

// errChainBroken makes `tally audit verify` exit with status 1 once the
// report is printed.
var errChainBroken = errors.New("the hash chain is broken")

func newAuditVerifyCmd(c *cli) *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Recompute a tenant's hash chain from the log: OK with its head, or the first bad event",
		Long: `Ask Tally to replay a tenant's events from the log and recompute its hash chain.
Prints OK with the chain's head (position, hash, log message), or the first
bad event (position, id, log message, what is wrong) and the other problems
found, and then exits with status 1.

Example:
  tally audit verify --tenant acme`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditVerify(cmd.Context(), c, o)
		},
	}
	o.auditClient.flags(c, cmd)
	fs := cmd.Flags()
	fs.Uint32Var(&o.maxProblems, "max-problems", 10, "list at most `N` problems (at most 100)")
	declareEnv(fs)
	return cmd
}

func runAuditVerify(ctx context.Context, c *cli, o verifyOptions) error {
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
		_, err := fmt.Fprintf(c.stdout, "OK tenant %s: %d events, head %d %s (log message %d)\n",
			r.GetTenantId(), r.GetEvents(), r.GetHeadTenantSeq(), r.GetHeadHash(), r.GetHeadStreamSeq())
		return err
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
