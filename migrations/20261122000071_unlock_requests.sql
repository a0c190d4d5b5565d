-- `/rollback unlock <service> <fix reference>` is a request of its own kind on the same
-- machine as a rollback: the same approval (an on-call lead other than the requester), expiry,
-- audit trail and one-active-request-per-target index; `kind` picks its steps
-- (docs/engine.md, "Unlock requests").
create type request_kind as enum ('rollback', 'unlock');
alter table rollback
    add column kind request_kind not null default 'rollback',
    add column fix_reference text;
