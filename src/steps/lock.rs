//! The deploy lock (annotations of [`crate::domain::lock`], enforced by the admission policy
//! in `config/kubernetes/base/deploy-lock.yaml` until an approved unlock removes them). The
//! rollback patch sets it (`src/steps/execute.rs`; on the GitOps path the execute step right
//! after Argo CD's sync, which the lock would deny), so a rolled-back Deployment is locked
//! from that instant on, also when verification or validation then fails; the lock step after
//! validation confirms it (or sets it on the GitOps path) and checks that the cluster
//! enforces it before the card says "locked".
//!
//! Unlock requests (`/rollback unlock <service> <fix reference>`, [`crate::domain::Kind`])
//! plan by reading the lock they will remove (its fingerprint binds the approval to that
//! lock) and execute by removing it, unless a newer rollback locked the Deployment since.
//!
//! Exactly once: the step reads the Deployment first and, when it already carries this
//! rollback's lock (set by the patch, or a crash after the lock step's patch), finishes
//! without patching again, so the lock keeps its original `since`.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{KubernetesSteps, failure, target};
use crate::clients::k8s::lock::{self, Enforcement, Lock};
use crate::clients::k8s::{self, Executor, RollbackPlan, Target};
use crate::config::Config;
use crate::db::rollbacks::Rollback;
use crate::domain::machine::Event;
use crate::domain::results::LockResult;
use crate::engine::StepOutcome;
use crate::support::telemetry::metrics;

/// The lock a `rollback` sets, at `now`, for the approved `plan` (its current revision and
/// images are the faulty ones). The reason is what the API server's denial quotes, so it
/// names the rollback, the incident and who approved it.
pub fn lock_for(rollback: &Rollback, plan: Option<&RollbackPlan>, now: DateTime<Utc>) -> Lock {
    let mut reason = format!("rollback #{} of {}", rollback.id, rollback.service);
    if let Some(incident) = &rollback.incident {
        reason.push_str(&format!(" for incident {incident}"));
    }
    if let Some(lead) = &rollback.lead_approved_by {
        reason.push_str(&format!(" (approved by <@{lead}>)"));
    }
    Lock {
        reason,
        rollback_id: Some(rollback.id),
        service: Some(rollback.service.clone()),
        incident: rollback.incident.clone(),
        since: Some(now),
        approver: rollback.lead_approved_by.clone(),
        faulty_revisions: plan
            .and_then(|p| p.current.as_ref())
            .map(|current| vec![current.revision])
            .unwrap_or_default(),
        faulty_images: plan
            .map(|p| k8s::fmt_images(&p.current_images))
            .filter(|images| !images.is_empty()),
        earlier_rollbacks: vec![],
    }
}

/// For `check-config` and `serve`'s start-up: whether the deploy lock is enforced where each
/// configured service runs, once per cluster and namespace ("cluster/namespace", verdict).
pub async fn lock_enforcement_of_services(
    config: &Config,
    executor: &Executor,
) -> Vec<(String, Enforcement)> {
    let places: BTreeSet<(String, String)> = config
        .services
        .keys()
        .filter_map(|name| config.service(name))
        .map(|s| (s.cluster.to_owned(), s.namespace.to_owned()))
        .collect();
    let mut verdicts = Vec::with_capacity(places.len());
    for (cluster, namespace) in places {
        let target = Target::new(&cluster, &namespace, "");
        let verdict = lock::enforcement(executor, &target, lock_policy(config, &cluster)).await;
        verdicts.push((format!("{cluster}/{namespace}"), verdict));
    }
    verdicts
}

/// The name of the lock's admission policy in `cluster` (`clusters.<name>.lock_policy`).
fn lock_policy<'a>(config: &'a Config, cluster: &str) -> &'a str {
    config
        .clusters
        .get(cluster)
        .map_or(lock::POLICY_NAME, |c| c.lock_policy())
}

/// The command that lifts the lock, as the card and the denial message show it.
pub fn unlock_command(service: &str) -> String {
    format!("/rollback unlock {service} <fix reference>")
}

impl KubernetesSteps {
    /// The lock step: normally the rollback patch (or, on the GitOps path, the execute step
    /// right after Argo CD's sync) set the lock already and this confirms it; a Deployment
    /// found already rolled back gets it here. Either way the enforcement is checked again
    /// before the card may say "locked".
    pub(super) async fn lock(&self, rollback: &Rollback) -> StepOutcome {
        match self.set_lock(rollback).await {
            Ok((lock, already_set)) => {
                let mut result = LockResult {
                    lock: Some(lock),
                    already_set,
                    // A lock the patch set was counted then, if unenforced.
                    enforcement: Some(self.lock_enforcement(rollback, !already_set).await),
                    unlock: Some(unlock_command(&rollback.service)),
                    argocd: None,
                };
                // The GitOps path also locks in Argo CD (src/steps/argocd.rs).
                let reason = result.lock.as_ref().map(|l| l.reason.clone());
                match self
                    .lock_gitops(rollback, reason.as_deref().unwrap_or(""))
                    .await
                {
                    Ok(argocd) => result.argocd = argocd,
                    Err(outcome) => return outcome,
                }
                StepOutcome::finished(Event::StepSucceeded, result.to_json())
            }
            Err(e) if e.is_transient() => failure(e),
            // A restarted API server answers 403 until its RBAC caches are warm: retried like
            // an outage; a real lack of permission fails once the engine's retries are spent.
            Err(e @ k8s::Error::Forbidden { .. }) => StepOutcome::Retry(format!(
                "rolled back, but the deploy lock could not be set yet: {e}"
            )),
            Err(e) => StepOutcome::finished(
                Event::StepFailed {
                    reason: format!("rolled back, but the deploy lock could not be set: {e}"),
                },
                json!({ "error": e.to_string() }),
            ),
        }
    }

    /// Whether the cluster enforces a lock on this rollback's Deployment; an unenforced lock
    /// is logged for the operators, and counted when it was `newly_set` (once per lock).
    pub(super) async fn lock_enforcement(
        &self,
        rollback: &Rollback,
        newly_set: bool,
    ) -> Enforcement {
        let policy = lock_policy(&self.config, &rollback.cluster);
        let enforcement = lock::enforcement(&self.executor, &target(rollback), policy).await;
        if !enforcement.enforced {
            if newly_set {
                metrics().unenforced_lock(&rollback.cluster);
            }
            tracing::warn!(rollback = rollback.id, cluster = %rollback.cluster,
                problems = ?enforcement.problems, "deploy lock recorded but not enforced");
        }
        enforcement
    }

    /// Sets this rollback's lock unless the Deployment carries it already; says which.
    pub(super) async fn set_lock(&self, rollback: &Rollback) -> Result<(Lock, bool), k8s::Error> {
        let target = target(rollback);
        let current = lock::read(&self.executor, &target).await?;
        if let Some(current) = &current
            && current.rollback_id == Some(rollback.id)
        {
            return Ok((current.clone(), true));
        }
        let plan = super::approved_plan(rollback).ok();
        let lock = lock_for(rollback, plan.as_ref(), Utc::now()).extending(current.as_ref());
        self.patch_deployment(&target, lock.lock_patch()).await?;
        Ok((lock, false))
    }

    /// Applies a JSON merge patch (the lock's annotations) to the target Deployment with the
    /// bot's own identity, the one the admission policy lets through.
    async fn patch_deployment(&self, target: &Target, patch: Value) -> Result<(), k8s::Error> {
        k8s::deployments::merge_patch(self.executor.clusters(), target, patch).await
    }
}

/// What an unlock approval is bound to: the lock as it was when the card was shown. No `:`
/// (button values are `id:fingerprint`).
pub fn unlock_fingerprint(lock: &Lock) -> String {
    format!(
        "lock-{}-{}",
        lock.rollback_id
            .map_or_else(|| "none".to_owned(), |id| id.to_string()),
        lock.since.map_or(0, |at| at.timestamp())
    )
}

impl KubernetesSteps {
    /// The plan of an unlock request: the lock it will remove, or a refusal when there is
    /// none.
    pub(super) async fn plan_unlock(&self, request: &Rollback) -> StepOutcome {
        match lock::read(&self.executor, &target(request)).await {
            Ok(Some(lock)) => {
                // An Argo CD-managed Deployment also gets auto-sync back (src/steps/argocd.rs).
                let argocd = match self.unlock_plan_argocd(request).await {
                    Ok(argocd) => argocd,
                    Err(e) => return super::argocd::argocd_failure(e, ""),
                };
                StepOutcome::Finished {
                    event: Event::PlanReady {
                        fingerprint: unlock_fingerprint(&lock),
                        needs_dba: false,
                        needs_override: false,
                    },
                    plan: Some(json!({ "lock": lock, "argocd": argocd })),
                    detail: json!({
                        "lock": lock,
                        "approvers": self.config.approvers(false).to_json(),
                    }),
                }
            }
            Ok(None) => {
                let reason = format!(
                    "{} is not locked: there is nothing to unlock",
                    request.service
                );
                StepOutcome::finished(
                    Event::PlanRefused {
                        reason: reason.clone(),
                    },
                    json!({ "refusal": reason }),
                )
            }
            Err(e) => failure(e),
        }
    }

    /// Removes the lock the approvers saw, then (GitOps path) Argo CD's part of it.
    pub(super) async fn unlock(&self, request: &Rollback) -> StepOutcome {
        let outcome = self.unlock_deployment(request).await;
        self.unlock_gitops(request, outcome).await
    }

    /// Removes the lock the approvers saw. Already gone: done. Replaced by a newer
    /// rollback's lock: refused, since that lock was not part of the approval.
    async fn unlock_deployment(&self, request: &Rollback) -> StepOutcome {
        let target = target(request);
        let current = match lock::read(&self.executor, &target).await {
            Ok(current) => current,
            Err(e) => return failure(e),
        };
        let Some(lock) = current else {
            return StepOutcome::finished(
                Event::StepSucceeded,
                json!({ "already_unlocked": true }),
            );
        };
        if request.plan_fingerprint.as_deref() != Some(unlock_fingerprint(&lock).as_str()) {
            let reason = "not unlocked: the lock changed since the unlock was approved \
                (a newer rollback locked the deployment); request the unlock again"
                .to_owned();
            return StepOutcome::finished(
                Event::StepFailed {
                    reason: reason.clone(),
                },
                json!({ "refusal": reason, "lock": lock }),
            );
        }
        match self.patch_deployment(&target, lock::unlock_patch()).await {
            Ok(()) => StepOutcome::finished(
                Event::StepSucceeded,
                json!({ "unlocked": lock, "fix_reference": request.fix_reference }),
            ),
            Err(e) => failure(e),
        }
    }
}
