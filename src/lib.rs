//! rollback-bot: Slack-driven, approval-gated Kubernetes Deployment rollbacks.
//!
//! The crate is split by concern; each module's `//!` says what it owns.

pub mod app;
pub mod argocd;
pub mod audit;
pub mod chart;
pub mod config;
pub mod db;
pub mod deployer;
pub mod discovery;
pub mod escalation;
pub mod failpoint;
pub mod http;
pub mod intent;
pub mod k8s;
pub mod lock;
pub mod outbound;
pub mod pagerduty;
pub mod prometheus;
pub mod readiness;
pub mod recovery;
pub mod recovery_chart;
pub mod retention;
pub mod rollback;
pub mod sandbox;
pub mod slack;
pub mod steps;
pub mod telemetry;
pub mod tracker;
