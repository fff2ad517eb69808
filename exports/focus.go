package exports

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/snappy"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// FOCUSVersion is the FOCUS version exports are written in.
const FOCUSVersion = "1.3"

// ParquetRowGroupRows bounds a Parquet row group, and so the rows the writer buffers.
const ParquetRowGroupRows = 32_768

// kind of a FOCUS column's values.
type kind uint8

const (
	kindText    kind = iota // string; "" is null
	kindDecimal             // exact decimal text; "" is null
	kindJSON                // JSON text; "" is null
	kindTime                // timestamp; nil is null
)

// column is one FOCUS column: its Column ID and where its value comes from.
type column struct {
	name string
	kind kind
	text func(r *record) string
	time func(r *record) *time.Time
}

func led(name string, k kind, f func(r *record) string) column {
	return column{name: name, kind: k, text: f}
}

// ev is a column the ledger does not keep: it comes from the line's event.
func ev(name string, k kind, f func(l *tallyv1.CostLine) string) column {
	return column{name: name, kind: k, text: func(r *record) string { return f(r.line) }}
}

func ts(name string, f func(r *record) *time.Time) column {
	return column{name: name, kind: kindTime, time: f}
}

func opt(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// columns are the FOCUS 1.3 cost-and-usage columns, sorted by name
// (TestColumnsAreFOCUS13 checks them against focus.ColumnNames(focus.V1_3)).
var columns = []column{
	ev("AllocatedMethodDetails", kindJSON, (*tallyv1.CostLine).GetAllocatedMethodDetails),
	ev("AllocatedMethodId", kindText, (*tallyv1.CostLine).GetAllocatedMethodId),
	ev("AllocatedResourceId", kindText, (*tallyv1.CostLine).GetAllocatedResourceId),
	ev("AllocatedResourceName", kindText, (*tallyv1.CostLine).GetAllocatedResourceName),
	ev("AllocatedTags", kindJSON, func(l *tallyv1.CostLine) string { return kvJSON(l.GetAllocatedTags()) }),
	led("AvailabilityZone", kindText, func(r *record) string { return r.zone }),
	led("BilledCost", kindDecimal, func(r *record) string { return r.billed }),
	led("BillingAccountId", kindText, func(r *record) string { return r.account }),
	led("BillingAccountName", kindText, func(r *record) string { return r.accountName }),
	ev("BillingAccountType", kindText, (*tallyv1.CostLine).GetBillingAccountType),
	led("BillingCurrency", kindText, func(r *record) string { return r.currency }),
	ts("BillingPeriodEnd", func(r *record) *time.Time { return &r.periodEnd }),
	ts("BillingPeriodStart", func(r *record) *time.Time { return &r.periodStart }),
	ev("CapacityReservationId", kindText, (*tallyv1.CostLine).GetCapacityReservationId),
	ev("CapacityReservationStatus", kindText, (*tallyv1.CostLine).GetCapacityReservationStatus),
	led("ChargeCategory", kindText, func(r *record) string { return r.chargeCat }),
	led("ChargeClass", kindText, func(r *record) string { return r.chargeClass }),
	ev("ChargeDescription", kindText, (*tallyv1.CostLine).GetChargeDescription),
	ev("ChargeFrequency", kindText, (*tallyv1.CostLine).GetChargeFrequency),
	ts("ChargePeriodEnd", func(r *record) *time.Time { return r.chargeEnd }),
	ts("ChargePeriodStart", func(r *record) *time.Time { return r.chargeStart }),
	ev("CommitmentDiscountCategory", kindText, (*tallyv1.CostLine).GetCommitmentDiscountCategory),
	ev("CommitmentDiscountId", kindText, (*tallyv1.CostLine).GetCommitmentDiscountId),
	ev("CommitmentDiscountName", kindText, (*tallyv1.CostLine).GetCommitmentDiscountName),
	ev("CommitmentDiscountQuantity", kindDecimal, (*tallyv1.CostLine).GetCommitmentDiscountQuantity),
	ev("CommitmentDiscountStatus", kindText, (*tallyv1.CostLine).GetCommitmentDiscountStatus),
	ev("CommitmentDiscountType", kindText, (*tallyv1.CostLine).GetCommitmentDiscountType),
	ev("CommitmentDiscountUnit", kindText, (*tallyv1.CostLine).GetCommitmentDiscountUnit),
	led("ConsumedQuantity", kindDecimal, func(r *record) string { return opt(r.consumedQty) }),
	led("ConsumedUnit", kindText, func(r *record) string { return r.consumedUnit }),
	ev("ContractApplied", kindJSON, (*tallyv1.CostLine).GetContractApplied),
	led("ContractedCost", kindDecimal, func(r *record) string { return r.contracted }),
	ev("ContractedUnitPrice", kindDecimal, (*tallyv1.CostLine).GetContractedUnitPrice),
	led("EffectiveCost", kindDecimal, func(r *record) string { return r.effective }),
	ev("HostProviderName", kindText, (*tallyv1.CostLine).GetHostProviderName),
	ev("InvoiceId", kindText, (*tallyv1.CostLine).GetInvoiceId),
	ev("InvoiceIssuerName", kindText, (*tallyv1.CostLine).GetInvoiceIssuerName),
	led("ListCost", kindDecimal, func(r *record) string { return r.list }),
	ev("ListUnitPrice", kindDecimal, (*tallyv1.CostLine).GetListUnitPrice),
	led("PricingCategory", kindText, func(r *record) string { return r.pricingCat }),
	ev("PricingCurrency", kindText, (*tallyv1.CostLine).GetPricingCurrency),
	ev("PricingCurrencyContractedUnitPrice", kindDecimal, (*tallyv1.CostLine).GetPricingCurrencyContractedUnitPrice),
	ev("PricingCurrencyEffectiveCost", kindDecimal, (*tallyv1.CostLine).GetPricingCurrencyEffectiveCost),
	ev("PricingCurrencyListUnitPrice", kindDecimal, (*tallyv1.CostLine).GetPricingCurrencyListUnitPrice),
	led("PricingQuantity", kindDecimal, func(r *record) string { return opt(r.pricingQty) }),
	led("PricingUnit", kindText, func(r *record) string { return r.pricingUnit }),
	// Deprecated by 1.3 but still in its dataset: readers of older versions look for it.
	led("ProviderName", kindText, func(r *record) string { return r.provider }),
	ev("PublisherName", kindText, (*tallyv1.CostLine).GetPublisherName),
	led("RegionId", kindText, func(r *record) string { return r.region }),
	ev("RegionName", kindText, (*tallyv1.CostLine).GetRegionName),
	led("ResourceId", kindText, func(r *record) string { return r.resource }),
	ev("ResourceName", kindText, (*tallyv1.CostLine).GetResourceName),
	ev("ResourceType", kindText, (*tallyv1.CostLine).GetResourceType),
	led("ServiceCategory", kindText, func(r *record) string { return r.serviceCat }),
	led("ServiceName", kindText, func(r *record) string { return r.service }),
	led("ServiceProviderName", kindText, func(r *record) string { return r.provider }),
	ev("ServiceSubcategory", kindText, (*tallyv1.CostLine).GetServiceSubcategory),
	led("SkuId", kindText, func(r *record) string { return r.sku }),
	ev("SkuMeter", kindText, (*tallyv1.CostLine).GetSkuMeter),
	ev("SkuPriceDetails", kindJSON, (*tallyv1.CostLine).GetSkuPriceDetails),
	ev("SkuPriceId", kindText, (*tallyv1.CostLine).GetSkuPriceId),
	led("SubAccountId", kindText, func(r *record) string { return r.subID }),
	led("SubAccountName", kindText, func(r *record) string { return r.subName }),
	ev("SubAccountType", kindText, (*tallyv1.CostLine).GetSubAccountType),
	led("Tags", kindJSON, func(r *record) string { return mapJSON(r.tags) }),
}

// ColumnNames are the columns of a FOCUS export, in file order.
func ColumnNames() []string {
	out := make([]string, len(columns))
	for i, c := range columns {
		out[i] = c.name
	}
	return out
}

// formatTime is the CSV spelling of a timestamp: RFC 3339, UTC, Z.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// jsonObject writes sorted key/value pairs as a compact JSON object of strings, with no
// HTML escaping; "" for none.
func jsonObject(keys []string, value func(string) string) string {
	if len(keys) == 0 {
		return ""
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	out := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		for _, s := range []string{k, value(k)} {
			b.Reset()
			_ = enc.Encode(s) // a string always encodes
			out = append(out, bytes.TrimSuffix(b.Bytes(), []byte{'\n'})...)
			if s == k {
				out = append(out, ':')
			}
		}
	}
	return string(append(out, '}'))
}

func mapJSON(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return jsonObject(keys, func(k string) string { return m[k] })
}

func kvJSON(kvs []*tallyv1.KeyValue) string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue()
	}
	return mapJSON(m)
}

// WriteFOCUSCSV writes rng's ledger lines to w as a FOCUS 1.3 CSV file (see the package doc
// for the columns and formats) and returns the number of lines written. It streams: memory
// does not grow with the number of lines. On error, what was written is not a complete file.
//
// Errors: ErrInvalid (tenant, range), ErrInconsistent, database, log and write errors.
func WriteFOCUSCSV(ctx context.Context, w io.Writer, src Source, rng Range) (int64, error) {
	if err := rng.validate(); err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	cw := csv.NewWriter(bw)
	if err := cw.Write(ColumnNames()); err != nil {
		return 0, err
	}
	fields := make([]string, len(columns))
	n, err := eachLine(ctx, src, rng, func(r *record) error {
		for i, c := range columns {
			if c.kind == kindTime {
				fields[i] = ""
				if t := c.time(r); t != nil {
					fields[i] = formatTime(*t)
				}
				continue
			}
			fields[i] = c.text(r)
		}
		return cw.Write(fields)
	})
	if err != nil {
		return n, err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return n, fmt.Errorf("exports: write FOCUS CSV: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("exports: write FOCUS CSV: %w", err)
	}
	return n, nil
}

// parquetSchema is the FOCUS export's Parquet schema: every column OPTIONAL; timestamps
// INT64 TIMESTAMP(MICROS, UTC); everything else BYTE_ARRAY UTF8 (decimals as exact text).
func parquetSchema() *parquet.Schema {
	g := parquet.Group{}
	for _, c := range columns {
		if c.kind == kindTime {
			g[c.name] = parquet.Optional(parquet.Timestamp(parquet.Microsecond))
		} else {
			g[c.name] = parquet.Optional(parquet.String())
		}
	}
	return parquet.NewSchema("focus", g)
}

// WriteFOCUSParquet writes rng's ledger lines to w as a FOCUS 1.3 Parquet file (see the
// package doc) and returns the number of lines written. It needs no seeking, and buffers at
// most one row group (ParquetRowGroupRows rows). Errors as WriteFOCUSCSV.
func WriteFOCUSParquet(ctx context.Context, w io.Writer, src Source, rng Range) (int64, error) {
	if err := rng.validate(); err != nil {
		return 0, err
	}
	schema := parquetSchema()
	index := make([]int, len(columns)) // column -> leaf column index
	for i, c := range columns {
		leaf, ok := schema.Lookup(c.name)
		if !ok {
			return 0, fmt.Errorf("exports: parquet schema has no column %s", c.name)
		}
		index[i] = leaf.ColumnIndex
	}
	pw := parquet.NewWriter(w, schema,
		parquet.Compression(&snappy.Codec{}),
		parquet.MaxRowsPerRowGroup(ParquetRowGroupRows),
		parquet.CreatedBy("tally", "", ""),
		parquet.KeyValueMetadata("focus_version", FOCUSVersion),
		parquet.KeyValueMetadata("tally.tenant", rng.Tenant),
		parquet.KeyValueMetadata("tally.billing_periods", rng.From.UTC().Format(time.RFC3339)+"/"+rng.To.UTC().Format(time.RFC3339)))
	row := make(parquet.Row, len(columns))
	rows := []parquet.Row{row}
	n, err := eachLine(ctx, src, rng, func(r *record) error {
		for i, c := range columns {
			col := index[i]
			var v parquet.Value
			if c.kind == kindTime {
				if t := c.time(r); t != nil {
					v = parquet.Int64Value(t.UnixMicro()).Level(0, 1, col)
				} else {
					v = parquet.NullValue().Level(0, 0, col)
				}
			} else if s := c.text(r); s != "" {
				v = parquet.ByteArrayValue([]byte(s)).Level(0, 1, col)
			} else {
				v = parquet.NullValue().Level(0, 0, col)
			}
			row[col] = v
		}
		_, err := pw.WriteRows(rows)
		return err
	})
	if err != nil {
		return n, err
	}
	if err := pw.Close(); err != nil {
		return n, fmt.Errorf("exports: write FOCUS Parquet: %w", err)
	}
	return n, nil
}
