//! What a rollback's recovery chart shows: the span (a bit before the faulty rollout to the
//! end of validation), the P99 and error-rate range queries that fill it (the queries
//! validation used, from its evidence), the markers and limits, rendered by [`crate::support::chart`].
//! Picking the span and reading the evidence are pure ([`span`], [`Evidence::of`]); the
//! range queries are I/O. The upload is the Slack side's (`slack::chart_upload`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use crate::clients::prometheus::Prometheus;
use crate::config::{Config, Recovery, Validation};
use crate::db::rollbacks::Rollback;
use crate::domain::State;
use crate::support::chart::{self, ChartError, ChartSpec, Series};

/// At most this many samples per series (Prometheus allows 11,000).
pub const MAX_POINTS: i64 = 400;
/// A chart never spans more than this: the rest of a long-standing bad rollout is cut off.
pub const MAX_SPAN: TimeDelta = TimeDelta::hours(6);

/// A rendered chart and what Slack shows with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub png: Vec<u8>,
    pub filename: String,
    /// The file's title in Slack.
    pub title: String,
    /// The thread message introducing the file.
    pub comment: String,
}

/// What validation recorded that the chart needs (from `steps.validate.recovery`).
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub p99_query: String,
    pub error_rate_query: String,
    /// The faulty revision's rollout (the baseline's time).
    pub bad_rollout_at: Option<DateTime<Utc>>,
    /// When the rollback patch was applied.
    pub rollback_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
    pub validated: bool,
    pub baseline: Option<f64>,
}

impl Evidence {
    /// `None` when the rollback has no validation evidence (not validated yet, or skipped).
    pub fn of(r: &Rollback) -> Option<Evidence> {
        Evidence::from_steps(&r.steps, r.state, r.updated_at)
    }

    /// [`Evidence::of`] from a rollback's `steps`, state and last change.
    fn from_steps(steps: &Value, state: State, updated_at: DateTime<Utc>) -> Option<Evidence> {
        let recovery = &steps["validate"]["recovery"];
        if !recovery.is_object() {
            return None;
        }
        let time = |v: &Value| {
            v.as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc())
        };
        let baseline = &recovery["observation"]["p99_baseline"];
        Some(Evidence {
            p99_query: recovery["queries"]["p99"].as_str()?.to_owned(),
            error_rate_query: recovery["queries"]["error_rate"].as_str()?.to_owned(),
            bad_rollout_at: time(&recovery["baseline_at"]),
            rollback_at: time(&steps["execute"]["at"]),
            ended_at: time(&recovery["ended_at"]).unwrap_or(updated_at),
            validated: recovery["validated"]
                .as_bool()
                .unwrap_or(state == State::Succeeded),
            baseline: (baseline["kind"] == "value")
                .then(|| baseline["detail"].as_f64())
                .flatten(),
        })
    }
}

/// The chart's time range and resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub step: Duration,
}

/// From a bit before the faulty rollout (a quarter of the incident's length, at least 30 s;
/// without a rollout time, 10 minutes before the rollback) to the end of validation, at most
/// [`MAX_SPAN`], in at most [`MAX_POINTS`] steps of whole seconds.
pub fn span(
    bad_rollout_at: Option<DateTime<Utc>>,
    rollback_at: Option<DateTime<Utc>>,
    ended_at: DateTime<Utc>,
) -> Span {
    let start = bad_rollout_at
        .or(rollback_at.map(|at| at - TimeDelta::minutes(10)))
        .unwrap_or(ended_at - TimeDelta::minutes(10))
        .min(ended_at);
    let lead = ((ended_at - start) / 4).max(TimeDelta::seconds(30));
    let from = (start - lead).max(ended_at - MAX_SPAN);
    let seconds = (ended_at - from).num_seconds().max(1);
    let step = (seconds + MAX_POINTS - 1) / MAX_POINTS;
    Span {
        from,
        to: ended_at,
        step: Duration::from_secs(step.max(1) as u64),
    }
}

/// The caption of the chart's thread message; it names a series the chart has no data for,
/// and why (also for readers who cannot see the image).
pub fn comment(e: &Evidence, p99: &Series, error_rate: &Series) -> String {
    let verdict = if e.validated {
        "recovered"
    } else {
        "not recovered"
    };
    let mut text = format!(
        "📈 Recovery chart: P99 latency and error rate from before the bad rollout to the \
         verdict ({verdict}). Red: the bad rollout; blue: the rollback; the last line: the verdict."
    );
    for (name, series) in [("P99", p99), ("error-rate", error_rate)] {
        if !series.has_data() {
            let why = series
                .missing
                .as_deref()
                .unwrap_or("Prometheus returned no samples");
            text.push_str(&format!(" No {name} data: {why}."));
        }
    }
    text
}

/// Makes rollbacks' recovery charts from the configuration's Prometheus servers.
pub struct ChartMaker {
    config: Arc<Config>,
}

impl ChartMaker {
    pub fn new(config: Arc<Config>) -> Self {
        ChartMaker { config }
    }

    /// The chart of `r`, `None` when it has no validation evidence. Series Prometheus cannot
    /// give are drawn as "no data" with the reason: a chart is made whenever evidence exists.
    ///
    /// # Errors
    /// Only a rendering failure ([`ChartError`]).
    pub async fn make(&self, r: &Rollback) -> Option<Result<Chart, ChartError>> {
        let e = Evidence::of(r)?;
        let span = span(e.bad_rollout_at, e.rollback_at, e.ended_at);
        let (settings, (p99, error_rate)) = match self.config.validation(&r.service, &r.cluster) {
            Validation::On {
                prometheus_url,
                prometheus_token_env,
                settings,
            } => (
                settings.clone(),
                fetch(prometheus_url, prometheus_token_env, &e, span).await,
            ),
            Validation::Skipped(reason) => {
                let missing = Series {
                    points: vec![],
                    missing: Some(reason),
                };
                (Recovery::default(), (missing.clone(), missing))
            }
        };
        let caption = comment(&e, &p99, &error_rate);
        let spec = ChartSpec {
            title: format!(
                "{} ({}/{}) · rollback #{}",
                r.service, r.namespace, r.deployment, r.id
            ),
            from: span.from,
            to: span.to,
            p99,
            error_rate,
            bad_rollout_at: e.bad_rollout_at,
            rollback_at: e.rollback_at,
            verdict_at: e.ended_at,
            validated: e.validated,
            baseline: e.baseline,
            latency_limit: e.baseline.map(|b| b * settings.latency_tolerance),
            max_error_rate: settings.max_error_rate,
        };
        // Drawing takes a CPU for a moment: off the async workers.
        let rendered = tokio::task::spawn_blocking(move || chart::render(&spec))
            .await
            .unwrap_or_else(|e| Err(ChartError::Draw(format!("the renderer stopped: {e}"))));
        Some(rendered.map(|png| Chart {
            png,
            filename: format!("rollback-{}-recovery.png", r.id),
            title: format!("Recovery of {} after rollback #{}", r.service, r.id),
            comment: caption,
        }))
    }
}

/// The two series; a query Prometheus cannot answer gives an empty series saying why.
async fn fetch(url: &str, token_env: Option<&str>, e: &Evidence, span: Span) -> (Series, Series) {
    let prometheus = match Prometheus::new(url, token_env) {
        Ok(p) => p,
        Err(err) => {
            let missing = Series {
                points: vec![],
                missing: Some(err.to_string()),
            };
            return (missing.clone(), missing);
        }
    };
    let series =
        |answer: Result<Vec<(DateTime<Utc>, f64)>, crate::clients::prometheus::Error>| match answer
        {
            Ok(points) => Series {
                points,
                missing: None,
            },
            Err(err) => Series {
                points: vec![],
                missing: Some(err.to_string()),
            },
        };
    let (p99, error_rate) = tokio::join!(
        prometheus.query_range(&e.p99_query, span.from, span.to, span.step),
        prometheus.query_range(&e.error_rate_query, span.from, span.to, span.step),
    );
    (series(p99), series(error_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + s, 0).unwrap()
    }

    #[test]
    fn the_span_starts_a_bit_before_the_bad_rollout_and_ends_at_the_verdict() {
        // A 2-minute incident: 30 s of lead (a quarter would be less), 1 s steps.
        let s = span(Some(at(0)), Some(at(60)), at(120));
        assert_eq!((s.from, s.to), (at(-30), at(120)));
        assert_eq!(s.step, Duration::from_secs(1));
        // A 1-hour incident: a quarter before it, steps so there are at most MAX_POINTS.
        let s = span(Some(at(0)), Some(at(3000)), at(3600));
        assert_eq!(s.from, at(-900));
        assert_eq!(s.step, Duration::from_secs(12));
        assert!((s.to - s.from).num_seconds() / 12 <= MAX_POINTS);
        // No rollout time: from 10 minutes before the rollback.
        let s = span(None, Some(at(600)), at(700));
        assert_eq!(s.from, at(0) - TimeDelta::seconds(175));
        // A bad rollout a week ago: cut to MAX_SPAN.
        let s = span(Some(at(-7 * 86_400)), Some(at(0)), at(60));
        assert_eq!(s.from, at(60) - MAX_SPAN);
        // A rollout time after the verdict (clock skew) still gives a forward range.
        let s = span(Some(at(500)), None, at(100));
        assert!(s.from < s.to);
    }

    #[test]
    fn evidence_comes_from_the_validate_step() {
        let steps = serde_json::json!({
            "execute": {"at": "2026-11-22T10:00:30Z"},
            "validate": {"recovery": {
                "validated": false,
                "ended_at": "2026-11-22T10:01:00Z",
                "baseline_at": "2026-11-22T10:00:00Z",
                "queries": {"p99": "p99 query", "error_rate": "error query"},
                "observation": {"p99_baseline": {"kind": "value", "detail": 0.08}},
            }},
        });
        let e = Evidence::from_steps(&steps, State::Escalated, at(0)).unwrap();
        assert_eq!(e.p99_query, "p99 query");
        assert_eq!(e.error_rate_query, "error query");
        assert_eq!(e.baseline, Some(0.08));
        assert!(!e.validated);
        assert_eq!(
            e.rollback_at.unwrap().to_rfc3339(),
            "2026-11-22T10:00:30+00:00"
        );
        let data = Series {
            points: vec![(at(0), 0.1)],
            missing: None,
        };
        let text = comment(&e, &data, &data);
        assert!(text.contains("(not recovered)"), "{text}");
        assert!(!text.contains("No "), "{text}");
        let down = Series {
            points: vec![],
            missing: Some("Prometheus unreachable at http://p:9090/".into()),
        };
        let nan = Series {
            points: vec![(at(0), f64::NAN)],
            missing: None,
        };
        let text = comment(&e, &down, &nan);
        assert!(
            text.contains(
                "No P99 data: Prometheus unreachable at http://p:9090/. \
                 No error-rate data: Prometheus returned no samples."
            ),
            "{text}"
        );
        let skipped = serde_json::json!({"validate": {"skipped": "off"}});
        assert_eq!(
            Evidence::from_steps(&skipped, State::Succeeded, at(0)),
            None
        );
        // Evidence from before the chart existed: the verdict from the state, the time from
        // the last change.
        let mut older = steps.clone();
        older["validate"]["recovery"]["validated"] = Value::Null;
        older["validate"]["recovery"]["ended_at"] = Value::Null;
        let e = Evidence::from_steps(&older, State::Succeeded, at(5)).unwrap();
        assert!(e.validated);
        assert_eq!(e.ended_at, at(5));
    }
}
