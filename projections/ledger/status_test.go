package ledger_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tally-ledger/tally/projections"
	"github.com/tally-ledger/tally/projections/ledger"
	"github.com/tally-ledger/tally/storage/pgtest"
)

// TestStatusWithoutLog: a runner with no log (a tool that cannot reach NATS) sets projections
// up and reports their checkpoints with the lag unknown; StoredPartitions reads the layout the
// projectors use.
func TestStatusWithoutLog(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	bulk(t, e.store, "acme", 1000)
	head, err := e.store.LastSeq(ctx)
	require.NoError(t, err)
	require.NoError(t, e.runner(t, projections.Options{Partitions: 3}).CatchUp(ctx))

	parts, err := projections.StoredPartitions(ctx, e.pool, ledger.Name)
	require.NoError(t, err)
	require.Equal(t, 3, parts)
	r, err := projections.NewRunner(e.pool, nil, projections.Options{Partitions: parts}, ledger.New())
	require.NoError(t, err)
	st, err := r.CheckpointStatus(ctx)
	require.NoError(t, err)
	require.Len(t, st, 1)
	require.True(t, st[0].NoHead)
	require.Equal(t, "live", st[0].State)
	require.Equal(t, head, st[0].Checkpoint)
	require.Zero(t, st[0].Head)
	require.Len(t, st[0].Partitions, 3)

	// A fresh database: Setup needs no log, and the projection is live at 0.
	pool, _ := pgtest.NewDB(t)
	parts, err = projections.StoredPartitions(ctx, pool, ledger.Name)
	require.NoError(t, err)
	require.Equal(t, 1, parts)
	r, err = projections.NewRunner(pool, nil, projections.Options{}, ledger.New())
	require.NoError(t, err)
	require.NoError(t, r.Setup(ctx))
	st, err = r.CheckpointStatus(ctx)
	require.NoError(t, err)
	require.Equal(t, "live", st[0].State)
	require.Zero(t, st[0].Checkpoint)
}
