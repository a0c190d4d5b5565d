//! The PagerDuty events of escalated rollbacks (`pagerduty_event`): recorded before they are
//! sent, sent at most once under a row lock, resolved when the target recovers, abandoned
//! (with the reason) when delivery gives up or a resolve would silence a newer trigger.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::clients::pagerduty::Action;
use crate::db::rollbacks::Rollback;

/// Deliveries of one event (each with the client's own retries) before the sweep gives up.
pub const MAX_ATTEMPTS: i32 = 20;

/// A recorded PagerDuty event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Page {
    pub id: i64,
    pub rollback_id: i64,
    pub action: String,
    pub dedup_key: String,
    pub body: Value,
    pub sent_at: Option<DateTime<Utc>>,
}

pub struct OpenTrigger {
    pub trigger_id: i64,
    pub dedup_key: String,
    pub succeeded_id: i64,
}

/// Earlier rollbacks of the same target in the same incident that failed.
pub async fn earlier_failures(pool: &PgPool, r: &Rollback) -> Result<Vec<i64>, sqlx::Error> {
    let Some(incident) = &r.incident else {
        return Ok(vec![]);
    };
    sqlx::query_scalar!(
        r#"select id from rollback
           where cluster = $1 and namespace = $2 and deployment = $3 and incident = $4
             and id < $5 and state in ('failed', 'escalated')
           order by id"#,
        r.cluster,
        r.namespace,
        r.deployment,
        incident,
        r.id
    )
    .fetch_all(pool)
    .await
}

/// Records an event before it is sent. Returns it, or `None` when it was recorded already
/// (by an earlier run of the same step, or another replica).
pub async fn record(
    pool: &PgPool,
    rollback_id: i64,
    action: Action,
    dedup_key: &str,
    body: &Value,
    resolves: Option<i64>,
) -> Result<Option<Page>, sqlx::Error> {
    sqlx::query_as!(
        Page,
        r#"insert into pagerduty_event (rollback_id, action, dedup_key, body, resolves)
           values ($1, $2, $3, $4, $5)
           on conflict do nothing
           returning id, rollback_id, action, dedup_key, body, sent_at"#,
        rollback_id,
        action.as_str(),
        dedup_key,
        body,
        resolves
    )
    .fetch_optional(pool)
    .await
}

pub async fn find(pool: &PgPool, rollback_id: i64, action: Action) -> Result<Page, sqlx::Error> {
    sqlx::query_as!(
        Page,
        r#"select id, rollback_id, action, dedup_key, body, sent_at from pagerduty_event
           where rollback_id = $1 and action = $2 and resolves is null"#,
        rollback_id,
        action.as_str()
    )
    .fetch_one(pool)
    .await
}

/// Events not accepted yet, not abandoned, and old enough that whoever recorded them is done
/// with them.
pub async fn unsent(pool: &PgPool, older_than: Duration) -> Result<Vec<Page>, sqlx::Error> {
    sqlx::query_as!(
        Page,
        r#"select id, rollback_id, action, dedup_key, body, sent_at from pagerduty_event
           where sent_at is null and abandoned is null
             and recorded_at < now() - make_interval(secs => $1)
           order by id limit 50"#,
        older_than.as_secs_f64(),
    )
    .fetch_all(pool)
    .await
}

/// Sent triggers with no resolve yet whose target has since been rolled back successfully
/// (by a rollback, never an unlock, requested after the failed one in the same incident),
/// with that rollback. Only the newest live trigger of a dedup key is resolved: an older one
/// shares its alert, and a success between the two is not a recovery from the newer failure.
pub async fn open_triggers(pool: &PgPool) -> Result<Vec<OpenTrigger>, sqlx::Error> {
    sqlx::query_as!(
        OpenTrigger,
        r#"select distinct on (t.id) t.id as trigger_id, t.dedup_key, s.id as succeeded_id
           from pagerduty_event t
           join rollback f on f.id = t.rollback_id
           join rollback s on s.cluster = f.cluster and s.namespace = f.namespace
                          and s.deployment = f.deployment and s.id > f.id
           where t.action = 'trigger' and t.sent_at is not null
             and s.state = 'succeeded' and s.kind = 'rollback'
             and s.incident is not distinct from f.incident
             and not exists (select 1 from pagerduty_event r where r.resolves = t.id)
             and not exists (select 1 from pagerduty_event n
                             where n.action = 'trigger' and n.dedup_key = t.dedup_key
                               and n.id > t.id and n.abandoned is null)
           order by t.id, s.id
           limit 50"#
    )
    .fetch_all(pool)
    .await
}

/// Serializes the sends of one dedup key (a trigger and a resolve of the same alert) until
/// the transaction ends, so PagerDuty sees them in the order [`newer_trigger`] checked.
pub async fn lock_dedup_key(tx: &mut PgConnection, dedup_key: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended($1, 0))",
        dedup_key
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// For resolve `id`: the rollback of a trigger with the same dedup key recorded after the
/// trigger it resolves (and not abandoned). Resolving then would silence that failure.
pub async fn newer_trigger(tx: &mut PgConnection, id: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select n.rollback_id from pagerduty_event r
           join pagerduty_event n on n.dedup_key = r.dedup_key and n.action = 'trigger'
                                 and n.id > r.resolves and n.abandoned is null
           where r.id = $1
           order by n.id desc limit 1"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await
}

/// Marks event `id` as never to be sent, saying why.
pub async fn abandon(tx: &mut PgConnection, id: i64, why: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update pagerduty_event set abandoned = $2 where id = $1",
        id,
        why
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Records where a rollback's page stands in its `escalate` step's result, so its card tells
/// what the sweep did after the step (the version bump wakes the card's notifier).
pub async fn record_page_result(
    tx: &mut PgConnection,
    rollback_id: i64,
    page: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update rollback set steps = jsonb_set(steps, '{escalate,pagerduty}', $2),
                              version = version + 1, updated_at = now()
           where id = $1 and steps ? 'escalate'"#,
        rollback_id,
        page
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Locks event `id` for sending unless another transaction holds it: `None` when locked
/// elsewhere, else when it was sent.
pub async fn lock_for_sending(
    tx: &mut PgConnection,
    id: i64,
) -> Result<Option<Option<DateTime<Utc>>>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select sent_at from pagerduty_event where id = $1 for update skip locked"#,
        id
    )
    .fetch_optional(&mut *tx)
    .await
}

/// Marks event `id` accepted by PagerDuty.
pub async fn mark_sent(tx: &mut PgConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update pagerduty_event set sent_at = now(), attempts = attempts + 1,
                       last_error = null
                   where id = $1"#,
        id
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Appends the audit row `action` (state unchanged) to rollback `rollback_id`.
pub async fn announce(
    tx: &mut PgConnection,
    rollback_id: i64,
    action: String,
    detail: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"insert into rollback_audit (rollback_id, actor, action, outcome,
                                                  from_state, to_state, detail)
                       select id, 'system', $2, 'applied', state, state, $3
                       from rollback where id = $1"#,
        rollback_id,
        action,
        detail
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Records a failed delivery of event `id`; after [`MAX_ATTEMPTS`] it is abandoned. Returns
/// the attempts so far and whether this one gave up.
pub async fn mark_failed(
    tx: &mut PgConnection,
    id: i64,
    error: String,
) -> Result<(i32, bool), sqlx::Error> {
    let row = sqlx::query!(
        r#"update pagerduty_event
           set attempts = attempts + 1, last_error = $2,
               abandoned = case when attempts + 1 >= $3
                                then format('gave up after %s attempts', attempts + 1) end
           where id = $1
           returning attempts, abandoned is not null as "gave_up!""#,
        id,
        error,
        MAX_ATTEMPTS
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok((row.attempts, row.gave_up))
}
