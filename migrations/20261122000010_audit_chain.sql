-- The audit trail becomes tamper-evident: a TRUNCATE guard, and a hash chain that the
-- database itself extends on every insert, so every writer (the application's transitions,
-- the request trigger, anything added later) is covered. `rollback-bot audit verify` and
-- `check-config` recompute it; docs/engine.md explains what it proves and what it does not.

-- TRUNCATE bypasses row triggers: refuse it by a statement trigger (truncating `rollback`
-- would take the audit trail with it through its foreign key).
create function rollback_refuse_truncate() returns trigger language plpgsql as $$
begin
    raise exception '% is append-only (TRUNCATE refused)', tg_table_name;
end $$;

create trigger rollback_audit_no_truncate
    before truncate on rollback_audit
    for each statement execute function rollback_refuse_truncate();

create trigger rollback_no_truncate
    before truncate on rollback
    for each statement execute function rollback_refuse_truncate();

-- Each row's place in the chain, the hash of the row before it and its own hash.
alter table rollback_audit
    add column chain_seq bigint,
    add column prev_hash text,
    add column hash text;

-- The hash of one row: SHA-256 over a canonical JSON array of every column but `hash`.
-- Times are taken in UTC and jsonb prints canonically, so the result does not depend on the
-- session's settings. The verifier calls this same function.
create function rollback_audit_row_hash(a rollback_audit) returns text
language sql stable as $$
    select encode(sha256(convert_to(jsonb_build_array(
        a.chain_seq, a.prev_hash, a.id, a.rollback_id, a.at at time zone 'UTC', a.actor,
        a.action, a.outcome, a.from_state::text, a.to_state::text, a.detail)::text, 'UTF8')), 'hex')
$$;

-- The chain's head: one row, locked by every append until its transaction commits, which
-- serialises appends (concurrent writers queue here, in commit order).
create table rollback_audit_chain (
    only_row  boolean primary key default true check (only_row),
    seq       bigint not null,
    hash      text not null
);

-- Chain the rows written so far, in the order they were written.
do $$
declare
    r rollback_audit;
    n bigint := 0;
    prev text := repeat('0', 64);
begin
    alter table rollback_audit disable trigger rollback_audit_append_only;
    for r in select * from rollback_audit order by id loop
        n := n + 1;
        r.chain_seq := n;
        r.prev_hash := prev;
        prev := rollback_audit_row_hash(r);
        update rollback_audit set chain_seq = n, prev_hash = r.prev_hash, hash = prev
        where id = r.id;
    end loop;
    alter table rollback_audit enable trigger rollback_audit_append_only;
    insert into rollback_audit_chain (seq, hash) values (n, prev);
end $$;

alter table rollback_audit
    alter column chain_seq set not null,
    alter column prev_hash set not null,
    alter column hash set not null;
create unique index rollback_audit_chain_seq on rollback_audit (chain_seq);

-- Runs as the schema owner (security definer), so the application role needs no right on the
-- chain's head and cannot move it; whatever it inserts is chained, whatever it claims.
create function rollback_audit_chain_append() returns trigger
language plpgsql security definer set search_path from current as $$
declare
    head rollback_audit_chain;
begin
    select * into strict head from rollback_audit_chain for update;
    new.chain_seq := head.seq + 1;
    new.prev_hash := head.hash;
    new.hash := rollback_audit_row_hash(new);
    update rollback_audit_chain set seq = new.chain_seq, hash = new.hash;
    return new;
end $$;
revoke execute on function rollback_audit_chain_append() from public;

create trigger rollback_audit_chain
    before insert on rollback_audit
    for each row execute function rollback_audit_chain_append();
