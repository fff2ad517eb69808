package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/gateway/tokens"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
)

// QueryKind is one question the query load asks, varied by the request number i (the
// month, the team).
type QueryKind struct {
	Name string
	Req  func(l *Load, i int) *tallyv1.GetCostRequest
	// MayBeEmpty: the question can rightly have no answer (a tag combination no resource of
	// the month has); otherwise an empty answer is an error.
	MayBeEmpty bool
}

// Teams and environments the generated bills tag resources with (services/focusgen).
var (
	loadTeams = []string{"payments", "search", "data", "platform", "ml", "web"}
	loadEnvs  = []string{"prod", "staging", "dev"}
)

func monthReq(l *Load, i int) *tallyv1.GetCostRequest {
	m := l.Month(i)
	return &tallyv1.GetCostRequest{TenantId: l.cfg.Tenant, From: timestamppb.New(m), To: timestamppb.New(m.AddDate(0, 1, 0)),
		Granularity: tallyv1.Granularity_GRANULARITY_MONTH}
}

// The questions of the query load.
var (
	// MonthByService: a month's cost grouped by service, the dashboard's first question
	// (answered from the daily rollup).
	MonthByService = QueryKind{"month_by_service", func(l *Load, i int) *tallyv1.GetCostRequest {
		r := monthReq(l, i)
		r.GroupBy = []string{"service"}
		return r
	}, false}
	// MonthByDayAndProvider: a month by day and provider (the rollup too), a trend chart.
	MonthByDayAndProvider = QueryKind{"month_by_day_provider", func(l *Load, i int) *tallyv1.GetCostRequest {
		r := monthReq(l, i)
		r.GroupBy, r.Granularity = []string{"provider"}, tallyv1.Granularity_GRANULARITY_DAY
		return r
	}, false}
	// MonthTeamByService: a month of one team's tagged cost by service; a tag filter only
	// the lines can answer.
	MonthTeamByService = QueryKind{"month_tag_team_by_service", func(l *Load, i int) *tallyv1.GetCostRequest {
		r := monthReq(l, i)
		r.GroupBy = []string{"service"}
		r.Tags = []*tallyv1.TagFilter{{Key: "team", Values: []string{loadTeams[i%len(loadTeams)]}}}
		return r
	}, true}
	// MonthTeamEnvByProvider: two tag filters and a dimension filter, grouped by provider and
	// the cost-center tag.
	MonthTeamEnvByProvider = QueryKind{"month_tag_team_env_by_provider_cc", func(l *Load, i int) *tallyv1.GetCostRequest {
		r := monthReq(l, i)
		r.GroupBy, r.GroupByTags = []string{"provider"}, []string{"cost-center"}
		r.Tags = []*tallyv1.TagFilter{
			{Key: "team", Values: []string{loadTeams[i%len(loadTeams)]}},
			{Key: "env", Values: []string{loadEnvs[i%len(loadEnvs)]}},
		}
		r.Dimensions = []*tallyv1.DimensionFilter{{Dimension: "charge_category", Values: []string{"Usage"}}}
		return r
	}, true}
)

// QueryPhase is one closed-loop query load: Clients clients each asking one question after
// another for Duration.
type QueryPhase struct {
	Name     string             `json:"name"`
	Clients  int                `json:"clients"`
	Duration time.Duration      `json:"duration_ns"`
	Mix      []string           `json:"mix"`
	Total    Latency            `json:"total"`
	PerKind  map[string]Latency `json:"per_kind"`
}

// RunQueryLoad runs clients concurrent clients, each with its own HTTP/2 connection and a
// Connect LedgerService client carrying a viewer token of the tenant, asking mix's questions
// in turn for d. An error, or an answer with no row to a question that always has some in
// the generated ledger, counts as an error. Each client asks every question once before the
// clock starts.
func (l *Load) RunQueryLoad(ctx context.Context, name string, clients int, d time.Duration, mix []QueryKind) (QueryPhase, error) {
	ph := QueryPhase{Name: name, Clients: clients, Duration: d, PerKind: map[string]Latency{}}
	for _, k := range mix {
		ph.Mix = append(ph.Mix, k.Name)
	}
	token, err := l.Token(ctx, "load-viewer", l.cfg.Tenant, tokens.RoleViewer)
	if err != nil {
		return ph, err
	}
	ask := func(c tallyv1connect.LedgerServiceClient, k QueryKind, i int) error {
		resp, err := c.GetCost(ctx, connect.NewRequest(k.Req(l, i)))
		if err != nil {
			return err
		}
		if len(resp.Msg.GetRows()) == 0 && !k.MayBeEmpty {
			return fmt.Errorf("%s: no rows", k.Name)
		}
		return nil
	}
	cls := make([]tallyv1connect.LedgerServiceClient, clients)
	for i := range cls {
		hc, closeIdle := h2cClient(token)
		defer closeIdle()
		cls[i] = tallyv1connect.NewLedgerServiceClient(hc, l.URL)
		for j, k := range mix {
			if err := ask(cls[i], k, i+j); err != nil {
				return ph, fmt.Errorf("warm-up of client %d: %w", i, err)
			}
		}
	}

	per := make([][]samples, clients) // [client][kind]
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for c := range clients {
		per[c] = make([]samples, len(mix))
		wg.Go(func() {
			for n := 0; time.Now().Before(deadline); n++ {
				if ctx.Err() != nil {
					return
				}
				i := c + n*clients
				k := (c + n) % len(mix)
				t0 := time.Now()
				err := ask(cls[c], mix[k], i)
				per[c][k].add(time.Since(t0), err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return ph, errors.Join(errors.New("query load interrupted"), err)
	}
	var total samples
	for k, kind := range mix {
		var s samples
		for c := range clients {
			s.merge(&per[c][k])
		}
		ph.PerKind[kind.Name] = s.summary(elapsed)
		total.merge(&s)
	}
	ph.Total = total.summary(elapsed)
	return ph, nil
}
