//! The domain, pure (no I/O, no tokio): what a rollback is — its states, kinds and steps
//! (here) — and the rules it follows.
//!
//! - [`lock`]: the deploy lock's annotations and the verdict on its enforcement.
//! - [`machine`]: the pure transition function (`state × event → decision`).
//! - [`recovery`]: the recovery verdict from Prometheus readings and pod counts.
//! - [`results`]: typed step results, as stored.
//!
//! The SQL that persists a rollback is `crate::db::rollbacks`, the workers that move it
//! `crate::engine`; docs/engine.md describes the model.

pub mod lock;
pub mod machine;
pub mod recovery;
pub mod results;

use serde::{Deserialize, Serialize};

/// The states of a rollback. `docs/engine.md` has the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "rollback_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum State {
    Requested,
    AwaitingApproval,
    Approved,
    Executing,
    Verifying,
    Validating,
    Locking,
    Notifying,
    Ticketing,
    Succeeded,
    Refused,
    Rejected,
    Expired,
    Cancelled,
    Failed,
    Escalated,
}

/// What a request asks for. Both kinds share the machine, the approval rules, expiry, the
/// audit trail and the one-active-request-per-target rule; they differ in their steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "request_kind", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `/rollback <service> …`: roll the Deployment back, verify, validate and lock it, then
    /// tell the deployer and open the post-incident ticket.
    Rollback,
    /// `/rollback unlock <service> <fix reference>`: remove the deploy lock once a lead
    /// approves the fix. Its plan is the lock it will remove; its only step is `executing`.
    Unlock,
}

impl Kind {
    /// The states after approval, in order, for this kind of request.
    pub fn pipeline(self) -> &'static [State] {
        match self {
            Kind::Rollback => &State::PIPELINE,
            Kind::Unlock => &[State::Executing],
        }
    }
}

/// The work a worker does for a rollback in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Read the Deployment's history and compute the plan the approvers will see.
    Plan,
    /// Every sign-off is in: record that execution starts.
    Begin,
    /// The rollback failed: hand it to Platform Engineering (Slack mention, PagerDuty page).
    Escalate,
    /// Re-check the plan against the cluster and apply the rollback patch.
    Execute,
    /// Wait for the rollout and check images and pods.
    Verify,
    /// Validate recovery against Prometheus, the health endpoint and the pods over a window.
    Validate,
    /// Set the deploy lock annotations (src/clients/k8s/lock.rs) so nothing re-deploys the faulty build
    /// until a fix is approved.
    Lock,
    /// DM the engineer who deployed the faulty revision (src/steps/notify.rs).
    Notify,
    /// Open the post-incident ticket (src/steps/ticket.rs).
    Ticket,
}

impl State {
    pub const ALL: [State; 16] = [
        State::Requested,
        State::AwaitingApproval,
        State::Approved,
        State::Executing,
        State::Verifying,
        State::Validating,
        State::Locking,
        State::Notifying,
        State::Ticketing,
        State::Succeeded,
        State::Refused,
        State::Rejected,
        State::Expired,
        State::Cancelled,
        State::Failed,
        State::Escalated,
    ];

    /// The steps that run after approval, in order. Adding a post-rollback step means adding
    /// its state here, its [`Step`], and the code that runs it.
    pub const PIPELINE: [State; 6] = [
        State::Executing,
        State::Verifying,
        State::Validating,
        State::Locking,
        State::Notifying,
        State::Ticketing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Requested => "requested",
            State::AwaitingApproval => "awaiting_approval",
            State::Approved => "approved",
            State::Executing => "executing",
            State::Verifying => "verifying",
            State::Validating => "validating",
            State::Locking => "locking",
            State::Notifying => "notifying",
            State::Ticketing => "ticketing",
            State::Succeeded => "succeeded",
            State::Refused => "refused",
            State::Rejected => "rejected",
            State::Expired => "expired",
            State::Cancelled => "cancelled",
            State::Failed => "failed",
            State::Escalated => "escalated",
        }
    }

    /// Terminal states never change again, except `failed`, whose escalation step moves it on
    /// to `escalated`. The partial unique index treats every other state as "active": a failed
    /// rollback does not hold its target while it is escalated, so a new one may be requested.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Succeeded
                | State::Refused
                | State::Rejected
                | State::Expired
                | State::Cancelled
                | State::Failed
                | State::Escalated
        )
    }

    /// Terminal with nothing left to do: counted once in the outcome metric (a failure is
    /// terminal but still has its escalation to run, which ends in `escalated`).
    pub fn is_settled(self) -> bool {
        self.is_terminal() && self.step().is_none()
    }

    /// The worker step this state calls for, if any (the others wait for people or are done).
    pub fn step(self) -> Option<Step> {
        match self {
            // Terminal for the target (see is_terminal), but someone must be told.
            State::Failed => Some(Step::Escalate),
            State::Requested => Some(Step::Plan),
            State::Approved => Some(Step::Begin),
            State::Executing => Some(Step::Execute),
            State::Verifying => Some(Step::Verify),
            State::Validating => Some(Step::Validate),
            State::Locking => Some(Step::Lock),
            State::Notifying => Some(Step::Notify),
            State::Ticketing => Some(Step::Ticket),
            _ => None,
        }
    }

    /// Still waiting for a decision by people (and so subject to expiry).
    pub fn awaits_decision(self) -> bool {
        matches!(self, State::Requested | State::AwaitingApproval)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::Begin => "begin",
            Step::Escalate => "escalate",
            Step::Execute => "execute",
            Step::Verify => "verify",
            Step::Validate => "validate",
            Step::Lock => "lock",
            Step::Notify => "notify",
            Step::Ticket => "ticket",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_settles_only_once_escalated() {
        assert!(State::Failed.is_terminal());
        assert!(!State::Failed.is_settled());
        assert!(State::Escalated.is_settled());
        assert!(State::Succeeded.is_settled());
        assert!(!State::Locking.is_settled());
    }
}
