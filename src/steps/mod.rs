//! The engine's steps, carried out by the Kubernetes executor: plan (`rollout history` and the
//! runbook preconditions), execute (`rollout undo`, bound to the approved plan), verify
//! (`rollout status`, images, pods) and validate (recovery against Prometheus, the health
//! endpoint and the pods over a window) and lock (the deploy lock annotations), one module
//! each; then notify (the DM to the deployer, [`notify`]) and ticket (the post-incident
//! ticket, [`ticket`]), which report their failures on the card and never fail the rollback;
//! [`escalate`] runs for failed rollbacks (the engine's escalator). `argocd` holds the GitOps
//! path's execute, lock and unlock (docs/argocd.md).
//!
//! Steps use the clients, the database and the engine; never the Slack UI or HTTP.
//!
//! This is the only place that translates executor results into engine events: refusals end
//! the rollback with the reason the requester will read, transient API failures are retried
//! by the engine, anything else fails the rollback.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{Value, json};

use crate::clients::k8s::{self, Executor, RollbackPlan, Target};
use crate::config::Config;
use crate::db::rollbacks::Rollback;
use crate::domain::machine::Event;
use crate::domain::{Kind, Step};
use crate::engine::{ProgressSink, StepOutcome, StepRunner};
use crate::steps::notify::DeployerNotifier;
use crate::steps::ticket::Tickets;

mod argocd;
pub mod escalate;
mod execute;
mod lock;
pub mod notify;
mod plan;
pub mod ticket;
mod validate;
mod verify;

pub use lock::{lock_enforcement_of_services, lock_for, unlock_command};
pub use validate::check_prometheus;

/// After a crash mid-verification, the resumed verification gets what is left of the window
/// that started at execution, but at least this long to look at the cluster once more.
pub(super) const MIN_RESUMED_VERIFICATION: Duration = Duration::from_secs(5);

/// Why a plan that needs a DBA sign-off is refused when the configuration names no DBA.
pub const NO_DBA_CONFIGURED: &str = "the Deployment is marked database-coupled \
    (annotation rollback-bot/database-coupled) and needs a DBA sign-off, but no DBA is \
    configured (slack.dba_user_ids or slack.dba_user_group); ask the bot's operators to add one";

pub struct KubernetesSteps {
    executor: Arc<Executor>,
    config: Arc<Config>,
    progress: Option<Arc<dyn ProgressSink>>,
    deployer: Option<Arc<DeployerNotifier>>,
    tickets: Option<Arc<Tickets>>,
}

impl KubernetesSteps {
    pub fn new(executor: Arc<Executor>, config: Arc<Config>) -> Self {
        KubernetesSteps {
            executor,
            config,
            progress: None,
            deployer: None,
            tickets: None,
        }
    }

    /// Who runs the `notify` and `ticket` steps; without them both finish as not configured.
    pub fn with_post_rollback(
        mut self,
        deployer: Arc<DeployerNotifier>,
        tickets: Arc<Tickets>,
    ) -> Self {
        self.deployer = Some(deployer);
        self.tickets = Some(tickets);
        self
    }

    pub fn with_progress(mut self, sink: Arc<dyn ProgressSink>) -> Self {
        self.progress = Some(sink);
        self
    }

    fn kept_annotations(&self) -> Vec<String> {
        kept_annotations(&self.config)
    }
}

/// The bot's own operational annotations on a Deployment (discovery, database coupling,
/// who deployed): they keep their value through the rollback's revision swap, where
/// `kubectl rollout undo` would drop them. The plan step and `rollback-bot plan` both use it.
pub fn kept_annotations(config: &Config) -> Vec<String> {
    vec![
        crate::engine::catalog::SERVICE_ANNOTATION.to_owned(),
        k8s::DATABASE_COUPLED_ANNOTATION.to_owned(),
        config.deployer.annotation.clone(),
    ]
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
        if rollback.kind == Kind::Unlock {
            return match step {
                Step::Plan => self.plan_unlock(rollback).await,
                Step::Execute => self.unlock(rollback).await,
                Step::Begin => StepOutcome::finished(Event::StartExecution, json!({})),
                other => StepOutcome::finished(
                    Event::StepFailed {
                        reason: format!("an unlock request has no {} step", other.as_str()),
                    },
                    json!({}),
                ),
            };
        }
        match step {
            // The engine's escalator runs it (src/steps/escalate.rs); nothing on Kubernetes.
            Step::Escalate => StepOutcome::finished(Event::Escalate, json!({})),
            Step::Plan => self.plan(rollback).await,
            Step::Execute => self.execute(rollback).await,
            Step::Verify => self.verify(rollback).await,
            Step::Validate => self.validate(rollback).await,
            Step::Lock => self.lock(rollback).await,
            // Never fail a rollback that succeeded: their failures are shown, not escalated.
            Step::Notify => StepOutcome::finished(
                Event::StepSucceeded,
                match &self.deployer {
                    Some(deployer) => deployer.notify(rollback).await,
                    None => json!({ "status": "not_configured" }),
                },
            ),
            Step::Ticket => StepOutcome::finished(
                Event::StepSucceeded,
                match &self.tickets {
                    Some(tickets) => tickets.open(rollback).await,
                    None => json!({ "status": "not_configured" }),
                },
            ),
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
