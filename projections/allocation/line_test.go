package allocation

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

func TestFromCostLine(t *testing.T) {
	c := &tallyv1.CostLine{
		LineKey: "k1",
		Scope: &tallyv1.BillScope{Provider: "AWS", BillingAccountId: "111",
			BillingPeriodStart: timestamppb.New(march1)},
		ChargePeriodStart: timestamppb.New(time.Date(2026, 3, 14, 23, 0, 0, 0, time.UTC)),
		ServiceName:       "Amazon EC2", RegionId: "us-east-1", ResourceId: "i-1",
		EffectiveCost: "1.2345678901", BilledCost: "2", BillingCurrency: "USD",
		Tags: []*tallyv1.KeyValue{{Key: "team", Value: "web"}},
	}
	l, day, err := FromCostLine(c)
	require.NoError(t, err)
	require.Equal(t, date(14), day)
	require.Equal(t, "1.2345678901", l.Amount.String(), "effective cost, not billed")
	require.Equal(t, Line{Provider: "AWS", BillingAccountID: "111", ServiceName: "Amazon EC2",
		RegionID: "us-east-1", ResourceID: "i-1", Tags: map[string]string{"team": "web"}}, l.Line)

	c.ChargePeriodStart = nil
	_, day, err = FromCostLine(c)
	require.NoError(t, err)
	require.Equal(t, date(1), day, "billing period start when there is no charge period")

	c.EffectiveCost = "abc"
	_, _, err = FromCostLine(c)
	require.Error(t, err)
}
