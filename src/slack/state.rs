//! What every command and click handler (and the HTTP routers) read: the pool, the
//! configuration, the Kubernetes executor, the service catalog and the Slack client.
//! Built by `crate::startup`.

use std::sync::Arc;

use sqlx::PgPool;

use crate::clients::k8s::Executor;
use crate::clients::slack::SlackApi;
use crate::config::{Config, Secrets};
use crate::engine::catalog::Catalog;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: Arc<Config>,
    pub secrets: Arc<Secrets>,
    pub executor: Arc<Executor>,
    /// The services `/rollback` knows: `[services]` plus those discovered in the cluster.
    pub catalog: Catalog,
    /// The Slack Web API client; none without `SLACK_BOT_TOKEN` (nothing is posted then).
    pub slack: Option<Arc<SlackApi>>,
}
