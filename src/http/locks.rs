//! `GET /v1/locks/{cluster}/{namespace}/{deployment}`: may a CI/CD pipeline deploy? Read-only,
//! on the Slack-facing listener (pipelines may run outside the cluster), authenticated with
//! `Authorization: Bearer <ROLLBACK_BOT_LOCK_API_TOKEN>`.
//!
//! The answer is the Deployment's lock as its annotations say (src/clients/k8s/lock.rs), read through
//! the executor's client for that cluster: locked or not, by which rollback, since when, the
//! incident and its link. Without the token configured the endpoint does not exist (404).
//! The token is compared in constant time (of equal-length digests) and never logged.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clients::k8s::lock::{self, Lock};
use crate::clients::k8s::{self, Target};
use crate::config::{is_dns_label, is_dns_subdomain};
use crate::slack::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/locks/{cluster}/{namespace}/{deployment}",
        get(get_lock),
    )
}

/// Whether the request's `Authorization` header carries `expected` as a bearer token.
/// Both sides are hashed first, so the comparison takes the same time whatever the length.
pub fn authorized(headers: &HeaderMap, expected: &str) -> bool {
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (
        Sha256::digest(presented.trim().as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    bool::from(a.ct_eq(&b))
}

/// The answer for `target` with `lock` (the lock's card link when the incident is no link).
pub fn answer(target: &Target, lock: Option<&Lock>, card_link: Option<&str>) -> Value {
    let mut out = json!({
        "cluster": target.cluster,
        "namespace": target.namespace,
        "deployment": target.deployment,
        "locked": lock.is_some(),
    });
    if let Some(lock) = lock {
        let incident_link = lock
            .incident
            .as_deref()
            .filter(|i| i.starts_with("https://") || i.starts_with("http://"))
            .or(card_link);
        out["lock"] = json!({
            "reason": lock.reason,
            "rollback": lock.rollback_id,
            "service": lock.service,
            "since": lock.since,
            "incident": lock.incident,
            "incident_link": incident_link,
            "approver": lock.approver,
            "faulty_revisions": lock.faulty_revisions,
            "earlier_rollbacks": lock.earlier_rollbacks,
            "unlock": format!(
                "/rollback unlock {} <fix reference>",
                lock.service.as_deref().unwrap_or(&target.deployment)
            ),
        });
    }
    out
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn get_lock(
    State(state): State<AppState>,
    Path((cluster, namespace, deployment)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = state.secrets.lock_api_token.as_deref() else {
        return error(
            StatusCode::NOT_FOUND,
            "the lock API is not enabled (ROLLBACK_BOT_LOCK_API_TOKEN)".into(),
        );
    };
    if !authorized(&headers, token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "a valid bearer token is required" })),
        )
            .into_response();
    }
    if !is_dns_label(&namespace) || !is_dns_subdomain(&deployment) {
        return error(
            StatusCode::BAD_REQUEST,
            "namespace and deployment must be Kubernetes names".into(),
        );
    }
    let target = Target::new(cluster, namespace, deployment);
    let lock = match lock::read(&state.executor, &target).await {
        Ok(lock) => lock,
        Err(e) => return read_error(&target, &e),
    };
    let card_link = match lock.as_ref().and_then(|l| l.rollback_id) {
        Some(id) => crate::db::cards::lock_card_permalink(&state.pool, id).await,
        None => None,
    };
    Json(answer(&target, lock.as_ref(), card_link.as_deref())).into_response()
}

fn read_error(target: &Target, e: &k8s::Error) -> Response {
    match e {
        k8s::Error::UnknownCluster { .. } => error(
            StatusCode::NOT_FOUND,
            format!("unknown cluster {:?}", target.cluster),
        ),
        k8s::Error::UnknownDeployment { .. } => error(
            StatusCode::NOT_FOUND,
            format!("deployment {target} not found"),
        ),
        k8s::Error::Forbidden { .. } => error(
            StatusCode::FORBIDDEN,
            format!(
                "rollback-bot may not read deployments in namespace {:?}",
                target.namespace
            ),
        ),
        e => {
            tracing::warn!(%target, error = %e, "lock API: cannot read the deployment");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the cluster cannot be read right now; try again".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use chrono::{DateTime, Utc};

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        assert!(authorized(&headers("Bearer s3cret"), "s3cret"));
        assert!(!authorized(&headers("Bearer s3cre"), "s3cret"));
        assert!(!authorized(&headers("Bearer s3cret2"), "s3cret"));
        assert!(!authorized(&headers("Basic s3cret"), "s3cret"));
        assert!(!authorized(&headers("s3cret"), "s3cret"));
        assert!(!authorized(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn the_answer_names_rollback_since_incident_and_unlock() {
        let target = Target::new("prod", "shop", "web");
        assert_eq!(
            answer(&target, None, None),
            json!({"cluster": "prod", "namespace": "shop", "deployment": "web", "locked": false})
        );
        let lock = Lock {
            reason: "rollback #42".into(),
            rollback_id: Some(42),
            service: Some("web-svc".into()),
            incident: Some("INC-7".into()),
            since: Some(
                DateTime::parse_from_rfc3339("2026-11-22T17:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
            ),
            ..Lock::default()
        };
        let a = answer(&target, Some(&lock), Some("https://slack.example/card"));
        assert_eq!(a["locked"], true);
        assert_eq!(a["lock"]["rollback"], 42);
        assert_eq!(a["lock"]["since"], "2026-11-22T17:00:00Z");
        assert_eq!(a["lock"]["incident_link"], "https://slack.example/card");
        assert_eq!(
            a["lock"]["unlock"],
            "/rollback unlock web-svc <fix reference>"
        );
        let mut linked = lock.clone();
        linked.incident = Some("https://incidents.example/INC-7".into());
        let a = answer(&target, Some(&linked), Some("https://slack.example/card"));
        assert_eq!(
            a["lock"]["incident_link"],
            "https://incidents.example/INC-7"
        );
    }
}
