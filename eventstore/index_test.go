package eventstore_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/eventstore"
	"github.com/tally-ledger/tally/eventstore/natstest"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// withIndex keeps the store's id index in dir.
func withIndex(dir string) func(*eventstore.Options) {
	return func(o *eventstore.Options) { o.IndexDir = dir }
}

// logTo sends the store's log to buf.
func logTo(buf *syncBuffer) func(*eventstore.Options) {
	return func(o *eventstore.Options) { o.Logger = slog.New(slog.NewTextHandler(buf, nil)) }
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// appendMessages appends n messages of 100 events each, events from, from+100,
// ..., and returns the index after the last.
func appendMessages(t *testing.T, st *eventstore.Store, tenant string, from, n int) int {
	t.Helper()
	for i := 0; i < n; i++ {
		res, err := st.Append(ctxT(t), tenant, costLines(tenant, from, 100))
		require.NoError(t, err)
		require.Equal(t, 100, res.Appended)
		require.Equal(t, 1, res.Messages)
		from += 100
	}
	return from
}

// changed is event n with other content (the same id).
func changed(tenant string, n int) *tallyv1.Envelope {
	ev := costLine(tenant, n)
	ev.GetCostLineRecorded().Line.BilledCost = "12345.67"
	return ev
}

// requireIndexAgrees checks that the store's index holds exactly events
// [0, n) of the tenant: a retry of them appends nothing, any of them with
// other content is refused, and event n is new.
func requireIndexAgrees(t *testing.T, st *eventstore.Store, tenant string, n int) {
	t.Helper()
	ctx := ctxT(t)
	for _, i := range []int{0, n / 2, n - 1} {
		_, err := st.Append(ctx, tenant, []*tallyv1.Envelope{changed(tenant, i)})
		require.ErrorIs(t, err, eventstore.ErrDuplicate, "event %d with other content", i)
	}
	// Reversed, the retry is another JetStream message id: only the index
	// can tell these are duplicates.
	retry := costLines(tenant, 0, n)
	slices.Reverse(retry)
	res, err := st.Append(ctx, tenant, retry)
	require.NoError(t, err)
	require.Equal(t, 0, res.Appended)
	require.Equal(t, n, res.Duplicates)
	res, err = st.Append(ctx, tenant, costLines(tenant, n, 1))
	require.NoError(t, err)
	require.Equal(t, 1, res.Appended, "event %d is new", n)
	rep, err := st.Verify(ctx, tenant)
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.Equal(t, uint64(n+1), rep.Events)
}

func TestIndexRestartCatchesUpOnlyTheTail(t *testing.T) {
	tests := []struct {
		name string
		// others: messages another writer (no index of its own on disk)
		// appends while the indexed store is down.
		others int
	}{
		{"nothing appended meanwhile", 0},
		{"another writer appended two messages", 2},
		{"another writer appended five messages", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := natstest.Run(t)
			dir := filepath.Join(t.TempDir(), "eventindex")
			ctx := ctxT(t)

			st := srv.Store(withIndex(dir))
			n := appendMessages(t, st, "acme", 0, 4)
			appendMessages(t, st, "globex", 0, 2)
			require.NoError(t, st.Close())
			n = appendMessages(t, srv.Store(), "acme", n, tt.others)

			srv = srv.Restart()
			st = srv.Store(withIndex(dir))
			head, err := st.Head(ctx, "acme")
			require.NoError(t, err)
			require.Equal(t, uint64(n), head.Seq)
			require.Equal(t, uint64(tt.others), eventstore.CatchUpScanned(st),
				"only the messages beyond the index's head are read")
			_, err = st.Head(ctx, "globex")
			require.NoError(t, err)
			require.Equal(t, uint64(tt.others), eventstore.CatchUpScanned(st), "globex is up to date")

			requireIndexAgrees(t, st, "acme", n)
			requireIndexAgrees(t, st, "globex", 200)
		})
	}
}

// TestIndexRefusesReusedIDAfterRestart: the id index, not JetStream's dedupe
// window nor a rescan of the log, refuses an id reused with other content
// after a restart, and makes a retry append nothing.
func TestIndexRefusesReusedIDAfterRestart(t *testing.T) {
	srv := natstest.Run(t)
	dir := t.TempDir()
	ctx := ctxT(t)
	// A dedupe window of 100 ms has long passed by the time the retries
	// come, and no retry below is the same message anyway.
	short := func(o *eventstore.Options) { o.DuplicateWindow = 100 * time.Millisecond }
	st := srv.Store(withIndex(dir), short)
	appendMessages(t, st, "acme", 0, 3)
	require.NoError(t, st.Close())

	srv = srv.Restart()
	st = srv.Store(withIndex(dir), short)
	tests := []struct {
		name      string
		events    []*tallyv1.Envelope
		err       error
		appended  int
		duplicate int
	}{
		{"reused id, other content, beside a new event", []*tallyv1.Envelope{costLine("acme", 300), changed("acme", 17)}, eventstore.ErrDuplicate, 0, 0},
		{"reused id, other content, alone", []*tallyv1.Envelope{changed("acme", 299)}, eventstore.ErrDuplicate, 0, 0},
		{"the same events again", costLines("acme", 0, 300), nil, 0, 300},
		{"a subset of them", costLines("acme", 100, 50), nil, 0, 50},
		{"old and new", costLines("acme", 250, 100), nil, 50, 50},
		{"the new ones again", costLines("acme", 300, 50), nil, 0, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := st.Append(ctx, "acme", tt.events)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.appended, res.Appended)
			require.Equal(t, tt.duplicate, res.Duplicates)
		})
	}
	require.Zero(t, eventstore.CatchUpScanned(st), "nothing was rescanned: the answers came from the index")
	require.Len(t, readAll(t, st, eventstore.ReadFilter{Tenant: "acme"}), 350)
}

// TestIndexStaleIsDetected: an index that no longer matches the log is
// caught up when it is merely behind, and dropped and rebuilt when the log
// is another one or no longer holds its head. Either way no event is
// refused as a false duplicate and no duplicate is missed.
func TestIndexStaleIsDetected(t *testing.T) {
	tests := []struct {
		name string
		// prepare leaves an index in dir that is stale against the log, and
		// returns the server to use and how many events the log holds.
		prepare func(t *testing.T, s indexSetup) (*natstest.Server, int)
		// scanned: log messages the first Head reads (all of the tenant's
		// when the index was dropped).
		scanned int
		// logged: what the store's log says (empty: nothing dropped).
		logged string
	}{
		{
			name: "index copied before later appends (behind)",
			prepare: func(t *testing.T, s indexSetup) (*natstest.Server, int) {
				st := s.srv.Store(withIndex(s.dir))
				n := appendMessages(t, st, "acme", 0, 3)
				require.NoError(t, st.Close())
				backup := copyDir(t, s.dir)
				st = s.srv.Store(withIndex(s.dir))
				n = appendMessages(t, st, "acme", n, 2)
				require.NoError(t, st.Close())
				restoreDir(t, backup, s.dir)
				return s.srv, n
			},
			scanned: 2,
		},
		{
			name: "stream deleted and created again",
			prepare: func(t *testing.T, s indexSetup) (*natstest.Server, int) {
				st := s.srv.Store(withIndex(s.dir))
				appendMessages(t, st, "acme", 0, 3)
				require.NoError(t, st.Close())
				js, err := jetstream.New(s.srv.Conn())
				require.NoError(t, err)
				require.NoError(t, js.DeleteStream(ctxT(t), "TALLY"))
				// The new log holds other content under the old ids.
				other := s.srv.Store()
				for i := 0; i < 2; i++ {
					evs := make([]*tallyv1.Envelope, 100)
					for j := range evs {
						evs[j] = changed("acme", i*100+j)
					}
					_, err := other.Append(ctxT(t), "acme", evs)
					require.NoError(t, err)
				}
				return s.srv, -200
			},
			scanned: 2,
			logged:  "dropping every entry, built from another stream",
		},
		{
			name:    "log restored from an older backup: the index's head is gone",
			prepare: restoredFromBackup,
			scanned: 2,
			logged:  "log message 5 is not in the stream",
		},
		{
			name: "log restored from an older backup, then other appends took the head's place",
			prepare: func(t *testing.T, s indexSetup) (*natstest.Server, int) {
				srv, _ := restoredFromBackup(t, s)
				// Another writer with no index appends other events: the
				// log reaches the index's head sequence with another chain.
				appendMessages(t, srv.Store(), "acme", 1000, 3)
				return srv, -1
			},
			scanned: 5,
			logged:  "log message 5 ends with event 500, hash",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "eventindex")
			srv, n := tt.prepare(t, indexSetup{srv: natstest.Run(t), dir: dir})
			var logs syncBuffer
			st := srv.Store(withIndex(dir), logTo(&logs))
			ctx := ctxT(t)
			_, err := st.Head(ctx, "acme")
			require.NoError(t, err)
			require.Equal(t, uint64(tt.scanned), eventstore.CatchUpScanned(st))
			if tt.logged == "" {
				require.NotContains(t, logs.String(), "dropping")
			} else {
				require.Contains(t, logs.String(), tt.logged)
			}
			switch {
			case n > 0: // the log holds events [0, n)
				requireIndexAgrees(t, st, "acme", n)
			case n == -200: // the log holds other content under ids [0, 200)
				res, err := st.Append(ctx, "acme", costLines("acme", 0, 200))
				require.ErrorIs(t, err, eventstore.ErrDuplicate, "the new log's content is the fact")
				require.Zero(t, res.Appended)
				res, err = st.Append(ctx, "acme", costLines("acme", 200, 100))
				require.NoError(t, err)
				require.Equal(t, 100, res.Appended, "ids only the old log had are new")
			case n == -1: // the log holds events [0, 200) and [1000, 1300)
				res, err := st.Append(ctx, "acme", costLines("acme", 200, 300))
				require.NoError(t, err)
				require.Equal(t, 300, res.Appended, "what only the dropped index knew is new")
				retry := append(costLines("acme", 0, 200), costLines("acme", 1000, 300)...)
				retry = append(retry, costLines("acme", 200, 300)...)
				res, err = st.Append(ctx, "acme", retry)
				require.NoError(t, err)
				require.Zero(t, res.Appended)
				require.Equal(t, 800, res.Duplicates)
				_, err = st.Append(ctx, "acme", []*tallyv1.Envelope{changed("acme", 1299)})
				require.ErrorIs(t, err, eventstore.ErrDuplicate)
			}
			rep, err := st.Verify(ctx, "acme")
			require.NoError(t, err)
			require.True(t, rep.OK(), "%v", rep.Problems)
		})
	}
}

// copyDir copies a closed directory (an index, or a log's store) aside.
// indexSetup is what a case of TestIndexStaleIsDetected prepares from: a fresh log and the
// index's directory.
type indexSetup struct {
	srv *natstest.Server
	dir string
}

// restoredFromBackup appends two messages through an index in s.dir, backs the log up, appends
// three more and returns a server on the backup: the index's head is past the log's end. The
// int is the events of the backup.
func restoredFromBackup(t *testing.T, s indexSetup) (*natstest.Server, int) {
	st := s.srv.Store(withIndex(s.dir))
	n := appendMessages(t, st, "acme", 0, 2)
	require.NoError(t, st.Close())
	srv := s.srv.Restart() // flushes the log's store
	srv.Shutdown()
	backup := copyDir(t, srv.Dir)
	srv = natstest.RunIn(t, srv.Dir)
	st = srv.Store(withIndex(s.dir))
	appendMessages(t, st, "acme", n, 3)
	require.NoError(t, st.Close())
	srv.Shutdown()
	return natstest.RunIn(t, backup), n
}

func copyDir(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	require.NoError(t, os.CopyFS(dst, os.DirFS(dir)))
	return dst
}

// restoreDir replaces dir with a copy of backup.
func restoreDir(t *testing.T, backup, dir string) {
	t.Helper()
	require.NoError(t, os.RemoveAll(dir))
	require.NoError(t, os.CopyFS(dir, os.DirFS(backup)))
}

func TestIndexDirIsLocked(t *testing.T) {
	srv := natstest.Run(t)
	dir := filepath.Join(t.TempDir(), "eventindex")
	ctx := ctxT(t)
	st := srv.Store(withIndex(dir))
	appendMessages(t, st, "acme", 0, 1)

	_, err := eventstore.Open(ctx, srv.Conn(), eventstore.Options{IndexDir: dir, Logger: slog.New(slog.DiscardHandler)})
	require.Error(t, err, "a second store in the same process")
	require.ErrorContains(t, err, dir)
	t.Log(err)

	// Another process: this test binary, running only the child half of the test.
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestIndexDirIsLockedChild$", "-test.v")
	cmd.Env = append(os.Environ(), "EVENTSTORE_LOCK_CHILD_DIR="+dir, "EVENTSTORE_LOCK_CHILD_NATS="+srv.ClientURL())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	_, refusal, found := strings.Cut(string(out), "second process refused: ")
	require.True(t, found, "%s", out)
	refusal, _, _ = strings.Cut(refusal, "\n")
	require.Contains(t, refusal, dir)
	t.Log("second process: " + refusal)

	// Closed, the directory is free again, and the index still there.
	require.NoError(t, st.Close())
	require.NoError(t, st.Close(), "Close is idempotent")
	_, err = st.Append(ctx, "acme", costLines("acme", 100, 1))
	require.ErrorIs(t, err, eventstore.ErrUnavailable, "a closed store appends nothing")
	st = srv.Store(withIndex(dir))
	requireIndexAgrees(t, st, "acme", 100)
	require.Zero(t, eventstore.CatchUpScanned(st))
}

// TestIndexDirIsLockedChild is the second process of TestIndexDirIsLocked.
func TestIndexDirIsLockedChild(t *testing.T) {
	dir := os.Getenv("EVENTSTORE_LOCK_CHILD_DIR")
	if dir == "" {
		t.Skip("runs as a child of TestIndexDirIsLocked")
	}
	nc, err := nats.Connect(os.Getenv("EVENTSTORE_LOCK_CHILD_NATS"))
	require.NoError(t, err)
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := eventstore.Open(ctx, nc, eventstore.Options{IndexDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		_ = st.Close()
	}
	require.Error(t, err)
	fmt.Println("second process refused: " + strings.ReplaceAll(err.Error(), "\n", " "))
}
