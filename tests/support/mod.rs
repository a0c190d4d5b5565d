//! What the integration tests share, as one module: `mod support;` in a test, then
//! `use support::{cluster, bot, …};`. Each test binary uses a different subset.
//!
//! - [`cluster`]: the test Kubernetes control plane and its namespaces.
//! - [`bot`]: the real `rollback-bot` binary, its scratch database and config.
//! - [`in_process`]: the bot wired in the test process through `rollback_bot::startup`.
//! - [`recovery`], [`simulator`]: recovery validation scenarios and the service simulator.
//! - [`argocd`]: the Argo CD test installation.
//! - [`browser`]: headless Chromium on the Slack sandbox's page, as a person uses it.
//! - [`http_standin`], [`pagerduty_standin`], [`jira_standin`], [`github_standin`]: local
//!   stand-ins for the outside systems; [`slack_standin`] is the Slack sandbox's Web API.

#![allow(dead_code, unused_imports)]

pub mod argocd;
pub mod bot;
pub mod browser;
pub mod cluster;
pub mod github_standin;
pub mod http_standin;
pub mod in_process;
pub mod jira_standin;
pub mod pagerduty_standin;
pub mod recovery;
pub mod simulator;

pub use slack_sandbox::web_api as slack_standin;
