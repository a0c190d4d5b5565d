//! rollback-bot: Slack-driven, approval-gated Kubernetes Deployment rollbacks.
//!
//! One layered house; every module imports only the layers below it (`tests/layers.rs`
//! checks it), each module's `//!` says what it owns:
//!
//! | layer | owns |
//! |---|---|
//! | [`support`] | text helpers, the JSON HTTP client, failpoints, telemetry, readiness, charts |
//! | [`domain`] | pure rollback types, the state machine, recovery verdicts |
//! | [`clients`] | one module per outside system: Slack Web API, Prometheus, PagerDuty, ticket trackers, Kubernetes (with Argo CD) |
//! | [`db`] | all SQL: pool and migrations, rollbacks, audit, intents, cards, seen requests |
//! | [`config`] | configuration types, defaults, validation, secrets |
//! | [`engine`] | workers, leases, the step-runner port, retention, the service catalog |
//! | [`steps`] | one file per pipeline step |
//! | [`slack`] | the Slack UI: commands, clicks, rendering, the notifier |
//! | [`http`] | the routers |
//! | [`startup`] | the composition root: builds the app for `serve`, tests and benches |

pub mod clients;
pub mod config;
pub mod db;
pub mod domain;
pub mod engine;
pub mod http;
pub mod slack;
pub mod startup;
pub mod steps;
pub mod support;
