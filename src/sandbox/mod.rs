//! The Slack sandbox: one local stand-in for Slack that serves both the tests and a person
//! trying the bot without a Slack workspace.
//!
//! - [`web_api`]: the Web API the bot calls, enforcing Slack's documented contract and
//!   recording every call (what the tests assert on).

pub mod web_api;
