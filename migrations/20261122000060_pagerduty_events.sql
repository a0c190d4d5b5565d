-- PagerDuty events (src/escalation.rs): a failed rollback's `trigger` and the `resolve` a later
-- successful rollback of the same target sends. Each event is recorded here before it is sent
-- and marked sent once PagerDuty accepted it, so a crash in between sends it again (same
-- dedup_key: PagerDuty updates the same alert) and a crash afterwards never does.

create table pagerduty_event (
    id           bigint generated always as identity primary key,
    -- trigger: the escalated rollback; resolve: the rollback whose success resolves it
    rollback_id  bigint not null references rollback (id),
    action       text not null check (action in ('trigger', 'resolve')),
    -- rollback-bot/<cluster>/<namespace>/<deployment>: one alert per target
    dedup_key    text not null,
    -- the event as sent, without the routing key (a secret, only in the environment)
    body         jsonb not null,
    -- resolve: the trigger it resolves
    resolves     bigint references pagerduty_event (id),
    recorded_at  timestamptz not null default now(),
    -- PagerDuty answered 202
    sent_at      timestamptz,
    attempts     integer not null default 0,
    last_error   text
);

-- One trigger per failed rollback.
create unique index pagerduty_event_one_trigger on pagerduty_event (rollback_id)
    where action = 'trigger';

-- At most one resolve per trigger.
create unique index pagerduty_event_one_resolve on pagerduty_event (resolves)
    where resolves is not null;

-- The delivery sweep's scan: events not yet accepted.
create index pagerduty_event_unsent on pagerduty_event (id) where sent_at is null;
