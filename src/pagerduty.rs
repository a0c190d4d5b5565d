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

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::{Value, json};

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
    /// 429 or 5xx after every retry.
    #[error("PagerDuty unavailable after {attempts} attempt(s): HTTP {status}")]
    Unavailable { status: u16, attempts: u32 },
    /// The connection failed or timed out after every retry.
    #[error("PagerDuty unreachable after {attempts} attempt(s): {message}")]
    Unreachable { message: String, attempts: u32 },
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
        payload["summary"] = json!(crate::slack::render::truncate(&alert.summary, MAX_SUMMARY));
        body["payload"] = payload;
    }
    body
}

/// How the client retries.
#[derive(Debug, Clone)]
pub struct Retries {
    pub attempts: u32,
    pub backoff_base: Duration,
    /// The longest wait between two attempts, `Retry-After` included.
    pub max_wait: Duration,
    pub request_timeout: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            attempts: 4,
            backoff_base: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A client for one integration (routing key).
pub struct PagerDuty {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: http::Uri,
    routing_key: String,
    retries: Retries,
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
        let url: http::Uri = events_url
            .parse()
            .map_err(|e| PagerDutyError::Setup(format!("events URL {events_url:?}: {e}")))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) {
            return Err(PagerDutyError::Setup(format!(
                "events URL {events_url:?}: not an http(s) URL"
            )));
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| PagerDutyError::Setup(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(PagerDuty {
            client: Client::builder(TokioExecutor::new()).build(https),
            url,
            routing_key: routing_key.to_owned(),
            retries: Retries::default(),
        })
    }

    pub fn with_retries(mut self, retries: Retries) -> Self {
        self.retries = retries;
        self
    }

    /// Sends one event (a body from [`event_body`]), retrying 429, 5xx and transport errors.
    /// Returns the `dedup_key` PagerDuty answered with.
    ///
    /// # Errors
    /// [`PagerDutyError::Rejected`] at once for a 4xx other than 429; `Unavailable` or
    /// `Unreachable` once the attempts are used up.
    pub async fn send(&self, body: &Value) -> Result<String, PagerDutyError> {
        let mut body = body.clone();
        body["routing_key"] = json!(self.routing_key);
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let wait = match self.post(bytes.clone()).await {
                Ok(Answer {
                    status: 202, body, ..
                }) => {
                    return Ok(body["dedup_key"].as_str().unwrap_or_default().to_owned());
                }
                Ok(Answer {
                    status,
                    retry_after,
                    ..
                }) if status == 429 || status >= 500 => {
                    if attempt >= self.retries.attempts {
                        return Err(PagerDutyError::Unavailable {
                            status,
                            attempts: attempt,
                        });
                    }
                    retry_after.unwrap_or_else(|| self.backoff(attempt))
                }
                Ok(Answer { status, body, .. }) => {
                    return Err(PagerDutyError::Rejected {
                        status,
                        message: rejection(&body),
                    });
                }
                Err(message) => {
                    if attempt >= self.retries.attempts {
                        return Err(PagerDutyError::Unreachable {
                            message,
                            attempts: attempt,
                        });
                    }
                    self.backoff(attempt)
                }
            };
            let wait = wait.min(self.retries.max_wait);
            tracing::warn!(
                attempt,
                wait_ms = wait.as_millis() as u64,
                "PagerDuty event not accepted yet; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.retries
            .backoff_base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
    }

    async fn post(&self, body: Bytes) -> Result<Answer, String> {
        let request = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "rollback-bot")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Ok(Answer {
                status,
                body,
                retry_after,
            })
        };
        tokio::time::timeout(self.retries.request_timeout, exchange)
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
    }
}

struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<Duration>,
}

/// `Retry-After` in seconds (PagerDuty sends seconds; an HTTP date is not honoured and
/// falls back to the backoff).
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
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
    fn retry_after_is_read_from_the_answer() {
        assert_eq!(parse_retry_after(" 3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn the_routing_key_is_not_in_debug_output() {
        let pd = PagerDuty::new("http://127.0.0.1:9/v2/enqueue", "R0UTINGKEYSECRET").unwrap();
        assert!(!format!("{pd:?}").contains("R0UTINGKEYSECRET"));
        assert!(PagerDuty::new("ftp://x/", "k").is_err());
    }
}
