-- Every request is audited by the database itself, in the statement that records it: the
-- insert needs no transaction of its own, so a slash command costs one round trip.
create function rollback_audit_request() returns trigger language plpgsql as $$
begin
    insert into rollback_audit (rollback_id, actor, action, outcome, from_state, to_state, detail)
    values (new.id, new.requested_by, 'request', 'applied', new.state, new.state,
            jsonb_build_object('requested_revision', new.requested_revision,
                               'incident', new.incident));
    return new;
end $$;

create trigger rollback_audit_request
    after insert on rollback
    for each row execute function rollback_audit_request();
