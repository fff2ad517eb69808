package ingest

import (
	"context"
	"fmt"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// appender appends changes in batches, each on the condition that the
// tenant's log is where the previous one left it, and folds each appended
// batch into the ingest state with the new checkpoint.
type appender struct {
	in      *run
	expect  uint64 // tenant sequence the next append expects as head
	pending []*change
}

func (a *appender) add(ctx context.Context, c *change) error {
	a.pending = append(a.pending, c)
	if len(a.pending) >= a.in.opts.BatchEvents {
		return a.flush(ctx)
	}
	return nil
}

func (a *appender) flush(ctx context.Context) error {
	if len(a.pending) == 0 {
		return nil
	}
	in := a.in
	envs := make([]*tallyv1.Envelope, len(a.pending))
	for i, c := range a.pending {
		envs[i] = c.env
	}
	res, err := in.store.Append(ctx, in.tenant, envs, eventstore.ExpectTenantSeq(a.expect))
	if res.Appended > 0 {
		if in.sum.FirstSeq == 0 {
			in.sum.FirstSeq = res.FirstSeq
		}
		in.sum.LastSeq = res.LastSeq
	}
	in.sum.Appended += int64(res.Appended)
	in.sum.Duplicates += int64(res.Duplicates)
	if err != nil {
		return fmt.Errorf("append changes of %s for tenant %q: %w", in.file, in.tenant, err)
	}
	for _, c := range a.pending {
		switch c.kind {
		case "recorded":
			in.sum.Recorded++
		case "restated":
			in.sum.Restated++
		case "retracted":
			in.sum.Retracted++
		case "finalized":
			in.sum.Finalized++
		}
		if postClose(c.env) {
			in.sum.PostClose++
		}
	}
	a.expect = res.Head.Seq
	in.sum.HeadSeq, in.sum.StreamSeq = res.Head.Seq, res.Head.StreamSeq
	if err := a.fold(ctx, res.Head.StreamSeq); err != nil {
		return err
	}
	if in.opts.Progress != nil {
		in.opts.Progress(Progress{Stage: "append", Rows: in.sum.RowsRead, Events: in.sum.Appended})
	}
	a.pending = a.pending[:0]
	return nil
}

// fold writes the appended changes into the ingest state with the
// checkpoint, in one transaction on its own connection (the ingest's own
// connection is streaming the diff). Had it failed, the next ingest's
// catch-up folds the same events from the log.
func (a *appender) fold(ctx context.Context, streamSeq uint64) error {
	in := a.in
	f := newFolder(in.tenant)
	for _, c := range a.pending {
		if err := f.fold(c.env); err != nil {
			return err
		}
	}
	f.b.Queue(setCheckpoint, in.tenant, int64(streamSeq))
	tx, err := in.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("fold appended changes: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	if err := tx.SendBatch(ctx, f.b).Close(); err != nil {
		return fmt.Errorf("fold appended changes: %w", err)
	}
	return tx.Commit(ctx)
}

func postClose(env *tallyv1.Envelope) bool {
	switch b := env.GetBody().(type) {
	case *tallyv1.Envelope_CostLineRecorded:
		return b.CostLineRecorded.GetPostClose()
	case *tallyv1.Envelope_CostLineRestated:
		return b.CostLineRestated.GetPostClose()
	case *tallyv1.Envelope_CostLineRetracted:
		return b.CostLineRetracted.GetPostClose()
	}
	return false
}
