-- The change-log read model. Setup runs this in the projection's schema (written here as
-- "changelog_schema."): the live copy is "changelog", a rebuild builds "changelog_next" beside it.

-- items: the current state of every configuration item, one row per tenant, item type and key
-- (a rule, a budget, an invoice, a period close, an FX rate of a day, a resource's tags). doc is
-- the item as of its last event (tenant_seq): the "before" of its next change.
CREATE TABLE changelog_schema.items (
    tenant_id  text   NOT NULL,
    item       text   NOT NULL,
    item_key   text   NOT NULL,
    doc        jsonb  NOT NULL,
    tenant_seq bigint NOT NULL,
    PRIMARY KEY (tenant_id, item, item_key)
);

-- changes: one row per configuration event, with the item before and after it and the fields
-- it changed (diff: a JSON array of {"field", "before", "after"} in field order). approver_kind
-- and approver_id are '' when the event names no approver.
CREATE TABLE changelog_schema.changes (
    tenant_id     text        NOT NULL,
    tenant_seq    bigint      NOT NULL,
    event_id      uuid        NOT NULL,
    kind          text        NOT NULL,
    item          text        NOT NULL,
    item_key      text        NOT NULL,
    actor_kind    text        NOT NULL,
    actor_id      text        NOT NULL,
    approver_kind text        NOT NULL,
    approver_id   text        NOT NULL,
    occurred_at   timestamptz,
    recorded_at   timestamptz NOT NULL,
    before        jsonb,
    after         jsonb       NOT NULL,
    diff          jsonb       NOT NULL,
    PRIMARY KEY (tenant_id, tenant_seq)
);

CREATE INDEX ON changelog_schema.changes (tenant_id, recorded_at);
CREATE INDEX ON changelog_schema.changes (tenant_id, kind, tenant_seq);
