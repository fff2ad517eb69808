package ledger

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/money"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// The fast path writes COPY text format itself, straight from the events: it spares pgx's
// per-value binary encoding (numerics go through math/big there) and the []any rows, which
// cost more CPU than PostgreSQL spends parsing the same text.

// copyText is a COPY ... (FORMAT text) stream being built.
type copyText struct{ bytes.Buffer }

func (c *copyText) text(s string) {
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; ch {
		case '\\':
			c.WriteString(`\\`)
		case '\t':
			c.WriteString(`\t`)
		case '\n':
			c.WriteString(`\n`)
		case '\r':
			c.WriteString(`\r`)
		default:
			c.WriteByte(ch)
		}
	}
	c.WriteByte('\t')
}

func (c *copyText) null() { c.WriteString(`\N` + "\t") }

func (c *copyText) bool(b bool) {
	if b {
		c.WriteString("t\t")
	} else {
		c.WriteString("f\t")
	}
}

func (c *copyText) int(n int64) {
	var a [20]byte
	c.Write(strconv.AppendInt(a[:0], n, 10))
	c.WriteByte('\t')
}

func (c *copyText) ts(t time.Time) {
	var a [40]byte
	c.Write(t.UTC().AppendFormat(a[:0], "2006-01-02 15:04:05.999999Z07:00"))
	c.WriteByte('\t')
}

func (c *copyText) tsOrNull(t *timestamppb.Timestamp) {
	if t == nil {
		c.null()
		return
	}
	c.ts(t.AsTime())
}

// decimal writes a validated decimal string; "" is NULL when nullable, else 0.
func (c *copyText) decimal(s string, nullable bool) error {
	if s == "" {
		if nullable {
			c.null()
		} else {
			c.WriteString("0\t")
		}
		return nil
	}
	if !money.Syntax(s) {
		return fmt.Errorf("amount %q is not a decimal", s)
	}
	c.WriteString(s)
	c.WriteByte('\t')
	return nil
}

// end closes a row.
func (c *copyText) end() { c.Bytes()[c.Len()-1] = '\n' }

// parseDecimal reads a decimal money.Syntax accepted ("" is 0) as unscaled * 10^exp.
func parseDecimal(s string, unscaled *big.Int) (exp int32, err error) {
	if s == "" {
		unscaled.SetInt64(0)
		return 0, nil
	}
	mant, e := s, 0
	if i := bytes.IndexAny([]byte(s), "eE"); i >= 0 {
		mant = s[:i]
		if e, err = strconv.Atoi(s[i+1:]); err != nil {
			return 0, fmt.Errorf("amount %q is not a decimal", s)
		}
	}
	if i := bytes.IndexByte([]byte(mant), '.'); i >= 0 {
		e -= len(mant) - i - 1
		mant = mant[:i] + mant[i+1:]
	}
	if len(mant) < 19 {
		n, err := strconv.ParseInt(mant, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("amount %q is not a decimal", s)
		}
		unscaled.SetInt64(n)
	} else if _, ok := unscaled.SetString(mant, 10); !ok {
		return 0, fmt.Errorf("amount %q is not a decimal", s)
	}
	return int32(e), nil
}

// freshColumns is the lines table's columns as the fast path writes them: final last, so
// that it can be set once the batch's finalized scopes are known.
var freshColumns = []string{"tenant_id", "provider", "billing_account_id", "billing_period_start", "line_key", "billing_period_end",
	"billing_account_name", "charge_period_start", "charge_period_end", "sub_account_id", "sub_account_name", "service_name",
	"service_category", "region_id", "availability_zone", "resource_id", "sku_id", "charge_category", "charge_class",
	"pricing_category", "pricing_quantity", "pricing_unit", "consumed_quantity", "consumed_unit", "billed_cost", "effective_cost",
	"list_cost", "contracted_cost", "billing_currency", "tags", "post_close", "last_event_id", "updated_seq", "final"}

// writeHistory writes the line_history row (historyColumns) of one line event.
func writeHistory(c *copyText, tenant string, seq uint64, index int, id uuid.UUID, op int16, scope *tallyv1.BillScope,
	key, prev string, postClose bool, currency string, deltas [6]string) error {
	c.text(tenant)
	c.int(int64(seq))
	c.int(int64(index))
	c.text(id.String())
	c.text(opNames[op])
	c.text(scope.GetProvider())
	c.text(scope.GetBillingAccountId())
	c.ts(scope.GetBillingPeriodStart().AsTime())
	c.text(key)
	c.text(prev)
	c.bool(postClose)
	c.text(currency)
	for i, d := range deltas {
		if err := c.decimal(d, i >= 4); err != nil {
			return fmt.Errorf("delta: %w", err)
		}
	}
	c.end()
	return nil
}

// writeFresh writes a new line's row (freshColumns) with final false, and returns the offset
// of that 'f' so it can be turned into 't'.
func writeFresh(c *copyText, tenant string, seq uint64, id uuid.UUID, l *tallyv1.CostLine, postClose bool) (int, error) {
	s := l.GetScope()
	c.text(tenant)
	c.text(s.GetProvider())
	c.text(s.GetBillingAccountId())
	c.ts(s.GetBillingPeriodStart().AsTime())
	c.text(l.GetLineKey())
	c.ts(s.GetBillingPeriodEnd().AsTime())
	c.text(l.GetBillingAccountName())
	c.tsOrNull(l.GetChargePeriodStart())
	c.tsOrNull(l.GetChargePeriodEnd())
	for _, v := range []string{l.GetSubAccountId(), l.GetSubAccountName(), l.GetServiceName(), l.GetServiceCategory(),
		l.GetRegionId(), l.GetAvailabilityZone(), l.GetResourceId(), l.GetSkuId(), l.GetChargeCategory(),
		l.GetChargeClass(), l.GetPricingCategory()} {
		c.text(v)
	}
	if err := c.decimal(l.GetPricingQuantity(), true); err != nil {
		return 0, err
	}
	c.text(l.GetPricingUnit())
	if err := c.decimal(l.GetConsumedQuantity(), true); err != nil {
		return 0, err
	}
	c.text(l.GetConsumedUnit())
	for _, v := range []string{l.GetBilledCost(), l.GetEffectiveCost(), l.GetListCost(), l.GetContractedCost()} {
		if err := c.decimal(v, false); err != nil {
			return 0, err
		}
	}
	c.text(l.GetBillingCurrency())
	tags, err := tagsJSON(l.GetTags())
	if err != nil {
		return 0, err
	}
	c.text(tags)
	c.bool(postClose)
	c.text(id.String())
	c.int(int64(seq))
	at := c.Len()
	c.bool(false)
	c.end()
	return at, nil
}

// copyTextInto runs COPY table (columns) FROM STDIN with the text in c.
func copyTextInto(ctx context.Context, tx pgx.Tx, table pgx.Identifier, columns []string, c *copyText) error {
	cols := make([]string, len(columns))
	for i, col := range columns {
		cols[i] = pgx.Identifier{col}.Sanitize()
	}
	sql := "COPY " + table.Sanitize() + " (" + joinComma(cols) + ") FROM STDIN"
	_, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(c.Bytes()), sql)
	return err
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, v := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(v)
	}
	return b.String()
}
