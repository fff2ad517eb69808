-- The close-package read model. Setup runs this in the projection's schema (written here as
-- "closepkg_schema."): the live copy is "closepkg", a rebuild builds "closepkg_next" beside it.
--
-- Every table keeps one row per event, with the event's tenant sequence and chain hash, so a
-- package can be derived as of any point of a tenant's chain (Options.AsOfSeq): that is what
-- makes a closed package reproducible, and an auditor's replay comparable bit for bit.
-- period is the month of the bill's billing_period_start in UTC, "YYYY-MM".

-- line_events: every cost_line_recorded / restated / retracted. billed_cost is the line's
-- billed cost after the event (NULL for a retraction); billed_delta the signed change it made
-- (for a recorded line, the line's billed cost).
CREATE TABLE closepkg_schema.line_events (
    tenant_id            text        NOT NULL,
    tenant_seq           bigint      NOT NULL,
    period               text        NOT NULL,
    provider             text        NOT NULL,
    billing_account_id   text        NOT NULL,
    billing_period_start timestamptz NOT NULL,
    line_key             text        NOT NULL,
    op                   text        NOT NULL CHECK (op IN ('recorded', 'restated', 'retracted')),
    billing_currency     text        NOT NULL,
    billed_cost          numeric,
    billed_delta         numeric     NOT NULL,
    post_close           boolean     NOT NULL,
    event_id             uuid        NOT NULL,
    chain_hash           text        NOT NULL,
    PRIMARY KEY (tenant_id, tenant_seq)
);

CREATE INDEX ON closepkg_schema.line_events (tenant_id, period, provider, billing_account_id, billing_period_start, line_key, tenant_seq);

-- finalized: billing_period_finalized events; a line is final once its bill is here.
CREATE TABLE closepkg_schema.finalized (
    tenant_id            text        NOT NULL,
    tenant_seq           bigint      NOT NULL,
    period               text        NOT NULL,
    provider             text        NOT NULL,
    billing_account_id   text        NOT NULL,
    billing_period_start timestamptz NOT NULL,
    event_id             uuid        NOT NULL,
    chain_hash           text        NOT NULL,
    PRIMARY KEY (tenant_id, tenant_seq)
);

CREATE INDEX ON closepkg_schema.finalized (tenant_id, period);

-- invoices: invoice_recorded events. A later event with the same provider, billing account,
-- period and invoice id replaces the earlier one (a corrected invoice).
CREATE TABLE closepkg_schema.invoices (
    tenant_id          text        NOT NULL,
    tenant_seq         bigint      NOT NULL,
    period             text        NOT NULL,
    provider           text        NOT NULL,
    billing_account_id text        NOT NULL,
    invoice_id         text        NOT NULL,
    amount             numeric     NOT NULL,
    currency           text        NOT NULL,
    issued_at          timestamptz,
    event_id           uuid        NOT NULL,
    chain_hash         text        NOT NULL,
    PRIMARY KEY (tenant_id, tenant_seq)
);

CREATE INDEX ON closepkg_schema.invoices (tenant_id, period);

-- closes: period_closed events. provider '' closed every provider of the period.
CREATE TABLE closepkg_schema.closes (
    tenant_id      text        NOT NULL,
    tenant_seq     bigint      NOT NULL,
    period         text        NOT NULL,
    provider       text        NOT NULL,
    actor_kind     text        NOT NULL,
    actor_id       text        NOT NULL,
    approver_kind  text        NOT NULL,
    approver_id    text        NOT NULL,
    package_sha256 text        NOT NULL,
    chain_head     text        NOT NULL,
    chain_head_seq bigint      NOT NULL,
    note           text        NOT NULL,
    occurred_at    timestamptz,
    event_id       uuid        NOT NULL,
    chain_hash     text        NOT NULL,
    PRIMARY KEY (tenant_id, tenant_seq)
);

CREATE INDEX ON closepkg_schema.closes (tenant_id, period);
