package ledger_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// Environment of the projector process TestKill9 starts (this test binary, run again).
const (
	killHelperEnv = "TALLY_KILL9_PROJECTOR"
	killNATSEnv   = "TALLY_KILL9_NATS_URL"
	killDBEnv     = "TALLY_KILL9_DATABASE_URL"
)

// TestKill9Projector is the projecting process of TestKill9: it runs the runner against the
// given log and database until it is killed. Run alone, it skips.
func TestKill9Projector(t *testing.T) {
	if os.Getenv(killHelperEnv) == "" {
		t.Skip("the projector process of TestKill9")
	}
	ctx := context.Background()
	nc, err := nats.Connect(os.Getenv(killNATSEnv))
	require.NoError(t, err)
	st, err := eventstore.Open(ctx, nc, eventstore.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer func() { _ = st.Close() }() // the parent kills this process; a clean end closes the index
	pool, err := pgxpool.New(ctx, os.Getenv(killDBEnv))
	require.NoError(t, err)
	r, err := projections.NewRunner(pool, st, projections.Options{BatchEvents: 300, PollInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)}, ledger.New())
	require.NoError(t, err)
	require.NoError(t, r.Run(ctx))
}

// killModel is the ledger the test expects, kept with exact decimals beside the events it
// appends.
type killModel struct {
	rng    *rand.Rand
	lines  map[string]*killLine // by account/key
	keys   []string             // live keys, for picking
	final  map[string]bool      // finalized accounts
	events int                  // line events appended
	next   int
}

type killLine struct {
	account, key, currency, service string
	day                             int
	billed                          decimal.Decimal
	last                            string // id of the line's last event
}

func (m *killModel) amount() (string, decimal.Decimal) {
	s := fmt.Sprintf("%d.%06d", m.rng.IntN(5000), m.rng.IntN(1_000_000))
	return s, decimal.RequireFromString(s)
}

// chunk appends one round of events: new lines, restatements, retractions and, now and then,
// a finalized account.
func (m *killModel) chunk(t *testing.T, st *eventstore.Store, round int) {
	var evs []*tallyv1.Envelope
	flush := func() {
		if len(evs) > 0 {
			appendEvents(t, st, "acme", evs...)
			evs = nil
		}
	}
	add := func(e *tallyv1.Envelope) {
		evs = append(evs, e)
		if len(evs) == 200 {
			flush()
		}
	}
	for range 900 {
		l := &killLine{account: fmt.Sprintf("acct-%d", m.rng.IntN(4)+1), key: fmt.Sprintf("k%06d", m.next),
			currency: []string{"USD", "EUR"}[m.rng.IntN(2)], service: []string{"EC2", "S3", "RDS"}[m.rng.IntN(3)], day: m.rng.IntN(28) + 1}
		m.next++
		var s string
		s, l.billed = m.amount()
		e := recorded("acme", line(l.account, l.key, l.service, l.day, s, l.currency))
		l.last = e.GetEventId()
		m.lines[l.account+"/"+l.key] = l
		m.keys = append(m.keys, l.account+"/"+l.key)
		add(e)
	}
	for range 150 {
		l := m.lines[m.keys[m.rng.IntN(len(m.keys))]]
		s, v := m.amount()
		e := restated("acme", line(l.account, l.key, l.service, l.day, s, l.currency), v.Sub(l.billed).String(), l.last)
		l.billed, l.last = v, e.GetEventId()
		add(e)
	}
	for range 60 {
		i := m.rng.IntN(len(m.keys))
		l := m.lines[m.keys[i]]
		add(retracted("acme", l.account, l.key, l.billed.Neg().String(), l.currency, l.last))
		delete(m.lines, m.keys[i])
		m.keys = append(m.keys[:i], m.keys[i+1:]...)
	}
	m.events += 900 + 150 + 60
	if round%8 == 7 {
		account := fmt.Sprintf("acct-%d", round/8+1)
		add(finalized("acme", account))
		m.final[account] = true
	}
	flush()
}

// totals are the expected billed totals per currency, all and final only.
func (m *killModel) totals() (all, final map[string]string) {
	a, f := map[string]decimal.Decimal{}, map[string]decimal.Decimal{}
	for _, l := range m.lines {
		a[l.currency] = a[l.currency].Add(l.billed)
		if m.final[l.account] {
			f[l.currency] = f[l.currency].Add(l.billed)
		}
	}
	all, final = map[string]string{}, map[string]string{}
	for c, v := range a {
		all[c] = v.StringFixed(6)
		final[c] = f[c].StringFixed(6)
	}
	return all, final
}

// TestKill9 runs the projector as a separate process and kills it with SIGKILL at seeded
// random moments while events keep arriving, restarting it each time; then lets it catch up.
// The ledger must hold exactly the expected lines and totals, and one history row per event.
func TestKill9(t *testing.T) {
	kills, rounds := 24, 24
	if testing.Short() {
		kills, rounds = 8, 8
	}
	srv := natstest.Run(t, natstest.NoSyncAlways())
	st := srv.Store()
	pool, dbURL := pgtest.NewDB(t)
	ctx := t.Context()
	m := &killModel{rng: rand.New(rand.NewPCG(9, 9)), lines: map[string]*killLine{}, final: map[string]bool{}}

	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Projector$")
		cmd.Env = append(os.Environ(), killHelperEnv+"=1", killNATSEnv+"="+srv.ClientURL(), killDBEnv+"="+dbURL)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		require.NoError(t, cmd.Start())
		return cmd
	}
	checkpoint := func() uint64 {
		cp, err := projections.Checkpoint(ctx, pool, ledger.Name)
		if err != nil {
			return 0 // not set up yet
		}
		return cp
	}
	// A backlog first, so that kills land in the middle of folding, not only while idle.
	round := 0
	for ; round < rounds/2; round++ {
		m.chunk(t, st, round)
	}
	var moved, behind int
	for k := range kills {
		if round < rounds {
			m.chunk(t, st, round)
			round++
		}
		before := checkpoint()
		head, err := st.LastSeq(ctx)
		require.NoError(t, err)
		cmd := start()
		if k%2 == 1 && before < head {
			// Every other kill waits for the projector's first commit, so that kills land after
			// progress however slow the machine is to start a process; the others land at a
			// random early moment (often during start-up or the first batch). With nothing left
			// to fold there is no commit to wait for (it waited its 30 s deadline in vain).
			deadline := time.Now().Add(30 * time.Second)
			for checkpoint() == before && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(time.Duration(m.rng.IntN(200)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(100+m.rng.IntN(300)) * time.Millisecond)
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		err = cmd.Wait()
		require.Error(t, err, "the projector was killed, it did not exit")
		after := checkpoint()
		if after > before {
			moved++
		}
		if after < head {
			behind++
		}
	}
	head, err := st.LastSeq(ctx)
	require.NoError(t, err)
	cmd := start()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	require.NoError(t, projections.WaitFor(wctx, pool, ledger.Name, head, 20*time.Millisecond))
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	wantAll, wantFinal := m.totals()
	totals, err := ledger.NewQueries(pool).Totals(ctx, ledger.Filter{Tenant: "acme"})
	require.NoError(t, err)
	gotAll, gotFinal := map[string]string{}, map[string]string{}
	var lines int64
	for _, tt := range totals {
		gotAll[tt.Currency], gotFinal[tt.Currency] = tt.Billed.StringFixed(6), tt.FinalBilled.StringFixed(6)
		lines += tt.Lines
	}
	require.Equal(t, wantAll, gotAll, "billed totals")
	require.Equal(t, wantFinal, gotFinal, "final billed totals")
	require.EqualValues(t, len(m.lines), lines, "live lines")
	require.Equal(t, m.events, historyCount(t, env{pool: pool}, "ledger"), "one history row per event: nothing doubled, nothing lost")
	dailyMatchesLines(t, pool, "ledger")
	require.GreaterOrEqual(t, moved, kills/4, "projector runs made progress before their kill")
	require.GreaterOrEqual(t, behind, kills/4, "kills landed with events left to fold")
	t.Logf("%d kills (%d after progress, %d with work left), %d line events, %d live lines", kills, moved, behind, m.events, len(m.lines))
}
