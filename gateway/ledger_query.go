package gateway

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/projections/ledger"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// Limits on a ledger query; beyond them a query is a mistake, not a report.
const (
	maxFilterValues = 1000
	maxGroups       = 16
)

// dimensions a request may name, with the short forms the CLI and people
// use; the canonical names are the ledger's.
var dimensions = map[string]ledger.Dimension{
	"provider":           ledger.Provider,
	"billing_account_id": ledger.BillingAccount,
	"billing_account":    ledger.BillingAccount,
	"sub_account_id":     ledger.SubAccount,
	"sub_account":        ledger.SubAccount,
	"service_name":       ledger.Service,
	"service":            ledger.Service,
	"service_category":   ledger.ServiceCategory,
	"region_id":          ledger.Region,
	"region":             ledger.Region,
	"availability_zone":  ledger.AvailabilityZone,
	"zone":               ledger.AvailabilityZone,
	"resource_id":        ledger.Resource,
	"resource":           ledger.Resource,
	"sku_id":             ledger.SKU,
	"sku":                ledger.SKU,
	"charge_category":    ledger.ChargeCategory,
	"pricing_category":   ledger.PricingCategory,
}

// dimensionNames lists the canonical names, for messages.
var dimensionNames = func() string {
	var names []string
	for k, d := range dimensions {
		if k == string(d) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}()

func checkDimension(field, name string) (ledger.Dimension, error) {
	if name == "" {
		return "", fieldErr(field, "is required (one of %s)", dimensionNames)
	}
	d, ok := dimensions[strings.ToLower(strings.TrimSpace(name))]
	if !ok {
		return "", fieldErr(field, "%s is not a dimension: use one of %s", quote(name), dimensionNames)
	}
	return d, nil
}

func checkValues(field string, values []string) error {
	if len(values) == 0 {
		return fieldErr(field, "is required (at least one value)")
	}
	if len(values) > maxFilterValues {
		return fieldErr(field, "has %d entries, over the limit of %d", len(values), maxFilterValues)
	}
	for i, v := range values {
		if err := checkText(fmt.Sprintf("%s[%d]", field, i), v, maxTextLen); err != nil {
			return err
		}
	}
	return nil
}

func checkTagKey(field, key string) error {
	if key == "" {
		return fieldErr(field, "is required")
	}
	return checkText(field, key, maxIDLen)
}

// filterRequest is what GetCostRequest and GetTotalsRequest share.
type filterRequest interface {
	GetTenantId() string
	GetFrom() *timestamppb.Timestamp
	GetTo() *timestamppb.Timestamp
	GetDimensions() []*tallyv1.DimensionFilter
	GetTags() []*tallyv1.TagFilter
	GetFinality() tallyv1.Finality
}

// ledgerFilter validates the selection of a request, naming the field that
// is wrong. The tenant is the request's own, which the auth interceptor
// has matched against the token's.
func ledgerFilter(m filterRequest) (ledger.Filter, error) {
	f := ledger.Filter{Tenant: m.GetTenantId()}
	if err := checkTenant("tenant_id", f.Tenant); err != nil {
		return f, err
	}
	if err := checkPeriod("from", "to", m.GetFrom(), m.GetTo()); err != nil {
		return f, err
	}
	f.From, f.To = m.GetFrom().AsTime(), m.GetTo().AsTime()
	for i, df := range m.GetDimensions() {
		field := fmt.Sprintf("dimensions[%d]", i)
		d, err := checkDimension(field+".dimension", df.GetDimension())
		if err != nil {
			return f, err
		}
		if _, dup := f.Dimensions[d]; dup {
			return f, fieldErr(field+".dimension", "%s is filtered twice: list all its values in one filter", quote(string(d)))
		}
		if err := checkValues(field+".values", df.GetValues()); err != nil {
			return f, err
		}
		if f.Dimensions == nil {
			f.Dimensions = map[ledger.Dimension][]string{}
		}
		f.Dimensions[d] = df.GetValues()
	}
	for i, tf := range m.GetTags() {
		field := fmt.Sprintf("tags[%d]", i)
		if err := checkTagKey(field+".key", tf.GetKey()); err != nil {
			return f, err
		}
		if _, dup := f.Tags[tf.GetKey()]; dup {
			return f, fieldErr(field+".key", "%s is filtered twice: list all its values in one filter", quote(tf.GetKey()))
		}
		if err := checkValues(field+".values", tf.GetValues()); err != nil {
			return f, err
		}
		if f.Tags == nil {
			f.Tags = map[string][]string{}
		}
		f.Tags[tf.GetKey()] = tf.GetValues()
	}
	switch m.GetFinality() {
	case tallyv1.Finality_FINALITY_UNSPECIFIED:
	case tallyv1.Finality_FINALITY_PRELIMINARY:
		f.Final = new(false)
	case tallyv1.Finality_FINALITY_FINAL:
		f.Final = new(true)
	default:
		return f, fieldErr("finality", "%d is not a finality: use FINALITY_PRELIMINARY or FINALITY_FINAL, or leave it unset for both", m.GetFinality())
	}
	return f, nil
}

// costQuery validates a GetCostRequest and returns the query and the names
// of its group columns.
func costQuery(m *tallyv1.GetCostRequest) (ledger.Query, []string, error) {
	f, err := ledgerFilter(m)
	q := ledger.Query{Filter: f}
	if err != nil {
		return q, nil, err
	}
	if n := len(m.GetGroupBy()) + len(m.GetGroupByTags()); n > maxGroups {
		return q, nil, fieldErr("group_by", "and group_by_tags name %d groups, over the limit of %d", n, maxGroups)
	}
	var names []string
	for i, name := range m.GetGroupBy() {
		field := fmt.Sprintf("group_by[%d]", i)
		d, err := checkDimension(field, name)
		if err != nil {
			return q, nil, err
		}
		if slices.Contains(q.GroupBy, d) {
			return q, nil, fieldErr(field, "%s is grouped by twice", quote(string(d)))
		}
		q.GroupBy = append(q.GroupBy, d)
		names = append(names, string(d))
	}
	for i, key := range m.GetGroupByTags() {
		field := fmt.Sprintf("group_by_tags[%d]", i)
		if err := checkTagKey(field, key); err != nil {
			return q, nil, err
		}
		if slices.Contains(q.GroupByTags, key) {
			return q, nil, fieldErr(field, "%s is grouped by twice", quote(key))
		}
		q.GroupByTags = append(q.GroupByTags, key)
		names = append(names, "tag:"+key)
	}
	switch m.GetGranularity() {
	case tallyv1.Granularity_GRANULARITY_UNSPECIFIED, tallyv1.Granularity_GRANULARITY_WHOLE_RANGE:
		q.Granularity = ledger.WholeRange
	case tallyv1.Granularity_GRANULARITY_DAY:
		q.Granularity = ledger.ByDay
	case tallyv1.Granularity_GRANULARITY_MONTH:
		q.Granularity = ledger.ByMonth
	default:
		return q, nil, fieldErr("granularity", "%d is not a granularity: use GRANULARITY_DAY, GRANULARITY_MONTH or GRANULARITY_WHOLE_RANGE", m.GetGranularity())
	}
	return q, names, nil
}

// costRows merges the ledger's rows, which are split by finality, into one
// row per period, groups and currency with the split inside. The ledger
// orders preliminary before final within a group, so they are adjacent.
func costRows(rows []ledger.Row) []*tallyv1.CostRow {
	var out []*tallyv1.CostRow
	var acc []sums // beside out
	for i, r := range rows {
		if i == 0 || !rows[i-1].Period.Equal(r.Period) || !slices.Equal(rows[i-1].Groups, r.Groups) || rows[i-1].Currency != r.Currency {
			row := &tallyv1.CostRow{Groups: r.Groups, Currency: r.Currency}
			if !r.Period.IsZero() {
				row.PeriodStart = timestamppb.New(r.Period)
			}
			if row.Groups == nil {
				row.Groups = []string{}
			}
			out = append(out, row)
			acc = append(acc, sums{})
		}
		acc[len(acc)-1].add(r)
	}
	for i, row := range out {
		row.Total, row.Preliminary, row.Final = acc[i].amounts()
	}
	return out
}

// currencyTotals sums rows (of a query without groups or periods) per
// currency.
func currencyTotals(rows []ledger.Row) []*tallyv1.CurrencyTotal {
	var out []*tallyv1.CurrencyTotal
	for _, r := range costRows(rows) {
		out = append(out, &tallyv1.CurrencyTotal{Currency: r.GetCurrency(), Total: r.GetTotal(), Preliminary: r.GetPreliminary(), Final: r.GetFinal()})
	}
	return out
}

// sums are one currency's amounts: [0] total, [1] preliminary, [2] final.
type sums [3]ledger.Row

func (s *sums) add(r ledger.Row) {
	part := 1
	if r.Final {
		part = 2
	}
	for _, i := range []int{0, part} {
		s[i].Billed = s[i].Billed.Add(r.Billed)
		s[i].Effective = s[i].Effective.Add(r.Effective)
		s[i].List = s[i].List.Add(r.List)
		s[i].Lines += r.Lines
	}
}

func (s *sums) amounts() (total, preliminary, final *tallyv1.CostAmounts) {
	conv := func(r ledger.Row) *tallyv1.CostAmounts {
		return &tallyv1.CostAmounts{Billed: r.Billed.String(), Effective: r.Effective.String(), List: r.List.String(), Lines: r.Lines}
	}
	return conv(s[0]), conv(s[1]), conv(s[2])
}

// normalizedTotal sums the rows' amounts converted to currency to (the
// ledger set Row.Normalized on every row, or failed).
func normalizedTotal(to string, rows []ledger.Row) *tallyv1.CurrencyTotal {
	var s sums
	for _, r := range rows {
		n := r
		n.Currency = to
		if r.Normalized != nil {
			n.Billed, n.Effective, n.List = r.Normalized.Billed, r.Normalized.Effective, r.Normalized.List
		}
		s.add(n)
	}
	total, preliminary, final := s.amounts()
	return &tallyv1.CurrencyTotal{Currency: to, Total: total, Preliminary: preliminary, Final: final}
}
