//! The PagerDuty Events API v2 client: `trigger` and `resolve` events, one JSON POST each.
//!
//! Contract (PagerDuty developer docs, "Events API v2"): `POST <events_url>` with
//! `routing_key` (the integration key, in the body; there is no auth header),
//! `event_action`, `dedup_key` and, for a trigger, `payload.summary` (≤ 1024 characters),
//! `payload.source` and `payload.severity`. 202 accepts the event; 400 rejects it for good;
//! 429 and 5xx are retried with backoff, honouring `Retry-After`. The same `dedup_key`
//! updates the open alert instead of opening another, which makes a repeated trigger (after
//! a crash between the call and its record) harmless.
//!
//! The routing key comes only from the environment and is never logged or put in an error.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

pub use crate::support::http::Retries;
use crate::support::http::{self as outbound, JsonClient, OutboundError, Request};

/// PagerDuty's events endpoint (US service region), the default for `pagerduty.events_url`.
pub const EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// `payload.summary` limit.
pub const MAX_SUMMARY: usize = 1024;

/// Errors of the PagerDuty layer.
#[derive(Debug, thiserror::Error)]
pub enum PagerDutyError {
    #[error("PagerDuty client setup: {0}")]
    Setup(String),
    /// 400: the event is invalid; sending it again will not help.
    #[error("PagerDuty rejected the event ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// 429, 5xx or no connection after every retry.
    #[error("PagerDuty {0}")]
    Outbound(#[from] OutboundError),
}

/// What an event does to the alert its `dedup_key` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Trigger,
    Resolve,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Trigger => "trigger",
            Action::Resolve => "resolve",
        }
    }
}

/// The alert a trigger opens (`payload`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub summary: String,
    pub source: String,
    /// `critical`, `error`, `warning` or `info`.
    pub severity: String,
    pub component: String,
    pub group: String,
    pub class: String,
    pub custom_details: Value,
}

/// The body of one event, without the routing key (added when sent, so it is never stored).
pub fn event_body(action: Action, dedup_key: &str, alert: Option<&Alert>) -> Value {
    let mut body = json!({
        "event_action": action.as_str(),
        "dedup_key": dedup_key,
        "client": "rollback-bot",
    });
    if let Some(alert) = alert {
        let mut payload = serde_json::to_value(alert).unwrap_or_else(|_| json!({}));
        payload["summary"] = json!(crate::support::text::truncate(&alert.summary, MAX_SUMMARY));
        body["payload"] = payload;
    }
    body
}

/// A client for one integration (routing key).
pub struct PagerDuty {
    client: JsonClient,
    url: http::Uri,
    routing_key: String,
}

impl std::fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDuty")
            .field("url", &self.url)
            .field("routing_key", &"<set>")
            .finish()
    }
}

impl PagerDuty {
    /// A client posting to `events_url` (http or https) with `routing_key`.
    ///
    /// # Errors
    /// A URL that is not http(s), or no TLS root certificates.
    pub fn new(events_url: &str, routing_key: &str) -> Result<Self, PagerDutyError> {
        let url = outbound::parse_url("events URL", events_url)
            .map_err(|e| PagerDutyError::Setup(e.to_string()))?;
        Ok(PagerDuty {
            client: JsonClient::new("pagerduty")?,
            url,
            routing_key: routing_key.to_owned(),
        })
    }

    pub fn with_retries(mut self, retries: Retries) -> Self {
        self.client = self.client.with_retries(retries);
        self
    }

    /// Sends one event (a body from [`event_body`]), retrying 429, 5xx and transport errors.
    /// Returns the `dedup_key` PagerDuty answered with.
    ///
    /// # Errors
    /// [`PagerDutyError::Rejected`] at once for a 4xx other than 429; `Outbound` once the
    /// attempts are used up.
    pub async fn send(&self, body: &Value) -> Result<String, PagerDutyError> {
        let mut body = body.clone();
        body["routing_key"] = json!(self.routing_key);
        let request = Request {
            method: http::Method::POST,
            uri: self.url.clone(),
            headers: vec![],
            body: Some(Bytes::from(serde_json::to_vec(&body).unwrap_or_default())),
        };
        let answer = self.client.send(&request).await?;
        if answer.status == 202 {
            return Ok(answer.body["dedup_key"]
                .as_str()
                .unwrap_or_default()
                .to_owned());
        }
        Err(PagerDutyError::Rejected {
            status: answer.status,
            message: rejection(&answer.body),
        })
    }
}

/// PagerDuty's reason for a 400, e.g. `Event object is invalid: ["'payload' is missing"]`.
fn rejection(body: &Value) -> String {
    let message = body["message"].as_str().unwrap_or("no message");
    match body["errors"].as_array() {
        Some(errors) if !errors.is_empty() => format!(
            "{message}: {}",
            errors
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_carries_the_required_fields_and_no_routing_key() {
        let alert = Alert {
            summary: "x".repeat(2000),
            source: "rollback-bot".into(),
            severity: "critical".into(),
            component: "web".into(),
            group: "local/ns".into(),
            class: "rollback_failed".into(),
            custom_details: json!({"rollback": 1}),
        };
        let body = event_body(Action::Trigger, "rollback-bot/local/ns/web", Some(&alert));
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(body["dedup_key"], "rollback-bot/local/ns/web");
        assert_eq!(body["payload"]["severity"], "critical");
        assert_eq!(body["payload"]["source"], "rollback-bot");
        assert_eq!(
            body["payload"]["summary"].as_str().unwrap().chars().count(),
            MAX_SUMMARY
        );
        assert!(body.get("routing_key").is_none());
        let resolve = event_body(Action::Resolve, "k", None);
        assert!(resolve.get("payload").is_none());
    }

    #[test]
    fn rejections_name_pagerdutys_errors() {
        let body = json!({"status": "invalid event", "message": "Event object is invalid",
                          "errors": ["'payload.severity' is missing"]});
        assert_eq!(
            rejection(&body),
            "Event object is invalid: 'payload.severity' is missing"
        );
    }

    #[test]
    fn the_routing_key_is_not_in_debug_output() {
        let pd = PagerDuty::new("http://127.0.0.1:9/v2/enqueue", "R0UTINGKEYSECRET").unwrap();
        assert!(!format!("{pd:?}").contains("R0UTINGKEYSECRET"));
        assert!(PagerDuty::new("ftp://x/", "k").is_err());
    }
}
