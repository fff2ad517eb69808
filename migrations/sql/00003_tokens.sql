-- +goose Up

-- tokens: the bearer tokens the gateway accepts (package gateway/tokens owns this table's SQL).
-- Only the SHA-256 of each secret is kept: the secret is shown once, when the token is made,
-- and cannot be read back from here. A token is scoped to one tenant, or to every tenant when
-- tenant_id is NULL (operators, the first admin). Revoking keeps the row, so that audit records
-- naming the token's id can still be resolved to a name.
CREATE TABLE tokens (
    id          uuid        PRIMARY KEY,
    secret_hash bytea       NOT NULL UNIQUE CHECK (octet_length(secret_hash) = 32),
    name        text        NOT NULL CHECK (name <> ''),
    tenant_id   text,
    role        text        NOT NULL CHECK (role IN ('viewer', 'ingester', 'operator', 'auditor', 'admin')),
    -- How events the token causes name their actor: a person ('user') or a service.
    actor_kind  text        NOT NULL CHECK (actor_kind IN ('user', 'service')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    -- Operators work across tenants by definition.
    CHECK (role <> 'operator' OR tenant_id IS NULL)
);

-- +goose Down
DROP TABLE tokens;
