package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strconv"
	"time"

	"github.com/tally-ledger/tally/services/focus"
)

// lineKeyPrefix versions the definition: a change of dimensions is a new
// prefix, never a recomputation of stored keys.
const lineKeyPrefix = "tally.line_key.v1"

// LineKey is a row's line identity within its scope: the lower-case hex
// SHA-256 over the FOCUS dimensions listed in docs/events.md ("Cost line
// identity"), each written as a netstring so no value can run into the next.
// Amounts, descriptions, names, tags and extension columns are not part of
// it: a change in them restates the line. Tags are left out because providers
// backfill them when they revise a bill; with tags in the key every backfill
// would retract and re-record each line of the resource.
func LineKey(r *focus.Row) string {
	k := newKeyHash()
	put := k.put
	put(lineKeyPrefix)
	put(r.BillingAccountID)
	put(r.SubAccountID)
	put(r.ProviderOrServiceProvider())
	put(ts(r.ChargePeriodStart))
	put(ts(r.ChargePeriodEnd))
	put(string(r.ChargeCategory))
	put(string(r.ChargeClass))
	put(string(r.ChargeFrequency))
	put(r.ServiceName)
	put(r.RegionID)
	put(r.AvailabilityZone)
	put(r.ResourceID)
	put(r.SkuID)
	put(r.SkuPriceID)
	put(string(r.PricingCategory))
	put(r.PricingUnit)
	put(r.ConsumedUnit)
	put(r.CommitmentDiscountID)
	put(string(r.CommitmentDiscountStatus))
	put(r.CapacityReservationID)
	put(string(r.CapacityReservationStatus))
	put(r.BillingCurrency)
	put(r.AllocatedMethodID)
	put(r.AllocatedResourceID)
	return hex.EncodeToString(k.h.Sum(nil))
}

// ScopeKey identifies a bill: provider, billing account and billing period.
func ScopeKey(provider, account string, start, end time.Time) string {
	k := newKeyHash()
	for _, s := range []string{"tally.scope.v1", provider, account, ts(start), ts(end)} {
		k.put(s)
	}
	return hex.EncodeToString(k.h.Sum(nil)[:16])
}

// keyHash hashes values as netstrings ("<byte length>:<bytes>,") so that no
// value can run into the next: the encoding of line and scope keys.
type keyHash struct {
	h   hash.Hash
	buf []byte
}

func newKeyHash() *keyHash { return &keyHash{h: sha256.New()} }

func (k *keyHash) put(s string) {
	k.buf = strconv.AppendInt(k.buf[:0], int64(len(s)), 10)
	k.buf = append(k.buf, ':')
	k.buf = append(k.buf, s...)
	k.buf = append(k.buf, ',')
	k.h.Write(k.buf)
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }
