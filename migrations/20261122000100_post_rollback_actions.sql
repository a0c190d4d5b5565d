-- After the lock, two more steps of a successful rollback: the DM to the engineer who deployed
-- the faulty revision (src/deployer.rs) and the post-incident ticket (src/tracker/). Neither
-- can fail the rollback; both happen exactly once across crashes.
alter type rollback_state add value if not exists 'notifying' after 'locking';
alter type rollback_state add value if not exists 'ticketing' after 'notifying';

-- The intent of each external effect, recorded before the call and completed with its result
-- after it. A row found without a result on resume means the call may have happened: the step
-- looks it up (the DM by its message metadata, the ticket by its label) before sending again.
create table post_rollback_action (
    rollback_id  bigint not null references rollback (id),
    action       text not null check (action in ('deployer_dm', 'ticket')),
    recorded_at  timestamptz not null default now(),
    -- deployer_dm: {user, channel, ts}; ticket: {key, url}
    result       jsonb,
    done_at      timestamptz,
    attempts     integer not null default 0,
    last_error   text,
    primary key (rollback_id, action)
);
