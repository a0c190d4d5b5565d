//! Single use of signed slash commands: a command that changes something (a rollback request,
//! a cancel) is acted on only the first time its signature is seen, so a request captured and
//! sent again inside Slack's signature window does nothing twice. The record lives in
//! Postgres (`slack_request_seen`), so it holds across replicas.
//!
//! Socket Mode has no signatures and needs none: envelopes arrive over a socket the bot opened
//! with its own token.

use sqlx::PgPool;

/// Records `signature`; true the first time it is seen, false for a replay. Signatures older
/// than `remember_secs` are forgotten in the same statement.
///
/// # Errors
/// Database errors: the caller must then act on nothing (fail closed).
pub async fn first_delivery(
    pool: &PgPool,
    signature: &str,
    remember_secs: f64,
) -> Result<bool, sqlx::Error> {
    let recorded = sqlx::query!(
        r#"with forgotten as (
               delete from slack_request_seen
               where seen_at < now() - make_interval(secs => $2)
           )
           insert into slack_request_seen (signature) values ($1)
           on conflict (signature) do nothing"#,
        signature,
        remember_secs
    )
    .execute(pool)
    .await?;
    Ok(recorded.rows_affected() == 1)
}
