//! A local stand-in for PagerDuty's Events API v2 (`POST /v2/enqueue`): an axum server on
//! 127.0.0.1:0 that records every call and enforces the documented contract the bot relies
//! on — JSON body, `routing_key` equal to the integration key (32 characters), `event_action`
//! `trigger` | `acknowledge` | `resolve`, `dedup_key` ≤ 255 characters (required for
//! acknowledge/resolve), and for a trigger `payload.summary` (≤ 1024), `payload.source` and
//! `payload.severity` (`critical` | `error` | `warning` | `info`). A valid event is answered
//! 202 `{"status":"success","message":"Event processed","dedup_key":…}`, an invalid one 400
//! `{"status":"invalid event","message":"Event object is invalid","errors":[…]}` and recorded
//! as a violation. It models alerts as PagerDuty does: a trigger opens the alert of its dedup
//! key or updates the open one, a resolve closes it. It can answer 429 with `Retry-After` or
//! be down (503).
//!
//! Include it with `#[path = "support/pagerduty_standin.rs"] mod pagerduty_standin;`.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// A 32-character integration key, as PagerDuty issues them.
pub const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdef012345";

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    pub body: Value,
    /// HTTP status answered.
    pub status: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Call {
    pub fn action(&self) -> &str {
        self.body["event_action"].as_str().unwrap_or("")
    }

    pub fn accepted(&self) -> bool {
        self.status == 202
    }
}

/// An alert as PagerDuty would hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub summary: String,
    pub open: bool,
    /// Accepted triggers that opened or updated it.
    pub triggers: usize,
}

#[derive(Default)]
struct Inner {
    calls: Mutex<Vec<Call>>,
    violations: Mutex<Vec<String>>,
    alerts: Mutex<BTreeMap<String, Alert>>,
    rate_limit_next: AtomicU32,
    retry_after_secs: AtomicU32,
    down: AtomicBool,
}

pub struct PagerDutyStandIn {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl PagerDutyStandIn {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/v2/enqueue", post(enqueue))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        PagerDutyStandIn { addr, inner }
    }

    /// The events URL (for `pagerduty.events_url`).
    pub fn events_url(&self) -> String {
        format!("http://{}/v2/enqueue", self.addr)
    }

    /// Answers the next `n` calls 429 with `Retry-After: secs`.
    pub fn rate_limit_next(&self, n: u32, secs: u32) {
        self.inner.retry_after_secs.store(secs, Ordering::SeqCst);
        self.inner.rate_limit_next.store(n, Ordering::SeqCst);
    }

    /// Answers every call 503 while `down`.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().unwrap().clone()
    }

    /// Accepted events with `action`.
    pub fn accepted(&self, action: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.accepted() && c.action() == action)
            .collect()
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner.violations.lock().unwrap().clone()
    }

    pub fn alerts(&self) -> BTreeMap<String, Alert> {
        self.inner.alerts.lock().unwrap().clone()
    }

    /// Polls `check` until it returns `Some`, for up to `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(t) = check(self) {
                return t;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "PagerDuty stand-in: timed out waiting for {what}; calls: {:#?}",
                self.calls()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The contract's checks; the errors PagerDuty would list.
fn contract_errors(headers: &HeaderMap, body: &Value) -> Vec<String> {
    let mut errors = vec![];
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        errors.push("Content-Type must be application/json".into());
    }
    match body["routing_key"].as_str() {
        None => errors.push("'routing_key' is missing or blank".into()),
        Some(key) if key.len() != 32 => {
            errors.push("'routing_key' must be 32 characters".into());
        }
        Some(key) if key != ROUTING_KEY => errors.push("'routing_key' is invalid".into()),
        Some(_) => {}
    }
    let action = body["event_action"].as_str().unwrap_or("");
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        errors.push("'event_action' must be one of trigger, acknowledge, resolve".into());
    }
    match body["dedup_key"].as_str() {
        Some(key) if key.chars().count() > 255 => {
            errors.push("'dedup_key' must be at most 255 characters".into());
        }
        None if action != "trigger" => errors.push("'dedup_key' is missing".into()),
        _ => {}
    }
    if action == "trigger" {
        let payload = &body["payload"];
        match payload["summary"].as_str() {
            None | Some("") => errors.push("'payload.summary' is missing or blank".into()),
            Some(s) if s.chars().count() > 1024 => {
                errors.push("'payload.summary' must be at most 1024 characters".into());
            }
            Some(_) => {}
        }
        if payload["source"].as_str().is_none_or(str::is_empty) {
            errors.push("'payload.source' is missing or blank".into());
        }
        let severity = payload["severity"].as_str().unwrap_or("");
        if !["critical", "error", "warning", "info"].contains(&severity) {
            errors.push("'payload.severity' must be one of critical, error, warning, info".into());
        }
    }
    errors
}

async fn enqueue(State(inner): State<Arc<Inner>>, headers: HeaderMap, raw: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let record = |status: u16| {
        inner.calls.lock().unwrap().push(Call {
            body: body.clone(),
            status,
            at: std::time::Instant::now(),
        });
    };
    if inner.down.load(Ordering::SeqCst) {
        record(503);
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let limited = inner
        .rate_limit_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if limited {
        record(429);
        let secs = inner.retry_after_secs.load(Ordering::SeqCst).to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs)],
            axum::Json(json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly"})),
        )
            .into_response();
    }
    let errors = if body.is_object() {
        contract_errors(&headers, &body)
    } else {
        vec!["body is not a JSON object".into()]
    };
    if !errors.is_empty() {
        record(400);
        inner
            .violations
            .lock()
            .unwrap()
            .push(format!("{}: {body}", errors.join("; ")));
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"status": "invalid event", "message": "Event object is invalid",
                              "errors": errors}),
            ),
        )
            .into_response();
    }
    let key = body["dedup_key"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("generated-{}", inner.calls.lock().unwrap().len()));
    {
        let mut alerts = inner.alerts.lock().unwrap();
        match body["event_action"].as_str() {
            Some("trigger") => {
                let alert = alerts.entry(key.clone()).or_insert(Alert {
                    summary: String::new(),
                    open: true,
                    triggers: 0,
                });
                if !alert.open {
                    // A resolved alert is not reopened: a new trigger opens a new incident.
                    alert.triggers = 0;
                    alert.open = true;
                }
                alert.summary = body["payload"]["summary"].as_str().unwrap_or("").into();
                alert.triggers += 1;
            }
            Some("resolve") => {
                if let Some(alert) = alerts.get_mut(&key) {
                    alert.open = false;
                }
            }
            _ => {}
        }
    }
    record(202);
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"status": "success", "message": "Event processed", "dedup_key": key})),
    )
        .into_response()
}
