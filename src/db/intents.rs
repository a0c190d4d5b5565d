//! Recorded intents of the post-rollback effects (`post_rollback_action`): the DM to the
//! deployer and the post-incident ticket. An intent is recorded before the external call and
//! completed with its result after it, so a step that runs again after a crash knows whether
//! the call is done (report it), never started (make it), or may have happened (look it up
//! in the external system before making it again).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

/// Which effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    DeployerDm,
    Ticket,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::DeployerDm => "deployer_dm",
            Action::Ticket => "ticket",
        }
    }
}

/// What [`begin`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Begun {
    /// Recorded now: nothing was sent before.
    Fresh,
    /// Recorded by an earlier run that did not record a result: the call may have happened.
    Pending { recorded_at: DateTime<Utc> },
    /// Done before, with this result.
    Done(Value),
}

/// Records the intent of `action` for rollback `rollback_id`, or reports the earlier one.
///
/// # Errors
/// Database errors.
pub async fn begin(pool: &PgPool, rollback_id: i64, action: Action) -> Result<Begun, sqlx::Error> {
    let inserted = sqlx::query_scalar!(
        r#"insert into post_rollback_action (rollback_id, action) values ($1, $2)
           on conflict do nothing returning rollback_id"#,
        rollback_id,
        action.as_str()
    )
    .fetch_optional(pool)
    .await?;
    if inserted.is_some() {
        return Ok(Begun::Fresh);
    }
    let row = sqlx::query!(
        r#"select recorded_at, result from post_rollback_action
           where rollback_id = $1 and action = $2"#,
        rollback_id,
        action.as_str()
    )
    .fetch_one(pool)
    .await?;
    Ok(match row.result {
        Some(result) => Begun::Done(result),
        None => Begun::Pending {
            recorded_at: row.recorded_at,
        },
    })
}

/// Records the result of a call that happened (or was found to have happened).
///
/// # Errors
/// Database errors.
pub async fn complete(
    pool: &PgPool,
    rollback_id: i64,
    action: Action,
    result: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update post_rollback_action
           set result = $3, done_at = now(), attempts = attempts + 1, last_error = null
           where rollback_id = $1 and action = $2"#,
        rollback_id,
        action.as_str(),
        result
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed attempt; the intent stays open (a later run looks the effect up first).
///
/// # Errors
/// Database errors.
pub async fn failed(
    pool: &PgPool,
    rollback_id: i64,
    action: Action,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"update post_rollback_action set attempts = attempts + 1, last_error = $3
           where rollback_id = $1 and action = $2"#,
        rollback_id,
        action.as_str(),
        error
    )
    .execute(pool)
    .await?;
    Ok(())
}
