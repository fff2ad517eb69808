package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/shopspring/decimal"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// allocFlags are the flags every allocation command shares.
type allocFlags struct {
	tenant, period string
	server         string
	output         string
	auth           clientAuth
}

func (f *allocFlags) declare(c *cli, cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&f.tenant, "tenant", "", "`tenant` id (required)")
	fs.StringVar(&f.period, "period", "", "`month` of charge days, YYYY-MM (required)")
	f.output = "table"
	fs.StringVarP(&f.output, "output", "o", f.output, "output `format`: table or json")
	fs.StringVar(&f.server, "server", defaultServer, "`url` of the Tally server")
	f.auth.flags(c, cmd)
}

func (f *allocFlags) check() error {
	if f.tenant == "" {
		return errors.New("--tenant is required (or TALLY_TENANT)")
	}
	if f.period == "" {
		return errors.New("--period is required: a month, such as 2024-09")
	}
	if f.output != "table" && f.output != "json" {
		return fmt.Errorf("--output %q: use table or json", f.output)
	}
	return nil
}

// client is an AllocationService client using HTTP GET: every method is free
// of side effects, so caches and proxies may serve it.
func (f *allocFlags) client() (tallyv1connect.AllocationServiceClient, error) {
	hc, base, err := serverClient(f.server, &f.auth)
	if err != nil {
		return nil, err
	}
	return tallyv1connect.NewAllocationServiceClient(hc, base, connect.WithHTTPGet()), nil
}

func newAllocationCmd(c *cli) *cobra.Command {
	var (
		f     allocFlags
		byDay bool
	)
	cmd := &cobra.Command{
		Use:   "allocation",
		Short: "Cost allocated to cost centers, unallocated cost, coverage and rule dry runs",
		Long: `Allocation of a tenant's cost to cost centers by its allocation rules, from a
running Tally (AllocationService). Amounts are effective cost per billing
currency, exact, on the UTC day of each line's charge period start.

  tally allocation              allocated cost per cost center (--by-day: and day)
  tally allocation coverage     allocated / total per currency
  tally allocation unallocated  cost no rule matched, largest services first
  tally allocation dry-run      what a rule change would move, before it is made

Rules are set and retired as events (IngestService SetAllocationRule and
RetireAllocationRule); a dry run takes the same rule as JSON.

Example:
  tally allocation --tenant acme --period 2024-09
  tally allocation dry-run --tenant acme --period 2024-09 --rule rule.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAllocated(cmd.Context(), c, f, byDay)
		},
	}
	f.declare(c, cmd)
	cmd.Flags().BoolVar(&byDay, "by-day", false, "one row per day and cost center")
	declareEnv(cmd.Flags())
	cmd.AddCommand(newAllocationCoverageCmd(c), newAllocationUnallocatedCmd(c), newAllocationDryRunCmd(c))
	return cmd
}

func runAllocated(ctx context.Context, c *cli, f allocFlags, byDay bool) error {
	if err := f.check(); err != nil {
		return err
	}
	client, err := f.client()
	if err != nil {
		return err
	}
	req := &tallyv1.GetAllocationRequest{TenantId: f.tenant, Period: f.period,
		GroupBy: tallyv1.AllocationGrouping_ALLOCATION_GROUPING_COST_CENTER}
	if byDay {
		req.GroupBy = tallyv1.AllocationGrouping_ALLOCATION_GROUPING_COST_CENTER_DAY
	}
	resp, err := client.GetAllocation(ctx, connect.NewRequest(req))
	if err != nil {
		return describeQueryError(f.server, err)
	}
	if f.output == "json" {
		return printProtoJSON(c.stdout, resp.Msg)
	}
	return printAllocation(c.stdout, byDay, resp.Msg)
}

func newAllocationCoverageCmd(c *cli) *cobra.Command {
	var f allocFlags
	cmd := &cobra.Command{
		Use:   "coverage",
		Short: "Allocation coverage of a month: allocated / (allocated + unallocated), per currency",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			client, err := f.client()
			if err != nil {
				return err
			}
			resp, err := client.GetCoverage(cmd.Context(), connect.NewRequest(&tallyv1.GetCoverageRequest{TenantId: f.tenant, Period: f.period}))
			if err != nil {
				return describeQueryError(f.server, err)
			}
			if f.output == "json" {
				return printProtoJSON(c.stdout, resp.Msg)
			}
			return printCoverage(c.stdout, resp.Msg)
		},
	}
	f.declare(c, cmd)
	declareEnv(cmd.Flags())
	return cmd
}

func newAllocationUnallocatedCmd(c *cli) *cobra.Command {
	var (
		f   allocFlags
		top uint32
	)
	cmd := &cobra.Command{
		Use:   "unallocated",
		Short: "Cost no allocation rule matched in a month, per currency, largest services first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			client, err := f.client()
			if err != nil {
				return err
			}
			resp, err := client.GetUnallocated(cmd.Context(), connect.NewRequest(&tallyv1.GetUnallocatedRequest{
				TenantId: f.tenant, Period: f.period, Top: top}))
			if err != nil {
				return describeQueryError(f.server, err)
			}
			if f.output == "json" {
				return printProtoJSON(c.stdout, resp.Msg)
			}
			return printUnallocated(c.stdout, resp.Msg)
		},
	}
	f.declare(c, cmd)
	cmd.Flags().Uint32Var(&top, "top", 10, "`services` to list per currency; the rest are summed")
	declareEnv(cmd.Flags())
	return cmd
}

func newAllocationDryRunCmd(c *cli) *cobra.Command {
	var (
		f           allocFlags
		ruleFile    string
		retire      string
		effectiveTo string
	)
	cmd := &cobra.Command{
		Use:   "dry-run",
		Short: "Show what a proposed rule version or retirement would move over a month; changes nothing",
		Long: `Show what a proposed rule change would move between cost centers over a month,
if it were made now: each cost center's cost before and after, and the
difference; "(unallocated)" is the cost no rule matches. Nothing is appended.

The change is either a rule version, as the JSON of a tally.v1.AllocationRuleSet
(--rule FILE, or - for standard input), for example

  {"ruleId": "web", "version": 2, "priority": 10,
   "effectiveFrom": "2024-09-15T00:00:00Z", "split": "SPLIT_KIND_PERCENTAGE",
   "match": {"tags": [{"key": "team", "value": "web"}]},
   "shares": [{"costCenter": "web", "value": "60"}, {"costCenter": "shared", "value": "40"}]}

or a retirement (--retire RULE_ID --effective-to YYYY-MM-DD).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			req := &tallyv1.DryRunRuleRequest{TenantId: f.tenant, Period: f.period}
			switch {
			case ruleFile != "" && retire != "":
				return errors.New("--rule and --retire: give one change, not both")
			case ruleFile != "":
				r, err := readRule(cmd.InOrStdin(), ruleFile)
				if err != nil {
					return err
				}
				req.Change = &tallyv1.DryRunRuleRequest_Rule{Rule: r}
			case retire != "":
				to, err := parseInstant("--effective-to", effectiveTo)
				if err != nil {
					return err
				}
				req.Change = &tallyv1.DryRunRuleRequest_Retired{Retired: &tallyv1.AllocationRuleRetired{RuleId: retire, EffectiveTo: to}}
			default:
				return errors.New("no change: give --rule FILE (a rule version as JSON) or --retire RULE_ID --effective-to DAY")
			}
			client, err := f.client()
			if err != nil {
				return err
			}
			resp, err := client.DryRunRule(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				var ce *connect.Error
				if errors.As(err, &ce) && ce.Code() == connect.CodeNotFound {
					return fmt.Errorf("not found: %s", ce.Message())
				}
				return describeQueryError(f.server, err)
			}
			if f.output == "json" {
				return printProtoJSON(c.stdout, resp.Msg)
			}
			return printDryRun(c.stdout, resp.Msg)
		},
	}
	f.declare(c, cmd)
	fs := cmd.Flags()
	fs.StringVar(&ruleFile, "rule", "", "`file` holding the proposed rule version as JSON (- for standard input)")
	fs.StringVar(&retire, "retire", "", "`rule` id to retire instead")
	fs.StringVar(&effectiveTo, "effective-to", "", "`day` (YYYY-MM-DD, UTC) or instant the retired rule stops applying")
	declareEnv(fs)
	return cmd
}

// readRule reads an AllocationRuleSet as protojson from path ("-": in).
func readRule(in io.Reader, path string) (*tallyv1.AllocationRuleSet, error) {
	var (
		b   []byte
		err error
	)
	if path == "-" {
		b, err = io.ReadAll(in)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("--rule: %w", err)
	}
	var r tallyv1.AllocationRuleSet
	if err := protojson.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("--rule %s: not the JSON of a tally.v1.AllocationRuleSet: %w", path, err)
	}
	return &r, nil
}

// allocSums adds amounts per currency, in first-seen order.
type allocSums struct {
	order []string
	sum   map[string]decimal.Decimal
}

func (s *allocSums) add(currency, amount string) error {
	d, err := decimal.NewFromString(amount)
	if err != nil {
		return fmt.Errorf("the server sent %q as an amount: %w", amount, err)
	}
	if s.sum == nil {
		s.sum = map[string]decimal.Decimal{}
	}
	if _, ok := s.sum[currency]; !ok {
		s.order = append(s.order, currency)
	}
	s.sum[currency] = s.sum[currency].Add(d)
	return nil
}

// printAllocation writes one line per row, then a total per currency.
func printAllocation(w io.Writer, byDay bool, r *tallyv1.GetAllocationResponse) error {
	if len(r.GetRows()) == 0 {
		_, err := fmt.Fprintln(w, "no allocated cost in this period")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var totals allocSums
	lead := ""
	if byDay {
		fmt.Fprintln(tw, "DAY\tCOST CENTER\tCURRENCY\tAMOUNT")
		lead = "\t"
	} else {
		fmt.Fprintln(tw, "COST CENTER\tCURRENCY\tAMOUNT")
	}
	for _, row := range r.GetRows() {
		if byDay {
			fmt.Fprint(tw, row.GetDay().AsTime().Format(time.DateOnly)+"\t")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", row.GetCostCenter(), row.GetCurrency(), row.GetAmount())
		if err := totals.add(row.GetCurrency(), row.GetAmount()); err != nil {
			return err
		}
	}
	for _, cur := range totals.order {
		fmt.Fprintf(tw, "%sTOTAL\t%s\t%s\n", lead, cur, totals.sum[cur])
	}
	return tw.Flush()
}

func printCoverage(w io.Writer, r *tallyv1.GetCoverageResponse) error {
	if len(r.GetCurrencies()) == 0 {
		_, err := fmt.Fprintln(w, "no cost in this period")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CURRENCY\tALLOCATED\tUNALLOCATED\tTOTAL\tCOVERAGE")
	for _, c := range r.GetCurrencies() {
		pct := "-"
		if c.GetPercent() != "" {
			pct = c.GetPercent() + "%"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.GetCurrency(), c.GetAllocated(), c.GetUnallocated(), c.GetTotal(), pct)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range r.GetFailedDays() {
		if _, err := fmt.Fprintf(w, "allocation failed on %s, its cost is unallocated: %s\n",
			d.GetDay().AsTime().Format(time.DateOnly), d.GetReason()); err != nil {
			return err
		}
	}
	return nil
}

func printUnallocated(w io.Writer, r *tallyv1.GetUnallocatedResponse) error {
	if len(r.GetCurrencies()) == 0 {
		_, err := fmt.Fprintln(w, "no unallocated cost in this period")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CURRENCY\tSERVICE\tAMOUNT")
	for _, u := range r.GetCurrencies() {
		for _, s := range u.GetTopServices() {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.GetCurrency(), cmp.Or(s.GetServiceName(), "(no service)"), s.GetAmount())
		}
		if u.GetOtherServices() > 0 {
			fmt.Fprintf(tw, "%s\t(%d other services)\t%s\n", u.GetCurrency(), u.GetOtherServices(), u.GetOther())
		}
		fmt.Fprintf(tw, "%s\tTOTAL\t%s\n", u.GetCurrency(), u.GetTotal())
	}
	return tw.Flush()
}

func printDryRun(w io.Writer, r *tallyv1.DryRunRuleResponse) error {
	if len(r.GetMovements()) == 0 {
		_, err := fmt.Fprintln(w, "no cost in this period: nothing would move")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "COST CENTER\tCURRENCY\tBEFORE\tAFTER\tDELTA")
	for _, m := range r.GetMovements() {
		delta := m.GetDelta()
		if !strings.HasPrefix(delta, "-") && delta != "0" {
			delta = "+" + delta
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cmp.Or(m.GetCostCenter(), "(unallocated)"), m.GetCurrency(),
			m.GetBefore(), m.GetAfter(), delta)
	}
	return tw.Flush()
}
