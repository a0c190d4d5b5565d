//! SQL of the Slack side: the `slack_card` projection table (migrations/…_slack.sql and
//! …_slack_post_claims.sql) with its fenced, leased posting claims, the recovery chart's
//! upload record (`slack_chart`, …_slack_chart.sql, fenced by the same claim), and the
//! lists `/rollback status` shows. The rollback itself is read through `rollback::repo`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Errors of the records made under a claim.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the Slack card of rollback #{rollback_id} was claimed by another notifier")]
    ClaimLost { rollback_id: i64 },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Where a rollback's card is, what it shows, and the post in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub rollback_id: i64,
    pub channel_id: String,
    pub ts: Option<String>,
    pub permalink: Option<String>,
    pub rendered_version: i64,
    pub thread_cursor: i64,
    /// `card` or `reply`: sent (or about to be) with no result recorded.
    pub post_in_flight: Option<String>,
    /// For a reply in flight: the last audit row it covers.
    pub reply_through: Option<i64>,
    pub post_started_at: Option<DateTime<Utc>>,
}

/// The right to post and record for one card, until `claim_until`; every record names
/// `token`, so a record under a claim that was taken over changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub rollback_id: i64,
    pub token: i64,
}

/// What a post in flight is, so it can be recorded and looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Post {
    Card,
    /// A thread reply covering audit rows up to this id.
    Reply {
        through: i64,
    },
}

pub async fn get(pool: &PgPool, rollback_id: i64) -> Result<Option<Card>, sqlx::Error> {
    sqlx::query_as!(
        Card,
        r#"select rollback_id, channel_id, ts, permalink, rendered_version, thread_cursor,
                  post_in_flight, reply_through, post_started_at
           from slack_card where rollback_id = $1"#,
        rollback_id
    )
    .fetch_optional(pool)
    .await
}

/// Claims the card of `rollback_id` for `owner` for `lease` (creating its row, to be posted
/// in `channel_id`, on first use). None while another owner's claim is unexpired.
pub async fn claim(
    pool: &PgPool,
    rollback_id: i64,
    channel_id: &str,
    owner: &str,
    lease: Duration,
) -> Result<Option<(Claim, Card)>, sqlx::Error> {
    sqlx::query!(
        r#"insert into slack_card (rollback_id, channel_id) values ($1, $2)
           on conflict (rollback_id) do nothing"#,
        rollback_id,
        channel_id
    )
    .execute(pool)
    .await?;
    let claimed = sqlx::query!(
        r#"update slack_card
           set claim_token = claim_token + 1, claim_owner = $2,
               claim_until = now() + make_interval(secs => $3)
           where rollback_id = $1 and (claim_owner is null or claim_until < now())
           returning claim_token, rollback_id, channel_id, ts, permalink, rendered_version,
                     thread_cursor, post_in_flight, reply_through, post_started_at"#,
        rollback_id,
        owner,
        lease.as_secs_f64()
    )
    .fetch_optional(pool)
    .await?;
    Ok(claimed.map(|c| {
        (
            Claim {
                rollback_id,
                token: c.claim_token,
            },
            Card {
                rollback_id: c.rollback_id,
                channel_id: c.channel_id,
                ts: c.ts,
                permalink: c.permalink,
                rendered_version: c.rendered_version,
                thread_cursor: c.thread_cursor,
                post_in_flight: c.post_in_flight,
                reply_through: c.reply_through,
                post_started_at: c.post_started_at,
            },
        )
    }))
}

/// Extends a claim by `lease` from now; false when it was taken over.
pub async fn renew(pool: &PgPool, claim: Claim, lease: Duration) -> Result<bool, sqlx::Error> {
    let renewed = sqlx::query!(
        r#"update slack_card set claim_until = now() + make_interval(secs => $3)
           where rollback_id = $1 and claim_token = $2 and claim_owner is not null"#,
        claim.rollback_id,
        claim.token,
        lease.as_secs_f64()
    )
    .execute(pool)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// Gives the claim up so any replica may take the card at once.
pub async fn release(pool: &PgPool, claim: Claim) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update slack_card set claim_owner = null, claim_until = '-infinity'
           where rollback_id = $1 and claim_token = $2"#,
        claim.rollback_id,
        claim.token
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Runs a fenced update: Ok(()) when the claim still holds, [`StoreError::ClaimLost`] when
/// it was taken over (the update then changed nothing).
fn fenced(
    claim: Claim,
    done: Result<sqlx::postgres::PgQueryResult, sqlx::Error>,
) -> Result<(), StoreError> {
    match done?.rows_affected() {
        1 => Ok(()),
        _ => Err(StoreError::ClaimLost {
            rollback_id: claim.rollback_id,
        }),
    }
}

/// Records, before sending it, that `post` is about to be sent.
pub async fn begin_post(pool: &PgPool, claim: Claim, post: Post) -> Result<(), StoreError> {
    let (kind, through) = match post {
        Post::Card => ("card", None),
        Post::Reply { through } => ("reply", Some(through)),
    };
    let done = sqlx::query!(
        r#"update slack_card
           set post_in_flight = $3, reply_through = $4, post_started_at = now(),
               updated_at = now()
           where rollback_id = $1 and claim_token = $2"#,
        claim.rollback_id,
        claim.token,
        kind,
        through
    )
    .execute(pool)
    .await;
    fenced(claim, done)
}

/// Records the posted (or found) card: its `ts` and the version it shows.
pub async fn card_posted(
    pool: &PgPool,
    claim: Claim,
    ts: &str,
    version: i64,
) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"update slack_card
           set ts = $3, rendered_version = $4, post_in_flight = null, reply_through = null,
               post_started_at = null, updated_at = now()
           where rollback_id = $1 and claim_token = $2"#,
        claim.rollback_id,
        claim.token,
        ts,
        version
    )
    .execute(pool)
    .await;
    fenced(claim, done)
}

/// Records that the thread holds every audit row up to `through` (posted, found, or with
/// nothing to show).
pub async fn reply_posted(pool: &PgPool, claim: Claim, through: i64) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"update slack_card
           set thread_cursor = greatest(thread_cursor, $3), post_in_flight = null,
               reply_through = null, post_started_at = null, updated_at = now()
           where rollback_id = $1 and claim_token = $2"#,
        claim.rollback_id,
        claim.token,
        through
    )
    .execute(pool)
    .await;
    fenced(claim, done)
}

/// Records the card's permalink and marks the card for re-rendering (it shows the link).
pub async fn set_permalink(pool: &PgPool, claim: Claim, permalink: &str) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"update slack_card set permalink = $3, rendered_version = -1, updated_at = now()
           where rollback_id = $1 and claim_token = $2"#,
        claim.rollback_id,
        claim.token,
        permalink
    )
    .execute(pool)
    .await;
    fenced(claim, done)
}

pub async fn set_rendered(pool: &PgPool, claim: Claim, version: i64) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"update slack_card set rendered_version = greatest(rendered_version, $3),
               updated_at = now()
           where rollback_id = $1 and claim_token = $2"#,
        claim.rollback_id,
        claim.token,
        version
    )
    .execute(pool)
    .await;
    fenced(claim, done)
}

/// Where a rollback's recovery chart upload is (see the migration for the states).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    pub state: String,
    pub png: Option<Vec<u8>>,
    pub length: i32,
    pub filename: String,
    pub title: String,
    pub comment: String,
    pub file_id: Option<String>,
    pub upload_url: Option<String>,
    pub failure: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
}

/// What a new chart record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChart<'a> {
    pub png: &'a [u8],
    pub filename: &'a str,
    pub title: &'a str,
    pub comment: &'a str,
}

pub async fn chart(pool: &PgPool, rollback_id: i64) -> Result<Option<Chart>, sqlx::Error> {
    sqlx::query_as!(
        Chart,
        r#"select state, png, length, filename, title, comment, file_id, upload_url, failure,
                  started_at
           from slack_chart where rollback_id = $1"#,
        rollback_id
    )
    .fetch_optional(pool)
    .await
}

/// Records the rendered chart (state `rendered`).
pub async fn chart_rendered(
    pool: &PgPool,
    claim: Claim,
    chart: NewChart<'_>,
) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"insert into slack_chart (rollback_id, state, png, length, filename, title, comment)
           select $1, 'rendered', $3, $4, $5, $6, $7 from slack_card
           where rollback_id = $1 and claim_token = $2
           on conflict (rollback_id) do nothing"#,
        claim.rollback_id,
        claim.token,
        chart.png,
        i32::try_from(chart.png.len()).unwrap_or(i32::MAX),
        chart.filename,
        chart.title,
        chart.comment
    )
    .execute(pool)
    .await;
    fenced(claim, done)
}

/// Moves the chart to `state`, recording the file id and upload URL when given (cleared when
/// going back to `rendered`), and the time a post or completion in flight starts. The PNG is
/// dropped once the chart is done.
pub async fn chart_state(
    pool: &PgPool,
    claim: Claim,
    state: &str,
    upload: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    let (file_id, upload_url) = upload.unzip();
    let done = sqlx::query!(
        r#"update slack_chart ch
           set state = $3,
               file_id = case when $3 = 'rendered' then null else coalesce($4, ch.file_id) end,
               upload_url = case when $3 = 'rendered' then null
                                 else coalesce($5, ch.upload_url) end,
               started_at = case when $3 in ('completing', 'failed') then now()
                                 else ch.started_at end,
               png = case when $3 in ('shared', 'noted') then null else ch.png end,
               updated_at = now()
           from slack_card c
           where ch.rollback_id = $1 and c.rollback_id = $1 and c.claim_token = $2"#,
        claim.rollback_id,
        claim.token,
        state,
        file_id,
        upload_url
    )
    .execute(pool)
    .await;
    fenced(claim, done)
}

/// Records that Slack refused the chart (`failure` says how): state `failed`, the thread line
/// saying so about to be posted.
pub async fn chart_failed(pool: &PgPool, claim: Claim, failure: &str) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"update slack_chart ch
           set state = 'failed', failure = $3, started_at = now(), updated_at = now()
           from slack_card c
           where ch.rollback_id = $1 and c.rollback_id = $1 and c.claim_token = $2"#,
        claim.rollback_id,
        claim.token,
        failure
    )
    .execute(pool)
    .await;
    fenced(claim, done)
}

/// Records a chart that could not even be made (state `failed`, no PNG).
pub async fn chart_unmade(
    pool: &PgPool,
    claim: Claim,
    filename: &str,
    failure: &str,
) -> Result<(), StoreError> {
    let done = sqlx::query!(
        r#"insert into slack_chart (rollback_id, state, length, filename, title, comment,
                                    failure, started_at)
           select $1, 'failed', 0, $3, '', '', $4, now() from slack_card
           where rollback_id = $1 and claim_token = $2
           on conflict (rollback_id) do nothing"#,
        claim.rollback_id,
        claim.token,
        filename,
        failure
    )
    .execute(pool)
    .await;
    fenced(claim, done)
}

/// Rollbacks (changed in the last day, past planning) whose card is missing, behind the row,
/// or behind the audit trail, or whose recovery chart is not in the thread yet (neither shared
/// nor noted as refused): what a sweep must catch up with.
pub async fn behind(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select r.id as "id!" from rollback r
           left join slack_card c on c.rollback_id = r.id
           where r.state <> 'requested'
             and r.updated_at > now() - interval '1 day'
             and (c.rollback_id is null or c.ts is null or c.rendered_version < r.version
                  or c.post_in_flight is not null
                  or exists (select 1 from rollback_audit a
                             where a.rollback_id = r.id and a.id > c.thread_cursor)
                  or (r.steps #> '{validate,recovery}' is not null
                      and not exists (select 1 from slack_chart ch
                                      where ch.rollback_id = r.id
                                        and ch.state in ('shared', 'noted'))))
           order by r.id
           limit 100"#
    )
    .fetch_all(pool)
    .await
}

/// Ids for `/rollback status`: every active rollback and the most recent finished ones.
pub async fn recent(pool: &PgPool, limit: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select id from rollback
           order by (state not in ('succeeded', 'refused', 'rejected', 'expired', 'cancelled',
                                   'failed', 'escalated')) desc, id desc
           limit $1"#,
        limit
    )
    .fetch_all(pool)
    .await
}

/// The Slack card of the rollback that set the lock (the incident record when the request
/// named no incident link). Best effort: a database hiccup leaves the link out.
pub async fn lock_card_permalink(pool: &PgPool, rollback_id: i64) -> Option<String> {
    sqlx::query_scalar!(
        "select permalink from slack_card where rollback_id = $1",
        rollback_id
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten()
    .flatten()
}
