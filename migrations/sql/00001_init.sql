-- +goose Up

-- tally_meta holds facts about the database as a whole (for example which event stream its
-- read models were folded from), so a process can refuse to run against the wrong log.
CREATE TABLE tally_meta (
    key        text        PRIMARY KEY,
    value      text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- projection_checkpoints records, per projection, the last JetStream sequence folded into its
-- read model. It is written in the same transaction as the read model, so after a crash a
-- projection resumes exactly where its committed state ends. version is the projection's code
-- version: a bump means rebuild. state says whether the projection is serving ('live') or
-- being rebuilt beside the live one.
CREATE TABLE projection_checkpoints (
    name       text        PRIMARY KEY,
    version    int         NOT NULL,
    last_seq   bigint      NOT NULL DEFAULT 0,
    state      text        NOT NULL DEFAULT 'live',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE projection_checkpoints;
DROP TABLE tally_meta;
