//! Retention of what finished rollbacks keep: a periodic purge of the full plans (the target
//! pod template, env values included) older than `retention.plan_days`. Each purge is audited;
//! the fingerprint and a short summary stay (see [`repo::purge_finished_plans`]).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::db::rollbacks as repo;

/// How often the purge runs. Plans are kept for days, so an hour late is nothing; every
/// replica runs it, and the purge is one idempotent statement.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Purges at start and then every `every` until `shutdown`.
pub async fn run(pool: PgPool, keep: Duration, every: Duration, shutdown: CancellationToken) {
    loop {
        match repo::purge_finished_plans(&pool, keep).await {
            Ok(ids) if !ids.is_empty() => info!(count = ids.len(), ?ids, "purged old plans"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "purging old plans failed; will retry"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
