package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// scanStart says where a scan begins: a stream sequence, or a time.
type scanStart struct {
	seq  uint64    // first stream sequence to deliver; 0 = from the beginning
	time time.Time // deliver from this time when set (and seq is 0)
}

// fetchMessages bounds what one Fetch may bring into memory: at most this many
// messages of up to MaxMessageBytes each.
const fetchMessages = 32

// fetchWait is how long one Fetch waits for pending messages.
const fetchWait = 10 * time.Second

// scan delivers the messages matching subjects, in stream order, from start
// up to the end of the stream as it was when the scan began, then returns.
// It uses an ephemeral pull consumer with Fetch: measured on our machines,
// far faster than an ordered push consumer for large group-commit messages.
func (s *Store) scan(ctx context.Context, subjects []string, start scanStart, fn func(jetstream.Msg) error) error {
	cfg := jetstream.ConsumerConfig{
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute,
		Replicas:          1,
	}
	switch {
	case start.seq > 0:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = start.seq
	case !start.time.IsZero():
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		t := start.time
		cfg.OptStartTime = &t
	}
	if len(subjects) == 1 {
		cfg.FilterSubject = subjects[0]
	} else {
		cfg.FilterSubjects = subjects
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	cons, err := s.stream.CreateConsumer(cctx, cfg)
	cancel()
	if err != nil {
		return unavailable("create reader", err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer dcancel()
		_ = s.stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	pending := cons.CachedInfo().NumPending
	if pending == 0 {
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Ask for no more than is pending, so the fetch completes as soon as
		// those arrive instead of waiting out its timer.
		batch, err := cons.Fetch(int(min(pending, fetchMessages)), jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			return unavailable("fetch", err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("message metadata: %w", err)
			}
			if err := fn(msg); err != nil {
				return err
			}
			pending = meta.NumPending
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return unavailable("fetch", err)
		}
		if pending == 0 {
			return nil
		}
		if got == 0 {
			// Nothing arrived although messages were pending: the server is
			// slow or gone; let the caller retry.
			return unavailable("fetch", fmt.Errorf("no messages delivered within %s while %d were pending", fetchWait, pending))
		}
	}
}
