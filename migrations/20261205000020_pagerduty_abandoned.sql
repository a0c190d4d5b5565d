-- Why an event will never be sent: the sweep gave up after its attempts, or a resolve was
-- withheld because a newer trigger with the same dedup key re-opened the alert (resolving
-- it then would silence a live failure). The delivery sweep skips these.
alter table pagerduty_event add column abandoned text;

drop index pagerduty_event_unsent;
create index pagerduty_event_unsent on pagerduty_event (id)
    where sent_at is null and abandoned is null;
