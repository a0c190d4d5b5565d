//! Pure rollout status: [`rollout_status`] reproduces `kubectl rollout status` message for
//! message. No I/O here.

use k8s_openapi::api::apps::v1::Deployment;
use serde::{Deserialize, Serialize};

/// Where a rollout stands, with kubectl's message (without its trailing newline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "message", rename_all = "snake_case")]
pub enum RolloutStatus {
    /// Still converging.
    Waiting(String),
    /// `deployment "<n>" successfully rolled out`.
    Done(String),
    /// `deployment "<n>" exceeded its progress deadline`.
    Failed(String),
}

impl RolloutStatus {
    /// kubectl's message.
    pub fn message(&self) -> &str {
        match self {
            Self::Waiting(m) | Self::Done(m) | Self::Failed(m) => m,
        }
    }

    /// Whether the rollout is still converging.
    pub fn is_waiting(&self) -> bool {
        matches!(self, Self::Waiting(_))
    }
}

/// `kubectl rollout status deployment/<n>` for one observed Deployment, in kubectl's order:
/// observedGeneration, progress deadline, updated, old pending termination, available.
pub fn rollout_status(deployment: &Deployment) -> RolloutStatus {
    status_inner(deployment, true, true)
}

/// [`rollout_status`] as of the controller's last observation: a not-yet-observed
/// generation is ignored. Planning uses it when the template already has its ReplicaSet, so
/// a metadata edit (annotations bump a Deployment's generation too) is not mistaken for a
/// rollout.
pub fn last_observed_rollout_status(deployment: &Deployment) -> RolloutStatus {
    status_inner(deployment, true, false)
}

pub(crate) fn status_inner(
    deployment: &Deployment,
    honour_deadline: bool,
    honour_generation: bool,
) -> RolloutStatus {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let status = deployment.status.clone().unwrap_or_default();
    if honour_generation
        && deployment.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0)
    {
        return RolloutStatus::Waiting(
            "Waiting for deployment spec update to be observed...".to_owned(),
        );
    }
    if honour_deadline && progress_deadline_exceeded(deployment).is_some() {
        return RolloutStatus::Failed(format!(
            "deployment \"{name}\" exceeded its progress deadline"
        ));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let waiting = |what: String| {
        RolloutStatus::Waiting(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {what}..."
        ))
    };
    match deployment.spec.as_ref().and_then(|s| s.replicas) {
        Some(want) if updated < want => waiting(format!(
            "{updated} out of {want} new replicas have been updated"
        )),
        _ if replicas > updated => waiting(format!(
            "{} old replicas are pending termination",
            replicas - updated
        )),
        _ if available < updated => waiting(format!(
            "{available} of {updated} updated replicas are available"
        )),
        _ => RolloutStatus::Done(format!("deployment \"{name}\" successfully rolled out")),
    }
}

/// The Progressing condition's message when its reason is `ProgressDeadlineExceeded`
/// (kubectl looks at the reason only, not the status).
pub(crate) fn progress_deadline_exceeded(deployment: &Deployment) -> Option<String> {
    deployment
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
        .map(|c| c.message.clone().unwrap_or_default())
}
