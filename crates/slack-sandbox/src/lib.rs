//! The Slack sandbox: one local stand-in for Slack that serves both the tests and a person
//! trying the bot without a Slack workspace.
//!
//! - [`web_api`]: the Web API the bot calls, enforcing Slack's documented contract and
//!   recording every call (what the tests assert on); its file uploads ([`files`]) and user
//!   directory ([`users`]) are submodules, as they work on its state.
//! - [`requests`]: signed Slack requests (commands, clicks) for driving the bot.
//! - [`limits`]: Slack's rate limits (pure), enforced on request.
//! - [`socket_mode`]: Slack's side of Socket Mode (`apps.connections.open`, envelopes, acks).
//! - [`deliver`]: a person's commands and clicks to the bot, over HTTP or Socket Mode.
//! - [`people`]: who a person can be on the page (requester, leads, DBA, a stranger).
//! - [`page`]: the browser page of `#incident-response` and its live event stream.
//!
//! `crates/slack-sandbox/src/bin/slack_sandbox.rs` runs it; docs/sandbox.md describes it.

pub mod deliver;
pub mod limits;
pub mod page;
pub mod people;
pub mod requests;
pub mod socket_mode;
pub mod web_api;

pub use web_api::{files, users};

/// A counter bumped on every change the sandbox page shows; the page's event stream waits on it.
#[derive(Clone)]
pub struct Changes(std::sync::Arc<tokio::sync::watch::Sender<u64>>);

impl Default for Changes {
    fn default() -> Self {
        Changes(std::sync::Arc::new(tokio::sync::watch::channel(0).0))
    }
}

impl Changes {
    pub fn bump(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
}
