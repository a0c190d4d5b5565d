//! Telemetry: structured `tracing` logs (JSON when stderr is not a terminal) and the
//! process's Prometheus metrics, rendered in the text exposition format on `/metrics`.
//!
//! The metrics are a handful of labelled counters and one histogram, kept in a process-wide
//! registry so that any layer can count without threading a handle through every call.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: tests and tools may have installed one already.
    let _ = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    };
}

/// Upper bounds (seconds) of the step-duration histogram: from a quick patch to a slow rollout.
const STEP_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 180.0];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    buckets: [u64; STEP_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<(&'static str, Labels), u64>,
    step_seconds: BTreeMap<String, Histogram>,
}

/// The process's metrics.
#[derive(Default)]
pub struct Metrics {
    registry: Mutex<Registry>,
}

/// Help text of every counter, in the order they are rendered.
const COUNTERS: [(&str, &str); 8] = [
    (
        "rollback_bot_http_requests_total",
        "HTTP requests by route and status.",
    ),
    (
        "rollback_bot_rollbacks_total",
        "Rollbacks that reached a terminal state, by outcome.",
    ),
    (
        "rollback_bot_slack_api_errors_total",
        "Failed Slack Web API calls, by method and error.",
    ),
    (
        "rollback_bot_lease_takeovers_total",
        "Rollbacks resumed from an expired lease of another worker.",
    ),
    (
        "rollback_bot_leases_lost_total",
        "Steps abandoned because their lease was lost or could not be renewed in time.",
    ),
    (
        "rollback_bot_step_retries_total",
        "Transient step failures that were retried, by step.",
    ),
    (
        "rollback_bot_pagerduty_gave_up_total",
        "PagerDuty events the bot stopped sending after every attempt failed, by action.",
    ),
    (
        "rollback_bot_unenforced_locks_total",
        "Deploy locks recorded on a workload that no admission policy enforces, by cluster.",
    ),
];

/// The process-wide registry.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    fn add(&self, name: &'static str, labels: Labels) {
        let mut r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        *r.counters.entry((name, labels)).or_default() += 1;
    }

    pub fn http_request(&self, route: &str, status: u16) {
        self.add(
            "rollback_bot_http_requests_total",
            vec![("route", route.into()), ("status", status.to_string())],
        );
    }

    pub fn rollback_finished(&self, outcome: &str) {
        self.add(
            "rollback_bot_rollbacks_total",
            vec![("outcome", outcome.into())],
        );
    }

    pub fn slack_api_error(&self, method: &str, error: &str) {
        self.add(
            "rollback_bot_slack_api_errors_total",
            vec![("method", method.into()), ("error", error.into())],
        );
    }

    pub fn lease_takeover(&self) {
        self.add("rollback_bot_lease_takeovers_total", vec![]);
    }

    pub fn lease_lost(&self) {
        self.add("rollback_bot_leases_lost_total", vec![]);
    }

    pub fn step_retry(&self, step: &str) {
        self.add(
            "rollback_bot_step_retries_total",
            vec![("step", step.into())],
        );
    }

    pub fn pagerduty_gave_up(&self, action: &str) {
        self.add(
            "rollback_bot_pagerduty_gave_up_total",
            vec![("action", action.into())],
        );
    }

    pub fn unenforced_lock(&self, cluster: &str) {
        self.add(
            "rollback_bot_unenforced_locks_total",
            vec![("cluster", cluster.into())],
        );
    }

    pub fn step_duration(&self, step: &str, took: Duration) {
        let secs = took.as_secs_f64();
        let mut r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let h = r.step_seconds.entry(step.into()).or_default();
        for (bucket, bound) in h.buckets.iter_mut().zip(STEP_BUCKETS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, help) in COUNTERS {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let mut any = false;
            for ((_, labels), value) in r
                .counters
                .range((name, vec![])..)
                .take_while(|((n, _), _)| *n == name)
            {
                let _ = writeln!(out, "{name}{} {value}", format_labels(labels, None));
                any = true;
            }
            // Label-less counters start at 0 so that rate() works from the first scrape.
            if !any
                && matches!(
                    name,
                    "rollback_bot_lease_takeovers_total"
                        | "rollback_bot_leases_lost_total"
                        | "rollback_bot_unenforced_locks_total"
                )
            {
                let _ = writeln!(out, "{name} 0");
            }
        }
        let name = "rollback_bot_step_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time a worker spent running a step.\n# TYPE {name} histogram"
        );
        for (step, h) in &r.step_seconds {
            let labels = vec![("step", step.clone())];
            for (count, bound) in h.buckets.iter().zip(STEP_BUCKETS) {
                let le = format_labels(&labels, Some(&bound.to_string()));
                let _ = writeln!(out, "{name}_bucket{le} {count}");
            }
            let le = format_labels(&labels, Some("+Inf"));
            let _ = writeln!(out, "{name}_bucket{le} {}", h.count);
            let plain = format_labels(&labels, None);
            let _ = writeln!(out, "{name}_sum{plain} {}", h.sum);
            let _ = writeln!(out, "{name}_count{plain} {}", h.count);
        }
        out
    }
}

fn format_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms_in_prometheus_text_format() {
        let m = Metrics::default();
        m.http_request("/slack/commands", 200);
        m.http_request("/slack/commands", 200);
        m.http_request("/slack/commands", 401);
        m.rollback_finished("succeeded");
        m.slack_api_error("chat.update", "ratelimited \"429\"");
        m.step_duration("verify", Duration::from_millis(700));
        m.step_duration("verify", Duration::from_secs(20));
        let text = m.render();
        assert!(text.contains(
            "rollback_bot_http_requests_total{route=\"/slack/commands\",status=\"200\"} 2\n"
        ));
        assert!(text.contains(
            "rollback_bot_http_requests_total{route=\"/slack/commands\",status=\"401\"} 1\n"
        ));
        assert!(text.contains("rollback_bot_rollbacks_total{outcome=\"succeeded\"} 1\n"));
        assert!(text.contains("error=\"ratelimited \\\"429\\\"\""));
        assert!(text.contains("rollback_bot_lease_takeovers_total 0\n"));
        assert!(
            text.contains(
                "rollback_bot_step_duration_seconds_bucket{step=\"verify\",le=\"0.5\"} 0\n"
            )
        );
        assert!(
            text.contains(
                "rollback_bot_step_duration_seconds_bucket{step=\"verify\",le=\"1\"} 1\n"
            )
        );
        assert!(text.contains(
            "rollback_bot_step_duration_seconds_bucket{step=\"verify\",le=\"+Inf\"} 2\n"
        ));
        assert!(text.contains("rollback_bot_step_duration_seconds_count{step=\"verify\"} 2\n"));
        assert!(text.contains("# TYPE rollback_bot_step_duration_seconds histogram\n"));
    }
}
