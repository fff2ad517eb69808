package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/gateway/tokens"
	"github.com/tally-ledger/tally/projections/savings"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// savingsGateway serves a gateway beside a runner folding the savings read model, with the
// log appended to by appendSavings; env holds an admin token.
func savingsGateway(t *testing.T) (url string, env map[string]string, st *eventstore.Store, caughtUp func()) {
	t.Helper()
	s := serve(t, savings.New())
	env = map[string]string{"TALLY_TOKEN": s.token(t, tokens.Spec{Name: "cli-test", Role: tokens.RoleAdmin}), "TALLY_SERVER": s.url}
	return s.url, env, s.store, func() { s.caughtUp(t) }
}

// appendStop appends, for acme, a stop of i-web on 2024-09-10 (account 111) and a final
// September bill: 10.00 a day on 09-03..09 and 1.00 a day on 09-11..17. So:
// baseline 70 / 7 = 10 a day, measurement 7 / 7 = 1 a day, realized 9 a day and
// 9 × 30.4375 = 273.9375 a month.
func appendStop(t *testing.T, st *eventstore.Store) {
	t.Helper()
	month := time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
	scope := &tallyv1.BillScope{Provider: "AWS", BillingAccountId: "111",
		BillingPeriodStart: timestamppb.New(month), BillingPeriodEnd: timestamppb.New(month.AddDate(0, 1, 0))}
	id := func(key string) string { return eventstore.DeterministicID("acme", key) }
	events := []*tallyv1.Envelope{{EventId: id("stop"), Actor: &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "optimizer"},
		Body: &tallyv1.Envelope_RemediationExecuted{RemediationExecuted: &tallyv1.RemediationExecuted{ActionId: "act-1",
			Provider: "AWS", BillingAccountId: "111", ResourceId: "i-web", Kind: tallyv1.RemediationKind_REMEDIATION_KIND_STOP,
			ExpectedDailySavings: "8.5", Currency: "USD", ExecutedAt: timestamppb.New(month.AddDate(0, 0, 9))}}}}
	for d := 3; d <= 17; d++ {
		cost := map[bool]string{true: "10.00", false: "1.00"}[d < 10]
		start := month.AddDate(0, 0, d-1)
		events = append(events, &tallyv1.Envelope{EventId: id(fmt.Sprint("line-", d)),
			Body: &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: &tallyv1.CostLine{
				LineKey: fmt.Sprintf("web-%02d", d), Scope: scope, ResourceId: "i-web", ChargePeriodStart: timestamppb.New(start),
				ChargePeriodEnd: timestamppb.New(start.AddDate(0, 0, 1)), BilledCost: cost, EffectiveCost: cost, BillingCurrency: "USD"}}}})
	}
	events = append(events, &tallyv1.Envelope{EventId: id("final"),
		Body: &tallyv1.Envelope_BillingPeriodFinalized{BillingPeriodFinalized: &tallyv1.BillingPeriodFinalized{Scope: scope}}})
	_, err := st.Append(t.Context(), "acme", events)
	require.NoError(t, err)
}

func TestSavingsCommand(t *testing.T) {
	_, env, st, caughtUp := savingsGateway(t)
	appendStop(t, st)
	caughtUp()

	_, out, _, err := execute(t, env, "savings", "--tenant", "acme", "--period", "2024-09")
	require.NoError(t, err)
	require.Regexp(t, `ACTION\s+KIND\s+RESOURCE\s+EXECUTED\s+STATUS\s+CURRENCY\s+BASELINE/DAY\s+MEASURED/DAY\s+REALIZED/DAY\s+REALIZED/MONTH\s+EXPECTED/DAY`, out)
	require.Regexp(t, `act-1\s+stop\s+i-web\s+2024-09-10\s+measured\s+USD\s+10\s+1\s+9\s+273.9375\s+8.5 USD`, out)
	require.Regexp(t, `TOTAL\s+USD\s+273.9375`, out)

	_, out, _, err = execute(t, env, "savings", "--tenant", "acme", "--action", "act-1")
	require.NoError(t, err)
	require.Regexp(t, `baseline\s+2024-09-03 \.\. 2024-09-09 \(7 days\)`, out)
	require.Regexp(t, `measurement\s+2024-09-11 \.\. 2024-09-17 \(7 days, after a 1-day gap\)`, out)
	require.Regexp(t, `realized a month\s+273.9375 USD \(x 30.4375\)`, out)
	require.Regexp(t, `1\s+remediation_executed\s+\d+\s+pending\s+-`, out)
	require.Regexp(t, `2\s+billing_period_finalized\s+\d+\s+measured\s+9\s+273.9375`, out)

	_, out, _, err = execute(t, env, "savings", "--tenant", "acme", "--action", "act-1", "--evidence")
	require.NoError(t, err)
	require.Regexp(t, `baseline\s+2024-09-03\s+111\s+web-03\s+USD\s+10.00\s+true`, out)
	require.Regexp(t, `measurement\s+2024-09-17\s+111\s+web-17\s+USD\s+1.00\s+true`, out)
	require.NotContains(t, out, "web-10", "the action day is in no window")

	_, out, _, err = execute(t, env, "savings", "--tenant", "acme", "--output", "json")
	require.NoError(t, err)
	var resp struct {
		Actions []struct {
			ActionID string `json:"actionId"`
			Figures  struct {
				Status        string `json:"status"`
				RealizedDaily string `json:"realizedDaily"`
			} `json:"figures"`
		} `json:"actions"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &resp), out)
	require.Len(t, resp.Actions, 1)
	require.Equal(t, "SAVINGS_STATUS_MEASURED", resp.Actions[0].Figures.Status)
	require.Equal(t, "9", resp.Actions[0].Figures.RealizedDaily)

	_, out, _, err = execute(t, env, "savings", "--tenant", "acme", "--status", "pending")
	require.NoError(t, err)
	require.Contains(t, out, "no remediation actions")

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"savings"}, "--tenant is required"},
		{[]string{"savings", "--tenant", "acme", "--status", "saved"}, `--status "saved"`},
		{[]string{"savings", "--tenant", "acme", "--evidence"}, "--evidence needs --action"},
		{[]string{"savings", "--tenant", "acme", "--action", "a", "--period", "2024-09"}, "--action shows one action"},
		{[]string{"savings", "--tenant", "acme", "--output", "xml"}, `--output "xml"`},
		{[]string{"savings", "--tenant", "acme", "--period", "2024-9"}, `refused: period "2024-9" is not a month`},
		{[]string{"savings", "--tenant", "acme", "--action", "nope"}, "not found"},
	} {
		_, _, _, err := execute(t, env, tc.args...)
		require.Error(t, err, "%v", tc.args)
		require.Contains(t, err.Error(), tc.msg, "%v", tc.args)
	}
}
