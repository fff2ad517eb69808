package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/money"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// The fast path writes COPY's binary format itself, straight from the events. PostgreSQL then
// parses no text: a timestamptz is 8 bytes, not a date to parse; a numeric arrives as its
// base-10000 digits, converted here from the decimal string without math/big (pgx's own
// encoder divides a big.Int per value); there is no []any per row and nothing to escape.
// Values land exactly as the text input functions would store them (copybinary_test.go checks
// numerics and timestamps against PostgreSQL's own parsing).

// copyBinary is a COPY ... (FORMAT binary) stream being built.
type copyBinary struct {
	buf    []byte
	digits []byte // scratch for numeric
	ended  bool   // the trailer is on
}

// copyBinaryHeader is the signature, flags and header-extension length of the binary format.
var copyBinaryHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// reuse empties c for another stream, keeping its buffers unless the last stream used less
// than a quarter of one (a large batch's buffer is not kept for small ones).
func (c *copyBinary) reuse() copyBinary {
	buf := c.buf[:0]
	if len(c.buf) < cap(c.buf)/4 {
		buf = nil
	}
	return copyBinary{buf: buf, digits: c.digits[:0]}
}

// row starts a row of n fields (the header goes before the first).
func (c *copyBinary) row(n int) {
	if len(c.buf) == 0 {
		c.buf = append(c.buf, copyBinaryHeader...)
	}
	c.buf = binary.BigEndian.AppendUint16(c.buf, uint16(n))
}

// bytes ends the stream with its trailer (no row may follow) and returns it, ready to send.
func (c *copyBinary) bytes() []byte {
	if !c.ended {
		c.buf = binary.BigEndian.AppendUint16(c.buf, 0xffff)
		c.ended = true
	}
	return c.buf
}

func (c *copyBinary) len32(n int) { c.buf = binary.BigEndian.AppendUint32(c.buf, uint32(n)) }

func (c *copyBinary) null() { c.buf = binary.BigEndian.AppendUint32(c.buf, 0xffffffff) }

// text writes a text value; PostgreSQL checks its encoding as it would in text format.
func (c *copyBinary) text(s string) {
	c.len32(len(s))
	c.buf = append(c.buf, s...)
}

func (c *copyBinary) bool(b bool) {
	v := byte(0)
	if b {
		v = 1
	}
	c.buf = append(c.buf, 0, 0, 0, 1, v)
}

func (c *copyBinary) int8(n int64) {
	c.len32(8)
	c.buf = binary.BigEndian.AppendUint64(c.buf, uint64(n))
}

func (c *copyBinary) int4(n int32) {
	c.len32(4)
	c.buf = binary.BigEndian.AppendUint32(c.buf, uint32(n))
}

func (c *copyBinary) uuid(id [16]byte) {
	c.len32(16)
	c.buf = append(c.buf, id[:]...)
}

// pgEpochMicros is 2000-01-01 UTC, PostgreSQL's timestamp epoch, in Unix microseconds.
const pgEpochMicros = 946_684_800_000_000

// ts writes a timestamptz: microseconds since 2000, truncated as the text format's six
// fractional digits were.
func (c *copyBinary) ts(t time.Time) {
	c.int8(t.UnixMicro() - pgEpochMicros)
}

func (c *copyBinary) tsOrNull(t *timestamppb.Timestamp) {
	if t == nil {
		c.null()
		return
	}
	c.ts(t.AsTime())
}

// jsonb writes a JSON document (version 1 of jsonb's binary input: the text after a 1).
func (c *copyBinary) jsonb(doc []byte) {
	c.len32(len(doc) + 1)
	c.buf = append(c.buf, 1)
	c.buf = append(c.buf, doc...)
}

// decimal writes a decimal string as a numeric; "" is NULL when nullable, else 0.
func (c *copyBinary) decimal(s string, nullable bool) error {
	if s == "" {
		if nullable {
			c.null()
			return nil
		}
		s = "0"
	}
	at := len(c.buf)
	c.buf = append(c.buf, 0, 0, 0, 0)
	var err error
	if c.buf, c.digits, err = appendNumeric(c.buf, c.digits, s); err != nil {
		c.buf = c.buf[:at]
		return err
	}
	binary.BigEndian.PutUint32(c.buf[at:], uint32(len(c.buf)-at-4))
	return nil
}

// Numeric's binary sign words.
const (
	numericPos = 0x0000
	numericNeg = 0x4000
)

// appendNumeric appends the binary numeric of decimal string s (money.Syntax: sign, digits with
// at most one point, an exponent of up to four digits) to buf: ndigits, weight, sign, dscale
// and the base-10000 digits. The display scale is what numeric_in gives the same text: the
// digits after the point, less the exponent, at least 0. scratch is reused between calls.
func appendNumeric(buf, scratch []byte, s string) ([]byte, []byte, error) {
	if !money.Syntax(s) {
		return buf, scratch, fmt.Errorf("amount %q is not a decimal", s)
	}
	sign := uint16(numericPos)
	i := 0
	switch s[0] {
	case '-':
		sign = numericNeg
		i++
	case '+':
		i++
	}
	d := scratch[:0]
	frac, dot := 0, false
	for ; i < len(s) && s[i] != 'e' && s[i] != 'E'; i++ {
		if s[i] == '.' {
			dot = true
			continue
		}
		d = append(d, s[i]-'0')
		if dot {
			frac++
		}
	}
	exp := 0
	if i < len(s) {
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil {
			return buf, d, fmt.Errorf("amount %q is not a decimal", s)
		}
		exp = e
	}
	// The value is d * 10^point, d an integer.
	point := exp - frac
	dscale := max(0, -point)
	for ; point > 0; point-- {
		d = append(d, 0)
	}
	// Align the point, then the end, on base-10000 digit boundaries.
	intLen := len(d) + point
	lead := 0
	if intLen < 0 {
		lead = -intLen
	}
	lead += ((4-(intLen+lead)%4)%4 + 4) % 4
	total := lead + len(d)
	tail := (4 - total%4) % 4
	ngroups := (total + tail) / 4
	weight := (intLen+lead)/4 - 1
	digit := func(k int) uint16 { // decimal digit k of the padded string
		k -= lead
		if k < 0 || k >= len(d) {
			return 0
		}
		return uint16(d[k])
	}
	// Leading and trailing zero groups are left out, as PostgreSQL stores them.
	group := func(g int) uint16 {
		k := g * 4
		return digit(k)*1000 + digit(k+1)*100 + digit(k+2)*10 + digit(k+3)
	}
	first, last := 0, ngroups-1
	for first <= last && group(first) == 0 {
		first++
	}
	for last >= first && group(last) == 0 {
		last--
	}
	if first > last { // zero: no digits, positive, weight 0
		buf = binary.BigEndian.AppendUint16(buf, 0)
		buf = binary.BigEndian.AppendUint16(buf, 0)
		buf = binary.BigEndian.AppendUint16(buf, numericPos)
		buf = binary.BigEndian.AppendUint16(buf, uint16(dscale))
		return buf, d, nil
	}
	if dscale > 0x3fff || weight-first > 0x7fff {
		return buf, d, fmt.Errorf("amount %q overflows numeric", s)
	}
	buf = binary.BigEndian.AppendUint16(buf, uint16(last-first+1))
	buf = binary.BigEndian.AppendUint16(buf, uint16(int16(weight-first)))
	buf = binary.BigEndian.AppendUint16(buf, sign)
	buf = binary.BigEndian.AppendUint16(buf, uint16(dscale))
	for g := first; g <= last; g++ {
		buf = binary.BigEndian.AppendUint16(buf, group(g))
	}
	return buf, d, nil
}

// appendTagsJSON appends tags as a JSON object, in their order: jsonb keeps the last value of
// a repeated key and sorts keys itself, so this stores what a map of the tags would.
func appendTagsJSON(b []byte, tags []*tallyv1.KeyValue) []byte {
	b = append(b, '{')
	for i, kv := range tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, kv.GetKey())
		b = append(b, ':')
		b = appendJSONString(b, kv.GetValue())
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD, as
// encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// parseDecimal reads a decimal money.Syntax accepted ("" is 0) as unscaled * 10^exp.
func parseDecimal(s string, unscaled *big.Int) (exp int32, err error) {
	if s == "" {
		unscaled.SetInt64(0)
		return 0, nil
	}
	mant, e := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		if e, err = strconv.Atoi(strings.TrimPrefix(s[i+1:], "+")); err != nil {
			return 0, fmt.Errorf("amount %q is not a decimal", s)
		}
	}
	if i := strings.IndexByte(mant, '.'); i >= 0 {
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
func writeHistory(c *copyBinary, tenant string, seq uint64, index int, id [16]byte, op int16, scope *tallyv1.BillScope,
	key, prev string, postClose bool, currency string, deltas *[6]string) error {
	c.row(len(historyColumns))
	c.text(tenant)
	c.int8(int64(seq))
	c.int4(int32(index))
	c.uuid(id)
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
	return nil
}

// writeFresh writes a new line's row (freshColumns) with final false, and returns the offset
// of that false byte so it can be turned true.
func writeFresh(c *copyBinary, tenant string, seq uint64, id [16]byte, l *tallyv1.CostLine, postClose bool, scratch []byte) (int, []byte, error) {
	s := l.GetScope()
	c.row(len(freshColumns))
	c.text(tenant)
	c.text(s.GetProvider())
	c.text(s.GetBillingAccountId())
	c.ts(s.GetBillingPeriodStart().AsTime())
	c.text(l.GetLineKey())
	c.ts(s.GetBillingPeriodEnd().AsTime())
	c.text(l.GetBillingAccountName())
	c.tsOrNull(l.GetChargePeriodStart())
	c.tsOrNull(l.GetChargePeriodEnd())
	c.text(l.GetSubAccountId())
	c.text(l.GetSubAccountName())
	c.text(l.GetServiceName())
	c.text(l.GetServiceCategory())
	c.text(l.GetRegionId())
	c.text(l.GetAvailabilityZone())
	c.text(l.GetResourceId())
	c.text(l.GetSkuId())
	c.text(l.GetChargeCategory())
	c.text(l.GetChargeClass())
	c.text(l.GetPricingCategory())
	if err := c.decimal(l.GetPricingQuantity(), true); err != nil {
		return 0, scratch, err
	}
	c.text(l.GetPricingUnit())
	if err := c.decimal(l.GetConsumedQuantity(), true); err != nil {
		return 0, scratch, err
	}
	c.text(l.GetConsumedUnit())
	for _, v := range [4]string{l.GetBilledCost(), l.GetEffectiveCost(), l.GetListCost(), l.GetContractedCost()} {
		if err := c.decimal(v, false); err != nil {
			return 0, scratch, err
		}
	}
	c.text(l.GetBillingCurrency())
	scratch = appendTagsJSON(scratch[:0], l.GetTags())
	c.jsonb(scratch)
	c.bool(postClose)
	c.uuid(id)
	c.int8(int64(seq))
	c.bool(false)
	return len(c.buf) - 1, scratch, nil
}

// copyBinaryInto runs COPY table (columns) FROM STDIN (FORMAT binary) with the rows in c.
func copyBinaryInto(ctx context.Context, tx pgx.Tx, table pgx.Identifier, columns []string, c *copyBinary) error {
	cols := make([]string, len(columns))
	for i, col := range columns {
		cols[i] = pgx.Identifier{col}.Sanitize()
	}
	sql := "COPY " + table.Sanitize() + " (" + strings.Join(cols, ", ") + ") FROM STDIN (FORMAT binary)"
	_, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(c.bytes()), sql)
	return err
}
