//! The recovery verdict (runbook: "P99 back to baseline, error rate < 0.1 %, /health 200"),
//! as pure logic: one round of observations in, the status of each check and of the round
//! out, and a [`Tracker`] that turns rounds into a verdict. The I/O that gathers the
//! observations (Prometheus, the health endpoint, the pods) lives in `steps::validate`.
//!
//! The rule, after Argo Rollouts' analysis: a rollback has recovered when every check passes
//! for `consecutive_successes` rounds in a row. Missing evidence (an empty query result, NaN,
//! too little traffic, Prometheus unreachable) is *inconclusive*, never a pass; when the
//! window ends without the run of passes, validation fails and says why. Some failures are
//! definite and end validation at once: a container restarted, pods run other images than the
//! target's, or the health endpoint kept answering 5xx.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Default PromQL templates (`$service`, `$namespace`, `$deployment`, `$window` are replaced)
/// for the common `http_request_duration_seconds` histogram and `http_requests_total` counter.
/// The error ratio fails closed: with no 5xx series its numerator is 0 only when the request
/// series carry a `code` label at all, so a renamed label or metric gives no answer
/// (inconclusive), never "0.00 % errors".
pub const DEFAULT_P99_QUERY: &str = r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="$service",namespace="$namespace"}[$window])))"#;
pub const DEFAULT_ERROR_RATE_QUERY: &str = r#"(sum(rate(http_requests_total{service="$service",namespace="$namespace",code=~"5.."}[$window])) or 0 * sum(rate(http_requests_total{service="$service",namespace="$namespace",code!=""}[$window]))) / sum(rate(http_requests_total{service="$service",namespace="$namespace"}[$window]))"#;
pub const DEFAULT_REQUEST_RATE_QUERY: &str =
    r#"sum(rate(http_requests_total{service="$service",namespace="$namespace"}[$window]))"#;

/// What a query template is filled in with.
#[derive(Debug, Clone, Copy)]
pub struct QueryVars<'a> {
    pub service: &'a str,
    pub namespace: &'a str,
    pub deployment: &'a str,
}

/// A query template filled in.
pub fn render_query(template: &str, vars: QueryVars<'_>, window: &str) -> String {
    template
        .replace("$service", vars.service)
        .replace("$namespace", vars.namespace)
        .replace("$deployment", vars.deployment)
        .replace("$window", window)
}

/// How strict validation is. Defaults are the runbook's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Current P99 must be ≤ baseline × this.
    pub latency_tolerance: f64,
    /// The error ratio must be below this (0.001 = 0.1 %).
    pub max_error_rate: f64,
    /// Below this many requests per second the error rate says nothing: inconclusive.
    pub min_request_rate: f64,
    /// Rounds in a row in which every check passes.
    pub consecutive_successes: u32,
    /// 5xx answers of the health endpoint in a row that fail validation at once.
    pub health_failure_limit: u32,
    /// An absolute P99 bound in seconds (an SLO) that stands in when there is no baseline.
    #[serde(default)]
    pub p99_ceiling: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            latency_tolerance: 1.2,
            max_error_rate: 0.001,
            min_request_rate: 0.1,
            consecutive_successes: 3,
            health_failure_limit: 3,
            p99_ceiling: None,
        }
    }
}

/// One value read from Prometheus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Reading {
    Value(f64),
    /// An empty result, or NaN.
    NoData,
    /// The query could not be answered (Prometheus unreachable, query rejected).
    Unavailable(String),
}

impl Reading {
    /// A query's first sample, if any; NaN counts as no data.
    pub fn from_sample(sample: Option<f64>) -> Reading {
        match sample {
            Some(v) if !v.is_nan() => Reading::Value(v),
            _ => Reading::NoData,
        }
    }

    fn describe(&self, what: &str) -> String {
        match self {
            Reading::Value(v) => format!("{what} {v}"),
            Reading::NoData => format!("no data for {what}"),
            Reading::Unavailable(e) => format!("{what} unavailable: {e}"),
        }
    }
}

/// What the health endpoint said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Health {
    /// No health URL is configured for the service.
    NotConfigured,
    Status(u16),
    /// No answer (connection refused, timeout).
    Unreachable(String),
}

/// The pods of the Deployment as seen in one round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pods {
    /// Pods that are not terminating.
    pub total: usize,
    /// Of those, Running and Ready.
    pub ready: usize,
    /// `pod: n restarts` for every pod whose containers restarted (verification passed with
    /// none, so any restart happened since).
    pub restarted: Vec<String>,
    /// `pod/container runs X, target is Y` for every container not running the target image.
    pub wrong_images: Vec<String>,
    /// `pod/container: injected, not judged (N restarts)` for containers that are not the
    /// template's (a mesh's or an agent's sidecar): shown, never failing the soak.
    #[serde(default)]
    pub injected: Vec<String>,
    /// The pods could not be read (Kubernetes API unreachable): inconclusive.
    #[serde(default)]
    pub unavailable: Option<String>,
}

/// An alert Prometheus reports as firing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Its `alertname` label.
    pub name: String,
    /// Since when it is active (pending, then firing).
    pub active_at: Option<DateTime<Utc>>,
    pub labels: BTreeMap<String, String>,
}

impl Alert {
    /// Whether the alert carries every one of `labels` with that value.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        labels.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

/// The service's firing alerts, as read in one round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Alerts {
    /// Not read (rounds recorded before the check existed).
    #[default]
    NotRead,
    /// The firing alerts that carry the service's labels, and since when the faulty rollout
    /// runs (alerts active from then on are new; unknown: every one counts as new).
    Firing {
        alerts: Vec<Alert>,
        faulty_since: Option<DateTime<Utc>>,
    },
    /// Prometheus could not say: inconclusive.
    Unavailable(String),
}

/// Everything observed in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub p99_baseline: Reading,
    pub p99_now: Reading,
    pub error_rate: Reading,
    pub request_rate: Reading,
    pub health: Health,
    pub pods: Pods,
    #[serde(default)]
    pub alerts: Alerts,
}

/// A check's status in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// Not enough evidence either way.
    Inconclusive,
    /// Not configured for this service (counts as passing, shown as such).
    Skipped,
}

impl Status {
    /// ✓ / ✗ / … for the card.
    pub fn symbol(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Fail => "✗",
            Status::Inconclusive => "…",
            Status::Skipped => "–",
        }
    }

    fn passes(self) -> bool {
        matches!(self, Status::Pass | Status::Skipped)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    Latency,
    ErrorRate,
    Health,
    Soak,
    Alerts,
}

impl CheckName {
    pub fn label(self) -> &'static str {
        match self {
            CheckName::Latency => "P99 latency",
            CheckName::ErrorRate => "error rate",
            CheckName::Health => "health",
            CheckName::Soak => "soak",
            CheckName::Alerts => "new alerts",
        }
    }
}

/// One check's result in one round, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: CheckName,
    pub status: Status,
    pub evidence: String,
    /// A failure that waiting cannot fix: validation fails at once.
    #[serde(default)]
    pub definite: bool,
}

/// The checks of one round and the round's status (pass only if every check passes; fail if
/// any fails; otherwise inconclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    pub status: Status,
    pub checks: Vec<Check>,
}

impl Round {
    /// `check: evidence` of every check that did not pass, joined.
    pub fn shortfalls(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.status.passes())
            .map(|c| format!("{}: {}", c.name.label(), c.evidence))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Judges one round.
pub fn judge(observation: &Observation, limits: &Limits) -> Round {
    let checks = vec![
        latency(observation, limits),
        error_rate(observation, limits),
        health(&observation.health),
        soak(&observation.pods),
        alerts(&observation.alerts),
    ];
    let status = if checks.iter().all(|c| c.status.passes()) {
        Status::Pass
    } else if checks.iter().any(|c| c.status == Status::Fail) {
        Status::Fail
    } else {
        Status::Inconclusive
    };
    Round { status, checks }
}

fn check(name: CheckName, status: Status, evidence: String) -> Check {
    Check {
        name,
        status,
        evidence,
        definite: false,
    }
}

/// Seconds, readably: `0.099 s`, `1.52 s`.
pub fn seconds(v: f64) -> String {
    format!("{v:.3} s")
}

/// A ratio as a percentage: `0.05 %`.
pub fn percent(v: f64) -> String {
    format!("{:.2} %", v * 100.0)
}

/// The bound the current P99 is held to, and how it was found (shown on the card): the
/// baseline × tolerance, or, without a usable baseline, the configured ceiling.
fn latency_yardstick(o: &Observation, limits: &Limits) -> Result<(f64, String), String> {
    let no_baseline = match &o.p99_baseline {
        Reading::Value(baseline) if baseline.is_finite() => {
            let bound = baseline * limits.latency_tolerance;
            return Ok((
                bound,
                format!(
                    "limit {} = {} × baseline {}",
                    seconds(bound),
                    limits.latency_tolerance,
                    seconds(*baseline)
                ),
            ));
        }
        // An infinite baseline (custom queries and some backends answer +Inf for a quantile
        // in the +Inf bucket) would let any latency pass: no usable yardstick.
        Reading::Value(baseline) => format!("baseline P99 is {baseline}, not a finite number"),
        other => other.describe("baseline P99"),
    };
    match limits.p99_ceiling {
        Some(ceiling) => Ok((
            ceiling,
            format!(
                "limit {} = the configured p99_ceiling, since there is no baseline: {no_baseline}",
                seconds(ceiling)
            ),
        )),
        None => Err(no_baseline),
    }
}

fn latency(o: &Observation, limits: &Limits) -> Check {
    let name = CheckName::Latency;
    let yardstick = latency_yardstick(o, limits);
    match (yardstick, &o.p99_now) {
        (Ok((bound, how)), Reading::Value(now)) => {
            let status = if *now <= bound {
                Status::Pass
            } else {
                Status::Fail
            };
            check(name, status, format!("{} ({how})", seconds(*now)))
        }
        (yardstick, now) => {
            let mut missing: Vec<String> = yardstick.err().into_iter().collect();
            if !matches!(now, Reading::Value(_)) {
                missing.push(now.describe("current P99"));
            }
            check(name, Status::Inconclusive, missing.join("; "))
        }
    }
}

fn error_rate(o: &Observation, limits: &Limits) -> Check {
    let name = CheckName::ErrorRate;
    let traffic = match &o.request_rate {
        Reading::Value(r) if *r >= limits.min_request_rate => *r,
        Reading::Value(r) => {
            return check(
                name,
                Status::Inconclusive,
                format!(
                    "too little traffic: {r:.2} req/s < {} req/s",
                    limits.min_request_rate
                ),
            );
        }
        Reading::NoData => {
            return check(
                name,
                Status::Inconclusive,
                "no request series at all: the request-rate query returned nothing".into(),
            );
        }
        other => return check(name, Status::Inconclusive, other.describe("request rate")),
    };
    match &o.error_rate {
        Reading::Value(rate) if rate.is_finite() => {
            let evidence = format!(
                "{} of {traffic:.1} req/s (limit {})",
                percent(*rate),
                percent(limits.max_error_rate)
            );
            let status = if *rate < limits.max_error_rate {
                Status::Pass
            } else {
                Status::Fail
            };
            check(name, status, evidence)
        }
        // There is traffic, yet the ratio has no answer: the default query answers only when
        // the request series carry a `code` label, so a renamed label or metric shows here
        // instead of as "0.00 % errors".
        Reading::NoData => check(
            name,
            Status::Inconclusive,
            format!(
                "the error-rate query returned nothing although there are {traffic:.1} req/s \
                 (do the request series carry the `code` label the query selects on?)"
            ),
        ),
        other => check(name, Status::Inconclusive, other.describe("error rate")),
    }
}

fn health(h: &Health) -> Check {
    let name = CheckName::Health;
    match h {
        Health::NotConfigured => check(name, Status::Skipped, "no health URL configured".into()),
        Health::Status(200) => check(name, Status::Pass, "200".into()),
        Health::Status(code) => check(name, Status::Fail, code.to_string()),
        Health::Unreachable(e) => check(name, Status::Inconclusive, format!("no answer: {e}")),
    }
}

fn soak(p: &Pods) -> Check {
    let name = CheckName::Soak;
    if let Some(e) = &p.unavailable {
        return check(name, Status::Inconclusive, format!("pods unavailable: {e}"));
    }
    if !p.restarted.is_empty() || !p.wrong_images.is_empty() {
        let evidence = p
            .restarted
            .iter()
            .chain(&p.wrong_images)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        return Check {
            name,
            status: Status::Fail,
            evidence,
            definite: true,
        };
    }
    let mut evidence = format!("{} of {} pods Ready, no restarts", p.ready, p.total);
    if !p.injected.is_empty() {
        evidence.push_str(&format!("; {}", p.injected.join("; ")));
    }
    if p.total == 0 {
        check(name, Status::Inconclusive, "no pods".into())
    } else if p.ready < p.total {
        check(name, Status::Fail, evidence)
    } else {
        check(name, Status::Pass, evidence)
    }
}

/// "No new alerts are triggered" (runbook "Roll Back a Faulty Deployment", Verification): an
/// alert on the service that became active after the faulty rollout started fails the round
/// while it fires (it may resolve within the window); older ones are shown, not judged.
fn alerts(a: &Alerts) -> Check {
    let name = CheckName::Alerts;
    let (alerts, faulty_since) = match a {
        Alerts::NotRead => return check(name, Status::Skipped, "not checked".into()),
        Alerts::Unavailable(e) => {
            return check(
                name,
                Status::Inconclusive,
                format!("alerts unavailable: {e}"),
            );
        }
        Alerts::Firing {
            alerts,
            faulty_since,
        } => (alerts, faulty_since),
    };
    let describe = |alert: &Alert| match alert.active_at {
        Some(at) => format!("{} firing since {}", alert.name, at.format("%H:%M:%S UTC")),
        None => format!("{} firing", alert.name),
    };
    let is_new = |alert: &&Alert| match (alert.active_at, faulty_since) {
        (Some(at), Some(since)) => at >= *since,
        _ => true,
    };
    let (new, old): (Vec<&Alert>, Vec<&Alert>) = alerts.iter().partition(is_new);
    let older = (!old.is_empty()).then(|| {
        let names: Vec<String> = old.iter().map(|a| describe(a)).collect();
        format!(
            "firing since before the faulty rollout, not judged: {}",
            names.join(", ")
        )
    });
    if new.is_empty() {
        let evidence = match older {
            Some(older) => format!("none since the faulty rollout; {older}"),
            None => "none firing".into(),
        };
        return check(name, Status::Pass, evidence);
    }
    let mut evidence = new
        .iter()
        .map(|a| describe(a))
        .collect::<Vec<_>>()
        .join(", ");
    if faulty_since.is_none() {
        evidence.push_str(" (when the faulty rollout started is unknown: every alert counts)");
    }
    if let Some(older) = older {
        evidence.push_str(&format!("; {older}"));
    }
    check(name, Status::Fail, evidence)
}

/// Where validation stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "reason")]
pub enum Verdict {
    /// Keep checking.
    Pending,
    /// Recovered: every check passed `consecutive_successes` rounds in a row.
    Validated,
    /// Not recovered, with the reason people will read.
    Failed(String),
}

/// Turns rounds into a verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracker {
    /// Passing rounds in a row so far.
    pub passes_in_a_row: u32,
    /// 5xx health answers in a row so far.
    pub health_failures_in_a_row: u32,
    /// Rounds judged.
    pub rounds: u32,
}

impl Tracker {
    /// Takes one judged round into account.
    pub fn observe(&mut self, round: &Round, limits: &Limits) -> Verdict {
        self.rounds += 1;
        if let Some(definite) = round.checks.iter().find(|c| c.definite) {
            return Verdict::Failed(format!(
                "{} failed: {}",
                definite.name.label(),
                definite.evidence
            ));
        }
        let health_5xx = round.checks.iter().any(|c| {
            c.name == CheckName::Health && c.status == Status::Fail && c.evidence.starts_with('5')
        });
        self.health_failures_in_a_row = if health_5xx {
            self.health_failures_in_a_row + 1
        } else {
            0
        };
        if self.health_failures_in_a_row >= limits.health_failure_limit.max(1) {
            return Verdict::Failed(format!(
                "health endpoint answered 5xx {} times in a row",
                self.health_failures_in_a_row
            ));
        }
        self.passes_in_a_row = if round.status == Status::Pass {
            self.passes_in_a_row + 1
        } else {
            0
        };
        if self.passes_in_a_row >= limits.consecutive_successes.max(1) {
            Verdict::Validated
        } else {
            Verdict::Pending
        }
    }

    /// The verdict when the window ends before validation succeeded.
    pub fn window_ended(&self, last: Option<&Round>, window: std::time::Duration) -> Verdict {
        let why = match last {
            None => "no check completed".to_owned(),
            Some(round) if round.status == Status::Pass => {
                format!("only {} passing checks in a row", self.passes_in_a_row)
            }
            Some(round) => {
                let kind = if round.status == Status::Inconclusive {
                    "inconclusive"
                } else {
                    "not recovered"
                };
                format!("{kind}: {}", round.shortfalls())
            }
        };
        Verdict::Failed(format!(
            "not validated within {}s ({} checks): {why}",
            window.as_secs(),
            self.rounds
        ))
    }
}

/// Where a validation stands between two rounds. The worker lets go of the rollback while it
/// waits for the next round, so this is kept in the row (`steps.validate_progress`) and read
/// back by whichever worker runs the next round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub tracker: Tracker,
    /// The P99 baseline once read: it lies in the past and does not change.
    pub baseline: Option<f64>,
    /// When the window ends (a lead's extension may move it later).
    pub deadline: DateTime<Utc>,
    /// When the previous round ran; `None` before the first.
    pub last_round_at: Option<DateTime<Utc>>,
}

impl Progress {
    /// The progress a round at `now` starts from. A first round (nothing `stored`) ends its
    /// window at `deadline`. A round long overdue (more than two intervals since the last
    /// one: the bot was down) starts its run of passes afresh, since the passes no longer
    /// describe consecutive moments, and if the window ended meanwhile gets `grace` more
    /// rather than a verdict from one round. `extended_until` is a lead's extension.
    pub fn resume(
        stored: Option<Progress>,
        now: DateTime<Utc>,
        deadline: DateTime<Utc>,
        interval: std::time::Duration,
        grace: std::time::Duration,
        extended_until: Option<DateTime<Utc>>,
    ) -> Progress {
        let mut progress = stored.unwrap_or(Progress {
            tracker: Tracker::default(),
            baseline: None,
            deadline,
            last_round_at: None,
        });
        let interval = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
        let overdue = progress
            .last_round_at
            .is_some_and(|last| now - last > interval * 2);
        if overdue {
            progress.tracker.passes_in_a_row = 0;
            progress.tracker.health_failures_in_a_row = 0;
            if progress.deadline < now {
                progress.deadline =
                    now + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::zero());
            }
        }
        if let Some(until) = extended_until {
            progress.deadline = progress.deadline.max(until);
        }
        progress
    }

    /// Whether the round at `now` is the last of the window.
    pub fn is_last_round(&self, now: DateTime<Utc>) -> bool {
        now >= self.deadline
    }

    /// How long after a round that started at `started` the next one is due: an interval
    /// later, but never past the deadline (the last round runs at the deadline itself).
    pub fn next_round_in(
        &self,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
        interval: std::time::Duration,
    ) -> std::time::Duration {
        let interval = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
        let next = (started + interval).min(self.deadline);
        (next - now).to_std().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Observation {
        Observation {
            p99_baseline: Reading::Value(0.1),
            p99_now: Reading::Value(0.1),
            error_rate: Reading::Value(0.0),
            request_rate: Reading::Value(100.0),
            health: Health::Status(200),
            pods: Pods {
                total: 3,
                ready: 3,
                ..Pods::default()
            },
            alerts: Alerts::Firing {
                alerts: Vec::new(),
                faulty_since: None,
            },
        }
    }

    fn status_of(o: &Observation, name: CheckName) -> Status {
        judge(o, &Limits::default())
            .checks
            .into_iter()
            .find(|c| c.name == name)
            .map(|c| c.status)
            .unwrap_or_else(|| panic!("no {name:?} check"))
    }

    #[test]
    fn default_queries_are_templated_from_the_service() {
        let vars = QueryVars {
            service: "web",
            namespace: "shop",
            deployment: "web-v2",
        };
        assert_eq!(
            render_query(DEFAULT_REQUEST_RATE_QUERY, vars, "1m"),
            r#"sum(rate(http_requests_total{service="web",namespace="shop"}[1m]))"#
        );
        assert_eq!(
            render_query("up{deployment=\"$deployment\"}", vars, "5s"),
            "up{deployment=\"web-v2\"}"
        );
        let p99 = render_query(DEFAULT_P99_QUERY, vars, "10m");
        assert!(
            p99.contains(r#"{service="web",namespace="shop"}[10m]"#),
            "{p99}"
        );
        assert!(!render_query(DEFAULT_ERROR_RATE_QUERY, vars, "1m").contains('$'));
    }

    #[test]
    fn pods_that_cannot_be_read_are_inconclusive() {
        let mut o = healthy();
        o.pods.unavailable = Some("connection refused".into());
        assert_eq!(status_of(&o, CheckName::Soak), Status::Inconclusive);
    }

    #[test]
    fn a_healthy_round_passes() {
        let round = judge(&healthy(), &Limits::default());
        assert_eq!(round.status, Status::Pass);
        assert_eq!(round.checks.len(), 5);
        assert_eq!(round.shortfalls(), "");
    }

    #[test]
    fn latency_compares_against_baseline_times_tolerance() {
        let mut o = healthy();
        o.p99_now = Reading::Value(0.12);
        assert_eq!(status_of(&o, CheckName::Latency), Status::Pass);
        o.p99_now = Reading::Value(0.121);
        assert_eq!(status_of(&o, CheckName::Latency), Status::Fail);
        o.p99_now = Reading::Value(f64::INFINITY);
        assert_eq!(status_of(&o, CheckName::Latency), Status::Fail);
        let round = judge(&o, &Limits::default());
        assert_eq!(round.status, Status::Fail);
        assert!(
            round
                .shortfalls()
                .contains("P99 latency: inf s (limit 0.120 s = 1.2 × baseline 0.100 s)"),
            "{}",
            round.shortfalls()
        );
    }

    #[test]
    fn missing_latency_evidence_is_inconclusive() {
        for (baseline, now) in [
            (Reading::NoData, Reading::Value(0.1)),
            (Reading::Value(0.1), Reading::NoData),
            (Reading::Unavailable("down".into()), Reading::Value(0.1)),
            (Reading::Value(0.1), Reading::Unavailable("down".into())),
            (Reading::NoData, Reading::NoData),
            (Reading::from_sample(Some(f64::NAN)), Reading::Value(0.1)),
        ] {
            let mut o = healthy();
            o.p99_baseline = baseline.clone();
            o.p99_now = now.clone();
            assert_eq!(
                status_of(&o, CheckName::Latency),
                Status::Inconclusive,
                "{baseline:?} / {now:?}"
            );
            assert_eq!(judge(&o, &Limits::default()).status, Status::Inconclusive);
        }
    }

    fn evidence_of(o: &Observation, limits: &Limits, name: CheckName) -> Check {
        judge(o, limits)
            .checks
            .into_iter()
            .find(|c| c.name == name)
            .unwrap()
    }

    #[test]
    fn alerts_active_since_the_faulty_rollout_fail_older_ones_are_shown() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let alert = |name: &str, active: &str| Alert {
            name: name.into(),
            active_at: Some(at(active)),
            labels: BTreeMap::from([("service".to_owned(), "web".to_owned())]),
        };
        let mut o = healthy();
        o.alerts = Alerts::Firing {
            alerts: vec![alert("DiskFull", "2026-12-04T20:00:00Z")],
            faulty_since: Some(at("2026-12-04T21:00:00Z")),
        };
        let c = evidence_of(&o, &Limits::default(), CheckName::Alerts);
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert_eq!(
            c.evidence,
            "none since the faulty rollout; firing since before the faulty rollout, not judged: \
             DiskFull firing since 20:00:00 UTC"
        );
        o.alerts = Alerts::Firing {
            alerts: vec![
                alert("DiskFull", "2026-12-04T20:00:00Z"),
                alert("HighErrorRate", "2026-12-04T21:00:05Z"),
            ],
            faulty_since: Some(at("2026-12-04T21:00:00Z")),
        };
        let c = evidence_of(&o, &Limits::default(), CheckName::Alerts);
        assert_eq!(c.status, Status::Fail);
        assert!(!c.definite, "an alert may still resolve within the window");
        assert!(
            c.evidence
                .starts_with("HighErrorRate firing since 21:00:05 UTC; "),
            "{}",
            c.evidence
        );
        // Without the rollout's start, nothing can be called old.
        o.alerts = Alerts::Firing {
            alerts: vec![alert("DiskFull", "2026-12-04T20:00:00Z")],
            faulty_since: None,
        };
        assert_eq!(
            evidence_of(&o, &Limits::default(), CheckName::Alerts).status,
            Status::Fail
        );
        o.alerts = Alerts::Unavailable("Prometheus unreachable".into());
        assert_eq!(
            evidence_of(&o, &Limits::default(), CheckName::Alerts).status,
            Status::Inconclusive
        );
        let matching = BTreeMap::from([("service".to_owned(), "web".to_owned())]);
        assert!(alert("A", "2026-12-04T20:00:00Z").matches(&matching));
        let other = BTreeMap::from([("service".to_owned(), "db".to_owned())]);
        assert!(!alert("A", "2026-12-04T20:00:00Z").matches(&other));
    }

    #[test]
    fn a_non_finite_baseline_is_no_baseline() {
        let mut o = healthy();
        o.p99_baseline = Reading::Value(f64::INFINITY);
        o.p99_now = Reading::Value(30.0);
        let c = evidence_of(&o, &Limits::default(), CheckName::Latency);
        assert_eq!(
            c.status,
            Status::Inconclusive,
            "an +Inf baseline passed {c:?}"
        );
        assert!(c.evidence.contains("baseline P99 is inf"), "{}", c.evidence);
    }

    #[test]
    fn without_a_baseline_the_ceiling_stands_in_and_says_so() {
        let limits = Limits {
            p99_ceiling: Some(0.25),
            ..Limits::default()
        };
        for baseline in [Reading::NoData, Reading::Value(f64::INFINITY)] {
            let mut o = healthy();
            o.p99_baseline = baseline.clone();
            o.p99_now = Reading::Value(0.2);
            let c = evidence_of(&o, &limits, CheckName::Latency);
            assert_eq!(c.status, Status::Pass, "{baseline:?}: {c:?}");
            assert!(
                c.evidence
                    .starts_with("0.200 s (limit 0.250 s = the configured p99_ceiling, since there is no baseline: "),
                "{}",
                c.evidence
            );
            o.p99_now = Reading::Value(0.3);
            assert_eq!(
                evidence_of(&o, &limits, CheckName::Latency).status,
                Status::Fail
            );
        }
        // With a baseline, the baseline is the yardstick.
        let mut o = healthy();
        o.p99_now = Reading::Value(0.2);
        let c = evidence_of(&o, &limits, CheckName::Latency);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.evidence.contains("1.2 × baseline 0.100 s"),
            "{}",
            c.evidence
        );
    }

    #[test]
    fn an_error_rate_without_an_answer_despite_traffic_says_what_to_check() {
        let mut o = healthy();
        o.error_rate = Reading::NoData;
        let c = evidence_of(&o, &Limits::default(), CheckName::ErrorRate);
        assert_eq!(c.status, Status::Inconclusive);
        assert!(c.evidence.contains("`code` label"), "{}", c.evidence);
        o.request_rate = Reading::NoData;
        let c = evidence_of(&o, &Limits::default(), CheckName::ErrorRate);
        assert_eq!(c.status, Status::Inconclusive);
        assert!(
            c.evidence.contains("no request series at all"),
            "{}",
            c.evidence
        );
    }

    #[test]
    fn error_rate_must_be_below_the_threshold_with_enough_traffic() {
        let mut o = healthy();
        o.error_rate = Reading::Value(0.0009);
        assert_eq!(status_of(&o, CheckName::ErrorRate), Status::Pass);
        o.error_rate = Reading::Value(0.001);
        assert_eq!(status_of(&o, CheckName::ErrorRate), Status::Fail);
        o.error_rate = Reading::Value(0.05);
        let round = judge(&o, &Limits::default());
        assert!(
            round.shortfalls().contains("5.00 % of 100.0 req/s"),
            "{}",
            round.shortfalls()
        );
    }

    #[test]
    fn no_traffic_or_no_data_is_never_a_passing_error_rate() {
        let cases = [
            (Reading::Value(0.0), Reading::Value(0.0)),
            (Reading::Value(0.0), Reading::Value(0.05)),
            (Reading::Value(0.0), Reading::NoData),
            (Reading::from_sample(Some(f64::NAN)), Reading::Value(100.0)),
            (Reading::from_sample(None), Reading::Value(100.0)),
            (
                Reading::Value(0.0),
                Reading::Unavailable("connection refused".into()),
            ),
            (
                Reading::Unavailable("connection refused".into()),
                Reading::Value(100.0),
            ),
        ];
        for (error_rate, request_rate) in cases {
            let mut o = healthy();
            o.error_rate = error_rate.clone();
            o.request_rate = request_rate.clone();
            assert_eq!(
                status_of(&o, CheckName::ErrorRate),
                Status::Inconclusive,
                "{error_rate:?} at {request_rate:?}"
            );
        }
    }

    #[test]
    fn health_statuses() {
        let mut o = healthy();
        o.health = Health::NotConfigured;
        assert_eq!(status_of(&o, CheckName::Health), Status::Skipped);
        assert_eq!(judge(&o, &Limits::default()).status, Status::Pass);
        o.health = Health::Status(503);
        assert_eq!(status_of(&o, CheckName::Health), Status::Fail);
        o.health = Health::Status(404);
        assert_eq!(status_of(&o, CheckName::Health), Status::Fail);
        o.health = Health::Unreachable("timed out".into());
        assert_eq!(status_of(&o, CheckName::Health), Status::Inconclusive);
    }

    #[test]
    fn injected_containers_are_in_the_soak_evidence_and_never_fail_it() {
        let mut o = healthy();
        o.pods.injected = vec!["web-1/istio-proxy: injected, not judged (2 restarts)".into()];
        let c = soak(&o.pods);
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert_eq!(
            c.evidence,
            "3 of 3 pods Ready, no restarts; web-1/istio-proxy: injected, not judged (2 restarts)"
        );
    }

    #[test]
    fn soak_fails_definitely_on_restarts_or_wrong_images() {
        let mut o = healthy();
        o.pods.restarted = vec!["web-1: 1 restarts".into()];
        let round = judge(&o, &Limits::default());
        assert_eq!(status_of(&o, CheckName::Soak), Status::Fail);
        assert!(round.checks.iter().any(|c| c.definite));
        let mut tracker = Tracker::default();
        assert_eq!(
            tracker.observe(&round, &Limits::default()),
            Verdict::Failed("soak failed: web-1: 1 restarts".into())
        );

        let mut o = healthy();
        o.pods.wrong_images = vec!["web-1/web runs web:2, target is web:1".into()];
        assert!(
            judge(&o, &Limits::default())
                .checks
                .iter()
                .any(|c| c.definite)
        );
    }

    #[test]
    fn soak_waits_for_pods_and_readiness() {
        let mut o = healthy();
        o.pods.ready = 2;
        assert_eq!(status_of(&o, CheckName::Soak), Status::Fail);
        assert!(
            !judge(&o, &Limits::default())
                .checks
                .iter()
                .any(|c| c.definite)
        );
        o.pods = Pods::default();
        assert_eq!(status_of(&o, CheckName::Soak), Status::Inconclusive);
    }

    #[test]
    fn validated_after_consecutive_passes_only() {
        let limits = Limits::default();
        let pass = judge(&healthy(), &limits);
        let mut idle = healthy();
        idle.request_rate = Reading::Value(0.0);
        let inconclusive = judge(&idle, &limits);
        let mut tracker = Tracker::default();
        assert_eq!(tracker.observe(&pass, &limits), Verdict::Pending);
        assert_eq!(tracker.observe(&pass, &limits), Verdict::Pending);
        // An inconclusive round breaks the run.
        assert_eq!(tracker.observe(&inconclusive, &limits), Verdict::Pending);
        assert_eq!(tracker.passes_in_a_row, 0);
        assert_eq!(tracker.observe(&pass, &limits), Verdict::Pending);
        assert_eq!(tracker.observe(&pass, &limits), Verdict::Pending);
        assert_eq!(tracker.observe(&pass, &limits), Verdict::Validated);
        assert_eq!(tracker.rounds, 6);

        let one = Limits {
            consecutive_successes: 1,
            ..limits
        };
        assert_eq!(Tracker::default().observe(&pass, &one), Verdict::Validated);
        // Zero is treated as one: a verdict always needs a passing round.
        let zero = Limits {
            consecutive_successes: 0,
            ..limits
        };
        assert_eq!(
            Tracker::default().observe(&inconclusive, &zero),
            Verdict::Pending
        );
    }

    #[test]
    fn inconclusive_rounds_never_validate() {
        let limits = Limits::default();
        let mut idle = healthy();
        idle.request_rate = Reading::Value(0.0);
        idle.error_rate = Reading::NoData;
        idle.p99_now = Reading::NoData;
        let round = judge(&idle, &limits);
        assert_eq!(round.status, Status::Inconclusive);
        let mut tracker = Tracker::default();
        for _ in 0..100 {
            assert_eq!(tracker.observe(&round, &limits), Verdict::Pending);
        }
        let Verdict::Failed(reason) =
            tracker.window_ended(Some(&round), std::time::Duration::from_secs(20))
        else {
            panic!("the window's end must fail");
        };
        assert!(
            reason.starts_with("not validated within 20s (100 checks): inconclusive: "),
            "{reason}"
        );
        assert!(reason.contains("too little traffic"), "{reason}");
    }

    #[test]
    fn repeated_health_5xx_fails_at_once() {
        let limits = Limits::default();
        let mut o = healthy();
        o.health = Health::Status(503);
        let round = judge(&o, &limits);
        let mut tracker = Tracker::default();
        assert_eq!(tracker.observe(&round, &limits), Verdict::Pending);
        assert_eq!(tracker.observe(&round, &limits), Verdict::Pending);
        assert_eq!(
            tracker.observe(&round, &limits),
            Verdict::Failed("health endpoint answered 5xx 3 times in a row".into())
        );
        // A 404 is a failing round but not a health outage.
        let mut o = healthy();
        o.health = Health::Status(404);
        let round = judge(&o, &limits);
        let mut tracker = Tracker::default();
        for _ in 0..5 {
            assert_eq!(tracker.observe(&round, &limits), Verdict::Pending);
        }
    }

    #[test]
    fn the_window_end_names_what_was_missing() {
        let limits = Limits::default();
        let mut o = healthy();
        o.p99_now = Reading::Unavailable("Prometheus unreachable: connection refused".into());
        o.error_rate = Reading::Unavailable("Prometheus unreachable: connection refused".into());
        let round = judge(&o, &limits);
        let mut tracker = Tracker::default();
        tracker.observe(&round, &limits);
        let Verdict::Failed(reason) =
            tracker.window_ended(Some(&round), std::time::Duration::from_secs(5))
        else {
            panic!("must fail");
        };
        assert!(
            reason.contains("Prometheus unreachable: connection refused"),
            "{reason}"
        );
        assert_eq!(
            Tracker::default().window_ended(None, std::time::Duration::from_secs(5)),
            Verdict::Failed("not validated within 5s (0 checks): no check completed".into())
        );
        let pass = judge(&healthy(), &limits);
        let mut tracker = Tracker::default();
        tracker.observe(&pass, &limits);
        assert_eq!(
            tracker.window_ended(Some(&pass), std::time::Duration::from_secs(5)),
            Verdict::Failed(
                "not validated within 5s (1 checks): only 1 passing checks in a row".into()
            )
        );
    }

    mod progress {
        use super::super::*;
        use chrono::TimeZone;
        use std::time::Duration;

        fn at(seconds: i64) -> DateTime<Utc> {
            Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
        }

        const INTERVAL: Duration = Duration::from_secs(15);
        const GRACE: Duration = Duration::from_secs(5);

        fn after_rounds(passes: u32, last_round: i64, deadline: i64) -> Progress {
            Progress {
                tracker: Tracker {
                    passes_in_a_row: passes,
                    health_failures_in_a_row: 1,
                    rounds: 4,
                },
                baseline: Some(0.1),
                deadline: at(deadline),
                last_round_at: Some(at(last_round)),
            }
        }

        #[test]
        fn a_first_round_starts_afresh_with_the_window_given() {
            let p = Progress::resume(None, at(0), at(300), INTERVAL, GRACE, None);
            assert_eq!(p.tracker, Tracker::default());
            assert_eq!(
                (p.baseline, p.deadline, p.last_round_at),
                (None, at(300), None)
            );
            assert!(!p.is_last_round(at(0)));
        }

        #[test]
        fn a_round_on_time_keeps_the_run_of_passes_and_the_deadline() {
            let stored = after_rounds(2, 100, 300);
            let p = Progress::resume(Some(stored), at(116), at(999), INTERVAL, GRACE, None);
            assert_eq!(p, stored, "the stored deadline wins over a recomputed one");
        }

        #[test]
        fn an_overdue_round_starts_its_passes_afresh_and_gets_grace_past_the_window() {
            let stored = after_rounds(2, 100, 300);
            let p = Progress::resume(Some(stored), at(131), at(999), INTERVAL, GRACE, None);
            assert_eq!(p.tracker.passes_in_a_row, 0);
            assert_eq!(p.tracker.health_failures_in_a_row, 0);
            assert_eq!(p.tracker.rounds, 4, "rounds still count");
            assert_eq!(p.deadline, at(300), "within the window: no grace");

            let p = Progress::resume(Some(stored), at(400), at(999), INTERVAL, GRACE, None);
            assert_eq!(
                p.deadline,
                at(405),
                "the window ended while the bot was down"
            );
            assert!(!p.is_last_round(at(400)));
        }

        #[test]
        fn a_leads_extension_moves_the_deadline_later_never_earlier() {
            let stored = after_rounds(1, 100, 300);
            let later =
                Progress::resume(Some(stored), at(110), at(0), INTERVAL, GRACE, Some(at(600)));
            assert_eq!(later.deadline, at(600));
            let earlier =
                Progress::resume(Some(stored), at(110), at(0), INTERVAL, GRACE, Some(at(200)));
            assert_eq!(earlier.deadline, at(300));
        }

        #[test]
        fn the_next_round_is_an_interval_after_the_last_start_but_never_past_the_deadline() {
            let p = after_rounds(0, 0, 300);
            assert_eq!(
                p.next_round_in(at(100), at(102), INTERVAL),
                Duration::from_secs(13)
            );
            assert_eq!(
                p.next_round_in(at(290), at(291), INTERVAL),
                Duration::from_secs(9)
            );
            assert_eq!(p.next_round_in(at(100), at(130), INTERVAL), Duration::ZERO);
            assert!(p.is_last_round(at(300)));
        }
    }
}
