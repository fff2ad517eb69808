-- +goose Up

-- tally_reader: the role tenant-scoped reads of the read models switch to inside their
-- transaction (storage.ReadAsTenant: SET LOCAL ROLE and the setting tally.tenant). It cannot
-- log in. Each read-model table with a tenant_id column gets row-level security with the
-- policy tenant_isolation (tenant_id = current_setting('tally.tenant', true)) and a SELECT
-- grant to this role when its projection's schema is set up (projections.SecureSchema); this
-- migration only makes the role, because those schemas are created and swapped by the runner.
--
-- Roles belong to the whole server, not to one database: several Tally databases (and every
-- test database) share this role, and their migrations may create it at the same moment. The
-- check below cannot see a role another transaction has created but not committed; its CREATE
-- then waits for that transaction and fails with unique_violation (or duplicate_object), which
-- means the role now exists: that is what we wanted.
--
-- Where the role Tally connects as may not create roles (a managed PostgreSQL), a DBA runs
--   CREATE ROLE tally_reader NOLOGIN; GRANT tally_reader TO <tally's role>;
-- once, and this migration then finds both done.

-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tally_reader') THEN
        BEGIN
            CREATE ROLE tally_reader NOLOGIN;
        EXCEPTION
            WHEN unique_violation OR duplicate_object THEN
                NULL; -- created by a concurrent migration of another database
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role tally_reader does not exist and % may not create roles', current_user
                    USING HINT = format('as a superuser, run: CREATE ROLE tally_reader NOLOGIN; GRANT tally_reader TO %I;', current_user);
        END;
    END IF;
    -- The role Tally connects as must be able to SET ROLE tally_reader (a superuser always can).
    IF NOT pg_has_role(current_user, 'tally_reader', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT tally_reader TO %I', current_user);
        EXCEPTION
            WHEN unique_violation OR duplicate_object THEN
                NULL; -- granted by a concurrent migration of another database
        END;
    END IF;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- Nothing to undo in this database: the role is shared by every database on the server (and
-- cannot be dropped while any of them grants it something), so it stays. Rolling back the
-- projections' schemas removes this database's grants and policies with them.
SELECT 1;
