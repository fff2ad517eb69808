// Package tokens owns the bearer tokens the gateway accepts and the SQL of
// their table (tokens, created by migrations/sql/00003_tokens.sql): making a
// token, listing, revoking, and finding the token a secret belongs to.
//
// A secret is "tly_" followed by 32 random bytes in unpadded base64url. Only
// its SHA-256 is stored. A fast hash is enough here, unlike for passwords:
// slow, salted hashes (bcrypt, argon2) exist to make guessing low-entropy
// secrets expensive, and a 256-bit random secret cannot be guessed however
// fast the hash is; a preimage of SHA-256 is out of reach. A fast hash also
// lets every request be checked by one indexed lookup, with no per-request
// key-stretching cost. The hash is deterministic, so the lookup is by hash and
// no secret is ever compared byte by byte in Go.
//
// It depends on eventstore (tenant ids) and pgx only; it never imports the
// gateway, app or cmd/tally, which use it.
package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-ledger/tally/eventstore"
)

// Prefix starts every secret, so that a leaked one is recognizable (secret
// scanners, logs) and a token is not mistaken for another credential.
const Prefix = "tly_"

// secretBytes of randomness in a secret.
const secretBytes = 32

// Role is what a token may do; gateway documents the matrix per procedure.
type Role string

// Roles.
const (
	RoleViewer   Role = "viewer"
	RoleIngester Role = "ingester"
	RoleOperator Role = "operator"
	RoleAuditor  Role = "auditor"
	RoleAdmin    Role = "admin"
)

// Roles lists every role, weakest first.
var Roles = []Role{RoleViewer, RoleIngester, RoleAuditor, RoleOperator, RoleAdmin}

// ParseRole accepts a role name in any case.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	for _, k := range Roles {
		if r == k {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q: use viewer, ingester, auditor, operator or admin", s)
}

// Kind is how events a token causes name their actor.
type Kind string

// Kinds.
const (
	KindUser    Kind = "user"
	KindService Kind = "service"
)

// ParseKind accepts user or service; "" is the role's default (DefaultKind).
func ParseKind(s string, role Role) (Kind, error) {
	switch k := Kind(strings.ToLower(strings.TrimSpace(s))); k {
	case "":
		return DefaultKind(role), nil
	case KindUser, KindService:
		return k, nil
	}
	return "", fmt.Errorf("unknown kind %q: use user or service", s)
}

// DefaultKind: ingesters are services (pipelines, adapters); the other
// roles are mostly people.
func DefaultKind(r Role) Kind {
	if r == RoleIngester {
		return KindService
	}
	return KindUser
}

// Token is a stored token, never its secret.
type Token struct {
	ID   string
	Name string
	// Tenant is "" for a token valid for every tenant.
	Tenant    string
	Role      Role
	Kind      Kind
	CreatedAt time.Time
	// RevokedAt is zero while the token is valid.
	RevokedAt time.Time
}

// AllTenants reports whether the token is not scoped to one tenant.
func (t Token) AllTenants() bool { return t.Tenant == "" }

// Revoked reports whether the token was revoked.
func (t Token) Revoked() bool { return !t.RevokedAt.IsZero() }

// Errors of Authenticate and Revoke.
var (
	// ErrUnknown: no token has this secret (or id).
	ErrUnknown = errors.New("unknown token")
	// ErrRevoked: the token exists but was revoked; Authenticate returns the
	// token with it, so that the refusal can name it.
	ErrRevoked = errors.New("the token was revoked")
	// ErrMalformed: the secret does not have the shape of a Tally token.
	ErrMalformed = errors.New("malformed token")
)

// Spec is what a new token is made from.
type Spec struct {
	Name string
	// Tenant "" makes a token for every tenant.
	Tenant string
	Role   Role
	// Kind "" is DefaultKind(Role).
	Kind Kind
}

// Validate checks the name, tenant and role, and fills the default kind.
func (s *Spec) Validate() error {
	var errs []error
	if strings.TrimSpace(s.Name) == "" || len(s.Name) > 256 || strings.ContainsFunc(s.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		errs = append(errs, errors.New("name: give 1-256 printable characters, such as the service or person using the token"))
	}
	if s.Tenant != "" {
		if err := eventstore.ValidateTenant(s.Tenant); err != nil {
			errs = append(errs, fmt.Errorf("tenant: %q is not a valid tenant id", s.Tenant))
		}
	}
	role, err := ParseRole(string(s.Role))
	if err != nil {
		errs = append(errs, err)
	}
	s.Role = role
	if role == RoleOperator && s.Tenant != "" {
		errs = append(errs, errors.New("tenant: an operator token works across tenants; leave the tenant out"))
	}
	kind, err := ParseKind(string(s.Kind), role)
	if err != nil {
		errs = append(errs, err)
	}
	s.Kind = kind
	return errors.Join(errs...)
}

// NewSecret returns a fresh secret and its hash.
func NewSecret() (secret string, hash []byte) {
	b := make([]byte, secretBytes)
	// crypto/rand.Read never fails (Go 1.24+): it panics on an unusable source.
	_, _ = rand.Read(b)
	secret = Prefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, Hash(secret)
}

// Hash is what the table stores for secret.
func Hash(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// wellFormed reports whether s has the shape of a secret NewSecret makes,
// so that garbage is refused without a query.
func wellFormed(s string) bool {
	rest, ok := strings.CutPrefix(s, Prefix)
	if !ok || len(rest) != base64.RawURLEncoding.EncodedLen(secretBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(rest)
	return err == nil
}

// Store reads and writes the tokens table.
type Store struct{ pool *pgxpool.Pool }

// NewStore works on pool, which must be migrated.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const columns = `id::text, name, coalesce(tenant_id, ''), role, actor_kind, created_at, revoked_at`

func scan(row pgx.Row) (Token, error) {
	var t Token
	var revoked *time.Time
	if err := row.Scan(&t.ID, &t.Name, &t.Tenant, &t.Role, &t.Kind, &t.CreatedAt, &revoked); err != nil {
		return Token{}, err
	}
	if revoked != nil {
		t.RevokedAt = *revoked
	}
	return t, nil
}

// Create stores a new token and returns it with its secret, which is not
// kept anywhere: show it once.
func (s *Store) Create(ctx context.Context, spec Spec) (Token, string, error) {
	return create(ctx, s.pool, spec)
}

// execer is a pool or a transaction.
type execer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func create(ctx context.Context, db execer, spec Spec) (Token, string, error) {
	if err := spec.Validate(); err != nil {
		return Token{}, "", err
	}
	secret, hash := NewSecret()
	var tenant *string
	if spec.Tenant != "" {
		tenant = &spec.Tenant
	}
	t, err := scan(db.QueryRow(ctx, `INSERT INTO tokens (id, secret_hash, name, tenant_id, role, actor_kind)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+columns,
		uuid.Must(uuid.NewV7()), hash, spec.Name, tenant, string(spec.Role), string(spec.Kind)))
	if err != nil {
		return Token{}, "", fmt.Errorf("store token: %w", err)
	}
	return t, secret, nil
}

// List returns every token, revoked ones too, oldest first.
func (s *Store) List(ctx context.Context) ([]Token, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// Revoke revokes token id from now on and returns it. Revoking a revoked
// token changes nothing (its first revocation time stays); an unknown id is
// ErrUnknown.
func (s *Store) Revoke(ctx context.Context, id string) (Token, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Token{}, fmt.Errorf("%w: %q is not a token id (tally tokens list shows them)", ErrUnknown, id)
	}
	t, err := scan(s.pool.QueryRow(ctx, `UPDATE tokens SET revoked_at = coalesce(revoked_at, now())
		WHERE id = $1 RETURNING `+columns, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Token{}, fmt.Errorf("%w: no token has id %s", ErrUnknown, id)
	}
	if err != nil {
		return Token{}, fmt.Errorf("revoke token: %w", err)
	}
	return t, nil
}

// Authenticate returns the valid token whose secret this is. It returns
// ErrMalformed or ErrUnknown with no token, and ErrRevoked with the revoked
// token; any other error is the database's.
func (s *Store) Authenticate(ctx context.Context, secret string) (Token, error) {
	if !wellFormed(secret) {
		return Token{}, ErrMalformed
	}
	t, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM tokens WHERE secret_hash = $1`, Hash(secret)))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Token{}, ErrUnknown
	case err != nil:
		return Token{}, fmt.Errorf("look up token: %w", err)
	case t.Revoked():
		return t, ErrRevoked
	}
	return t, nil
}

// bootstrapLock serializes EnsureAdmin across processes sharing a database.
const bootstrapLock = "tally.tokens.bootstrap"

// EnsureAdmin makes an admin token for every tenant when no valid admin token
// exists, and passes its secret to save before committing it: if save fails,
// no token is made; if the commit fails after save, the saved secret is
// worthless and the caller should discard it. It returns false, calling nothing, when a valid admin
// token exists. Processes starting at once make at most one.
func (s *Store) EnsureAdmin(ctx context.Context, name string, save func(Token, string) error) (bool, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("bootstrap admin token: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, bootstrapLock); err != nil {
		return false, fmt.Errorf("bootstrap admin token: %w", err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tokens WHERE role = 'admin' AND revoked_at IS NULL)`).Scan(&exists); err != nil {
		return false, fmt.Errorf("bootstrap admin token: %w", err)
	}
	if exists {
		return false, nil
	}
	t, secret, err := create(ctx, tx, Spec{Name: name, Role: RoleAdmin})
	if err != nil {
		return false, err
	}
	if err := save(t, secret); err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("bootstrap admin token: %w", err)
	}
	return true, nil
}
