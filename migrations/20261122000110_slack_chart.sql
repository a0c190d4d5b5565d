-- The recovery chart of a rollback, shared in its card's thread exactly once (docs/slack.md,
-- "Exactly once"; docs/recovery.md, "The chart"). Slack's upload has three calls
-- (files.getUploadURLExternal, the bytes to the upload URL, files.completeUploadExternal) and
-- only the last one puts the file in the thread, so each step is recorded before the next one
-- starts, and a completion whose answer was lost is looked up in the thread before it is sent
-- again. Records are made under the card's claim (slack_card.claim_token), like the card's.

create table slack_chart (
    rollback_id  bigint primary key references rollback (id),
    -- rendered:   the PNG is made, no upload started (a file id got before a crash and not
    --             recorded is never completed, so Slack discards it)
    -- url:        files.getUploadURLExternal answered file_id and upload_url; the bytes may
    --             or may not have been sent
    -- uploaded:   the upload URL took the bytes
    -- completing: files.completeUploadExternal sent or about to be: look the file up first
    -- shared:     the file is in the thread (done)
    -- failed:     Slack refused the upload (failure says how); the thread line saying so is
    --             sent or about to be: look it up first
    -- noted:      that line is in the thread (done)
    state        text not null check (state in ('rendered', 'url', 'uploaded', 'completing',
                                                'shared', 'failed', 'noted')),
    -- the exact bytes whose length files.getUploadURLExternal was told; dropped once done
    png          bytea,
    length       integer not null,
    filename     text not null,
    title        text not null,
    comment      text not null,
    file_id      text,
    upload_url   text,
    failure      text,
    -- when the post or completion in flight started: a look-up starts a little before
    started_at   timestamptz,
    updated_at   timestamptz not null default now(),
    constraint slack_chart_png check (png is not null or state in ('shared', 'failed', 'noted')),
    constraint slack_chart_file check (file_id is not null or state not in ('url', 'uploaded', 'completing', 'shared'))
);
