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
//! be down (503): the HTTP plumbing and the fault injection are the shared core's
//! (`http_standin.rs`).
//!
//! Used as `support::pagerduty_standin` (on `support::http_standin`).

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::http_standin::{self, Api, Incoming, Reply, StandIn};

pub use super::http_standin::Call;

/// A 32-character integration key, as PagerDuty issues them.
pub const ROUTING_KEY: &str = "R0UT1NGKEY0123456789abcdef012345";

/// What an event call was about.
pub trait EventCall {
    fn action(&self) -> &str;
    fn accepted(&self) -> bool;
}

impl EventCall for Call {
    fn action(&self) -> &str {
        self.body["event_action"].as_str().unwrap_or("")
    }

    fn accepted(&self) -> bool {
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

/// The Events API: the contract and the alerts.
#[derive(Default)]
pub struct Events {
    alerts: Mutex<BTreeMap<String, Alert>>,
    generated: Mutex<u64>,
}

pub struct PagerDutyStandIn {
    http: StandIn<Events>,
}

impl PagerDutyStandIn {
    pub async fn start() -> Self {
        PagerDutyStandIn {
            http: StandIn::start(Events::default()).await,
        }
    }

    /// The events URL (for `pagerduty.events_url`).
    pub fn events_url(&self) -> String {
        self.http.url("/v2/enqueue")
    }

    /// Answers the next `n` calls 429 with `Retry-After: secs`.
    pub fn rate_limit_next(&self, n: u32, secs: u32) {
        self.http.rate_limit_next(n, secs);
    }

    /// Answers every call 503 while `down`.
    pub fn set_down(&self, down: bool) {
        self.http.set_down(down);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.http.calls()
    }

    /// Accepted events with `action`.
    pub fn accepted(&self, action: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.accepted() && c.action() == action)
            .collect()
    }

    pub fn violations(&self) -> Vec<String> {
        self.http.violations()
    }

    pub fn alerts(&self) -> BTreeMap<String, Alert> {
        self.http.api().alerts.lock().unwrap().clone()
    }

    /// Polls `check` until it returns `Some`, for up to `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        http_standin::poll(
            &format!("PagerDuty: {what}"),
            timeout,
            || check(self),
            || format!("calls: {:#?}", self.calls()),
        )
        .await
    }
}

/// The contract's checks; the errors PagerDuty would list.
fn contract_errors(request: &Incoming, body: &Value) -> Vec<String> {
    let mut errors = vec![];
    if !request.is_json() {
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

impl Api for Events {
    fn throttled(&self) -> Value {
        json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly"})
    }

    fn handle(&self, request: &Incoming) -> Reply {
        if request.method != "POST" || request.path != "/v2/enqueue" {
            return Reply::breach(404, json!({"message": "not found"}), "unknown endpoint");
        }
        let body = &request.body;
        let errors = if body.is_object() {
            contract_errors(request, body)
        } else {
            vec!["body is not a JSON object".into()]
        };
        if !errors.is_empty() {
            return Reply::breach(
                400,
                json!({"status": "invalid event", "message": "Event object is invalid",
                       "errors": errors}),
                format!("{}: {body}", errors.join("; ")),
            );
        }
        let key = body["dedup_key"].as_str().map_or_else(
            || {
                let mut n = self.generated.lock().unwrap();
                *n += 1;
                format!("generated-{n}")
            },
            str::to_owned,
        );
        let mut alerts = self.alerts.lock().unwrap();
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
        Reply::ok(
            202,
            json!({"status": "success", "message": "Event processed", "dedup_key": key}),
        )
    }
}
