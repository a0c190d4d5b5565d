//! The bottom layer: helpers every other layer may use, knowing nothing about rollbacks.
//!
//! - [`text`]: truncate, escape for mrkdwn, closest names.
//! - [`http`]: the JSON HTTP client with retries the outside-system clients share.
//! - [`failpoint`]: crash injection for the crash tests.
//! - [`telemetry`]: tracing setup and the metrics registry.
//! - [`readiness`]: what `/readyz` reports about Slack.
//! - [`chart`]: line charts rendered to PNG.

pub mod chart;
pub mod failpoint;
pub mod http;
pub mod readiness;
pub mod telemetry;
pub mod text;
