package eventstore

import (
	"errors"
	"fmt"
)

// Errors a caller can branch on with errors.Is. The gateway maps them to
// Connect codes: ErrInvalidTenant and ErrInvalidEvent to InvalidArgument,
// ErrConflict to Aborted, ErrDuplicate to AlreadyExists, ErrUnavailable to
// Unavailable.
var (
	// ErrInvalidTenant: the tenant id is empty, not a subject-safe token, or
	// reserved.
	ErrInvalidTenant = errors.New("invalid tenant id")
	// ErrInvalidEvent: an envelope is malformed (no body, bad event id, a
	// tenant that differs from the batch's).
	ErrInvalidEvent = errors.New("invalid event")
	// ErrConflict: the tenant's log moved past the sequence the caller
	// expected; re-read and decide again.
	ErrConflict = errors.New("conflict")
	// ErrDuplicate: an event id already in the log was sent again with
	// different content (an idempotency key reused for another fact).
	// A retry of the same content is not an error: it appends nothing.
	ErrDuplicate = errors.New("duplicate event id with different content")
	// ErrUnavailable: the log could not be reached or did not answer in time.
	ErrUnavailable = errors.New("event log unavailable")
)

// ConflictError carries the sequences of an optimistic-concurrency failure.
type ConflictError struct {
	Tenant   string
	Expected uint64 // tenant sequence the caller expected to be the head
	Actual   uint64 // tenant sequence found in the log
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("conflict: tenant %q: expected head at event %d, log is at %d", e.Tenant, e.Expected, e.Actual)
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }
