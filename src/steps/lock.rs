//! The lock step: after a successful rollback (and its recovery validation) the Deployment
//! gets the deploy lock annotations of [`crate::clients::k8s::lock`], which the admission policy in
//! `config/kubernetes/base/deploy-lock.yaml` enforces until an approved unlock removes them.
//!
//! Unlock requests (`/rollback unlock <service> <fix reference>`, [`crate::domain::Kind`])
//! plan by reading the lock they will remove (its fingerprint binds the approval to that
//! lock) and execute by removing it, unless a newer rollback locked the Deployment since.
//!
//! Exactly once: the step reads the Deployment first and, when it already carries this
//! rollback's lock (a crash after the patch, before the transition), finishes without
//! patching again, so the lock keeps its original `since`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{KubernetesSteps, failure, target};
use crate::clients::k8s::lock::{self, Lock};
use crate::clients::k8s::{self, Target};
use crate::db::rollbacks::Rollback;
use crate::domain::machine::Event;
use crate::engine::StepOutcome;

/// The lock a successful `rollback` sets, at `now`. The reason is what the API server's
/// denial quotes, so it names the rollback, the incident and who approved it.
pub fn lock_for(rollback: &Rollback, now: DateTime<Utc>) -> Lock {
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
    }
}

/// The command that lifts the lock, as the card and the denial message show it.
pub fn unlock_command(service: &str) -> String {
    format!("/rollback unlock {service} <fix reference>")
}

impl KubernetesSteps {
    pub(super) async fn lock(&self, rollback: &Rollback) -> StepOutcome {
        match self.set_lock(rollback).await {
            Ok((lock, already_set)) => {
                let mut detail = json!({
                    "lock": lock,
                    "already_set": already_set,
                    "unlock": unlock_command(&rollback.service),
                });
                // The GitOps path also locks in Argo CD (src/steps/argocd.rs).
                match self.lock_gitops(rollback, &lock.reason).await {
                    Ok(None) => {}
                    Ok(Some(argocd)) => detail["argocd"] = argocd,
                    Err(outcome) => return outcome,
                }
                StepOutcome::finished(Event::StepSucceeded, detail)
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

    /// Sets this rollback's lock unless the Deployment carries it already; says which.
    async fn set_lock(&self, rollback: &Rollback) -> Result<(Lock, bool), k8s::Error> {
        let target = target(rollback);
        if let Some(current) = lock::read(&self.executor, &target).await?
            && current.rollback_id == Some(rollback.id)
        {
            return Ok((current, true));
        }
        let lock = lock_for(rollback, Utc::now());
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
                    detail: json!({ "lock": lock }),
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
