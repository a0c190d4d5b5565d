-- Workers are woken only for a rollback that is due now (new, approved, clicked). One that
-- waits (between validation rounds, or a retry's backoff) is due later: the replica that let
-- go of it sets a timer, the others find it by polling. Notifying every such write woke every
-- worker of every replica for nothing, 200 times a round in a wide incident.
drop trigger rollback_ready on rollback;

create trigger rollback_ready
    after insert or update of next_attempt_at on rollback
    for each row when (new.next_attempt_at is not null and new.lease_owner is null
                       and new.next_attempt_at <= now())
    execute function rollback_notify_ready();
