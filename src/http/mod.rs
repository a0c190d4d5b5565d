//! The HTTP servers. Two listeners, so the address Slack (and the internet) reaches exposes
//! only what Slack needs:
//! - [`router`] on `server.listen`: the Slack endpoints (`slack.rs`), the pipelines' lock
//!   query (`locks.rs`, bearer token) and `/healthz`;
//! - [`admin_router`] on `server.admin_listen`: `/healthz` (liveness), `/readyz` (Postgres
//!   reachable and migrated, Slack able to reach the bot) and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub mod locks;
pub mod slack;

use crate::db;
use crate::slack::state::AppState;
use crate::support::readiness::Readiness;
use crate::support::telemetry::metrics;

/// The Slack-facing router (`server.listen`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(slack::routes())
        .merge(locks::routes())
        .route("/healthz", get(healthz))
        .layer(middleware::from_fn(count_requests))
        .with_state(state)
}

/// What the operational endpoints read.
#[derive(Clone)]
struct Admin {
    pool: sqlx::PgPool,
    readiness: Arc<Readiness>,
}

/// The operational router (`server.admin_listen`).
pub fn admin_router(state: &AppState, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(middleware::from_fn(count_requests))
        .with_state(Admin {
            pool: state.pool.clone(),
            readiness,
        })
}

/// Liveness: the process is up and serving.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: Slack can reach the bot, the engine's workers run, Postgres answers, and every
/// migration this binary embeds has been applied. Not ready answers 503 with the reason.
async fn readyz(State(state): State<Admin>) -> Response {
    if let Some(problem) = state.readiness.problem() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")).into_response();
    }
    match db::pending_migrations(&state.pool).await {
        Ok(pending) if pending.is_empty() => (StatusCode::OK, "ready\n").into_response(),
        Ok(pending) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("migrations not applied: {}\n", pending.join(", ")),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "database unreachable\n".to_string(),
            )
                .into_response()
        }
    }
}

async fn metrics_text() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics().render(),
    )
}

/// Counts requests by matched route (not raw path, so ids don't explode the label set).
async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    metrics().http_request(&route, response.status().as_u16());
    response
}
