-- The allocation read model. Setup runs this in the projection's schema (written here as
-- "allocation_schema."): the live copy is "allocation", a rebuild builds "allocation_next"
-- beside it.
--
-- The projection keeps its own copy of what allocation needs and never reads another read
-- model's tables (their checkpoints are not its own): lines and rules are folded from the
-- events; pool_totals is kept from the lines by deltas; allocated_daily and unallocated_daily
-- are recomputed from pool_totals (never from the lines), a whole (tenant, day) at a time, at
-- the end of every batch that changes the day's totals.

-- lines: the current state of every cost line, as allocation sees it. A retracted line is
-- removed. day is the UTC date of the line's charge period start (billing period start when it
-- has none); amount is its effective cost in its billing currency. rule_id and rule_version
-- are the rule version that selects the line on its day with the tenant's rules as they stand
-- (rule_id '' and rule_version 0: no rule, the line is unallocated).
CREATE TABLE allocation_schema.lines (
    tenant_id            text        NOT NULL,
    provider             text        NOT NULL,
    billing_account_id   text        NOT NULL,
    billing_period_start timestamptz NOT NULL,
    line_key             text        NOT NULL,
    day                  date        NOT NULL,
    service_name         text        NOT NULL,
    region_id            text        NOT NULL,
    resource_id          text        NOT NULL,
    tags                 jsonb       NOT NULL,
    currency             text        NOT NULL,
    amount               numeric     NOT NULL,
    rule_id              text        NOT NULL,
    rule_version         bigint      NOT NULL,
    PRIMARY KEY (tenant_id, billing_period_start, provider, billing_account_id, line_key)
);

CREATE INDEX ON allocation_schema.lines (tenant_id, day);

-- pool_totals: the sum of the lines of a day per currency, rule version (rule_id '': no rule),
-- service and scale (the number of decimal places of the lines' amounts), with the number of
-- lines; a row is removed when it has no line left. It is kept by deltas: as lines are
-- recorded, restated and retracted, and as a rule event moves lines from one rule to
-- another. A rule's pool on a day is the sum of its
-- rows; the service is kept for the unallocated cost (per service) and for a day whose split
-- fails (all its cost then unallocated, per service); the scale is kept so that a pool's sum
-- has the scale a sum of its current lines has (the largest of theirs), which a running total
-- alone could not give back once the line with the most places is gone.
CREATE TABLE allocation_schema.pool_totals (
    tenant_id    text    NOT NULL,
    day          date    NOT NULL,
    currency     text    NOT NULL,
    rule_id      text    NOT NULL,
    rule_version bigint  NOT NULL,
    service_name text    NOT NULL,
    scale        int     NOT NULL,
    amount       numeric NOT NULL,
    lines        bigint  NOT NULL,
    PRIMARY KEY (tenant_id, day, currency, rule_id, rule_version, service_name, scale)
);

-- rules: every allocation_rule_set and allocation_rule_retired event of a tenant, in log order
-- (tenant_seq). The book of rules is rebuilt from them in that order, since a retirement stops
-- the versions held when it arrives. body is the event body, protobuf-encoded. from_day is the
-- first day the event can change: the UTC date of effective_from (set) or effective_to
-- (retired). invalid holds why NewRule refused a set event; such a version is kept for the
-- record but never applies.
CREATE TABLE allocation_schema.rules (
    tenant_id   text        NOT NULL,
    tenant_seq  bigint      NOT NULL,
    op          text        NOT NULL CHECK (op IN ('set', 'retired')),
    rule_id     text        NOT NULL,
    version     bigint      NOT NULL,
    from_day    date        NOT NULL,
    body        bytea       NOT NULL,
    event_id    uuid        NOT NULL,
    recorded_at timestamptz,
    invalid     text        NOT NULL,
    PRIMARY KEY (tenant_id, tenant_seq)
);

CREATE INDEX ON allocation_schema.rules (tenant_id, rule_id, version);

-- allocated_daily: cost allocated to a cost center on a day by one rule version, per currency.
-- Per (tenant, day, currency), allocated plus unallocated is exactly the sum of the day's lines.
CREATE TABLE allocation_schema.allocated_daily (
    tenant_id    text    NOT NULL,
    day          date    NOT NULL,
    cost_center  text    NOT NULL,
    currency     text    NOT NULL,
    rule_id      text    NOT NULL,
    rule_version bigint  NOT NULL,
    amount       numeric NOT NULL,
    PRIMARY KEY (tenant_id, day, cost_center, currency, rule_id, rule_version)
);

-- unallocated_daily: cost no rule matched on a day, per currency and service.
CREATE TABLE allocation_schema.unallocated_daily (
    tenant_id    text    NOT NULL,
    day          date    NOT NULL,
    currency     text    NOT NULL,
    service_name text    NOT NULL,
    amount       numeric NOT NULL,
    PRIMARY KEY (tenant_id, day, currency, service_name)
);

-- failed_days: days whose allocation failed (a fixed amount finer than the minor unit of the
-- currency it met). The day's cost is then all in unallocated_daily, and the reason is here,
-- so that a bad rule lowers coverage visibly instead of stopping the projection.
CREATE TABLE allocation_schema.failed_days (
    tenant_id text NOT NULL,
    day       date NOT NULL,
    reason    text NOT NULL,
    PRIMARY KEY (tenant_id, day)
);
