//! The Slack interface: `/rollback` commands, the approval card with its buttons, and live
//! status in the card and its thread. docs/slack.md describes it for operators.
//!
//! - [`signature`]: v0 request signatures (HTTP transport).
//! - [`command`]: command text → [`command::Command`] (pure).
//! - [`actions`]: button ids and values (pure).
//! - [`render`]: Block Kit rendering of a rollback (pure).
//! - [`handlers`]: commands and clicks → database (both transports).
//! - [`origin`]: the workspace and app a request must come from (pure).
//! - [`authz`]: who may approve; [`recent`]: the recent-history answer.
//! - [`notifier`]: keeps cards and threads in step with the database;
//!   [`chart_upload`]: shares the recovery chart in the thread, exactly once;
//!   [`recovery_chart`]: what the chart shows.
//! - [`socket_mode`]: the Socket Mode transport (same handlers).
//! - [`state`]: what the handlers read, built by `crate::startup`.
//!
//! The Web API client is `crate::clients::slack`, the card tables `crate::db::cards`, the
//! replay record `crate::db::seen_requests`. Nothing below this layer imports it.

pub mod actions;
pub mod authz;
pub mod chart_upload;
pub mod command;
pub mod handlers;
pub mod notifier;
pub mod origin;
pub mod recent;
pub mod recovery_chart;
pub mod render;
pub mod signature;
pub mod socket_mode;
pub mod state;
mod sync_error;

pub use notifier::Notifier;
