//! The steps' GitOps path (`src/clients/k8s/argocd/`): for a Deployment an Argo CD Application manages,
//! execute asks Argo CD to sync the approved history entry (instead of `rollout undo`), the
//! lock adds a deny sync window and keeps auto-sync off, and an approved unlock removes the
//! window and restores the recorded auto-sync policy. Verify and validate are the native
//! path's, unchanged: they look at the Deployment, whoever changed it.

use serde_json::{Value, json};

use super::{KubernetesSteps, failure, to_json};
use crate::clients::k8s::argocd::client::{self, Initiator, Settings};
use crate::clients::k8s::argocd::{self, ArgoCdPlan, DEFAULT_NAMESPACE};
use crate::db::rollbacks::Rollback;
use crate::domain::machine::Event;
use crate::engine::StepOutcome;

/// A failed GitOps call as a step outcome: transient errors are retried, the rest fail the
/// step with the error as its reason (`prefix` says what it means for the rollback).
pub(super) fn argocd_failure(e: argocd::Error, prefix: &str) -> StepOutcome {
    if e.is_transient() {
        return StepOutcome::Retry(e.to_string());
    }
    let reason = format!("{prefix}{e}");
    let key = if e.is_refusal() { "refusal" } else { "error" };
    StepOutcome::finished(
        Event::StepFailed {
            reason: reason.clone(),
        },
        json!({ key: e.to_string() }),
    )
}

impl KubernetesSteps {
    /// Where the Application of `rollback`'s service is looked for.
    pub(super) fn argocd_settings(&self, rollback: &Rollback) -> Settings<'_> {
        Settings {
            namespace: self
                .config
                .clusters
                .get(&rollback.cluster)
                .and_then(|c| c.argocd_namespace.as_deref())
                .unwrap_or(DEFAULT_NAMESPACE),
            configured_application: self
                .config
                .services
                .get(&rollback.service)
                .and_then(|s| s.argocd_application.as_deref()),
        }
    }

    /// Execute on the GitOps path: [`client::execute`] bound to the approved plan and the
    /// approval's deadline.
    pub(super) async fn execute_argocd(
        &self,
        rollback: &Rollback,
        plan: &ArgoCdPlan,
        deadline: Option<chrono::DateTime<chrono::Utc>>,
    ) -> StepOutcome {
        let approver = rollback.lead_approved_by.as_deref().unwrap_or("?");
        let reason = match &rollback.incident {
            Some(incident) => format!("rollback #{} for {incident}", rollback.id),
            None => format!("rollback #{}", rollback.id),
        };
        let who = Initiator {
            rollback_id: rollback.id,
            approver,
            reason: &reason,
        };
        let executed = client::execute(
            &self.executor,
            &rollback.cluster,
            plan,
            who,
            deadline,
            self.config.timeouts.verification,
        )
        .await;
        match executed {
            Ok(done) => {
                let mut detail = json!({
                    "at": done.finished_at,
                    "already_applied": done.already_applied,
                    "argocd": {
                        "application": plan.application,
                        "revision": plan.target.revision,
                        "history_id": plan.target.id,
                        "auto_sync_disabled": done.auto_sync_disabled,
                        "operation_requested_at": done.requested_at,
                        "message": done.message,
                    },
                });
                // The sync is done: lock the Deployment now (earlier, the lock would deny
                // Argo CD's own sync), so a rollback that fails verification or validation
                // stays locked too.
                match self.set_lock(rollback).await {
                    Ok((lock, already_set)) => {
                        detail["lock"] = to_json(&lock);
                        detail["enforcement"] =
                            to_json(&self.lock_enforcement(rollback, !already_set).await);
                    }
                    Err(e) if e.is_transient() => return failure(e),
                    Err(e) => {
                        tracing::warn!(rollback = rollback.id, error = %e,
                            "rolled back through Argo CD; the deploy lock follows in the lock step");
                    }
                }
                StepOutcome::finished(Event::StepSucceeded, detail)
            }
            Err(e) if e.is_refusal() => argocd_failure(e, "not executed: "),
            Err(e) => argocd_failure(e, "Argo CD rollback: "),
        }
    }

    /// The lock's GitOps part; the detail to add to the lock step's.
    pub(super) async fn lock_argocd(
        &self,
        rollback: &Rollback,
        plan: &ArgoCdPlan,
        reason: &str,
    ) -> Result<Value, argocd::Error> {
        let already =
            client::lock(&self.executor, &rollback.cluster, plan, rollback.id, reason).await?;
        Ok(json!({
            "application": plan.application,
            "project": plan.project,
            "deny_window": true,
            "auto_sync": "off",
            "already_set": already,
        }))
    }

    /// The unlock plan's GitOps part (None: not managed by Argo CD, or its Application is
    /// gone: then there is nothing to give back, and the Deployment's lock still goes).
    pub(super) async fn unlock_plan_argocd(
        &self,
        request: &Rollback,
    ) -> Result<Option<Value>, argocd::Error> {
        let planned = client::unlock_plan(
            &self.executor,
            &super::target(request),
            self.argocd_settings(request),
        )
        .await;
        match planned {
            Err(e) if e.is_refusal() => Ok(None),
            planned => planned,
        }
    }

    /// The unlock's GitOps part, as planned (`plan.argocd` of the unlock request).
    pub(super) async fn unlock_argocd(
        &self,
        request: &Rollback,
    ) -> Result<Option<Value>, argocd::Error> {
        let planned = request.plan.as_ref().map(|p| &p["argocd"]);
        let (Some(namespace), Some(application)) = (
            planned.and_then(|a| a["namespace"].as_str()),
            planned.and_then(|a| a["application"].as_str()),
        ) else {
            return Ok(None);
        };
        client::unlock(&self.executor, &request.cluster, namespace, application)
            .await
            .map(Some)
    }
}

impl KubernetesSteps {
    /// The lock step's GitOps part for an approved Argo CD plan (None: native path). Fails
    /// like the deploy lock does: a rollback whose re-deploy is not blocked needs people.
    pub(super) async fn lock_gitops(
        &self,
        rollback: &Rollback,
        reason: &str,
    ) -> Result<Option<Value>, StepOutcome> {
        let plan = match super::approved_plan(rollback) {
            Ok(plan) => plan,
            Err(outcome) => return Err(outcome),
        };
        let Some(argocd) = &plan.argocd else {
            return Ok(None);
        };
        self.lock_argocd(rollback, argocd, reason)
            .await
            .map(Some)
            .map_err(|e| argocd_failure(e, "rolled back, but the Argo CD lock could not be set: "))
    }

    /// After the Deployment's lock is gone, Argo CD's: the deny window and auto-sync.
    pub(super) async fn unlock_gitops(
        &self,
        request: &Rollback,
        outcome: StepOutcome,
    ) -> StepOutcome {
        let (mut detail, plan) = match outcome {
            StepOutcome::Finished {
                event: Event::StepSucceeded,
                detail,
                plan,
            } => (detail, plan),
            other => return other,
        };
        match self.unlock_argocd(request).await {
            Ok(None) => {}
            Ok(Some(argocd)) => detail["argocd"] = argocd,
            Err(e) => return argocd_failure(e, "unlocked the deployment, but not in Argo CD: "),
        }
        StepOutcome::Finished {
            event: Event::StepSucceeded,
            detail,
            plan,
        }
    }
}
