//! Prometheus's HTTP API as recovery validation needs it: instant queries
//! (`GET /api/v1/query`) that must answer one number, and range queries
//! (`GET /api/v1/query_range`) that must answer one series (the recovery chart), with an
//! optional bearer token read from the environment. Also the plain HTTP GET and POST with a
//! timeout that the health check and the chart upload use, so all share one client. Answers
//! are parsed by [`parse_answer`] and [`parse_range_answer`], which are pure.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::Value;

pub use crate::domain::recovery::Alert;

/// How long one query may take, Prometheus side and ours.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("environment variable {0} (the Prometheus bearer token) is not set")]
    MissingToken(String),
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error("Prometheus unreachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("no answer from {url} within {}s", timeout.as_secs_f64())]
    Timeout { url: String, timeout: Duration },
    #[error("Prometheus refused the query (HTTP {status}, {error_type}): {error}")]
    Rejected {
        status: u16,
        error_type: String,
        error: String,
    },
    #[error("unexpected answer from Prometheus (HTTP {status}): {reason}")]
    Malformed { status: u16, reason: String },
}

/// An HTTP/1 client for `http://` and `https://` URLs (native roots).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// # Errors
    /// When no TLS root certificates can be loaded.
    pub fn new() -> Result<Self, Error> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| Error::Setup(e.to_string()))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpClient {
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// `GET url` with an optional bearer token; the status and the body.
    ///
    /// # Errors
    /// [`Error::BadUrl`], [`Error::Unreachable`], [`Error::Timeout`].
    pub async fn get(
        &self,
        url: &str,
        bearer: Option<&str>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), Error> {
        let mut request = http::Request::get(url);
        if let Some(token) = bearer {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::BadUrl {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        self.send(url, request, timeout).await
    }
}

impl HttpClient {
    /// `POST url` with `body` as `content_type`; the status and the answer's body.
    ///
    /// # Errors
    /// [`Error::BadUrl`], [`Error::Unreachable`], [`Error::Timeout`].
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(u16, Bytes), Error> {
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| Error::BadUrl {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        self.send(url, request, timeout).await
    }

    async fn send(
        &self,
        url: &str,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), Error> {
        let unreachable = |reason: String| Error::Unreachable {
            url: url.to_owned(),
            reason,
        };
        let answer = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| Error::Timeout {
                url: url.to_owned(),
                timeout,
            })?
    }
}

/// The error and its causes: hyper's own message ("client error (Connect)") says little.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One Prometheus server.
#[derive(Clone)]
pub struct Prometheus {
    http: HttpClient,
    base: url::Url,
    token: Option<String>,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Prometheus")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Prometheus {
    /// A client for the Prometheus at `base_url`; `token_env` names the environment variable
    /// holding a bearer token, if it needs one.
    ///
    /// # Errors
    /// A URL that is not http(s), a token variable that is not set.
    pub fn new(base_url: &str, token_env: Option<&str>) -> Result<Self, Error> {
        let bad = |reason: &str| Error::BadUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let mut base = url::Url::parse(base_url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("expected http:// or https://"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let token = match token_env {
            Some(name) => Some(
                std::env::var(name)
                    .ok()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| Error::MissingToken(name.to_owned()))?,
            ),
            None => None,
        };
        Ok(Prometheus {
            http: HttpClient::new()?,
            base,
            token,
        })
    }

    /// Where the server is (for messages).
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    /// Evaluates `promql` at `at` (default: now) and returns its single value, `None` for an
    /// empty result. NaN is returned as NaN: what it means is for the caller to judge.
    ///
    /// # Errors
    /// Prometheus unreachable or slow, the query refused, or an answer with more than one
    /// series or of an unexpected type.
    pub async fn query(
        &self,
        promql: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<f64>, Error> {
        let mut params = vec![("query", promql.to_owned())];
        if let Some(at) = at {
            params.push(("time", unix_seconds(at)));
        }
        let (status, body) = self.api_get("api/v1/query", &params).await?;
        parse_answer(status, &body)
    }

    /// Evaluates `promql` from `start` to `end` every `step` and returns its single series
    /// (empty for an empty result), oldest first. NaN samples are kept as NaN.
    ///
    /// # Errors
    /// As [`Prometheus::query`]; also more than one series.
    pub async fn query_range(
        &self,
        promql: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, Error> {
        let params = [
            ("query", promql.to_owned()),
            ("start", unix_seconds(start)),
            ("end", unix_seconds(end)),
            ("step", format!("{:.3}", step.as_secs_f64().max(0.001))),
        ];
        let (status, body) = self.api_get("api/v1/query_range", &params).await?;
        parse_range_answer(status, &body)
    }

    /// The alerts Prometheus evaluates that are firing now (`/api/v1/alerts`; pending ones
    /// are left out), with their labels and since when they are active.
    ///
    /// # Errors
    /// As [`Prometheus::query`].
    pub async fn firing_alerts(&self) -> Result<Vec<Alert>, Error> {
        let (status, body) = self.api_get("api/v1/alerts", &[]).await?;
        parse_alerts(status, &body)
    }

    /// `GET` of an API `path` with `params` (and the query timeout): status and body.
    async fn api_get(&self, path: &str, params: &[(&str, String)]) -> Result<(u16, Bytes), Error> {
        let mut url = self.base.join(path).map_err(|e| Error::BadUrl {
            url: self.base.to_string(),
            reason: e.to_string(),
        })?;
        {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in params {
                pairs.append_pair(name, value);
            }
            pairs.append_pair("timeout", &format!("{}s", QUERY_TIMEOUT.as_secs()));
        }
        self.http
            .get(
                url.as_str(),
                self.token.as_deref(),
                QUERY_TIMEOUT + Duration::from_secs(1),
            )
            .await
            .map_err(|e| match e {
                // Name the server, not the query URL (which repeats the query).
                Error::Unreachable { reason, .. } => Error::Unreachable {
                    url: self.base.to_string(),
                    reason,
                },
                Error::Timeout { timeout, .. } => Error::Timeout {
                    url: self.base.to_string(),
                    timeout,
                },
                other => other,
            })
    }
}

fn unix_seconds(at: DateTime<Utc>) -> String {
    format!("{:.3}", at.timestamp_millis() as f64 / 1000.0)
}

#[derive(Deserialize)]
struct Envelope<D> {
    status: String,
    data: Option<D>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Value,
}

#[derive(Deserialize)]
struct AlertsData {
    alerts: Vec<RawAlert>,
}

#[derive(Deserialize)]
struct RawAlert {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    state: String,
    #[serde(rename = "activeAt")]
    active_at: Option<DateTime<Utc>>,
}

/// The firing alerts of an `/api/v1/alerts` answer.
///
/// # Errors
/// An error envelope ([`Error::Rejected`]), or not that API's JSON ([`Error::Malformed`]).
pub fn parse_alerts(status: u16, body: &[u8]) -> Result<Vec<Alert>, Error> {
    let data: AlertsData = success_data(status, body)?;
    Ok(data
        .alerts
        .into_iter()
        .filter(|a| a.state == "firing")
        .map(|a| Alert {
            name: a.labels.get("alertname").cloned().unwrap_or_default(),
            active_at: a.active_at,
            labels: a.labels,
        })
        .collect())
}

/// The value of an instant-query answer: `None` for an empty vector.
///
/// # Errors
/// An error envelope ([`Error::Rejected`]), or anything but a scalar or a vector of at most
/// one series ([`Error::Malformed`]).
pub fn parse_answer(status: u16, body: &[u8]) -> Result<Option<f64>, Error> {
    let malformed = |reason: String| Error::Malformed { status, reason };
    let data: Data = success_data(status, body)?;
    let sample = match data.result_type.as_str() {
        "scalar" => &data.result,
        "vector" => {
            let series = data
                .result
                .as_array()
                .ok_or_else(|| malformed("a vector that is not a list".into()))?;
            match series.as_slice() {
                [] => return Ok(None),
                [one] => &one["value"],
                many => {
                    return Err(malformed(format!(
                        "{} series where one was expected; aggregate the query (e.g. sum(...))",
                        many.len()
                    )));
                }
            }
        }
        other => {
            return Err(malformed(format!(
                "a {other} result where an instant vector or scalar was expected"
            )));
        }
    };
    let text = sample[1]
        .as_str()
        .ok_or_else(|| malformed(format!("a sample without a value: {sample}")))?;
    text.parse::<f64>()
        .map(Some)
        .map_err(|_| malformed(format!("a sample value that is not a number: {text:?}")))
}

/// The `data` of a successful answer; an error envelope as [`Error::Rejected`].
fn success_data<D: serde::de::DeserializeOwned>(status: u16, body: &[u8]) -> Result<D, Error> {
    let malformed = |reason: String| Error::Malformed { status, reason };
    let envelope: Envelope<D> = serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        malformed(format!("not the query API's JSON ({e}): {text}"))
    })?;
    if envelope.status != "success" {
        return Err(Error::Rejected {
            status,
            error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
            error: envelope.error.unwrap_or_default(),
        });
    }
    envelope
        .data
        .ok_or_else(|| malformed("no data in a successful answer".into()))
}

/// The series of a range-query answer, oldest first: empty for an empty matrix.
///
/// # Errors
/// An error envelope ([`Error::Rejected`]), or anything but a matrix of at most one series
/// with `[time, "value"]` samples ([`Error::Malformed`]).
pub fn parse_range_answer(status: u16, body: &[u8]) -> Result<Vec<(DateTime<Utc>, f64)>, Error> {
    let malformed = |reason: String| Error::Malformed { status, reason };
    let data: Data = success_data(status, body)?;
    if data.result_type != "matrix" {
        return Err(malformed(format!(
            "a {} result where a range vector was expected",
            data.result_type
        )));
    }
    let series = data
        .result
        .as_array()
        .ok_or_else(|| malformed("a matrix that is not a list".into()))?;
    let values = match series.as_slice() {
        [] => return Ok(Vec::new()),
        [one] => one["values"]
            .as_array()
            .ok_or_else(|| malformed(format!("a series without values: {one}")))?,
        many => {
            return Err(malformed(format!(
                "{} series where one was expected; aggregate the query (e.g. sum(...))",
                many.len()
            )));
        }
    };
    values
        .iter()
        .map(|sample| {
            let at = sample[0]
                .as_f64()
                .and_then(|t| DateTime::from_timestamp_millis((t * 1000.0).round() as i64))
                .ok_or_else(|| malformed(format!("a sample without a time: {sample}")))?;
            let value = sample[1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| {
                    malformed(format!("a sample value that is not a number: {sample}"))
                })?;
            Ok((at, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_scalars_and_special_values() {
        let one = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1795368133.8,"0.099"]}]}}"#;
        assert_eq!(parse_answer(200, one), Ok(Some(0.099)));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_answer(200, empty), Ok(None));
        let scalar =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1795368133.8,"2"]}}"#;
        assert_eq!(parse_answer(200, scalar), Ok(Some(2.0)));
        let nan = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#;
        assert!(parse_answer(200, nan).unwrap().unwrap().is_nan());
        let inf = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"+Inf"]}]}}"#;
        assert_eq!(parse_answer(200, inf), Ok(Some(f64::INFINITY)));
    }

    #[test]
    fn alerts_are_the_firing_ones_with_their_labels() {
        let body = br#"{"status":"success","data":{"alerts":[
            {"labels":{"alertname":"HighErrorRate","service":"web"},"annotations":{},"state":"firing","activeAt":"2026-12-04T21:48:41.123Z","value":"1e+00"},
            {"labels":{"alertname":"Slow","service":"web"},"annotations":{},"state":"pending","activeAt":"2026-12-04T21:49:00Z","value":"1e+00"}
        ]}}"#;
        let alerts = parse_alerts(200, body).unwrap();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].name, "HighErrorRate");
        assert_eq!(alerts[0].labels["service"], "web");
        assert_eq!(
            alerts[0].active_at.unwrap().to_rfc3339(),
            "2026-12-04T21:48:41.123+00:00"
        );
        assert!(matches!(
            parse_alerts(200, br#"{"status":"success","data":{}}"#),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn errors_say_what_went_wrong() {
        let refused = br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}"#;
        assert_eq!(
            parse_answer(400, refused).unwrap_err().to_string(),
            "Prometheus refused the query (HTTP 400, bad_data): 1:5: parse error: unexpected end of input"
        );
        let two = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}}"#;
        assert!(
            parse_answer(200, two)
                .unwrap_err()
                .to_string()
                .contains("2 series where one was expected")
        );
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(
            parse_answer(200, matrix)
                .unwrap_err()
                .to_string()
                .contains("a matrix result")
        );
        assert!(
            parse_answer(502, b"<html>bad gateway</html>")
                .unwrap_err()
                .to_string()
                .contains("HTTP 502")
        );
    }

    #[test]
    fn range_answers_give_one_series_in_order() {
        let one = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1795368133.5,"0.099"],[1795368134.5,"NaN"]]}]}}"#;
        let series = parse_range_answer(200, one).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].0.timestamp_millis(), 1_795_368_133_500);
        assert_eq!(series[0].1, 0.099);
        assert!(series[1].1.is_nan());
        let empty = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(parse_range_answer(200, empty), Ok(vec![]));
        let two = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[]},{"metric":{"a":"2"},"values":[]}]}}"#;
        assert!(
            parse_range_answer(200, two)
                .unwrap_err()
                .to_string()
                .contains("2 series where one was expected")
        );
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(
            parse_range_answer(200, vector)
                .unwrap_err()
                .to_string()
                .contains("a vector result where a range vector was expected")
        );
        let bad_value = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,2]]}]}}"#;
        assert!(
            parse_range_answer(200, bad_value)
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
        let refused = br#"{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11,000 points per timeseries"}"#;
        assert!(matches!(
            parse_range_answer(400, refused),
            Err(Error::Rejected { .. })
        ));
    }

    #[test]
    fn the_token_must_exist_and_urls_must_be_http() {
        assert_eq!(
            Prometheus::new(
                "http://127.0.0.1:9090",
                Some("ROLLBACK_BOT_TEST_SURELY_UNSET_TOKEN")
            )
            .unwrap_err(),
            Error::MissingToken("ROLLBACK_BOT_TEST_SURELY_UNSET_TOKEN".into())
        );
        assert!(matches!(
            Prometheus::new("ftp://x", None),
            Err(Error::BadUrl { .. })
        ));
        let p = Prometheus::new("http://prom.example:9090/prefix", None).unwrap();
        assert_eq!(p.url(), "http://prom.example:9090/prefix/");
    }
}
