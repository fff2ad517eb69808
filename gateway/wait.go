package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-ledger/tally/projections"
)

// waitForProjection returns once projection name has folded stream sequence seq, within the
// request's deadline and maxWait: woken by runner when this process projects, else polling
// pool. what names the read model and why the sequence ("min_seq"), for messages: a read
// model not set up is Unavailable, one still behind at the deadline DeadlineExceeded with
// where it stands.
func waitForProjection(ctx context.Context, runner *projections.Runner, pool *pgxpool.Pool, name, what, why string, seq uint64) error {
	wctx, cancel := context.WithTimeout(ctx, maxWait)
	defer cancel()
	var err error
	if runner != nil {
		err = runner.WaitFor(wctx, name, seq)
	} else {
		err = projections.WaitFor(wctx, pool, name, seq, waitPoll)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, projections.ErrUnknownProjection):
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf(
			"the %s read model is not set up yet: is a projector (tally serve with the projector role) running?", what))
	case errors.Is(err, context.DeadlineExceeded):
		at := "unknown"
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer ccancel()
		if cp, cerr := projections.Checkpoint(cctx, pool, name); cerr == nil {
			at = fmt.Sprint(cp)
		}
		return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf(
			"the %s read model had not folded stream sequence %d (%s) before the deadline; it stands at %s: retry later", what, seq, why, at))
	}
	return err
}
