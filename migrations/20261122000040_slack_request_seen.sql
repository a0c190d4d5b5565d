-- Slash commands already acted upon, by their Slack request signature. A signature is valid
-- for Slack's 5-minute window, so a captured request could be sent again inside it; this table
-- makes each signed request single-use on every replica. Rows older than the window are
-- useless (the signature check refuses such a request first) and are purged as new ones come.

create table slack_request_seen (
    signature text primary key,
    seen_at   timestamptz not null default now()
);

create index slack_request_seen_seen_at on slack_request_seen (seen_at);
