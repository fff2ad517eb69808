-- +goose Up

-- Ingestion's decision state: what the log holds for each cost line, folded from the log's cost
-- events. A revised bill is diffed against it. It is derived data: dropping these tables and
-- their checkpoint makes the next ingest fold them again from the log.

-- ingest_lines: the current content of every line the tenant's log recorded, per bill scope.
CREATE TABLE ingest_lines (
    tenant_id        text    NOT NULL,
    scope_key        text    NOT NULL,
    line_key         text    NOT NULL,
    -- SHA-256 of the line's encoded content: any change is a restatement.
    content_hash     bytea   NOT NULL,
    billed_cost      numeric NOT NULL,
    effective_cost   numeric,
    list_cost        numeric,
    contracted_cost  numeric,
    consumed_qty     numeric,
    pricing_qty      numeric,
    billing_currency text    NOT NULL,
    -- The event that recorded, restated or retracted the line last.
    last_event_id    uuid    NOT NULL,
    retracted        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, scope_key, line_key)
);

-- ingest_scopes: the bills (provider, billing account, billing period) a tenant's log holds.
CREATE TABLE ingest_scopes (
    tenant_id            text        NOT NULL,
    scope_key            text        NOT NULL,
    provider             text        NOT NULL,
    billing_account_id   text        NOT NULL,
    billing_period_start timestamptz NOT NULL,
    billing_period_end   timestamptz NOT NULL,
    finalized_event_id   uuid,
    PRIMARY KEY (tenant_id, scope_key)
);

-- ingest_closed_periods: months finance closed ('' provider = every provider). Lines of a
-- closed month that change later are post-close adjustments.
CREATE TABLE ingest_closed_periods (
    tenant_id text NOT NULL,
    period    text NOT NULL,
    provider  text NOT NULL,
    PRIMARY KEY (tenant_id, period, provider)
);

-- ingest_checkpoints: the last stream sequence folded into the tables above, per tenant.
CREATE TABLE ingest_checkpoints (
    tenant_id  text   PRIMARY KEY,
    stream_seq bigint NOT NULL
);

-- +goose Down
DROP TABLE ingest_checkpoints;
DROP TABLE ingest_closed_periods;
DROP TABLE ingest_scopes;
DROP TABLE ingest_lines;
