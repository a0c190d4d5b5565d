//! The lock step: after a successful rollback (and its recovery validation) the Deployment
//! gets the deploy lock annotations of [`crate::lock`], which the admission policy in
//! `config/kubernetes/base/deploy-lock.yaml` enforces until an approved unlock removes them.
//!
//! Exactly once: the step reads the Deployment first and, when it already carries this
//! rollback's lock (a crash after the patch, before the transition), finishes without
//! patching again, so the lock keeps its original `since`.

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::{KubernetesSteps, failure, target};
use crate::k8s;
use crate::lock::{self, Lock};
use crate::rollback::engine::StepOutcome;
use crate::rollback::machine::Event;
use crate::rollback::repo::Rollback;

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
            Ok((lock, already_set)) => StepOutcome::finished(
                Event::StepSucceeded,
                json!({
                    "lock": lock,
                    "already_set": already_set,
                    "unlock": unlock_command(&rollback.service),
                }),
            ),
            Err(e) if e.is_transient() => failure(e),
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
        let client = self.executor.clusters().client(&target.cluster)?.clone();
        let deployments: Api<Deployment> = Api::namespaced(client, &target.namespace);
        deployments
            .patch(
                &target.deployment,
                &PatchParams::default(),
                &Patch::Merge(lock.lock_patch()),
            )
            .await?;
        Ok((lock, false))
    }
}
