package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/app"
	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// running is an App serving in the background.
type running struct {
	*app.App
	base   string
	cancel context.CancelFunc
	done   chan error
}

// start assembles a Tally with a data directory and database of its own,
// on a free port with in-process NATS, and runs it.
func start(t *testing.T) *running {
	t.Helper()
	_, dbURL := pgtest.NewDB(t)
	cfg := app.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = dbURL
	return startWith(t, cfg)
}

// startWith runs a Tally with cfg.
func startWith(t *testing.T, cfg app.Config) *running {
	t.Helper()
	a, err := app.New(t.Context(), cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{App: a, base: "http://" + a.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and requires it to return nil promptly; a second call
// is a no-op.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.done == nil {
		return
	}
	r.cancel()
	var err error
	require.Eventually(t, func() bool {
		select {
		case err = <-r.done:
			return true
		default:
			return false
		}
	}, 30*time.Second, 10*time.Millisecond, "Run did not return after cancel")
	require.NoError(t, err)
	r.done = nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

type healthBody struct {
	Status       string `json:"status"`
	Dependencies map[string]struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"dependencies"`
}

func health(t *testing.T, base string) (int, healthBody) {
	t.Helper()
	code, body := get(t, base+"/healthz")
	var h healthBody
	require.NoError(t, json.Unmarshal([]byte(body), &h), body)
	return code, h
}

func TestServeHealthMetricsAndShutdown(t *testing.T) {
	r := start(t)

	code, h := health(t, r.base)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok", h.Status)
	require.Equal(t, "ok", h.Dependencies["nats"].Status, h.Dependencies["nats"].Error)
	require.Equal(t, "ok", h.Dependencies["postgres"].Status, h.Dependencies["postgres"].Error)

	code, metrics := get(t, r.base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, metrics, "tally_build_info{")
	require.Contains(t, metrics, `tally_dependency_up{dependency="nats"} 1`)
	require.Contains(t, metrics, `tally_dependency_up{dependency="postgres"} 1`)
	require.Contains(t, metrics, "go_goroutines ")
	require.Contains(t, metrics, "process_start_time_seconds ")

	code, _ = get(t, r.base+"/nothing-here")
	require.Equal(t, http.StatusNotFound, code)

	// What later issues plug in is usable: the store appends, the pool is
	// migrated.
	res, err := r.Store().Append(t.Context(), "acme", []*tallyv1.Envelope{costLine("acme", 1)})
	require.NoError(t, err)
	require.Equal(t, 1, res.Appended)
	var migrated bool
	require.NoError(t, r.Pool().QueryRow(t.Context(),
		`SELECT EXISTS (SELECT FROM pg_tables WHERE tablename = 'goose_db_version')`).Scan(&migrated))
	require.True(t, migrated)

	r.stop(t)
	_, err = http.Get(r.base + "/healthz")
	require.Error(t, err, "the HTTP server must be gone after Run returns")
}

func TestHealthReportsAFailedDependency(t *testing.T) {
	r := start(t)
	r.Pool().Close() // as if PostgreSQL went away

	code, h := health(t, r.base)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "unavailable", h.Status)
	require.Equal(t, "ok", h.Dependencies["nats"].Status)
	require.Equal(t, "error", h.Dependencies["postgres"].Status)
	require.NotEmpty(t, h.Dependencies["postgres"].Error)

	_, metrics := get(t, r.base+"/metrics")
	require.Contains(t, metrics, `tally_dependency_up{dependency="nats"} 1`)
	require.Contains(t, metrics, `tally_dependency_up{dependency="postgres"} 0`)
}

func TestNewReleasesWhatItOpenedWhenItFails(t *testing.T) {
	_, dbURL := pgtest.NewDB(t)
	cfg := app.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Addr = freeAddr(t)
	cfg.DatabaseURL = dbURL
	cfg.NATSURL = "nats://" + freeAddr(t) // nothing listens there

	_, err := app.New(t.Context(), cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
	require.ErrorContains(t, err, "connect to NATS at nats://127.0.0.1:")

	ln, err := net.Listen("tcp", cfg.Addr)
	require.NoError(t, err, "the HTTP address must be released")
	require.NoError(t, ln.Close())
}

func TestNewRefusesAnInvalidConfig(t *testing.T) {
	cfg := app.DefaultConfig()
	cfg.Addr = "8080"
	_, err := app.New(t.Context(), cfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "data-dir: is required")
	require.ErrorContains(t, err, `addr: "8080" is not host:port`)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func costLine(tenant string, n int) *tallyv1.Envelope {
	key := fmt.Sprintf("line-%06d", n)
	return &tallyv1.Envelope{
		EventId:        eventstore.DeterministicID(tenant, key),
		TenantId:       tenant,
		IdempotencyKey: key,
		OccurredAt:     timestamppb.New(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)),
		Actor:          &tallyv1.Actor{Kind: tallyv1.ActorKind_ACTOR_KIND_SERVICE, Id: "app-test"},
		Body: &tallyv1.Envelope_CostLineRecorded{CostLineRecorded: &tallyv1.CostLineRecorded{Line: &tallyv1.CostLine{
			LineKey:         key,
			ServiceName:     "Amazon EC2",
			BilledCost:      fmt.Sprintf("%d.00", n),
			BillingCurrency: "USD",
		}}},
	}
}
