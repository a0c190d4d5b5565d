-- Privilege separation: migrations run as the schema owner (DATABASE_MIGRATION_URL), `serve`
-- as a login role that is a member of `rollback_bot_app` and owns nothing. Such a role can
-- record requests and transitions and append to the audit trail, but cannot update, delete or
-- truncate audit rows, nor alter or disable a trigger (that needs ownership).
-- README.md ("Database roles") shows how to create the roles.
--
-- Without the right to create roles (and no `rollback_bot_app` made beforehand), the schema
-- owner stays the only role: the bot works as before, and `check-config` says the audit trail
-- is not protected against the application's own role.
do $$
begin
    if not exists (select from pg_roles where rolname = 'rollback_bot_app') then
        begin
            create role rollback_bot_app nologin;
        exception
            -- another database on the same server created it at the same moment
            when duplicate_object or unique_violation then null;
            when insufficient_privilege then
                raise notice 'role rollback_bot_app does not exist and cannot be created here; '
                    'the application keeps running as the schema owner (see README.md)';
                return;
        end;
    end if;

    grant select, insert, update on rollback, slack_card to rollback_bot_app;
    -- The audit trail: read and append, nothing else.
    grant select, insert on rollback_audit to rollback_bot_app;
    -- The chain's head is moved only by the audit trigger (as the owner); the verifier reads it.
    grant select on rollback_audit_chain to rollback_bot_app;
    -- `serve` checks that the schema is current before it starts.
    if to_regclass('_sqlx_migrations') is not null then
        grant select on _sqlx_migrations to rollback_bot_app;
    end if;
    -- Tables and sequences later migrations create (as this owner) are the application's to
    -- use; a later migration that needs less (another append-only table) revokes explicitly.
    alter default privileges in schema public
        grant select, insert, update, delete on tables to rollback_bot_app;
    alter default privileges in schema public
        grant usage, select on sequences to rollback_bot_app;
end $$;
