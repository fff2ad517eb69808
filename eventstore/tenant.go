package eventstore

import (
	"fmt"
	"regexp"
)

// SystemTenant holds events that may have no valid tenant, such as rejected
// requests. It is the only tenant id allowed to start with an underscore.
const SystemTenant = "_system"

// tenantRe: lower-case letters, digits, '-' and '_', 1 to 63 characters,
// starting with a letter or digit. Such a token is safe as a NATS subject
// token (no '.', '*', '>' or white space) and as a PostgreSQL identifier part.
var tenantRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidateTenant reports whether id may name a tenant. The system tenant is
// refused here: only the log itself and the documented system jobs write to
// it, through AppendSystem.
func ValidateTenant(id string) error {
	if id == "" {
		return fmt.Errorf("%w: tenant_id is empty", ErrInvalidTenant)
	}
	if !tenantRe.MatchString(id) {
		return fmt.Errorf("%w: %q: use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit", ErrInvalidTenant, id)
	}
	return nil
}

func validateTenantOrSystem(id string) error {
	if id == SystemTenant {
		return nil
	}
	return ValidateTenant(id)
}
