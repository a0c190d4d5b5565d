//! JSON over HTTP(S) to the services the bot reports to (PagerDuty, Jira, GitHub): one
//! request with a timeout, retried on 429, 5xx and transport errors with exponential backoff,
//! honouring `Retry-After` (seconds) up to a ceiling. The callers interpret the final answer;
//! this layer never sees what a header means, so it never logs one (tokens stay out of logs).
//!
//! A request that creates something and carries no idempotency key (a Jira or GitHub issue)
//! goes through [`JsonClient::send_creating`]: it is retried only when the answer proves
//! nothing was done (429, a 403 with `Retry-After`, a connection that was never made). A
//! timeout or a 5xx may come after the service created it, so it is handed back at once for
//! the caller to look before it creates again.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Errors of this layer: the service could not be reached, or kept refusing for now.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("client setup: {0}")]
    Setup(String),
    /// 429 or 5xx after every retry.
    #[error("unavailable after {attempts} attempt(s): HTTP {status}")]
    Unavailable { status: u16, attempts: u32 },
    /// The connection failed or timed out after every retry.
    #[error("unreachable after {attempts} attempt(s): {message}")]
    Unreachable { message: String, attempts: u32 },
}

impl OutboundError {
    /// The request may have been carried out although no success came back (a 5xx, a
    /// timeout, a connection lost mid-request).
    pub fn may_have_been_done(&self) -> bool {
        matches!(
            self,
            OutboundError::Unavailable { .. } | OutboundError::Unreachable { .. }
        )
    }
}

/// Why an exchange brought no answer.
struct NoAnswer {
    /// The connection was never made: the request certainly did nothing.
    not_sent: bool,
    message: String,
}

/// How a client retries.
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

impl Retries {
    fn backoff(&self, attempt: u32) -> Duration {
        self.backoff_base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
    }
}

/// A final answer: any status but 429, 5xx and a 403 with `Retry-After` (those are
/// retried), with its JSON body
/// (`Null` when it is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// One request as the caller builds it; built again for every attempt.
pub struct Request {
    pub method: http::Method,
    pub uri: http::Uri,
    /// Header name and value pairs (authorization included; never logged here).
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Bytes>,
}

/// A client for http and https URLs.
pub struct JsonClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    retries: Retries,
    /// Names the service in log lines.
    service: &'static str,
}

impl JsonClient {
    /// # Errors
    /// No TLS root certificates.
    pub fn new(service: &'static str) -> Result<Self, OutboundError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| OutboundError::Setup(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(JsonClient {
            client: Client::builder(TokioExecutor::new()).build(https),
            retries: Retries::default(),
            service,
        })
    }

    pub fn with_retries(mut self, retries: Retries) -> Self {
        self.retries = retries;
        self
    }

    /// Sends `request`, retrying 429, 5xx, a 403 with `Retry-After` and transport errors;
    /// returns the first other answer.
    ///
    /// # Errors
    /// `Unavailable` or `Unreachable` once the attempts are used up.
    pub async fn send(&self, request: &Request) -> Result<Answer, OutboundError> {
        self.send_retrying(request, true).await
    }

    /// Sends a request that creates something and has no idempotency key: retried only
    /// while the answer proves nothing was done (429, a 403 with `Retry-After`, no
    /// connection). A 5xx or a timeout is returned at once; the caller must look for what
    /// it created before sending again ([`OutboundError::may_have_been_done`]).
    ///
    /// # Errors
    /// `Unavailable` (a 5xx, or 429s after every retry) or `Unreachable`.
    pub async fn send_creating(&self, request: &Request) -> Result<Answer, OutboundError> {
        self.send_retrying(request, false).await
    }

    async fn send_retrying(
        &self,
        request: &Request,
        retry_uncertain: bool,
    ) -> Result<Answer, OutboundError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let wait = match self.exchange(request).await {
                // GitHub's secondary rate limit is a 403 with `Retry-After`.
                Ok((answer, retry_after))
                    if answer.status == 429
                        || answer.status >= 500
                        || (answer.status == 403 && retry_after.is_some()) =>
                {
                    let refused = answer.status < 500;
                    if attempt >= self.retries.attempts || !(refused || retry_uncertain) {
                        return Err(OutboundError::Unavailable {
                            status: answer.status,
                            attempts: attempt,
                        });
                    }
                    retry_after.unwrap_or_else(|| self.retries.backoff(attempt))
                }
                Ok((answer, _)) => return Ok(answer),
                Err(failure) => {
                    if attempt >= self.retries.attempts || !(failure.not_sent || retry_uncertain) {
                        return Err(OutboundError::Unreachable {
                            message: failure.message,
                            attempts: attempt,
                        });
                    }
                    self.retries.backoff(attempt)
                }
            };
            let wait = wait.min(self.retries.max_wait);
            tracing::warn!(
                service = self.service,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "request not answered yet; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn exchange(&self, request: &Request) -> Result<(Answer, Option<Duration>), NoAnswer> {
        let failed = |message: String| NoAnswer {
            not_sent: false,
            message,
        };
        let mut builder = http::Request::builder()
            .method(request.method.clone())
            .uri(request.uri.clone())
            .header(http::header::USER_AGENT, "rollback-bot");
        if !request
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("accept"))
        {
            builder = builder.header(http::header::ACCEPT, "application/json");
        }
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        if request.body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let http_request = builder
            .body(Full::new(request.body.clone().unwrap_or_default()))
            .map_err(|e| NoAnswer {
                not_sent: true,
                message: format!("invalid request: {e}"),
            })?;
        let exchange = async {
            let response = self
                .client
                .request(http_request)
                .await
                .map_err(|e| NoAnswer {
                    not_sent: e.is_connect(),
                    message: e.to_string(),
                })?;
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
                .map_err(|e| failed(e.to_string()))?
                .to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Ok((Answer { status, body }, retry_after))
        };
        tokio::time::timeout(self.retries.request_timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(failed("timed out".into())))
    }
}

/// An http(s) URL, or a setup error naming `what`.
///
/// # Errors
/// Not a URL, or not http(s).
pub fn parse_url(what: &str, url: &str) -> Result<http::Uri, OutboundError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| OutboundError::Setup(format!("{what} {url:?}: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(OutboundError::Setup(format!(
            "{what} {url:?}: not an http(s) URL"
        )));
    }
    Ok(uri)
}

/// `Retry-After` in seconds (an HTTP date is not honoured and falls back to the backoff).
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds() {
        assert_eq!(parse_retry_after(" 3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn backoff_doubles() {
        let r = Retries {
            backoff_base: Duration::from_millis(100),
            ..Retries::default()
        };
        assert_eq!(r.backoff(1), Duration::from_millis(100));
        assert_eq!(r.backoff(3), Duration::from_millis(400));
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(parse_url("x", "http://127.0.0.1:1/a").is_ok());
        assert!(parse_url("x", "ftp://x/").is_err());
    }
}
