//! The engine's steps, carried out by the Kubernetes executor: plan (`rollout history` and the
//! runbook preconditions), execute (`rollout undo`, bound to the approved plan), verify
//! (`rollout status`, images, pods) and validate (recovery against Prometheus, the health
//! endpoint and the pods over a window: [`validate`]).
//!
//! This is the only place that translates executor results into engine events: refusals end
//! the rollback with the reason the requester will read, transient API failures are retried
//! by the engine, anything else fails the rollback.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::k8s::{self, Executor, PlanContext, RollbackPlan, Target};
use crate::rollback::Step;
use crate::rollback::engine::{ProgressSink, StepOutcome, StepRunner};
use crate::rollback::machine::Event;
use crate::rollback::repo::Rollback;

mod validate;

pub use validate::check_prometheus;

/// After a crash mid-verification, the resumed verification gets what is left of the window
/// that started at execution, but at least this long to look at the cluster once more.
const MIN_RESUMED_VERIFICATION: Duration = Duration::from_secs(5);

/// Why a plan that needs a DBA sign-off is refused when the configuration names no DBA.
pub const NO_DBA_CONFIGURED: &str = "the Deployment is marked database-coupled \
    (annotation rollback-bot/database-coupled) and needs a DBA sign-off, but no DBA is \
    configured (slack.dba_user_ids or slack.dba_user_group); ask the bot's operators to add one";

pub struct KubernetesSteps {
    executor: Arc<Executor>,
    config: Arc<Config>,
    progress: Option<Arc<dyn ProgressSink>>,
}

impl KubernetesSteps {
    pub fn new(executor: Arc<Executor>, config: Arc<Config>) -> Self {
        KubernetesSteps {
            executor,
            config,
            progress: None,
        }
    }

    pub fn with_progress(mut self, sink: Arc<dyn ProgressSink>) -> Self {
        self.progress = Some(sink);
        self
    }

    async fn plan(&self, rollback: &Rollback) -> StepOutcome {
        let database_coupled = self
            .config
            .service(&rollback.service)
            .is_some_and(|s| s.database_coupled);
        let ctx = PlanContext {
            request_time: rollback.created_at,
            correlation_window: chrono::Duration::from_std(self.config.timeouts.correlation_window)
                .unwrap_or(chrono::Duration::MAX),
            database_coupled,
            force: rollback.force,
        };
        let planned = self
            .executor
            .plan(&target(rollback), rollback.requested_revision, &ctx)
            .await;
        match planned {
            // Start-up validation covers services coupled in the configuration; the
            // Deployment's annotation can still ask for a sign-off nobody may give.
            Ok(plan) if plan.requires_dba_sign_off() && !self.config.has_dba() => {
                StepOutcome::finished(
                    Event::PlanRefused {
                        reason: NO_DBA_CONFIGURED.into(),
                    },
                    json!({ "refusal": NO_DBA_CONFIGURED }),
                )
            }
            Ok(plan) => StepOutcome::Finished {
                event: Event::PlanReady {
                    fingerprint: plan.fingerprint(),
                    needs_dba: plan.requires_dba_sign_off(),
                    needs_override: plan.requires_override(),
                },
                detail: json!({ "fingerprint": plan.fingerprint() }),
                plan: Some(to_json(&plan)),
            },
            Err(e) if e.is_refusal() => StepOutcome::finished(
                Event::PlanRefused {
                    reason: e.to_string(),
                },
                json!({ "refusal": e.to_string() }),
            ),
            Err(e) => failure(e),
        }
    }

    async fn execute(&self, rollback: &Rollback) -> StepOutcome {
        let plan = match approved_plan(rollback) {
            Ok(plan) => plan,
            Err(outcome) => return outcome,
        };
        // The approval may act only for so long; the executor checks right before patching.
        let approved_at = rollback.approved_at.unwrap_or(rollback.expires_at);
        let deadline = chrono::Duration::from_std(self.config.timeouts.approval_max_age())
            .ok()
            .and_then(|age| approved_at.checked_add_signed(age));
        match self.executor.execute(&plan, deadline).await {
            Ok(executed) => StepOutcome::finished(Event::StepSucceeded, to_json(&executed)),
            // Nothing was changed: the Deployment no longer matches what was approved.
            Err(e) if e.is_refusal() => StepOutcome::finished(
                Event::StepFailed {
                    reason: format!("not executed: {e}"),
                },
                json!({ "refusal": e.to_string() }),
            ),
            Err(e) => failure(e),
        }
    }

    async fn verify(&self, rollback: &Rollback) -> StepOutcome {
        let plan = match approved_plan(rollback) {
            Ok(plan) => plan,
            Err(outcome) => return outcome,
        };
        let (tx, mut rx) = mpsc::channel::<k8s::Progress>(16);
        let forward = self.progress.clone().map(|sink| {
            let rollback = rollback.clone();
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    sink.progress(&rollback, Step::Verify, &p.message).await;
                }
            })
        });
        let verified = self
            .executor
            .verify(&plan, self.verification_window(rollback), Some(tx))
            .await;
        if let Some(forward) = forward {
            // The sender is gone with `verify`; let the last updates through.
            let _ = forward.await;
        }
        match verified {
            Ok(v) if v.passed => {
                // When verification ended: recovery validation's window starts here.
                let mut detail = to_json(&v);
                detail["at"] = json!(Utc::now());
                StepOutcome::finished(Event::StepSucceeded, detail)
            }
            Ok(v) => StepOutcome::finished(
                Event::StepFailed {
                    reason: v.summary.clone(),
                },
                to_json(&v),
            ),
            Err(e) => failure(e),
        }
    }

    /// The verification window runs from execution; a resumed verification gets what is left.
    fn verification_window(&self, rollback: &Rollback) -> Duration {
        remaining_window(
            self.config.timeouts.verification,
            &rollback.steps["execute"]["at"],
        )
    }
}

/// What is left of a window of `full` that started at `started_at` (an RFC 3339 time a step
/// recorded; none means it starts now), but at least [`MIN_RESUMED_VERIFICATION`]: a step
/// resumed after a crash looks at least once more.
fn remaining_window(full: Duration, started_at: &Value) -> Duration {
    let started_at = started_at
        .as_str()
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok());
    let Some(started_at) = started_at else {
        return full;
    };
    let spent = (Utc::now() - started_at.with_timezone(&Utc))
        .to_std()
        .unwrap_or_default();
    full.saturating_sub(spent).max(MIN_RESUMED_VERIFICATION)
}

#[async_trait]
impl StepRunner for KubernetesSteps {
    async fn run(&self, step: Step, rollback: &Rollback) -> StepOutcome {
        match step {
            Step::Plan => self.plan(rollback).await,
            Step::Execute => self.execute(rollback).await,
            Step::Verify => self.verify(rollback).await,
            Step::Validate => self.validate(rollback).await,
            Step::Begin => StepOutcome::finished(Event::StartExecution, json!({})),
        }
    }
}

pub fn target(rollback: &Rollback) -> Target {
    Target::new(&rollback.cluster, &rollback.namespace, &rollback.deployment)
}

/// The plan stored with the approval; every later step acts on exactly this plan. Its
/// fingerprint is recomputed and must be the one the approvals were given for, so a stored
/// plan that was altered (or written by an older version) is never acted on.
pub fn approved_plan(rollback: &Rollback) -> Result<RollbackPlan, StepOutcome> {
    let refuse = |reason: String| {
        StepOutcome::finished(
            Event::StepFailed {
                reason: reason.clone(),
            },
            json!({ "refusal": reason }),
        )
    };
    let stored = rollback.plan.clone().unwrap_or(Value::Null);
    let plan: RollbackPlan = serde_json::from_value(stored)
        .map_err(|e| refuse(format!("not executed: the stored plan is unreadable: {e}")))?;
    if rollback.plan_fingerprint.as_deref() != Some(plan.fingerprint().as_str()) {
        return Err(refuse(
            "not executed: the stored plan does not match the plan that was approved (fingerprint mismatch)"
                .to_owned(),
        ));
    }
    Ok(plan)
}

fn failure(e: k8s::Error) -> StepOutcome {
    if e.is_transient() {
        StepOutcome::Retry(e.to_string())
    } else {
        StepOutcome::finished(
            Event::StepFailed {
                reason: e.to_string(),
            },
            json!({ "error": e.to_string() }),
        )
    }
}

fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or_else(|e| json!({ "unserializable": e.to_string() }))
}
