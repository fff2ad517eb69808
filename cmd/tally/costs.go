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
	"google.golang.org/protobuf/types/known/timestamppb"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

type costsOptions struct {
	tenant      string
	server      string
	from, to    string
	groupBy     []string
	filters     []string
	granularity string
	output      string
	auth        clientAuth
}

func newCostsCmd(c *cli) *cobra.Command {
	o := costsOptions{server: defaultServer, granularity: "range", output: "table"}
	cmd := &cobra.Command{
		Use:   "costs",
		Short: "Show a tenant's cost from a running Tally, grouped and filtered",
		Long: `Show a tenant's cost from the ledger of a running Tally: billed, effective and
list cost per billing currency (never converted), split into preliminary and
final, for charge periods starting in [--from, --to).

--group-by takes dimensions (provider, billing_account, sub_account, service,
service_category, region, zone, resource, sku, charge_category,
pricing_category, or their FOCUS-style names such as service_name) and tag
keys written tag:KEY, comma-separated. --filter DIM=V1,V2 (or tag:KEY=V1,V2)
keeps lines with one of the values; repeat it to combine filters.

Example:
  tally costs --tenant acme --from 2026-10-01 --to 2026-11-01 --group-by service,region --granularity day`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCosts(cmd.Context(), c, o)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&o.tenant, "tenant", "", "`tenant` id (required)")
	fs.StringVar(&o.from, "from", "", "first `day` (YYYY-MM-DD, UTC) or instant (RFC 3339) of the range (required)")
	fs.StringVar(&o.to, "to", "", "`day` or instant the range ends before (required)")
	fs.StringSliceVar(&o.groupBy, "group-by", nil, "`groups`: dimensions and tag:KEY, comma-separated")
	fs.StringArrayVar(&o.filters, "filter", nil, "keep lines where `DIM=V1,V2` (or tag:KEY=V1,V2); repeatable")
	fs.StringVar(&o.granularity, "granularity", o.granularity, "`period` of each row: day, month or range (the whole range)")
	fs.StringVarP(&o.output, "output", "o", o.output, "output `format`: table or json")
	fs.StringVar(&o.server, "server", o.server, "`url` of the Tally server")
	o.auth.flags(c, cmd)
	declareEnv(fs)
	return cmd
}

// costRequest turns the flags into a request; the server validates the
// rest and names the field when something is wrong.
func costRequest(o costsOptions) (*tallyv1.GetCostRequest, error) {
	if o.tenant == "" {
		return nil, errors.New("--tenant is required (or TALLY_TENANT)")
	}
	req := &tallyv1.GetCostRequest{TenantId: o.tenant}
	var err error
	if req.From, err = parseInstant("--from", o.from); err != nil {
		return nil, err
	}
	if req.To, err = parseInstant("--to", o.to); err != nil {
		return nil, err
	}
	for _, g := range o.groupBy {
		g = strings.TrimSpace(g)
		if key, ok := strings.CutPrefix(g, "tag:"); ok {
			req.GroupByTags = append(req.GroupByTags, key)
		} else if g != "" {
			req.GroupBy = append(req.GroupBy, g)
		}
	}
	for _, f := range o.filters {
		name, values, ok := strings.Cut(f, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--filter %q: want DIMENSION=VALUE[,VALUE...] or tag:KEY=VALUE[,VALUE...]", f)
		}
		vs := strings.Split(values, ",")
		if key, ok := strings.CutPrefix(name, "tag:"); ok {
			req.Tags = append(req.Tags, &tallyv1.TagFilter{Key: key, Values: vs})
		} else {
			req.Dimensions = append(req.Dimensions, &tallyv1.DimensionFilter{Dimension: name, Values: vs})
		}
	}
	switch o.granularity {
	case "day":
		req.Granularity = tallyv1.Granularity_GRANULARITY_DAY
	case "month":
		req.Granularity = tallyv1.Granularity_GRANULARITY_MONTH
	case "range", "":
		req.Granularity = tallyv1.Granularity_GRANULARITY_WHOLE_RANGE
	default:
		return nil, fmt.Errorf("--granularity %q: use day, month or range", o.granularity)
	}
	if o.output != "table" && o.output != "json" {
		return nil, fmt.Errorf("--output %q: use table or json", o.output)
	}
	return req, nil
}

func parseInstant(flag, v string) (*timestamppb.Timestamp, error) {
	if v == "" {
		return nil, fmt.Errorf("%s is required (a day such as 2026-10-01)", flag)
	}
	if d, err := time.Parse(time.DateOnly, v); err == nil {
		return timestamppb.New(d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, fmt.Errorf("%s %q: want a day (2026-10-01) or an RFC 3339 instant (2026-10-01T00:00:00Z)", flag, v)
	}
	return timestamppb.New(t), nil
}

func runCosts(ctx context.Context, c *cli, o costsOptions) error {
	req, err := costRequest(o)
	if err != nil {
		return err
	}
	hc, baseURL, err := serverClient(o.server, &o.auth)
	if err != nil {
		return err
	}
	// GET: the query has no side effects, so caches and proxies may serve it.
	client := tallyv1connect.NewLedgerServiceClient(hc, baseURL, connect.WithHTTPGet())
	resp, err := client.GetCost(ctx, connect.NewRequest(req))
	if err != nil {
		return describeQueryError(o.server, err)
	}
	if o.output == "json" {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(resp.Msg)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(c.stdout, string(b))
		return err
	}
	return printCosts(c.stdout, req.GetGranularity() != tallyv1.Granularity_GRANULARITY_WHOLE_RANGE, resp.Msg)
}

func describeQueryError(server string, err error) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err
	}
	switch ce.Code() {
	case connect.CodeInvalidArgument:
		return fmt.Errorf("refused: %s", ce.Message())
	case connect.CodeUnauthenticated, connect.CodePermissionDenied:
		return describeAuthError(ce)
	case connect.CodeUnavailable:
		return fmt.Errorf("cannot reach Tally at %s (is `tally serve` running? set --server or TALLY_SERVER): %w", server, err)
	}
	return err
}

// printCosts writes one line per row, then a total per currency.
func printCosts(w io.Writer, periods bool, r *tallyv1.GetCostResponse) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var head []string
	if periods {
		head = append(head, "PERIOD")
	}
	for _, g := range r.GetGroups() {
		head = append(head, strings.ToUpper(g))
	}
	head = append(head, "CURRENCY", "BILLED", "PRELIMINARY", "FINAL", "EFFECTIVE", "LINES")
	fmt.Fprintln(tw, strings.Join(head, "\t"))

	type total struct{ billed, prelim, final, effective decimal.Decimal }
	var currencies []string
	totals := map[string]*total{}
	for _, row := range r.GetRows() {
		var cells []string
		if periods {
			cells = append(cells, row.GetPeriodStart().AsTime().Format(time.DateOnly))
		}
		for _, g := range row.GetGroups() {
			cells = append(cells, cmp.Or(g, "-"))
		}
		cells = append(cells, row.GetCurrency(), row.GetTotal().GetBilled(), row.GetPreliminary().GetBilled(),
			row.GetFinal().GetBilled(), row.GetTotal().GetEffective(), fmt.Sprint(row.GetTotal().GetLines()))
		fmt.Fprintln(tw, strings.Join(cells, "\t"))

		t := totals[row.GetCurrency()]
		if t == nil {
			t = &total{}
			totals[row.GetCurrency()] = t
			currencies = append(currencies, row.GetCurrency())
		}
		for _, add := range []struct {
			to *decimal.Decimal
			v  string
		}{{&t.billed, row.GetTotal().GetBilled()}, {&t.prelim, row.GetPreliminary().GetBilled()},
			{&t.final, row.GetFinal().GetBilled()}, {&t.effective, row.GetTotal().GetEffective()}} {
			d, err := decimal.NewFromString(add.v)
			if err != nil {
				return fmt.Errorf("the server sent %q as an amount: %w", add.v, err)
			}
			*add.to = add.to.Add(d)
		}
	}
	if len(r.GetRows()) == 0 {
		if err := tw.Flush(); err != nil {
			return err
		}
		_, err := fmt.Fprintln(w, "no cost in this range")
		return err
	}
	if len(r.GetRows()) > 1 {
		for _, cur := range currencies {
			t := totals[cur]
			cells := make([]string, len(head)-6)
			if len(cells) > 0 {
				cells[0] = "TOTAL"
			}
			cells = append(cells, cur, t.billed.String(), t.prelim.String(), t.final.String(), t.effective.String(), "")
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
	}
	return tw.Flush()
}
