//! Kubernetes executor: rollout history, rollback plans, `rollout undo` and verification,
//! with `kubectl`'s semantics, through kube-rs.
