//! Kubernetes executor: rollout history, rollback plans, `rollout undo` and verification,
//! with `kubectl`'s semantics, through kube-rs.
//!
//! The rest of the bot uses [`Executor`] with a [`Target`]:
//! [`Executor::history`] (`kubectl rollout history`), [`Executor::plan`] (what `rollout undo`
//! would do, refusals and runbook preconditions, see [`RollbackPlan`]),
//! [`Executor::execute`] (the undo itself, bound to the approved plan, idempotent) and
//! [`Executor::verify`] (`rollout status` plus image and pod checks, watch-driven).
//!
//! Layout: pure logic in `revision` (history, target selection, patch), `plan` (plan,
//! preconditions, fingerprint), `rollout` (status and checks) and `suggest`; I/O only in
//! `executor` and `clusters`; one error enum in `error`.

pub mod argocd;
mod clusters;
pub mod deployments;
pub mod diagnosis;
mod error;
mod executor;
pub mod lock;
mod plan;
mod redact;
mod revision;
mod rollout;
mod status;
mod suggest;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use clusters::Clusters;
pub use error::{Error, Result};
pub use executor::{
    DEFAULT_VERIFY_TIMEOUT, Executed, Executor, Progress, UndoOptions, Verification,
};
pub use plan::{
    Correlation, DATABASE_COUPLED_ANNOTATION, DEFAULT_CORRELATION_WINDOW_MINUTES, DatabaseCoupling,
    ImageChange, PlanContext, ReplicaSetRef, Requirement, RollbackPlan, TemplateDifference,
    Warning, WarningKind, build_plan, image_lines,
};
pub use revision::{
    AnnotationChanges, CHANGE_CAUSE_ANNOTATION, ContainerImage, Revision, created_at, fmt_images,
    format_history, revision_of,
};
pub use rollout::{Check, CheckName};
pub use status::{RolloutStatus, rollout_status};

/// The Deployment a request is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    /// Cluster name, a key of [`Clusters`].
    pub cluster: String,
    /// Namespace of the Deployment.
    pub namespace: String,
    /// Deployment name.
    pub deployment: String,
}

impl Target {
    /// A target from its three parts.
    pub fn new(
        cluster: impl Into<String>,
        namespace: impl Into<String>,
        deployment: impl Into<String>,
    ) -> Self {
        Self {
            cluster: cluster.into(),
            namespace: namespace.into(),
            deployment: deployment.into(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.cluster, self.namespace, self.deployment)
    }
}
