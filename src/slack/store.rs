//! SQL of the Slack side: the `slack_card` projection table (migrations/…_slack.sql) and the
//! lists `/rollback status` shows. The rollback itself is read through `rollback::repo`.

use sqlx::PgPool;

/// Where a rollback's card is and what it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub rollback_id: i64,
    pub channel_id: String,
    pub ts: Option<String>,
    pub permalink: Option<String>,
    pub rendered_version: i64,
    pub thread_cursor: i64,
}

pub async fn get(pool: &PgPool, rollback_id: i64) -> Result<Option<Card>, sqlx::Error> {
    sqlx::query_as!(
        Card,
        r#"select rollback_id, channel_id, ts, permalink, rendered_version, thread_cursor
           from slack_card where rollback_id = $1"#,
        rollback_id
    )
    .fetch_optional(pool)
    .await
}

/// Claims the right to post the card: true for the first claimer, or when an earlier claim
/// failed or is older than 30 s and the card was never posted.
pub async fn claim_post(
    pool: &PgPool,
    rollback_id: i64,
    channel_id: &str,
) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query_scalar!(
        r#"insert into slack_card (rollback_id, channel_id) values ($1, $2)
           on conflict (rollback_id) do update set claimed_at = now(), updated_at = now()
               where slack_card.ts is null
                 and slack_card.claimed_at < now() - interval '30 seconds'
           returning rollback_id"#,
        rollback_id,
        channel_id
    )
    .fetch_optional(pool)
    .await?;
    Ok(claimed.is_some())
}

/// Gives a failed posting claim back so the next sweep posts at once.
pub async fn release_post(pool: &PgPool, rollback_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update slack_card set claimed_at = '-infinity', updated_at = now()
           where rollback_id = $1 and ts is null"#,
        rollback_id
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn set_posted(
    pool: &PgPool,
    rollback_id: i64,
    ts: &str,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update slack_card set ts = $2, rendered_version = $3, updated_at = now()
           where rollback_id = $1"#,
        rollback_id,
        ts,
        version
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Records the card's permalink and marks the card for re-rendering (it shows the link).
pub async fn set_permalink(
    pool: &PgPool,
    rollback_id: i64,
    permalink: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update slack_card set permalink = $2, rendered_version = -1, updated_at = now()
           where rollback_id = $1"#,
        rollback_id,
        permalink
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn set_rendered(
    pool: &PgPool,
    rollback_id: i64,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update slack_card set rendered_version = greatest(rendered_version, $2),
               updated_at = now()
           where rollback_id = $1"#,
        rollback_id,
        version
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn set_thread_cursor(
    pool: &PgPool,
    rollback_id: i64,
    cursor: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update slack_card set thread_cursor = greatest(thread_cursor, $2), updated_at = now()
           where rollback_id = $1"#,
        rollback_id,
        cursor
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Rollbacks (changed in the last day, past planning) whose card is missing, behind the row,
/// or behind the audit trail: what a sweep must catch up with.
pub async fn behind(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select r.id as "id!" from rollback r
           left join slack_card c on c.rollback_id = r.id
           where r.state <> 'requested'
             and r.updated_at > now() - interval '1 day'
             and (c.rollback_id is null or c.ts is null or c.rendered_version < r.version
                  or exists (select 1 from rollback_audit a
                             where a.rollback_id = r.id and a.id > c.thread_cursor))
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
