package closepkg

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tally-ledger/tally/eventstore"
	tallyv1 "github.com/tally-ledger/tally/proto/gen/tally/v1"
)

// ErrPrecondition is a business rule that refuses a close; the gateway maps every error that
// wraps it to FailedPrecondition. The specific rules below wrap it.
var ErrPrecondition = errors.New("close refused")

var (
	// ErrSelfApproval: the approver is the actor asking to close.
	ErrSelfApproval = fmt.Errorf("%w: the approver must be a different principal from the actor", ErrPrecondition)
	// ErrNotReady: the package is blocked and the close was not forced.
	ErrNotReady = fmt.Errorf("%w: the package is not ready", ErrPrecondition)
	// ErrAlreadyClosed: a close covering the period and provider is already in the log.
	ErrAlreadyClosed = fmt.Errorf("%w: the period is already closed", ErrPrecondition)
)

// CloseRequest asks to close the period of a package.
type CloseRequest struct {
	// Actor asks for the close; Approver approves it. Both must be set and differ (kind and id).
	Actor, Approver *tallyv1.Actor
	Note            string
	// Force closes a blocked package; Reason must then say why, and is recorded in the
	// event's note with the blocking reasons.
	Force  bool
	Reason string
	// OccurredAt of the close; zero means now.
	OccurredAt time.Time
}

// Close validates req against p (a package just built with Queries.Package) and returns the
// PeriodClosed event, with the package's SHA-256 and chain head, for the caller to append to
// p's tenant. It appends nothing itself.
//
// Errors: ErrInvalid (missing actor or approver, a package whose hash does not match its
// content, a forced close without a reason); ErrSelfApproval, ErrAlreadyClosed, ErrNotReady
// (each wraps ErrPrecondition).
func Close(p *Package, req CloseRequest) (*tallyv1.Envelope, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: no package", ErrInvalid)
	}
	if req.Actor.GetId() == "" || req.Approver.GetId() == "" {
		return nil, fmt.Errorf("%w: actor and approver are required", ErrInvalid)
	}
	sum, err := Hash(p)
	if err != nil {
		return nil, err
	}
	if sum != p.SHA256 {
		return nil, fmt.Errorf("%w: package sha256 %q does not match its content", ErrInvalid, p.SHA256)
	}
	if req.Actor.GetKind() == req.Approver.GetKind() && req.Actor.GetId() == req.Approver.GetId() {
		return nil, fmt.Errorf("%w (%s)", ErrSelfApproval, principal(req.Actor))
	}
	if p.Closed {
		return nil, fmt.Errorf("%w: %s %s", ErrAlreadyClosed, p.Period, providerName(p.Provider))
	}
	note := req.Note
	if p.Status != StatusReady {
		if !req.Force {
			return nil, fmt.Errorf("%w: %s", ErrNotReady, strings.Join(p.Reasons, "; "))
		}
		if strings.TrimSpace(req.Reason) == "" {
			return nil, fmt.Errorf("%w: a forced close needs a reason", ErrInvalid)
		}
		forced := "forced: " + req.Reason + " (blocked: " + strings.Join(p.Reasons, "; ") + ")"
		if note != "" {
			forced += "; " + note
		}
		note = forced
	}
	at := req.OccurredAt
	if at.IsZero() {
		at = time.Now()
	}
	key := "period_closed/" + p.Period + "/" + p.Provider + "/" + p.SHA256
	return &tallyv1.Envelope{
		EventId:        eventstore.DeterministicID(p.Tenant, key),
		TenantId:       p.Tenant,
		IdempotencyKey: key,
		OccurredAt:     timestamppb.New(at),
		Actor:          req.Actor,
		Body: &tallyv1.Envelope_PeriodClosed{PeriodClosed: &tallyv1.PeriodClosed{
			Period: p.Period, Provider: p.Provider, Approver: req.Approver, PackageSha256: p.SHA256,
			ChainHead: p.ChainHead.Hash, ChainHeadSeq: p.ChainHead.Seq, Note: note, TolerancePct: p.TolerancePct,
		}},
	}, nil
}

// ErrClosedMismatch: re-deriving a closed package did not give the hash its close recorded.
var ErrClosedMismatch = errors.New("closed package does not re-derive to its recorded sha256")

// ErrNotClosed: no close covers the period and provider.
var ErrNotClosed = errors.New("period not closed")

// ClosedPackage re-derives the package that the first close of tenant's period and provider
// (exactly that provider: "" for the close of all providers) was built from, the events up to
// the close's chain head, and checks its SHA-256 against the one the close recorded. opts.TolerancePct must be the one the package was built with;
// opts.AsOfSeq is ignored.
//
// Errors: ErrInvalid, ErrNotClosed, ErrClosedMismatch (with the package re-derived), database
// errors.
func (q *Queries) ClosedPackage(ctx context.Context, tenant, period, provider string, opts Options) (*Package, error) {
	now, err := q.Package(ctx, tenant, period, provider, Options{TolerancePct: opts.TolerancePct})
	if err != nil {
		return nil, err
	}
	for _, c := range now.Closes {
		if c.Provider != provider {
			continue
		}
		opts.AsOfSeq = c.ChainHeadSeq
		if c.ChainHeadSeq == 0 {
			return nil, fmt.Errorf("%w: the close at seq %d has no chain head", ErrClosedMismatch, c.Seq)
		}
		p, err := q.Package(ctx, tenant, period, provider, opts)
		if err != nil {
			return nil, err
		}
		if p.SHA256 != c.PackageSHA256 {
			return p, fmt.Errorf("%w: recorded %s, derived %s", ErrClosedMismatch, c.PackageSHA256, p.SHA256)
		}
		return p, nil
	}
	return nil, fmt.Errorf("%w: %s %s", ErrNotClosed, period, providerName(provider))
}

func principal(a *tallyv1.Actor) string { return a.GetKind().String() + ":" + a.GetId() }

func providerName(p string) string {
	if p == "" {
		return "(all providers)"
	}
	return p
}
