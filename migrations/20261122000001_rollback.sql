-- The rollback state machine: one row per requested rollback, an append-only audit trail.
-- docs/engine.md explains the states, the lease/fencing protocol and why each column exists.

create type rollback_state as enum (
    'requested',          -- recorded from Slack; a worker computes the plan
    'awaiting_approval',  -- plan shown on the card; waits for the sign-offs it needs
    'approved',           -- every required sign-off given; a worker starts execution
    'executing',          -- the rollback patch is being applied (re-checked against the plan first)
    'verifying',          -- rollout status, images and pod health are being verified
    'succeeded',
    'refused',            -- no plan could be made (unknown revision, nothing to roll back, ...)
    'rejected',
    'expired',
    'cancelled',
    'failed',
    'escalated'
);

create table rollback (
    id                  bigint generated always as identity primary key,
    service             text not null,
    cluster             text not null,
    namespace           text not null,
    deployment          text not null,
    -- null means "the previous revision" (kubectl's --to-revision=0)
    requested_revision  bigint check (requested_revision > 0),
    incident            text,
    requested_by        text not null,
    channel_id          text not null,
    response_url        text,
    force               boolean not null default false,

    state               rollback_state not null default 'requested',
    -- optimistic concurrency: every write names the version it read and bumps it
    version             bigint not null default 0,

    -- what the approvers are shown and what execution is bound to
    plan                jsonb,
    plan_fingerprint    text,
    needs_dba           boolean not null default false,
    needs_override      boolean not null default false,
    lead_approved_by    text,
    dba_approved_by     text,
    decided_by          text,
    expires_at          timestamptz not null,

    -- worker lease: claimed with FOR UPDATE SKIP LOCKED; attempt is the fencing token
    lease_owner         text,
    lease_expires_at    timestamptz,
    attempt             bigint not null default 0,
    -- transient failures of the current step, reset on every transition
    retries             integer not null default 0,
    -- when a worker should next run this rollback's step; null when no worker step is due
    -- (waiting for people, or finished), so the engine alone decides which states have steps
    next_attempt_at     timestamptz default now(),
    last_error          text,

    -- per-step results and evidence, keyed by step name
    steps               jsonb not null default '{}',

    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now()
);

-- One active rollback per target. Terminal states are listed (not active ones) so that
-- adding a step state later needs no change here.
create unique index rollback_one_active_per_target on rollback (cluster, namespace, deployment)
    where state not in ('succeeded', 'refused', 'rejected', 'expired', 'cancelled', 'failed', 'escalated');

-- The claim query's scan: claimable rows in due order.
create index rollback_claimable on rollback (next_attempt_at)
    where next_attempt_at is not null;

create index rollback_awaiting_expiry on rollback (expires_at)
    where state in ('requested', 'awaiting_approval');

create table rollback_audit (
    id           bigint generated always as identity primary key,
    rollback_id  bigint not null references rollback (id),
    at           timestamptz not null default now(),
    -- a Slack user id, or worker:<id> / system for the bot itself
    actor        text not null,
    action       text not null,
    outcome      text not null check (outcome in ('applied', 'refused')),
    from_state   rollback_state not null,
    to_state     rollback_state not null,
    detail       jsonb not null default '{}'
);

create index rollback_audit_by_rollback on rollback_audit (rollback_id, id);

-- The audit trail is append-only: the application can never rewrite history.
create function rollback_audit_is_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'rollback_audit is append-only (% refused)', tg_op;
end $$;

create trigger rollback_audit_append_only
    before update or delete on rollback_audit
    for each row execute function rollback_audit_is_append_only();

-- Workers LISTEN on this channel so a new or newly approved rollback is picked up at once.
create function rollback_notify_ready() returns trigger language plpgsql as $$
begin
    perform pg_notify('rollback_ready', new.id::text);
    return new;
end $$;

create trigger rollback_ready
    after insert or update of next_attempt_at on rollback
    for each row when (new.next_attempt_at is not null and new.lease_owner is null)
    execute function rollback_notify_ready();
