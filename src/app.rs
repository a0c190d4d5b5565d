//! The application's shared state, handed to every HTTP handler and worker.

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::{Config, Secrets};
use crate::k8s::Executor;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: Arc<Config>,
    pub secrets: Arc<Secrets>,
    pub executor: Arc<Executor>,
}
