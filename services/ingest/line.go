package ingest

import (
	"crypto/sha256"
	"strconv"

	"github.com/shopspring/decimal"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/services/focus"
)

// costLine maps a validated FOCUS row to the event schema's CostLine.
// Amounts keep the exact digits of the file (decimal.String never rounds).
func costLine(r *focus.Row, key string, version focus.Version) *tallyv1.CostLine {
	return &tallyv1.CostLine{
		LineKey: key,
		Scope: &tallyv1.BillScope{
			Provider:           r.ProviderOrServiceProvider(),
			BillingAccountId:   r.BillingAccountID,
			BillingPeriodStart: timestamppb.New(r.BillingPeriodStart),
			BillingPeriodEnd:   timestamppb.New(r.BillingPeriodEnd),
		},
		BillingAccountName:                 r.BillingAccountName,
		SubAccountId:                       r.SubAccountID,
		SubAccountName:                     r.SubAccountName,
		PublisherName:                      r.PublisherName,
		InvoiceIssuerName:                  r.InvoiceIssuerName,
		HostProviderName:                   r.HostProviderName,
		ChargePeriodStart:                  timestamppb.New(r.ChargePeriodStart),
		ChargePeriodEnd:                    timestamppb.New(r.ChargePeriodEnd),
		ChargeCategory:                     string(r.ChargeCategory),
		ChargeClass:                        string(r.ChargeClass),
		ChargeDescription:                  r.ChargeDescription,
		ChargeFrequency:                    string(r.ChargeFrequency),
		ServiceName:                        r.ServiceName,
		ServiceCategory:                    r.ServiceCategory,
		ServiceSubcategory:                 r.ServiceSubcategory,
		RegionId:                           r.RegionID,
		RegionName:                         r.RegionName,
		AvailabilityZone:                   r.AvailabilityZone,
		ResourceId:                         r.ResourceID,
		ResourceName:                       r.ResourceName,
		ResourceType:                       r.ResourceType,
		SkuId:                              r.SkuID,
		SkuPriceId:                         r.SkuPriceID,
		SkuMeter:                           r.SkuMeter,
		PricingCategory:                    string(r.PricingCategory),
		PricingUnit:                        r.PricingUnit,
		PricingQuantity:                    nullDec(r.PricingQuantity),
		ConsumedQuantity:                   nullDec(r.ConsumedQuantity),
		ConsumedUnit:                       r.ConsumedUnit,
		BilledCost:                         decString(r.BilledCost),
		EffectiveCost:                      nullDec(r.EffectiveCost),
		ListCost:                           nullDec(r.ListCost),
		ContractedCost:                     nullDec(r.ContractedCost),
		BillingCurrency:                    r.BillingCurrency,
		CommitmentDiscountId:               r.CommitmentDiscountID,
		CommitmentDiscountCategory:         string(r.CommitmentDiscountCategory),
		CommitmentDiscountType:             r.CommitmentDiscountType,
		CommitmentDiscountStatus:           string(r.CommitmentDiscountStatus),
		CapacityReservationId:              r.CapacityReservationID,
		CapacityReservationStatus:          string(r.CapacityReservationStatus),
		Tags:                               keyValues(r.Tags),
		Extensions:                         extensions(r.Extensions),
		FocusVersion:                       string(version),
		RowCount:                           1,
		InvoiceId:                          r.InvoiceID,
		ListUnitPrice:                      nullDec(r.ListUnitPrice),
		ContractedUnitPrice:                nullDec(r.ContractedUnitPrice),
		PricingCurrency:                    r.PricingCurrency,
		PricingCurrencyContractedUnitPrice: nullDec(r.PricingCurrencyContractedUnitPrice),
		PricingCurrencyEffectiveCost:       nullDec(r.PricingCurrencyEffectiveCost),
		PricingCurrencyListUnitPrice:       nullDec(r.PricingCurrencyListUnitPrice),
		CommitmentDiscountName:             r.CommitmentDiscountName,
		CommitmentDiscountQuantity:         nullDec(r.CommitmentDiscountQuantity),
		CommitmentDiscountUnit:             r.CommitmentDiscountUnit,
		SkuPriceDetails:                    kvJSON(r.SkuPriceDetails),
		ContractApplied:                    r.ContractApplied,
		BillingAccountType:                 r.BillingAccountType,
		SubAccountType:                     r.SubAccountType,
		AllocatedMethodId:                  r.AllocatedMethodID,
		AllocatedMethodDetails:             r.AllocatedMethodDetails,
		AllocatedResourceId:                r.AllocatedResourceID,
		AllocatedResourceName:              r.AllocatedResourceName,
		AllocatedTags:                      keyValues(r.AllocatedTags),
		ServiceProviderName:                r.ServiceProviderName,
	}
}

func nullDec(d decimal.NullDecimal) string {
	if !d.Valid {
		return ""
	}
	return decString(d.Decimal)
}

// decString is d.String() without math/big for the amounts bills hold
// (up to 18 digits): that conversion was a tenth of an ingest's CPU. The
// text must stay exactly d.String()'s, since it is hashed into the line's
// content; TestDecString compares them.
func decString(d decimal.Decimal) string {
	exp := d.Exponent()
	if exp > 0 || exp < -18 || !decimal.TrimTrailingZeros || decimal.UseScientificNotation || d.NumDigits() > 18 {
		return d.String()
	}
	v := d.CoefficientInt64()
	if exp == 0 {
		return strconv.FormatInt(v, 10)
	}
	var buf [48]byte
	out := buf[:0]
	u := uint64(v)
	if v < 0 {
		out = append(out, '-')
		u = -u
	}
	var digits [20]byte
	ds := strconv.AppendUint(digits[:0], u, 10)
	scale := int(-exp)
	var intPart, frac []byte
	var lead int
	if len(ds) > scale {
		intPart, frac = ds[:len(ds)-scale], ds[len(ds)-scale:]
	} else {
		intPart, lead, frac = []byte{'0'}, scale-len(ds), ds
	}
	for len(frac) > 0 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	if len(frac) == 0 {
		lead = 0
	}
	out = append(out, intPart...)
	if lead+len(frac) > 0 {
		out = append(out, '.')
		for range lead {
			out = append(out, '0')
		}
		out = append(out, frac...)
	}
	return string(out)
}

func keyValues(kvs []focus.KeyValue) []*tallyv1.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]*tallyv1.KeyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = &tallyv1.KeyValue{Key: kv.Key, Value: kv.Value}
	}
	return out
}

func extensions(exts []focus.Extension) []*tallyv1.KeyValue {
	if len(exts) == 0 {
		return nil
	}
	out := make([]*tallyv1.KeyValue, len(exts))
	for i, e := range exts {
		out[i] = &tallyv1.KeyValue{Key: e.Name, Value: e.Value}
	}
	return out
}

// kvJSON writes SkuPriceDetails back as a flat JSON object text; the ledger
// keeps it as exported rather than interpreting it.
func kvJSON(kvs []focus.KeyValue) string {
	if kvs == nil {
		return ""
	}
	b := []byte{'{'}
	for i, kv := range kvs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, kv.Key)
		b = append(b, ':')
		switch kv.Kind {
		case focus.KindString:
			b = appendJSONString(b, kv.Value)
		case focus.KindNull:
			b = append(b, "null"...)
		default: // numbers, booleans and nested JSON keep their literal text
			b = append(b, kv.Value...)
		}
	}
	return string(append(b, '}'))
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// lineBytes encodes a line for the sorted runs and the state's content
// hash. Deterministic mode: the same line always gives the same bytes.
func lineBytes(l *tallyv1.CostLine) ([]byte, error) {
	return lineMarshal.Marshal(l)
}

var lineMarshal = proto.MarshalOptions{Deterministic: true}

// contentHash identifies a line's full content: any change in it (amounts,
// descriptions, tags) is a restatement.
func contentHash(lineBytes []byte) []byte {
	sum := sha256.Sum256(lineBytes)
	return sum[:]
}
