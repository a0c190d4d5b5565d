//! What `/readyz` reports besides the database: whether Slack can reach the bot, and whether
//! the engine's workers are all alive. A transport that never came up (Socket Mode with a bad
//! app token, Slack unreachable) leaves the bot deaf, and a replica whose workers died takes
//! no rollback, while everything else looks healthy; both are reported here, with the reason.

use std::sync::RwLock;

/// Shared between the transport that knows and the probe that tells. The default is "Slack
/// can reach us" — right for the HTTP transport, whose listener is bound and whose signing
/// secret is checked before serving starts.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Why Slack cannot reach the bot; `None` when it can.
    slack: RwLock<Option<String>>,
    /// Which engine workers died and why; `None` while all run.
    workers: RwLock<Option<String>>,
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

    /// Not ready for good: engine workers died (the replica should be restarted).
    pub fn workers_down(&self, reason: impl Into<String>) {
        *self.workers.write().expect("readiness lock") = Some(reason.into());
    }

    /// Why the replica is not ready, if it is not, as `/readyz` says it: Slack first, then
    /// the workers.
    pub fn problem(&self) -> Option<String> {
        let slack = self
            .slack_problem()
            .map(|p| format!("slack unreachable: {p}"));
        let workers = self.workers.read().expect("readiness lock").clone();
        slack.or_else(|| workers.map(|w| format!("engine: {w}")))
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
        assert_eq!(r.problem(), None);
        r.workers_down("1 engine task(s) of 6 died: boom");
        assert_eq!(
            r.problem().as_deref(),
            Some("engine: 1 engine task(s) of 6 died: boom")
        );
        r.slack_down("gone");
        assert_eq!(r.problem().as_deref(), Some("slack unreachable: gone"));
    }
}
