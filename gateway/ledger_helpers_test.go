package gateway_test

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/gateway"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/allocation"
	"github.com/tally-ledger/tally/projections/changelog"
	"github.com/tally-ledger/tally/projections/closepkg"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/projections/savings"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/proto/gen/tally/v1/tallyv1connect"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// ledgerEnv is env with a projection runner folding the ledger, and
// LedgerService clients (one posting, one using HTTP GET).
type ledgerEnv struct {
	*env
	runner    *projections.Runner
	ledger    tallyv1connect.LedgerServiceClient
	ledgerGET tallyv1connect.LedgerServiceClient
}

// newLedgerEnv serves the gateway and runs a projector beside it. With
// wake, the gateway is given the runner (as in `tally serve` with every
// role); without, it polls the database for min_seq (a gateway-only process).
func newLedgerEnv(t *testing.T, wake bool) *ledgerEnv {
	t.Helper()
	srv := natstest.Run(t)
	store := srv.Store()
	pool, _ := pgtest.NewDB(t)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))

	runner, err := projections.NewRunner(pool, store, projections.Options{PollInterval: 20 * time.Millisecond, Logger: logger}, ledger.New(), savings.New(), allocation.New(), closepkg.New(), changelog.New())
	require.NoError(t, err)
	require.NoError(t, runner.Setup(t.Context()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = runner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	cfg := gateway.Config{Store: store, Pool: pool, TempDir: t.TempDir(), Logger: logger}
	if wake {
		cfg.Runner = runner
	}
	e := serveGateway(t, cfg)
	return &ledgerEnv{
		env:       e,
		runner:    runner,
		ledger:    tallyv1connect.NewLedgerServiceClient(e.h2c, e.url),
		ledgerGET: tallyv1connect.NewLedgerServiceClient(e.http1, e.url, connect.WithHTTPGet()),
	}
}

// uploadSample ingests the FOCUS sample for tenant and returns the stream
// sequence to wait for.
func (e *ledgerEnv) uploadSample(t *testing.T, tenant string, final bool) uint64 {
	t.Helper()
	data := readSample(t)
	sum, err := uploadConnect(ctxT(t), e.env, &tallyv1.UploadFocusFileHeader{TenantId: tenant, FileName: "focus_sample.csv", Final: final}, data)
	require.NoError(t, err)
	require.Positive(t, sum.GetStreamSeq())
	return sum.GetStreamSeq()
}

// costLine is one USD line of a bill for (provider, account, month).
type costLine struct {
	provider, account, service, region string
	month                              time.Time // billing period start
	day                                int       // day of month of the charge period
	billed                             string
	tags                               map[string]string
	currency                           string // "" is USD
}

func (l costLine) scope() *tallyv1.BillScope {
	return &tallyv1.BillScope{Provider: l.provider, BillingAccountId: l.account,
		BillingPeriodStart: timestamppb.New(l.month), BillingPeriodEnd: timestamppb.New(l.month.AddDate(0, 1, 0))}
}

// appendLines appends CostLineRecorded events for tenant (and finalizes
// the bills in finalize) and returns the stream sequence of the last one.
func (e *ledgerEnv) appendLines(t *testing.T, tenant string, lines []costLine, finalize ...costLine) uint64 {
	t.Helper()
	var events []*tallyv1.Envelope
	for i, l := range lines {
		start := l.month.AddDate(0, 0, l.day-1)
		var tags []*tallyv1.KeyValue
		for k, v := range l.tags {
			tags = append(tags, &tallyv1.KeyValue{Key: k, Value: v})
		}
		events = append(events, &tallyv1.Envelope{
			EventId:    eventstore.DeterministicID(tenant, fmt.Sprintf("line-%s-%d", t.Name(), i)),
			OccurredAt: timestamppb.New(start),
			Body: &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: &tallyv1.CostLine{
				LineKey: fmt.Sprintf("k%03d", i), Scope: l.scope(), ServiceName: l.service, RegionId: l.region,
				ChargeCategory:    "Usage",
				ChargePeriodStart: timestamppb.New(start), ChargePeriodEnd: timestamppb.New(start.Add(24 * time.Hour)),
				BilledCost: l.billed, EffectiveCost: l.billed, ListCost: l.billed, BillingCurrency: cmp.Or(l.currency, "USD"), RowCount: 1, Tags: tags,
			}}},
		})
	}
	for i, l := range finalize {
		events = append(events, &tallyv1.Envelope{
			EventId:    eventstore.DeterministicID(tenant, fmt.Sprintf("final-%s-%d", t.Name(), i)),
			OccurredAt: timestamppb.New(l.month.AddDate(0, 1, 2)),
			Body:       &tallyv1.Envelope_BillingPeriodFinalized{BillingPeriodFinalized: &tallyv1.BillingPeriodFinalized{Scope: l.scope()}},
		})
	}
	res, err := e.store.Append(ctxT(t), tenant, events)
	require.NoError(t, err)
	return res.Head.StreamSeq
}
