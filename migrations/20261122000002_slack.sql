-- The Slack projection of a rollback: where its approval card lives and how much of the
-- rollback's history Slack has been shown. The rollback row stays the only truth; this table
-- only lets the notifier catch up (after a restart or a Slack outage) with what is missing.

create table slack_card (
    rollback_id      bigint primary key references rollback (id),
    channel_id       text not null,
    -- the card message; null while it is being (or failed to be) posted
    ts               text,
    -- the card's permalink: the incident link of a request made without one
    permalink        text,
    -- the rollback version the card shows; behind `rollback.version` = needs chat.update
    rendered_version bigint not null default -1,
    -- the last rollback_audit id replied in the card's thread
    thread_cursor    bigint not null default 0,
    -- who may post the card: a claim older than 30 s (or -infinity after a failure) is free
    claimed_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);

-- Every change of a rollback wakes the notifiers of all replicas (a cheap hint; they also
-- sweep periodically, so a lost notification only delays the card).
create function slack_rollback_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('rollback_changed', new.id::text);
    return new;
end $$;

create trigger slack_rollback_changed
    after insert or update of version on rollback
    for each row execute function slack_rollback_changed();
