-- Posting to Slack exactly once (docs/slack.md, "Exactly once"). chat.postMessage has no
-- idempotency key, so a post is recorded as in flight before it is sent, and a notifier that
-- finds a post in flight with no recorded result looks the message up (by its metadata) before
-- posting again. Only the holder of a card's claim posts or records anything for it: the claim
-- is fenced (every record checks claim_token) and leased (renewed while its owner works; a
-- dead owner's claim is taken over once claim_until has passed).

alter table slack_card
    drop column claimed_at,
    -- bumped by every claim: a record made under an older claim changes nothing
    add column claim_token     bigint not null default 0,
    -- the notifier holding the claim; null when nobody does
    add column claim_owner     text,
    add column claim_until     timestamptz not null default '-infinity',
    -- the post sent or about to be sent: 'card', or 'reply' covering audit rows
    -- (thread_cursor, reply_through]; null when no post is in flight
    add column post_in_flight  text check (post_in_flight in ('card', 'reply')),
    add column reply_through   bigint,
    add column post_started_at timestamptz,
    add constraint slack_card_reply_through check ((post_in_flight = 'reply') = (reply_through is not null));

-- A card left unposted by an older version may have reached Slack: look it up first.
update slack_card set post_in_flight = 'card', post_started_at = updated_at where ts is null;
