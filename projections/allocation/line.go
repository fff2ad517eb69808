package allocation

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// FromCostLine is the cost line as allocation sees it, and the UTC day it is allocated on.
//
// The amount allocated is EffectiveCost (amortized: commitment purchases spread over the
// usage they cover, which is what a cost center consumed), in the billing currency. The day
// is that of ChargePeriodStart, or of the billing period start where a line has no charge
// period, the same day the ledger's daily rollup uses. Tags are the line's own FOCUS tags;
// tags applied later by ResourceTagged events are not joined in (yet). An empty effective cost
// (a FOCUS null) counts as zero, as the ledger counts it.
func FromCostLine(c *tallyv1.CostLine) (CostLine, time.Time, error) {
	effective := c.GetEffectiveCost()
	if effective == "" {
		effective = "0"
	}
	amount, err := decimal.NewFromString(effective)
	if err != nil {
		return CostLine{}, time.Time{}, fmt.Errorf("cost line %s: effective_cost %q: %w", c.GetLineKey(), c.GetEffectiveCost(), err)
	}
	start := c.GetChargePeriodStart()
	if start == nil {
		start = c.GetScope().GetBillingPeriodStart()
	}
	if start == nil {
		return CostLine{}, time.Time{}, fmt.Errorf("cost line %s: no charge or billing period start", c.GetLineKey())
	}
	l := CostLine{
		Line: Line{
			Provider:         c.GetScope().GetProvider(),
			BillingAccountID: c.GetScope().GetBillingAccountId(),
			ServiceName:      c.GetServiceName(),
			RegionID:         c.GetRegionId(),
			ResourceID:       c.GetResourceId(),
		},
		Amount:   amount,
		Currency: c.GetBillingCurrency(),
	}
	if len(c.GetTags()) > 0 {
		l.Tags = make(map[string]string, len(c.GetTags()))
		for _, kv := range c.GetTags() {
			l.Tags[kv.GetKey()] = kv.GetValue()
		}
	}
	return l, Day(start.AsTime()), nil
}
