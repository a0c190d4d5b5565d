//! The HTTP server: the Slack endpoints (`slack.rs`) and the operational ones —
//! `/healthz` (liveness), `/readyz` (Postgres reachable and migrated) and `/metrics`.

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub mod slack;

use crate::app::AppState;
use crate::db;
use crate::telemetry::metrics;

/// The whole application router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(slack::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(middleware::from_fn(count_requests))
        .with_state(state)
}

/// Liveness: the process is up and serving.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: Postgres answers and every migration this binary embeds has been applied.
async fn readyz(State(state): State<AppState>) -> Response {
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
