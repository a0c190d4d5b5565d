//! The validate step: after verification, checks every `interval` for up to `window` that the
//! service recovered (P99 back to its baseline, error rate, health endpoint, soak, no new
//! alerts), and
//! reports each round as live progress. Gathering is I/O (Prometheus, the health URL, the
//! pods); judging is [`crate::domain::recovery`].
//!
//! Each run of the step is one round. Between rounds the worker lets go of the rollback
//! ([`StepOutcome::Wait`]); the run of passes, the baseline and the window's end stay in the
//! row ([`Progress`]), so any worker runs the next round, a wide incident's validations hold
//! no worker, and a crash loses at most the round in flight. The window starts when
//! verification ended (`steps.verify.at`); a round long overdue (the bot was down) starts
//! its run of passes afresh.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::{KubernetesSteps, MIN_RESUMED_VERIFICATION, approved_plan, remaining_window, to_json};
use crate::clients::k8s::RollbackPlan;
use crate::clients::prometheus::{HttpClient, Prometheus};
use crate::config::{Config, Recovery, Validation};
use crate::db::rollbacks::Rollback;
use crate::domain::Step;
use crate::domain::machine::Event;
use crate::domain::recovery::{
    self, Alerts, DEFAULT_ERROR_RATE_QUERY, DEFAULT_P99_QUERY, DEFAULT_REQUEST_RATE_QUERY, Health,
    Observation, Progress, QueryVars, Reading, Round, Tracker, Verdict,
};
use crate::engine::StepOutcome;

/// Where the validation stands between its rounds (`steps.validate_progress`, written by the
/// engine with [`StepOutcome::Wait`]).
const PROGRESS: &str = "validate_progress";

/// The PromQL a validation runs, as shown in the thread.
#[derive(Debug, Clone, Serialize)]
struct Queries {
    /// Evaluated at `baseline_at`, when the faulty revision's rollout started.
    p99_baseline: String,
    p99: String,
    error_rate: String,
    request_rate: String,
}

impl Queries {
    fn new(settings: &Recovery, vars: QueryVars<'_>) -> Queries {
        let p99 = settings.p99_query.as_deref().unwrap_or(DEFAULT_P99_QUERY);
        let render = |template: &Option<String>, default: &str| {
            recovery::render_query(
                template.as_deref().unwrap_or(default),
                vars,
                &settings.rate_window,
            )
        };
        Queries {
            p99_baseline: recovery::render_query(p99, vars, &settings.baseline_window),
            p99: recovery::render_query(p99, vars, &settings.rate_window),
            error_rate: render(&settings.error_rate_query, DEFAULT_ERROR_RATE_QUERY),
            request_rate: render(&settings.request_rate_query, DEFAULT_REQUEST_RATE_QUERY),
        }
    }

    fn all(&self) -> [(&'static str, &str); 4] {
        [
            ("p99_baseline", &self.p99_baseline),
            ("p99", &self.p99),
            ("error_rate", &self.error_rate),
            ("request_rate", &self.request_rate),
        ]
    }
}

/// For `check-config`: whether `service`'s Prometheus answers and accepts each of its queries
/// (an empty result is fine, a parse error is not). `None` when validation is off for it.
pub async fn check_prometheus(config: &Config, service: &str) -> Option<Result<String, String>> {
    let Validation::On {
        prometheus_url,
        prometheus_token_env,
        settings,
    } = config.validation(service, config.service(service)?.cluster)
    else {
        return None;
    };
    let s = config.service(service)?;
    let prometheus = match Prometheus::new(prometheus_url, prometheus_token_env) {
        Ok(p) => p,
        Err(e) => return Some(Err(e.to_string())),
    };
    let queries = Queries::new(
        settings,
        QueryVars {
            service: s.name,
            namespace: s.namespace,
            deployment: s.deployment,
        },
    );
    for (name, query) in queries.all() {
        if let Err(e) = prometheus.query(query, None).await {
            return Some(Err(format!("{name} query: {e}")));
        }
    }
    Some(Ok(format!(
        "{} reachable, {} queries accepted",
        prometheus.url(),
        queries.all().len()
    )))
}

/// Everything one validation talks to.
struct Probes<'a> {
    prometheus: Prometheus,
    http: HttpClient,
    settings: &'a Recovery,
    queries: Queries,
    /// The labels of the service's alerts, filled in.
    alert_labels: BTreeMap<String, String>,
    plan: RollbackPlan,
    baseline_at: Option<DateTime<Utc>>,
}

impl KubernetesSteps {
    pub(super) async fn validate(&self, rollback: &Rollback) -> StepOutcome {
        let plan = match approved_plan(rollback) {
            Ok(plan) => plan,
            Err(outcome) => return outcome,
        };
        let (url, token_env, settings) = match self
            .config
            .validation(&rollback.service, &rollback.cluster)
        {
            Validation::Skipped(reason) => {
                return StepOutcome::finished(Event::StepSucceeded, json!({ "skipped": reason }));
            }
            Validation::On {
                prometheus_url,
                prometheus_token_env,
                settings,
            } => (prometheus_url, prometheus_token_env, settings),
        };
        let clients = Prometheus::new(url, token_env).and_then(|p| Ok((p, HttpClient::new()?)));
        let (prometheus, http) = match clients {
            Ok(clients) => clients,
            Err(e) => {
                let reason = format!("recovery validation cannot start: {e}");
                return StepOutcome::finished(
                    Event::StepFailed {
                        reason: reason.clone(),
                    },
                    json!({ "summary": reason }),
                );
            }
        };
        let vars = QueryVars {
            service: &rollback.service,
            namespace: &rollback.namespace,
            deployment: &rollback.deployment,
        };
        let probes = Probes {
            prometheus,
            http,
            settings,
            queries: Queries::new(settings, vars),
            alert_labels: settings
                .alert_labels
                .iter()
                .map(|(k, v)| (k.clone(), recovery::render_query(v, vars, "")))
                .collect(),
            // The start, never the end: the baseline must not see the bad revision's traffic.
            baseline_at: plan.correlation.rollout_started_at,
            plan,
        };
        self.run_round(rollback, &probes).await
    }

    /// Runs one round and judges it. A verdict finishes the step; otherwise the step waits
    /// for the next round without holding a worker, its [`Progress`] kept in the row.
    async fn run_round(&self, rollback: &Rollback, probes: &Probes<'_>) -> StepOutcome {
        let settings = probes.settings;
        let limits = settings.limits();
        let started = Utc::now();
        let stored = serde_json::from_value(rollback.steps[PROGRESS].clone()).ok();
        // The window runs from the end of verification; a lead's `Extend` (the click took the
        // lease, so this runs again at once) may move its end later.
        let first_deadline = started
            + chrono::Duration::from_std(remaining_window(
                settings.window,
                &rollback.steps["verify"]["at"],
            ))
            .unwrap_or(chrono::Duration::MAX);
        let mut progress = Progress::resume(
            stored,
            started,
            first_deadline,
            settings.interval,
            MIN_RESUMED_VERIFICATION,
            extended_until(&rollback.steps["validate_extended"]["until"]),
        );
        let baseline = match progress.baseline {
            Some(value) => Reading::Value(value),
            None => self.baseline(probes).await,
        };
        let observation = self.observe(probes, baseline.clone()).await;
        let round = recovery::judge(&observation, &limits);
        let verdict = progress.tracker.observe(&round, &limits);
        let tracker = progress.tracker;
        if let Some(sink) = &self.progress {
            let line = progress_line(&round, &tracker, limits.consecutive_successes);
            sink.progress(rollback, Step::Validate, &line).await;
        }
        // The last round runs at the deadline itself.
        let verdict = match verdict {
            Verdict::Pending if progress.is_last_round(started) => {
                tracker.window_ended(Some(&round), settings.window)
            }
            other => other,
        };
        match verdict {
            Verdict::Pending => {
                if let Reading::Value(value) = baseline {
                    progress.baseline = Some(value);
                }
                progress.last_round_at = Some(started);
                StepOutcome::Wait {
                    after: progress.next_round_in(started, Utc::now(), settings.interval),
                    progress: to_json(&progress),
                }
            }
            Verdict::Validated => {
                let summary = format!(
                    "recovered: every check passed {} times in a row ({})",
                    tracker.passes_in_a_row,
                    round_summary(&round)
                );
                let detail = evidence(probes, &observation, &round, &tracker, &summary, true);
                StepOutcome::finished(Event::StepSucceeded, detail)
            }
            Verdict::Failed(reason) => {
                let detail = evidence(probes, &observation, &round, &tracker, &reason, false);
                StepOutcome::finished(Event::StepFailed { reason }, detail)
            }
        }
    }

    async fn baseline(&self, probes: &Probes<'_>) -> Reading {
        match probes.baseline_at {
            Some(at) => reading(
                probes
                    .prometheus
                    .query(&probes.queries.p99_baseline, Some(at))
                    .await,
            ),
            None => Reading::Unavailable(
                "when the faulty rollout started is unknown (its ReplicaSet was re-activated, and \
                 no scaling event of the Deployment names it: events expire after an hour, or \
                 could not be read, see the bot's log), so there is no baseline"
                    .into(),
            ),
        }
    }

    async fn observe(&self, probes: &Probes<'_>, p99_baseline: Reading) -> Observation {
        let q = &probes.queries;
        let prometheus = &probes.prometheus;
        let (p99_now, error_rate, request_rate, health, pods, alerts) = tokio::join!(
            prometheus.query(&q.p99, None),
            prometheus.query(&q.error_rate, None),
            prometheus.query(&q.request_rate, None),
            health(probes),
            self.executor.soak(&probes.plan),
            prometheus.firing_alerts(),
        );
        Observation {
            p99_baseline,
            p99_now: reading(p99_now),
            error_rate: reading(error_rate),
            request_rate: reading(request_rate),
            health,
            pods: pods.unwrap_or_else(|e| recovery::Pods {
                unavailable: Some(e.to_string()),
                ..recovery::Pods::default()
            }),
            alerts: match alerts {
                Ok(alerts) => Alerts::Firing {
                    alerts: alerts
                        .into_iter()
                        .filter(|a| a.matches(&probes.alert_labels))
                        .collect(),
                    faulty_since: probes.baseline_at,
                },
                Err(e) => Alerts::Unavailable(e.to_string()),
            },
        }
    }
}

/// When a lead's extension ends, if there is one.
fn extended_until(until: &Value) -> Option<DateTime<Utc>> {
    until.as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok())
}

fn reading(answer: Result<Option<f64>, crate::clients::prometheus::Error>) -> Reading {
    match answer {
        Ok(sample) => Reading::from_sample(sample),
        Err(e) => Reading::Unavailable(e.to_string()),
    }
}

async fn health(probes: &Probes<'_>) -> Health {
    let Some(url) = &probes.settings.health_url else {
        return Health::NotConfigured;
    };
    match probes
        .http
        .get(url, None, probes.settings.health_timeout)
        .await
    {
        Ok((status, _)) => Health::Status(status),
        Err(e) => Health::Unreachable(e.to_string()),
    }
}

/// `✓ P99 latency: … · ✗ error rate: … (1 of 3 in a row)`: one round on the live card.
fn progress_line(round: &Round, tracker: &Tracker, needed: u32) -> String {
    format!(
        "{} ({} of {needed} passing checks in a row)",
        round_summary(round),
        tracker.passes_in_a_row
    )
}

fn round_summary(round: &Round) -> String {
    round
        .checks
        .iter()
        .map(|c| format!("{} {}: {}", c.status.symbol(), c.name.label(), c.evidence))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The step's detail: the verdict, the last round's numbers and the queries behind them (and
/// what the recovery chart needs: when validation ended, and how).
fn evidence(
    probes: &Probes<'_>,
    observation: &Observation,
    round: &Round,
    tracker: &Tracker,
    summary: &str,
    validated: bool,
) -> Value {
    json!({
        "summary": summary,
        "recovery": {
            "validated": validated,
            "ended_at": Utc::now(),
            "checks": to_json(&round.checks),
            "observation": to_json(observation),
            "rounds": tracker.rounds,
            "passes_in_a_row": tracker.passes_in_a_row,
            "queries": to_json(&probes.queries),
            "baseline_at": probes.baseline_at,
            "alert_labels": probes.alert_labels,
            "prometheus": probes.prometheus.url(),
        },
    })
}
