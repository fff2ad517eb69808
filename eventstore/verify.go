package eventstore

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"sort"
)

// Problem is one break in a tenant's chain.
type Problem struct {
	// TenantSeq is the chain position concerned.
	TenantSeq uint64
	EventID   string
	StreamSeq uint64
	Reason    string
}

func (p Problem) String() string {
	return fmt.Sprintf("event %d (id %s, log message %d): %s", p.TenantSeq, p.EventID, p.StreamSeq, p.Reason)
}

// VerifyReport is the outcome of verifying one tenant's chain.
type VerifyReport struct {
	Tenant string
	// Events read, including bad ones.
	Events uint64
	// Head is the last good link: the chain as it verifies.
	Head Head
	// Problems in chain order; empty when the chain is intact. At most
	// maxProblems are kept.
	Problems []Problem
}

// OK reports whether the chain verified with no problem.
func (r VerifyReport) OK() bool { return len(r.Problems) == 0 }

// FirstBad is the earliest problem in chain order, or nil.
func (r VerifyReport) FirstBad() *Problem {
	if len(r.Problems) == 0 {
		return nil
	}
	return &r.Problems[0]
}

const maxProblems = 100

// Verify replays a tenant's events from the log and recomputes its hash
// chain: each event's stored hash must equal SHA-256(prev_hash || its bytes),
// each prev_hash must equal the previous event's hash, tenant sequences must
// run 1, 2, 3... without gaps or repeats, and every event must carry the
// tenant's id. An error is returned only when the log cannot be read; a
// broken chain is reported in VerifyReport.
func (s *Store) Verify(ctx context.Context, tenant string) (VerifyReport, error) {
	rep := VerifyReport{Tenant: tenant}
	if err := validateTenantOrSystem(tenant); err != nil {
		return rep, err
	}
	next := uint64(1)
	head := ZeroHash
	var headStream uint64
	add := func(p Problem) {
		if len(rep.Problems) < maxProblems {
			rep.Problems = append(rep.Problems, p)
		}
	}
	err := s.Read(ctx, ReadFilter{Tenant: tenant}, func(ev Event) error {
		rep.Events++
		env := ev.Envelope
		seq := env.GetTenantSeq()
		prob := Problem{TenantSeq: seq, EventID: env.GetEventId(), StreamSeq: ev.StreamSeq}
		if env.GetTenantId() != tenant {
			prob.Reason = fmt.Sprintf("carries tenant %q in tenant %q's log", env.GetTenantId(), tenant)
			add(prob)
			return nil
		}
		var prev Hash
		copy(prev[:], env.GetPrevHash())
		selfOK := ChainHash(prev, ev.Raw) == ev.Hash
		switch {
		case seq < next:
			prob.Reason = fmt.Sprintf("a second event claims chain position %d: re-published or forged", seq)
			if !selfOK {
				prob.Reason += "; its content does not match its stored hash (altered)"
			}
			add(prob)
			return nil
		case seq > next:
			add(Problem{TenantSeq: next, StreamSeq: ev.StreamSeq,
				Reason: fmt.Sprintf("events %d to %d are missing from the chain (deleted or moved)", next, seq-1)})
		}
		switch {
		case !selfOK:
			prob.Reason = "content does not match its stored hash: the event was altered"
			add(prob)
		case seq == next && !bytes.Equal(env.GetPrevHash(), head[:]):
			prob.Reason = fmt.Sprintf("prev_hash %s does not match event %d's hash %s: event %d was altered or replaced",
				short(env.GetPrevHash()), seq-1, short(head[:]), seq-1)
			add(prob)
		}
		head, headStream, next = ev.Hash, ev.StreamSeq, seq+1
		return nil
	})
	if err != nil {
		return rep, err
	}
	sort.SliceStable(rep.Problems, func(i, j int) bool { return rep.Problems[i].TenantSeq < rep.Problems[j].TenantSeq })
	rep.Head = Head{Tenant: tenant, Seq: next - 1, Hash: head, StreamSeq: headStream}
	return rep, nil
}

func short(b []byte) string {
	h := hex.EncodeToString(b)
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
