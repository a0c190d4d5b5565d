//! The executor layer's single error type.
//!
//! Variants fall in two families that callers must treat differently: *refusals*
//! (`is_refusal()`), which are answers for the requester and must not be retried, and
//! failures of the Kubernetes API or transport, some of which are worth retrying
//! (`is_transient()`).

use std::fmt::Write as _;

/// Errors of the Kubernetes executor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target names a cluster that is not configured.
    #[error(
        "unknown cluster {cluster:?}; configured clusters: {}",
        list_or_none(known)
    )]
    UnknownCluster {
        /// The requested cluster name.
        cluster: String,
        /// Names of the configured clusters.
        known: Vec<String>,
    },

    /// No Deployment of that name exists in the namespace.
    #[error(
        "deployment {deployment:?} not found in namespace {namespace:?}{}",
        suggest(suggestions)
    )]
    UnknownDeployment {
        /// Namespace that was searched.
        namespace: String,
        /// The requested Deployment name.
        deployment: String,
        /// Closest existing names, best first (may be empty).
        suggestions: Vec<String>,
    },

    /// The requested revision is not in the Deployment's history (kubectl's wording first).
    #[error(
        "unable to find specified revision {revision} in history; available revisions: {}",
        list_or_none(available)
    )]
    UnknownRevision {
        /// The requested revision.
        revision: i64,
        /// Revisions that do exist, ascending.
        available: Vec<i64>,
    },

    /// "Previous revision" was requested but the Deployment has only one revision.
    #[error("no rollout history found for deployment {deployment:?}")]
    NoPreviousRevision {
        /// Deployment name.
        deployment: String,
    },

    /// The target revision's pod template equals the running one: `kubectl rollout undo`
    /// would print "skipped rollback".
    #[error(
        "nothing to roll back: the current template already matches revision {revision} (ReplicaSet {replica_set})"
    )]
    NothingToRollBack {
        /// Revision of the target ReplicaSet.
        revision: i64,
        /// Target ReplicaSet name.
        replica_set: String,
    },

    /// kubectl refuses to roll back a paused Deployment, and so do we.
    #[error(
        "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again (deployment {deployment:?})"
    )]
    Paused {
        /// Deployment name.
        deployment: String,
    },

    /// A rollout is still progressing; rolling back on top of it needs the force flag.
    #[error(
        "a rollout of deployment {deployment:?} is in progress ({status}); retry with force to roll back anyway"
    )]
    RolloutInProgress {
        /// Deployment name.
        deployment: String,
        /// kubectl's rollout-status message at planning time.
        status: String,
    },

    /// The Deployment no longer matches the approved plan; nothing was changed.
    #[error("the deployment changed since the plan was made, nothing was changed: {reason}")]
    PlanChanged {
        /// What differs, in words.
        reason: String,
    },

    /// The approval is older than the configured limit (`timeouts.approval_max_age`), e.g.
    /// after a long outage of the bot or its database; nothing was changed.
    #[error(
        "the approval is too old to act on: it was valid until {deadline} (timeouts.approval_max_age); nothing was changed, request the rollback again if it is still needed"
    )]
    ApprovalStale {
        /// The last moment the approval could start execution.
        deadline: chrono::DateTime<chrono::Utc>,
    },

    /// Every conditional patch lost against another writer; worth retrying later.
    #[error("deployment {deployment:?} kept changing: {conflicts} conflicting writes in a row")]
    Contended {
        /// Deployment name.
        deployment: String,
        /// How many patches were refused with 409.
        conflicts: u32,
    },

    /// The executor's credentials are not allowed to do this (RBAC); an operator has to fix
    /// the RoleBinding, retrying will not help.
    #[error("not authorised: {message}")]
    Forbidden {
        /// The API server's message.
        message: String,
    },

    /// A ReplicaSet's revision annotation does not parse (kubectl fails the same way).
    #[error("ReplicaSet {replica_set:?} has an invalid revision annotation {value:?}")]
    InvalidRevision {
        /// ReplicaSet name.
        replica_set: String,
        /// The annotation value.
        value: String,
    },

    /// The Deployment object lacks something the executor needs (spec, uid, selector…).
    #[error("deployment {deployment:?} is malformed: {reason}")]
    Malformed {
        /// Deployment name.
        deployment: String,
        /// What is missing.
        reason: String,
    },

    /// Loading a kubeconfig / in-cluster configuration failed.
    #[error("cannot configure cluster {cluster:?}: {message}")]
    Config {
        /// Cluster name from the configuration.
        cluster: String,
        /// Cause.
        message: String,
    },

    /// A Kubernetes API request failed.
    #[error("kubernetes API request failed: {0}")]
    Kube(#[source] kube::Error),

    /// A watch failed in a way the watcher does not recover from.
    #[error("kubernetes watch failed: {0}")]
    Watch(#[source] kube::runtime::watcher::Error),
}

/// Result alias for the executor layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the request itself was refused for a reason the requester should see
    /// (unknown names, nothing to do, paused, in progress, plan changed…). Never retry these.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::UnknownCluster { .. }
                | Self::UnknownDeployment { .. }
                | Self::UnknownRevision { .. }
                | Self::NoPreviousRevision { .. }
                | Self::NothingToRollBack { .. }
                | Self::Paused { .. }
                | Self::RolloutInProgress { .. }
                | Self::PlanChanged { .. }
                | Self::ApprovalStale { .. }
        )
    }

    /// Whether retrying the same call later may succeed: connection problems, API server
    /// overload (429) and 5xx answers, optimistic-concurrency conflicts and broken watches.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Kube(e) => kube_error_is_transient(e),
            Self::Watch(e) => match e {
                kube::runtime::watcher::Error::InitialListFailed(e)
                | kube::runtime::watcher::Error::WatchStartFailed(e)
                | kube::runtime::watcher::Error::WatchFailed(e) => kube_error_is_transient(e),
                // 410 Gone: the resource version expired (e.g. after an apiserver restart);
                // the watcher re-lists on its next poll.
                kube::runtime::watcher::Error::WatchError(s) => {
                    s.code == 410 || status_is_transient(s.code)
                }
                kube::runtime::watcher::Error::NoResourceVersion => false,
            },
            Self::Contended { .. } => true,
            _ => false,
        }
    }
}

/// HTTP status of an API error, if the error carries one.
pub(crate) fn api_status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn kube_error_is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => status_is_transient(s.code),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

fn status_is_transient(code: u16) -> bool {
    // 409: another writer won an optimistic-concurrency race; a fresh read will do.
    matches!(code, 409 | 429 | 500 | 502 | 503 | 504)
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 403 => Self::Forbidden { message: s.message },
            e => Self::Kube(e),
        }
    }
}

impl From<kube::runtime::watcher::Error> for Error {
    fn from(e: kube::runtime::watcher::Error) -> Self {
        use kube::runtime::watcher::Error as W;
        match e {
            W::InitialListFailed(kube::Error::Api(s))
            | W::WatchStartFailed(kube::Error::Api(s))
            | W::WatchFailed(kube::Error::Api(s))
                if s.code == 403 =>
            {
                Self::Forbidden { message: s.message }
            }
            e => Self::Watch(e),
        }
    }
}

fn list_or_none<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_owned();
    }
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{item}");
    }
    out
}

fn suggest(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(" or "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_messages_name_the_alternatives() {
        let e = Error::UnknownDeployment {
            namespace: "production".into(),
            deployment: "chekout".into(),
            suggestions: vec!["checkout".into(), "checkout-worker".into()],
        };
        assert_eq!(
            e.to_string(),
            "deployment \"chekout\" not found in namespace \"production\"; did you mean checkout or checkout-worker?"
        );
        assert!(e.is_refusal());
        assert!(!e.is_transient());

        let e = Error::UnknownRevision {
            revision: 9,
            available: vec![2, 3, 4],
        };
        assert_eq!(
            e.to_string(),
            "unable to find specified revision 9 in history; available revisions: 2, 3, 4"
        );
    }

    #[test]
    fn api_errors_are_classified_by_status_code() {
        let api = |code: u16| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: "boom".into(),
                ..Default::default()
            }))
        };
        assert!(Error::from(api(503)).is_transient());
        assert!(Error::from(api(429)).is_transient());
        assert!(!Error::from(api(422)).is_transient());
        let forbidden = Error::from(api(403));
        assert!(matches!(forbidden, Error::Forbidden { .. }));
        assert!(!forbidden.is_transient() && !forbidden.is_refusal());
    }
}
