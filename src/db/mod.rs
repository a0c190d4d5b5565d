//! All SQL: the Postgres connection pool and the schema migrations under `migrations/`
//! (here), and one module per table family. Its errors name the rows, never Slack.
//!
//! - [`rollbacks`]: requests, optimistic transitions with their audit rows, leases.
//! - [`audit`]: the audit trail's hash-chain verifier.
//! - [`intents`]: recorded intents that make the notify and ticket steps exactly once.
//! - [`pages`]: the PagerDuty events of escalated rollbacks.
//! - [`cards`]: the `slack_card` and `slack_chart` tables.
//! - [`seen_requests`]: single use of signed slash commands (`slack_request_seen`).

pub mod audit;
pub mod cards;
pub mod intents;
pub mod pages;
pub mod rollbacks;
pub mod seen_requests;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The migrations, embedded in the binary at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects with a bounded pool; `acquire_timeout` keeps a slow database from holding
/// Slack's 3-second acknowledgement hostage forever.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(2))
        .connect(url)
        .await
}

/// This installation's id (twelve hex digits, made by its first migration).
pub async fn installation_id(pool: &PgPool) -> Result<String, sqlx::Error> {
    sqlx::query_scalar!("select id from installation")
        .fetch_one(pool)
        .await
}

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Descriptions of the embedded migrations not (successfully) applied to the database.
pub async fn pending_migrations(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    // Runtime query: the bookkeeping table belongs to sqlx, not to our schema.
    let applied: Vec<i64> =
        sqlx::query_scalar("select version from _sqlx_migrations where success order by version")
            .fetch_all(pool)
            .await
            .or_else(|e| match &e {
                sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01") => Ok(vec![]),
                _ => Err(e),
            })?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect())
}
