//! The PagerDuty events of escalated rollbacks (`pagerduty_event`): recorded before they are
//! sent, sent at most once under a row lock, resolved when the target recovers.

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

/// Events not accepted yet and old enough that whoever recorded them is done with them;
/// after [`MAX_ATTEMPTS`] the sweep gives up (the card and the logs show the last error).
pub async fn unsent(pool: &PgPool, older_than: Duration) -> Result<Vec<Page>, sqlx::Error> {
    sqlx::query_as!(
        Page,
        r#"select id, rollback_id, action, dedup_key, body, sent_at from pagerduty_event
           where sent_at is null and recorded_at < now() - make_interval(secs => $1)
             and attempts < $2
           order by id limit 50"#,
        older_than.as_secs_f64(),
        MAX_ATTEMPTS
    )
    .fetch_all(pool)
    .await
}

/// Sent triggers with no resolve yet whose target has since been rolled back successfully
/// (by a rollback, never an unlock, requested after the failed one in the same incident),
/// with that rollback.
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
           order by t.id, s.id
           limit 50"#
    )
    .fetch_all(pool)
    .await
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

/// Records a failed delivery of event `id`.
pub async fn mark_failed(tx: &mut PgConnection, id: i64, error: String) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update pagerduty_event set attempts = attempts + 1, last_error = $2
                   where id = $1"#,
        id,
        error
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}
