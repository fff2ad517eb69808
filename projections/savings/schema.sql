-- The realized-savings read model. Setup runs this in the projection's schema (written here as
-- "savings_schema."): the live copy is "savings", a rebuild builds "savings_next" beside it.
-- The projection keeps its own copy of what it measures from (it never reads the ledger's
-- schema, whose checkpoint is not its own). Days are UTC calendar days.

-- lines: the current state of every cost line that names a resource (lines without a
-- resource id can never be measured and are not kept): its resource, the UTC day of its charge
-- period start (billing period start when it has none), billing currency and effective cost,
-- and the event that last set it. A retracted line is removed.
CREATE TABLE savings_schema.lines (
    tenant_id            text        NOT NULL,
    provider             text        NOT NULL,
    billing_account_id   text        NOT NULL,
    billing_period_start timestamptz NOT NULL,
    line_key             text        NOT NULL,
    resource_id          text        NOT NULL,
    day                  date        NOT NULL,
    billing_currency     text        NOT NULL,
    effective_cost       numeric     NOT NULL,
    last_event_id        uuid        NOT NULL,
    last_tenant_seq      bigint      NOT NULL,
    PRIMARY KEY (tenant_id, provider, billing_account_id, billing_period_start, line_key)
);

CREATE INDEX lines_resource_idx ON savings_schema.lines (tenant_id, provider, resource_id, day);

-- finalized: bills the provider has finalized (the first billing_period_finalized of each).
-- A line is final iff its bill is here; a day is covered for an account iff a finalized bill
-- of that account spans the whole day.
CREATE TABLE savings_schema.finalized (
    tenant_id            text        NOT NULL,
    provider             text        NOT NULL,
    billing_account_id   text        NOT NULL,
    billing_period_start timestamptz NOT NULL,
    billing_period_end   timestamptz NOT NULL,
    event_id             uuid        NOT NULL,
    tenant_seq           bigint      NOT NULL,
    PRIMARY KEY (tenant_id, provider, billing_account_id, billing_period_start)
);

-- actions: one row per (tenant, action id): the action as its last remediation_executed
-- event describes it, its windows (inclusive days; NULL when it has no execution time) and its
-- current figures (NULL while pending). period is the UTC month of the action day, YYYY-MM.
-- revision counts the rows of history.
CREATE TABLE savings_schema.actions (
    tenant_id              text        NOT NULL,
    action_id              text        NOT NULL,
    provider               text        NOT NULL,
    billing_account_id     text        NOT NULL,
    resource_id            text        NOT NULL,
    kind                   text        NOT NULL,
    tool                   text        NOT NULL,
    description            text        NOT NULL,
    actor_kind             text        NOT NULL,
    actor_id               text        NOT NULL,
    expected_daily_savings numeric,
    expected_currency      text        NOT NULL,
    executed_at            timestamptz,
    period                 text        NOT NULL,
    baseline_days          int         NOT NULL,
    gap_days               int         NOT NULL,
    measurement_days       int         NOT NULL,
    baseline_start         date,
    baseline_end           date,
    measurement_start      date,
    measurement_end        date,
    event_id               uuid        NOT NULL,
    tenant_seq             bigint      NOT NULL,
    status                 text        NOT NULL,
    reason                 text        NOT NULL,
    currency               text        NOT NULL,
    baseline_total         numeric,
    measurement_total      numeric,
    baseline_lines         int         NOT NULL,
    measurement_lines      int         NOT NULL,
    baseline_daily         numeric,
    measurement_daily      numeric,
    realized_daily         numeric,
    realized_monthly       numeric,
    revision               int         NOT NULL,
    updated_event_id       uuid        NOT NULL,
    updated_tenant_seq     bigint      NOT NULL,
    PRIMARY KEY (tenant_id, action_id)
);

CREATE INDEX actions_resource_idx ON savings_schema.actions (tenant_id, provider, resource_id);
CREATE INDEX actions_period_idx ON savings_schema.actions (tenant_id, period);

-- history: one row per change of an action's figures (status and amounts), and one per
-- remediation_executed event of the action, naming the event that caused it. Evaluated after
-- every event, never per batch, so a rebuild gives the same rows however the log is cut.
CREATE TABLE savings_schema.history (
    tenant_id          text    NOT NULL,
    action_id          text    NOT NULL,
    revision           int     NOT NULL,
    event_id           uuid    NOT NULL,
    tenant_seq         bigint  NOT NULL,
    event_kind         text    NOT NULL,
    status             text    NOT NULL,
    reason             text    NOT NULL,
    currency           text    NOT NULL,
    baseline_total     numeric,
    measurement_total  numeric,
    baseline_lines     int     NOT NULL,
    measurement_lines  int     NOT NULL,
    baseline_daily     numeric,
    measurement_daily  numeric,
    realized_daily     numeric,
    realized_monthly   numeric,
    PRIMARY KEY (tenant_id, action_id, revision)
);
