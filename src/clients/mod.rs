//! One module per outside system. Clients import only `support` and `domain`: never the
//! configuration, the database pool or Slack UI text.
//!
//! - [`slack`]: the Slack Web API.
//! - [`prometheus`]: instant queries and ranges.
//! - [`pagerduty`]: the Events API v2.
//! - [`tickets`]: Jira and GitHub issues.
//! - [`k8s`]: the Kubernetes API server (with [`k8s::argocd`] and the deploy [`k8s::lock`]).

pub mod k8s;
pub mod pagerduty;
pub mod prometheus;
pub mod slack;
pub mod tickets;
