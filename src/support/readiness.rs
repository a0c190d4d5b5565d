//! What `/readyz` reports besides the database: whether Slack can reach the bot. A transport
//! that never came up (Socket Mode with a bad app token, Slack unreachable) leaves the bot deaf
//! while everything else looks healthy, so it is reported here, with its reason.

use std::sync::RwLock;

/// Shared between the transport that knows and the probe that tells. The default is "Slack
/// can reach us" — right for the HTTP transport, whose listener is bound and whose signing
/// secret is checked before serving starts.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Why Slack cannot reach the bot; `None` when it can.
    slack: RwLock<Option<String>>,
}

impl Readiness {
    /// Not ready until [`Readiness::slack_up`], for `reason`.
    pub fn slack_down(&self, reason: impl Into<String>) {
        *self.slack.write().expect("readiness lock") = Some(reason.into());
    }

    pub fn slack_up(&self) {
        *self.slack.write().expect("readiness lock") = None;
    }

    /// Why Slack cannot reach the bot, if it cannot.
    pub fn slack_problem(&self) -> Option<String> {
        self.slack.read().expect("readiness lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_by_default_until_slack_is_down() {
        let r = Readiness::default();
        assert_eq!(r.slack_problem(), None);
        r.slack_down("Socket Mode: not connected yet");
        assert_eq!(
            r.slack_problem().as_deref(),
            Some("Socket Mode: not connected yet")
        );
        r.slack_up();
        assert_eq!(r.slack_problem(), None);
    }
}
