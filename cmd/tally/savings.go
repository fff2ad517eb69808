package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/shopspring/decimal"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

type savingsOptions struct {
	tenant, server   string
	period, action   string
	status, resource string
	evidence         bool
	output           string
	auth             clientAuth
}

func newSavingsCmd(c *cli) *cobra.Command {
	o := savingsOptions{server: defaultServer, output: "table"}
	cmd := &cobra.Command{
		Use:   "savings",
		Short: "Show what remediation actions really saved, measured from the final bill",
		Long: `Show realized savings from a running Tally: for each remediation action, the
effective cost of its resource over a baseline window before it and a
measurement window after it (defaults 7 days, a 1-day gap, 7 days), from final
ledger lines only. An action is pending until both windows are covered by
finalized bills; a saving that turned into a cost increase is shown negative.
Monthly = daily x 30.4375 (365.25 / 12).

Without --action, lists the tenant's actions (filtered by --period, the month
of the action, --status and --resource). With --action, shows one action, its
windows and the history of its figure; add --evidence for the cost lines
behind it.

Examples:
  tally savings --tenant acme --period 2024-09
  tally savings --tenant acme --action act-42 --evidence`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSavings(cmd.Context(), c, o)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&o.tenant, "tenant", "", "`tenant` id (required)")
	fs.StringVar(&o.period, "period", "", "`month` of the actions, YYYY-MM (UTC)")
	fs.StringVar(&o.action, "action", "", "show one action by its `id`")
	fs.StringVar(&o.status, "status", "", "list only actions with this `status`: pending, measured, cost_increase or unmeasurable")
	fs.StringVar(&o.resource, "resource", "", "list only actions on this resource `id`")
	fs.BoolVar(&o.evidence, "evidence", false, "with --action: also list the cost lines of its windows")
	fs.StringVarP(&o.output, "output", "o", o.output, "output `format`: table or json")
	fs.StringVar(&o.server, "server", o.server, "`url` of the Tally server")
	o.auth.flags(c, cmd)
	declareEnv(fs)
	return cmd
}

// savingsStatusFlag maps --status to the API's status.
var savingsStatusFlag = map[string]tallyv1.SavingsStatus{
	"pending":       tallyv1.SavingsStatus_SAVINGS_STATUS_PENDING,
	"measured":      tallyv1.SavingsStatus_SAVINGS_STATUS_MEASURED,
	"cost_increase": tallyv1.SavingsStatus_SAVINGS_STATUS_COST_INCREASE,
	"unmeasurable":  tallyv1.SavingsStatus_SAVINGS_STATUS_UNMEASURABLE,
}

// checkSavingsFlags refuses what the server cannot be asked; it validates the rest and names
// the field.
func checkSavingsFlags(o savingsOptions) error {
	switch {
	case o.tenant == "":
		return errors.New("--tenant is required (or TALLY_TENANT)")
	case o.output != "table" && o.output != "json":
		return fmt.Errorf("--output %q: use table or json", o.output)
	case o.evidence && o.action == "":
		return errors.New("--evidence needs --action")
	case o.action != "" && (o.period != "" || o.status != "" || o.resource != ""):
		return errors.New("--action shows one action: --period, --status and --resource filter the list, without --action")
	}
	if _, ok := savingsStatusFlag[o.status]; o.status != "" && !ok {
		return fmt.Errorf("--status %q: use pending, measured, cost_increase or unmeasurable", o.status)
	}
	return nil
}

func runSavings(ctx context.Context, c *cli, o savingsOptions) error {
	if err := checkSavingsFlags(o); err != nil {
		return err
	}
	hc, baseURL, err := serverClient(o.server, &o.auth)
	if err != nil {
		return err
	}
	// GET: the queries have no side effects.
	client := tallyv1connect.NewSavingsServiceClient(hc, baseURL, connect.WithHTTPGet())
	var msg proto.Message
	var print func(io.Writer) error
	switch {
	case o.action == "":
		resp, err := client.ListSavings(ctx, connect.NewRequest(&tallyv1.ListSavingsRequest{TenantId: o.tenant, Period: o.period,
			Status: savingsStatusFlag[o.status], ResourceId: o.resource}))
		if err != nil {
			return describeQueryError(o.server, err)
		}
		msg, print = resp.Msg, func(w io.Writer) error { return printSavingsList(w, resp.Msg) }
	case o.evidence:
		resp, err := client.GetSavingsEvidence(ctx, connect.NewRequest(&tallyv1.GetSavingsEvidenceRequest{TenantId: o.tenant, ActionId: o.action}))
		if err != nil {
			return describeSavingsError(o.server, err)
		}
		msg, print = resp.Msg, func(w io.Writer) error {
			if err := printSavingsAction(w, resp.Msg.GetAction(), nil); err != nil {
				return err
			}
			return printSavingsEvidence(w, resp.Msg.GetLines())
		}
	default:
		resp, err := client.GetSavings(ctx, connect.NewRequest(&tallyv1.GetSavingsRequest{TenantId: o.tenant, ActionId: o.action}))
		if err != nil {
			return describeSavingsError(o.server, err)
		}
		msg, print = resp.Msg, func(w io.Writer) error { return printSavingsAction(w, resp.Msg.GetAction(), resp.Msg.GetHistory()) }
	}
	if o.output == "json" {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(msg)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(c.stdout, string(b))
		return err
	}
	return print(c.stdout)
}

func describeSavingsError(server string, err error) error {
	if connect.CodeOf(err) == connect.CodeNotFound {
		var ce *connect.Error
		if errors.As(err, &ce) {
			return fmt.Errorf("not found: %s", ce.Message())
		}
	}
	return describeQueryError(server, err)
}

// statusName is a status as the CLI spells it ("cost_increase").
func statusName(s tallyv1.SavingsStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "SAVINGS_STATUS_"))
}

func kindName(k tallyv1.RemediationKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "REMEDIATION_KIND_"))
}

// printSavingsList writes one line per action, then the realized monthly total per currency
// of the measured actions (cost increases included, negative).
func printSavingsList(w io.Writer, r *tallyv1.ListSavingsResponse) error {
	if len(r.GetActions()) == 0 {
		_, err := fmt.Fprintln(w, "no remediation actions")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tKIND\tRESOURCE\tEXECUTED\tSTATUS\tCURRENCY\tBASELINE/DAY\tMEASURED/DAY\tREALIZED/DAY\tREALIZED/MONTH\tEXPECTED/DAY")
	var currencies []string
	totals := map[string]decimal.Decimal{}
	for _, a := range r.GetActions() {
		f := a.GetFigures()
		executed := "-"
		if a.GetExecutedAt() != nil {
			executed = a.GetExecutedAt().AsTime().UTC().Format(time.DateOnly)
		}
		expected := "-"
		if a.GetExpectedDailySavings() != "" {
			expected = a.GetExpectedDailySavings() + " " + a.GetExpectedCurrency()
		}
		fmt.Fprintln(tw, strings.Join([]string{a.GetActionId(), kindName(a.GetKind()), a.GetResourceId(), executed,
			statusName(f.GetStatus()), cmp.Or(f.GetCurrency(), "-"), cmp.Or(f.GetBaselineDaily(), "-"),
			cmp.Or(f.GetMeasurementDaily(), "-"), cmp.Or(f.GetRealizedDaily(), "-"), cmp.Or(f.GetRealizedMonthly(), "-"), expected}, "\t"))
		if f.GetRealizedMonthly() == "" {
			continue
		}
		d, err := decimal.NewFromString(f.GetRealizedMonthly())
		if err != nil {
			return fmt.Errorf("the server sent %q as an amount: %w", f.GetRealizedMonthly(), err)
		}
		if _, ok := totals[f.GetCurrency()]; !ok {
			currencies = append(currencies, f.GetCurrency())
		}
		totals[f.GetCurrency()] = totals[f.GetCurrency()].Add(d)
	}
	for _, cur := range currencies {
		fmt.Fprintf(tw, "TOTAL\t\t\t\t\t%s\t\t\t\t%s\t\n", cur, totals[cur])
	}
	return tw.Flush()
}

// printSavingsAction writes one action, its windows and figures, and its history (if given).
func printSavingsAction(w io.Writer, a *tallyv1.SavingsAction, history []*tallyv1.SavingsRevision) error {
	f := a.GetFigures()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, cmp.Or(v, "-")) }
	row("action", a.GetActionId())
	row("kind", kindName(a.GetKind()))
	row("resource", a.GetProvider()+" "+a.GetBillingAccountId()+" "+a.GetResourceId())
	if a.GetExecutedAt() != nil {
		row("executed at", a.GetExecutedAt().AsTime().UTC().Format(time.RFC3339))
	}
	row("actor", a.GetActor().GetId())
	row("tool", a.GetTool())
	if b, m := a.GetBaseline(), a.GetMeasurement(); b != nil {
		row("baseline", fmt.Sprintf("%s .. %s (%d days)", b.GetStart(), b.GetEnd(), b.GetDays()))
		row("measurement", fmt.Sprintf("%s .. %s (%d days, after a %d-day gap)", m.GetStart(), m.GetEnd(), m.GetDays(), a.GetGapDays()))
	}
	row("status", statusName(f.GetStatus()))
	row("reason", f.GetReason())
	if f.GetRealizedDaily() != "" {
		row("baseline total", fmt.Sprintf("%s %s (%d lines), %s a day", f.GetBaselineTotal(), f.GetCurrency(), f.GetBaselineLines(), f.GetBaselineDaily()))
		row("measured total", fmt.Sprintf("%s %s (%d lines), %s a day", f.GetMeasurementTotal(), f.GetCurrency(), f.GetMeasurementLines(), f.GetMeasurementDaily()))
		row("realized a day", f.GetRealizedDaily()+" "+f.GetCurrency())
		row("realized a month", fmt.Sprintf("%s %s (x %s)", f.GetRealizedMonthly(), f.GetCurrency(), a.GetMonthlyMultiplier()))
	}
	if a.GetExpectedDailySavings() != "" {
		row("expected a day", a.GetExpectedDailySavings()+" "+a.GetExpectedCurrency())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(history) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tEVENT\tSEQ\tSTATUS\tREALIZED/DAY\tREALIZED/MONTH")
	for _, r := range history {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", r.GetRevision(), r.GetEventKind(), r.GetTenantSeq(),
			statusName(r.GetFigures().GetStatus()), cmp.Or(r.GetFigures().GetRealizedDaily(), "-"), cmp.Or(r.GetFigures().GetRealizedMonthly(), "-"))
	}
	return tw.Flush()
}

func printSavingsEvidence(w io.Writer, lines []*tallyv1.SavingsEvidenceLine) error {
	fmt.Fprintln(w)
	if len(lines) == 0 {
		_, err := fmt.Fprintln(w, "no cost lines in the windows")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WINDOW\tDAY\tACCOUNT\tLINE KEY\tCURRENCY\tEFFECTIVE\tFINAL\tSEQ")
	for _, l := range lines {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%t\t%d\n", l.GetWindow(), l.GetDay(), l.GetBillingAccountId(), l.GetLineKey(),
			l.GetCurrency(), l.GetEffectiveCost(), l.GetFinal(), l.GetTenantSeq())
	}
	return tw.Flush()
}
