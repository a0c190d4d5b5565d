//! The pure transition function of the rollback state machine.
//!
//! [`decide`] takes what is known about a rollback ([`Facts`]), an [`Event`] and the current
//! time, and says what must happen: a [`Transition`], nothing (a duplicate), or a refusal with
//! its reason. It does no I/O, so every state × event pair is unit-tested below; the repository
//! applies the decision atomically with its audit row.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Kind, State};

/// Which sign-off an approval gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignOff {
    /// The on-call lead's approval, always required.
    Lead,
    /// The DBA group's additional sign-off for database-coupled services.
    Dba,
}

/// What the machine needs to know about a rollback to decide.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub state: State,
    pub requested_by: String,
    pub plan_fingerprint: Option<String>,
    pub needs_dba: bool,
    pub needs_override: bool,
    pub lead_approved_by: Option<String>,
    pub dba_approved_by: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// Which steps follow approval ([`Kind::pipeline`]).
    pub kind: Kind,
}

/// Something that happens to a rollback: a person's action or a worker's step result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The worker computed the plan (stored alongside the transition).
    PlanReady {
        fingerprint: String,
        needs_dba: bool,
        needs_override: bool,
    },
    /// No plan can be made (unknown revision, nothing to roll back, paused …).
    PlanRefused { reason: String },
    /// A click on Approve. `authorized` says whether the clicker belongs to the group that
    /// gives `sign_off`, resolved by the caller at click time.
    Approve {
        by: String,
        sign_off: SignOff,
        authorized: bool,
        fingerprint: String,
        overrides_correlation: bool,
    },
    /// A click on Reject. On-call leads may reject any rollback; the DBA group may also veto a
    /// database-coupled one (the rollback needs their sign-off, so their "no" counts too).
    /// Both memberships are resolved by the caller at click time.
    Reject {
        by: String,
        is_lead: bool,
        is_dba: bool,
    },
    /// `/rollback cancel`: by the requester or a lead, before execution.
    Cancel { by: String, is_lead: bool },
    /// **Abort** after approval, by the requester or a lead (the wrong service or revision was
    /// approved): the bot does nothing more. Before the patch it is a cancel; after it the
    /// Deployment stays as the patch left it, the lock with it. Refused while the patch is
    /// being applied, whose outcome is not known yet.
    Abort { by: String, is_lead: bool },
    /// **Extend** recovery validation (a lead): it runs on for a while from the click
    /// (`until`, recorded with the click), whatever was left of its window.
    ExtendValidation { by: String, is_lead: bool },
    /// **Accept** the recovery as it stands, with a reason (a lead other than the requester):
    /// validation ends as accepted, never as validated, and the steps after it run.
    AcceptRecovery {
        by: String,
        is_lead: bool,
        reason: String,
    },
    /// **Escalate now**, by a lead (a data-integrity or another concern): Platform
    /// Engineering is paged at once, whatever the rollback was doing, with `reason`.
    EscalateNow {
        by: String,
        is_lead: bool,
        reason: String,
    },
    /// The approval window closed.
    Expire,
    /// A worker starts executing an approved rollback.
    StartExecution,
    /// The current pipeline step finished successfully.
    StepSucceeded,
    /// The current step failed for good (retries exhausted or a definite failure).
    StepFailed { reason: String },
    /// A failed rollback was handed to the escalation group.
    Escalate,
}

impl Event {
    /// The audit trail's name for the event.
    pub fn action(&self) -> &'static str {
        match self {
            Event::PlanReady { .. } => "plan_ready",
            Event::PlanRefused { .. } => "plan_refused",
            Event::Approve {
                sign_off: SignOff::Lead,
                ..
            } => "approve",
            Event::Approve {
                sign_off: SignOff::Dba,
                ..
            } => "dba_sign_off",
            Event::Reject { .. } => "reject",
            Event::Cancel { .. } => "cancel",
            Event::Abort { .. } => "abort",
            Event::EscalateNow { .. } => "escalate_now",
            Event::ExtendValidation { .. } => "extend_validation",
            Event::AcceptRecovery { .. } => "accept_recovery",
            Event::Expire => "expire",
            Event::StartExecution => "start_execution",
            Event::StepSucceeded => "step_succeeded",
            Event::StepFailed { .. } => "step_failed",
            Event::Escalate => "escalate",
        }
    }

    /// A person's action (as opposed to a worker's or the clock's): refusals of these are
    /// recorded in the audit trail.
    pub fn is_user_action(&self) -> bool {
        matches!(
            self,
            Event::Approve { .. }
                | Event::Reject { .. }
                | Event::Cancel { .. }
                | Event::Abort { .. }
                | Event::EscalateNow { .. }
                | Event::ExtendValidation { .. }
                | Event::AcceptRecovery { .. }
        )
    }
}

/// A state change and the fields it records.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub to: State,
    pub lead_approved_by: Option<String>,
    pub dba_approved_by: Option<String>,
    pub decided_by: Option<String>,
}

impl Transition {
    fn to(to: State) -> Self {
        Transition {
            to,
            lead_approved_by: None,
            dba_approved_by: None,
            decided_by: None,
        }
    }
}

/// Why an event was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("you made this request, so you cannot approve it: another lead must")]
    SelfApproval,
    #[error("you made this request, so you cannot accept its recovery: another lead must")]
    SelfAcceptance,
    #[error("only {0} may do this")]
    NotAuthorized(&'static str),
    #[error("the plan changed since this card was shown; approve the current card instead")]
    StalePlan,
    #[error(
        "the deployment was not rolled out inside the incident correlation window: approve with the override button"
    )]
    OverrideRequired,
    #[error("this rollback needs no DBA sign-off")]
    DbaSignOffNotNeeded,
    #[error("the lead approval and the DBA sign-off must come from two different people")]
    SameApproverTwice,
    #[error("the plan is still being prepared")]
    PlanNotReady,
    #[error("too late: the rollback is already {0}")]
    TooLate(State),
    #[error(
        "the rollback patch is being applied right now and its outcome is not recorded yet: try again in a few seconds"
    )]
    PatchInFlight,
    #[error("{event} does not apply to a rollback that is {state}")]
    Invalid { state: State, event: &'static str },
}

/// What [`decide`] says must happen.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Apply(Transition),
    /// The event was already applied (a double click, a redelivery): change nothing.
    Duplicate,
    Refuse(Refusal),
}

/// Decides what `event` does to a rollback described by `facts` at time `now`.
pub fn decide(facts: &Facts, event: &Event, now: DateTime<Utc>) -> Decision {
    use Decision::{Apply, Duplicate, Refuse};
    let state = facts.state;
    let invalid = || {
        Refuse(Refusal::Invalid {
            state,
            event: event.action(),
        })
    };
    match event {
        Event::PlanReady { .. } | Event::PlanRefused { .. } if state != State::Requested => {
            invalid()
        }
        Event::PlanReady { .. } => Apply(Transition::to(State::AwaitingApproval)),
        Event::PlanRefused { .. } => Apply(Transition::to(State::Refused)),

        Event::Approve {
            by,
            sign_off,
            authorized,
            fingerprint,
            overrides_correlation,
        } => decide_approval(
            facts,
            by,
            *sign_off,
            *authorized,
            fingerprint,
            *overrides_correlation,
            now,
        ),

        Event::Reject {
            by,
            is_lead,
            is_dba,
        } => match state {
            State::Rejected => Duplicate,
            State::AwaitingApproval if now >= facts.expires_at => {
                Apply(Transition::to(State::Expired))
            }
            State::AwaitingApproval if !(*is_lead || (*is_dba && facts.needs_dba)) => {
                Refuse(Refusal::NotAuthorized(if facts.needs_dba {
                    "the on-call leads or the DBA group"
                } else {
                    "the on-call leads"
                }))
            }
            State::AwaitingApproval => Apply(Transition {
                decided_by: Some(by.clone()),
                ..Transition::to(State::Rejected)
            }),
            State::Requested => Refuse(Refusal::PlanNotReady),
            _ => Refuse(Refusal::TooLate(state)),
        },

        Event::Cancel { by, is_lead } => match state {
            State::Cancelled => Duplicate,
            State::Requested | State::AwaitingApproval | State::Approved => {
                if *is_lead || *by == facts.requested_by {
                    Apply(Transition {
                        decided_by: Some(by.clone()),
                        ..Transition::to(State::Cancelled)
                    })
                } else {
                    Refuse(Refusal::NotAuthorized("the requester or an on-call lead"))
                }
            }
            _ => Refuse(Refusal::TooLate(state)),
        },

        Event::Abort { by, is_lead } => match state {
            State::Cancelled => Duplicate,
            _ if !(*is_lead || *by == facts.requested_by) => {
                Refuse(Refusal::NotAuthorized("the requester or an on-call lead"))
            }
            State::Approved
            | State::Verifying
            | State::Validating
            | State::Locking
            | State::Notifying
            | State::Ticketing => Apply(Transition {
                decided_by: Some(by.clone()),
                ..Transition::to(State::Cancelled)
            }),
            State::Executing => Refuse(Refusal::PatchInFlight),
            State::Requested | State::AwaitingApproval => invalid(),
            _ => Refuse(Refusal::TooLate(state)),
        },

        Event::EscalateNow { is_lead, .. } => match state {
            State::Failed | State::Escalated => Duplicate,
            _ if !*is_lead => Refuse(Refusal::NotAuthorized("the on-call leads")),
            State::Verifying
            | State::Validating
            | State::Locking
            | State::Notifying
            | State::Ticketing
            // The reason names the lead; `decided_by` stays the approval's.
            | State::Succeeded => Apply(Transition::to(State::Failed)),
            State::Executing => Refuse(Refusal::PatchInFlight),
            _ => invalid(),
        },

        Event::ExtendValidation { is_lead, .. } => match state {
            State::Validating if *is_lead => Apply(Transition::to(State::Validating)),
            State::Validating => Refuse(Refusal::NotAuthorized("the on-call leads")),
            _ if state.is_terminal() || facts.kind.pipeline().contains(&state) => {
                Refuse(Refusal::TooLate(state))
            }
            _ => invalid(),
        },

        Event::AcceptRecovery { by, is_lead, .. } => match state {
            State::Validating if *by == facts.requested_by => Refuse(Refusal::SelfAcceptance),
            State::Validating if !*is_lead => Refuse(Refusal::NotAuthorized("the on-call leads")),
            // As if validation had passed: on to the step after it.
            State::Validating => decide(facts, &Event::StepSucceeded, now),
            _ if state.is_terminal() || facts.kind.pipeline().contains(&state) => {
                Refuse(Refusal::TooLate(state))
            }
            _ => invalid(),
        },

        Event::Expire => match state {
            _ if state.awaits_decision() && now >= facts.expires_at => {
                Apply(Transition::to(State::Expired))
            }
            // Approved in time, or already finished: nothing to expire.
            _ => Duplicate,
        },

        Event::StartExecution if state == State::Approved => {
            Apply(Transition::to(facts.kind.pipeline()[0]))
        }
        Event::StartExecution => invalid(),

        Event::StepSucceeded => match facts.kind.pipeline().iter().position(|s| *s == state) {
            Some(i) => Apply(Transition::to(
                facts
                    .kind
                    .pipeline()
                    .get(i + 1)
                    .copied()
                    .unwrap_or(State::Succeeded),
            )),
            None => invalid(),
        },

        // The escalation step itself gave up (its records kept failing): the rollback is
        // escalated with what it has rather than failing again.
        Event::StepFailed { .. } if state == State::Failed => {
            Apply(Transition::to(State::Escalated))
        }
        Event::StepFailed { .. } if state.step().is_some() => Apply(Transition::to(State::Failed)),
        Event::StepFailed { .. } => invalid(),

        Event::Escalate => match state {
            State::Failed => Apply(Transition::to(State::Escalated)),
            State::Escalated => Duplicate,
            _ => invalid(),
        },
    }
}

fn decide_approval(
    facts: &Facts,
    by: &str,
    sign_off: SignOff,
    authorized: bool,
    fingerprint: &str,
    overrides_correlation: bool,
    now: DateTime<Utc>,
) -> Decision {
    use Decision::{Apply, Duplicate, Refuse};
    let already_by = match sign_off {
        SignOff::Lead => &facts.lead_approved_by,
        SignOff::Dba => &facts.dba_approved_by,
    };
    match facts.state {
        State::AwaitingApproval => {}
        State::Requested => return Refuse(Refusal::PlanNotReady),
        // A second click, or a second approver racing the first: the sign-off is in already.
        _ if already_by.is_some() => return Duplicate,
        state => return Refuse(Refusal::TooLate(state)),
    }
    if now >= facts.expires_at {
        return Apply(Transition::to(State::Expired));
    }
    if already_by.is_some() {
        return Duplicate;
    }
    if by == facts.requested_by {
        return Refuse(Refusal::SelfApproval);
    }
    if sign_off == SignOff::Dba && !facts.needs_dba {
        return Refuse(Refusal::DbaSignOffNotNeeded);
    }
    if !authorized {
        return Refuse(Refusal::NotAuthorized(match sign_off {
            SignOff::Lead => "the on-call leads",
            SignOff::Dba => "the DBA group",
        }));
    }
    if facts.plan_fingerprint.as_deref() != Some(fingerprint) {
        return Refuse(Refusal::StalePlan);
    }
    let other_by = match sign_off {
        SignOff::Lead => &facts.dba_approved_by,
        SignOff::Dba => &facts.lead_approved_by,
    };
    if other_by.as_deref() == Some(by) {
        return Refuse(Refusal::SameApproverTwice);
    }
    if sign_off == SignOff::Lead && facts.needs_override && !overrides_correlation {
        return Refuse(Refusal::OverrideRequired);
    }
    let (lead, dba) = match sign_off {
        SignOff::Lead => (Some(by.to_owned()), facts.dba_approved_by.clone()),
        SignOff::Dba => (facts.lead_approved_by.clone(), Some(by.to_owned())),
    };
    let complete = lead.is_some() && (dba.is_some() || !facts.needs_dba);
    Apply(Transition {
        to: if complete {
            State::Approved
        } else {
            State::AwaitingApproval
        },
        lead_approved_by: (sign_off == SignOff::Lead).then(|| by.to_owned()),
        dba_approved_by: (sign_off == SignOff::Dba).then(|| by.to_owned()),
        decided_by: complete.then(|| by.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    const REQUESTER: &str = "U_REQ";
    const LEAD: &str = "U_LEAD";
    const DBA: &str = "U_DBA";
    const FP: &str = "fp-1";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn facts(state: State) -> Facts {
        Facts {
            state,
            requested_by: REQUESTER.into(),
            plan_fingerprint: Some(FP.into()),
            needs_dba: false,
            needs_override: false,
            lead_approved_by: None,
            dba_approved_by: None,
            expires_at: now() + Duration::minutes(15),
            kind: Kind::Rollback,
        }
    }

    #[test]
    fn abort_stops_an_approved_rollback_except_while_its_patch_is_in_flight() {
        let abort = |by: &str, is_lead: bool| Event::Abort {
            by: by.into(),
            is_lead,
        };
        for state in [
            State::Approved,
            State::Verifying,
            State::Validating,
            State::Locking,
            State::Notifying,
            State::Ticketing,
        ] {
            for (by, lead) in [(LEAD, true), (REQUESTER, false)] {
                match decide(&facts(state), &abort(by, lead), now()) {
                    Decision::Apply(t) => {
                        assert_eq!(t.to, State::Cancelled, "{state}");
                        assert_eq!(t.decided_by.as_deref(), Some(by));
                    }
                    other => panic!("{state} by {by}: {other:?}"),
                }
            }
            assert_eq!(
                decide(&facts(state), &abort("U_STRANGER", false), now()),
                Decision::Refuse(Refusal::NotAuthorized("the requester or an on-call lead"))
            );
        }
        assert_eq!(
            decide(&facts(State::Executing), &abort(LEAD, true), now()),
            Decision::Refuse(Refusal::PatchInFlight)
        );
        assert_eq!(
            decide(&facts(State::Cancelled), &abort(LEAD, true), now()),
            Decision::Duplicate
        );
        for done in [State::Succeeded, State::Failed, State::Escalated] {
            assert_eq!(
                decide(&facts(done), &abort(LEAD, true), now()),
                Decision::Refuse(Refusal::TooLate(done))
            );
        }
        assert!(matches!(
            decide(&facts(State::AwaitingApproval), &abort(LEAD, true), now()),
            Decision::Refuse(Refusal::Invalid { .. })
        ));
    }

    #[test]
    fn a_lead_extends_or_accepts_a_validation_the_requester_may_not_accept() {
        let validating = facts(State::Validating);
        let extend = |is_lead| Event::ExtendValidation {
            by: LEAD.into(),
            is_lead,
        };
        match decide(&validating, &extend(true), now()) {
            Decision::Apply(t) => assert_eq!(t.to, State::Validating),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(&validating, &extend(false), now()),
            Decision::Refuse(Refusal::NotAuthorized("the on-call leads"))
        );
        let accept = |by: &str, is_lead| Event::AcceptRecovery {
            by: by.into(),
            is_lead,
            reason: "night traffic is too low to judge".into(),
        };
        match decide(&validating, &accept(LEAD, true), now()) {
            Decision::Apply(t) => assert_eq!(t.to, State::Locking),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(&validating, &accept(REQUESTER, true), now()),
            Decision::Refuse(Refusal::SelfAcceptance)
        );
        assert_eq!(
            decide(&validating, &accept("U_OTHER", false), now()),
            Decision::Refuse(Refusal::NotAuthorized("the on-call leads"))
        );
        for later in [State::Locking, State::Succeeded, State::Escalated] {
            assert_eq!(
                decide(&facts(later), &accept(LEAD, true), now()),
                Decision::Refuse(Refusal::TooLate(later))
            );
            assert_eq!(
                decide(&facts(later), &extend(true), now()),
                Decision::Refuse(Refusal::TooLate(later))
            );
        }
    }

    #[test]
    fn escalate_now_fails_the_rollback_so_it_is_escalated_at_once() {
        let escalate = |is_lead: bool| Event::EscalateNow {
            by: LEAD.into(),
            is_lead,
            reason: "data integrity".into(),
        };
        for state in [
            State::Verifying,
            State::Validating,
            State::Locking,
            State::Notifying,
            State::Ticketing,
            State::Succeeded,
        ] {
            match decide(&facts(state), &escalate(true), now()) {
                Decision::Apply(t) => assert_eq!(t.to, State::Failed, "{state}"),
                other => panic!("{state}: {other:?}"),
            }
            assert_eq!(
                decide(&facts(state), &escalate(false), now()),
                Decision::Refuse(Refusal::NotAuthorized("the on-call leads"))
            );
        }
        assert_eq!(
            decide(&facts(State::Executing), &escalate(true), now()),
            Decision::Refuse(Refusal::PatchInFlight)
        );
        for escalated in [State::Failed, State::Escalated] {
            assert_eq!(
                decide(&facts(escalated), &escalate(true), now()),
                Decision::Duplicate
            );
        }
        assert!(matches!(
            decide(&facts(State::AwaitingApproval), &escalate(true), now()),
            Decision::Refuse(Refusal::Invalid { .. })
        ));
        // Failed moves on to Escalated through the escalation step.
        assert_eq!(State::Failed.step(), Some(crate::domain::Step::Escalate));
    }

    /// An unlock request ends after its one step: removing the lock.
    #[test]
    fn an_unlock_request_succeeds_after_executing() {
        let mut f = facts(State::Approved);
        f.kind = Kind::Unlock;
        let d = decide(&f, &Event::StartExecution, now());
        assert_eq!(target(&d), Some(State::Executing));
        f.state = State::Executing;
        let d = decide(&f, &Event::StepSucceeded, now());
        assert_eq!(target(&d), Some(State::Succeeded));
    }

    fn approve(by: &str, sign_off: SignOff) -> Event {
        Event::Approve {
            by: by.into(),
            sign_off,
            authorized: true,
            fingerprint: FP.into(),
            overrides_correlation: false,
        }
    }

    fn every_event() -> Vec<Event> {
        vec![
            Event::PlanReady {
                fingerprint: FP.into(),
                needs_dba: false,
                needs_override: false,
            },
            Event::PlanRefused {
                reason: "unknown revision".into(),
            },
            approve(LEAD, SignOff::Lead),
            approve(DBA, SignOff::Dba),
            Event::Reject {
                by: LEAD.into(),
                is_lead: true,
                is_dba: false,
            },
            Event::Cancel {
                by: REQUESTER.into(),
                is_lead: false,
            },
            Event::Expire,
            Event::StartExecution,
            Event::StepSucceeded,
            Event::StepFailed {
                reason: "boom".into(),
            },
            Event::Escalate,
        ]
    }

    fn target(d: &Decision) -> Option<State> {
        match d {
            Decision::Apply(t) => Some(t.to),
            _ => None,
        }
    }

    /// The complete table: for every state and every event, the state it leads to
    /// (None = not applied). A change to the machine must change this table.
    #[test]
    fn every_state_and_event() {
        use State::*;
        let events = every_event();
        // Columns follow `every_event()`: plan_ready, plan_refused, approve (lead),
        // dba sign-off (not needed here), reject, cancel, expire (not due),
        // start_execution, step_succeeded, step_failed, escalate.
        let table: [(State, [Option<State>; 11]); 16] = [
            (
                Requested,
                [
                    Some(AwaitingApproval),
                    Some(Refused),
                    None,
                    None,
                    None,
                    Some(Cancelled),
                    None,
                    None,
                    None,
                    Some(Failed),
                    None,
                ],
            ),
            (
                AwaitingApproval,
                [
                    None,
                    None,
                    Some(Approved),
                    None,
                    Some(Rejected),
                    Some(Cancelled),
                    None,
                    None,
                    None,
                    None,
                    None,
                ],
            ),
            (
                Approved,
                [
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some(Cancelled),
                    None,
                    Some(Executing),
                    None,
                    Some(Failed),
                    None,
                ],
            ),
            (
                Executing,
                [
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some(Verifying),
                    Some(Failed),
                    None,
                ],
            ),
            (
                Verifying,
                [
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some(Validating),
                    Some(Failed),
                    None,
                ],
            ),
            (
                Validating,
                [
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some(Locking),
                    Some(Failed),
                    None,
                ],
            ),
            (
                Locking,
                [
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some(Notifying),
                    Some(Failed),
                    None,
                ],
            ),
            (
                Notifying,
                [
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some(Ticketing),
                    Some(Failed),
                    None,
                ],
            ),
            (
                Ticketing,
                [
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some(Succeeded),
                    Some(Failed),
                    None,
                ],
            ),
            (Succeeded, [None; 11]),
            (Refused, [None; 11]),
            (Rejected, [None; 11]),
            (Expired, [None; 11]),
            (Cancelled, [None; 11]),
            (
                Failed,
                [
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some(Escalated),
                    Some(Escalated),
                ],
            ),
            (Escalated, [None; 11]),
        ];
        assert_eq!(table.len(), State::ALL.len());
        for (state, expected) in table {
            for (event, want) in events.iter().zip(expected) {
                let got = target(&decide(&facts(state), event, now()));
                assert_eq!(got, want, "{state} × {}", event.action());
            }
        }
    }

    #[test]
    fn terminal_states_never_change() {
        for state in State::ALL.into_iter().filter(|s| s.is_terminal()) {
            for event in every_event() {
                let d = decide(&facts(state), &event, now());
                if let Decision::Apply(t) = d {
                    assert!(
                        state == State::Failed && t.to == State::Escalated,
                        "{state} changed by {}",
                        event.action()
                    );
                }
            }
        }
    }

    #[test]
    fn lead_approval_records_the_approver() {
        let d = decide(
            &facts(State::AwaitingApproval),
            &approve(LEAD, SignOff::Lead),
            now(),
        );
        assert_eq!(
            d,
            Decision::Apply(Transition {
                to: State::Approved,
                lead_approved_by: Some(LEAD.into()),
                dba_approved_by: None,
                decided_by: Some(LEAD.into()),
            })
        );
    }

    #[test]
    fn second_approval_is_a_duplicate() {
        let mut f = facts(State::Approved);
        f.lead_approved_by = Some(LEAD.into());
        assert_eq!(
            decide(&f, &approve(LEAD, SignOff::Lead), now()),
            Decision::Duplicate
        );
        assert_eq!(
            decide(&f, &approve("U_OTHER_LEAD", SignOff::Lead), now()),
            Decision::Duplicate
        );
        f.state = State::Executing;
        assert_eq!(
            decide(&f, &approve(LEAD, SignOff::Lead), now()),
            Decision::Duplicate
        );
    }

    #[test]
    fn requester_cannot_approve_their_own_rollback() {
        let d = decide(
            &facts(State::AwaitingApproval),
            &approve(REQUESTER, SignOff::Lead),
            now(),
        );
        assert_eq!(d, Decision::Refuse(Refusal::SelfApproval));
    }

    #[test]
    fn unauthorized_clicks_are_refused() {
        let mut event = approve("U_RANDOM", SignOff::Lead);
        if let Event::Approve { authorized, .. } = &mut event {
            *authorized = false;
        }
        let d = decide(&facts(State::AwaitingApproval), &event, now());
        assert_eq!(
            d,
            Decision::Refuse(Refusal::NotAuthorized("the on-call leads"))
        );
        let reject = Event::Reject {
            by: "U_RANDOM".into(),
            is_lead: false,
            is_dba: false,
        };
        assert_eq!(
            decide(&facts(State::AwaitingApproval), &reject, now()),
            Decision::Refuse(Refusal::NotAuthorized("the on-call leads"))
        );
    }

    fn reject_by_dba() -> Event {
        Event::Reject {
            by: DBA.into(),
            is_lead: false,
            is_dba: true,
        }
    }

    #[test]
    fn a_dba_may_veto_a_database_coupled_rollback() {
        let mut f = facts(State::AwaitingApproval);
        f.needs_dba = true;
        assert_eq!(
            decide(&f, &reject_by_dba(), now()),
            Decision::Apply(Transition {
                decided_by: Some(DBA.into()),
                ..Transition::to(State::Rejected)
            })
        );
        // Also after the lead approved: the DBA sign-off is still missing, so it is a veto.
        f.lead_approved_by = Some(LEAD.into());
        assert_eq!(
            target(&decide(&f, &reject_by_dba(), now())),
            Some(State::Rejected)
        );
        // A stranger is told who may reject this one: leads or the DBA group.
        let stranger = Event::Reject {
            by: "U_RANDOM".into(),
            is_lead: false,
            is_dba: false,
        };
        assert_eq!(
            decide(&f, &stranger, now()),
            Decision::Refuse(Refusal::NotAuthorized("the on-call leads or the DBA group"))
        );
    }

    #[test]
    fn a_dba_may_not_reject_a_rollback_that_needs_no_dba() {
        assert_eq!(
            decide(&facts(State::AwaitingApproval), &reject_by_dba(), now()),
            Decision::Refuse(Refusal::NotAuthorized("the on-call leads"))
        );
    }

    #[test]
    fn stale_plan_is_refused() {
        let mut f = facts(State::AwaitingApproval);
        f.plan_fingerprint = Some("fp-2".into());
        assert_eq!(
            decide(&f, &approve(LEAD, SignOff::Lead), now()),
            Decision::Refuse(Refusal::StalePlan)
        );
    }

    #[test]
    fn approval_after_expiry_expires_the_request() {
        let mut f = facts(State::AwaitingApproval);
        f.expires_at = now() - Duration::seconds(1);
        assert_eq!(
            target(&decide(&f, &approve(LEAD, SignOff::Lead), now())),
            Some(State::Expired)
        );
        assert_eq!(
            target(&decide(&f, &Event::Expire, now())),
            Some(State::Expired)
        );
        // Exactly at the deadline counts as expired.
        f.expires_at = now();
        assert_eq!(
            target(&decide(&f, &Event::Expire, now())),
            Some(State::Expired)
        );
    }

    #[test]
    fn expiry_before_the_deadline_does_nothing() {
        assert_eq!(
            decide(&facts(State::AwaitingApproval), &Event::Expire, now()),
            Decision::Duplicate
        );
    }

    #[test]
    fn correlation_warning_needs_an_explicit_override() {
        let mut f = facts(State::AwaitingApproval);
        f.needs_override = true;
        assert_eq!(
            decide(&f, &approve(LEAD, SignOff::Lead), now()),
            Decision::Refuse(Refusal::OverrideRequired)
        );
        let overriding = Event::Approve {
            by: LEAD.into(),
            sign_off: SignOff::Lead,
            authorized: true,
            fingerprint: FP.into(),
            overrides_correlation: true,
        };
        assert_eq!(
            target(&decide(&f, &overriding, now())),
            Some(State::Approved)
        );
    }

    #[test]
    fn database_coupled_rollback_needs_both_sign_offs_in_either_order() {
        let mut f = facts(State::AwaitingApproval);
        f.needs_dba = true;
        let lead_first = decide(&f, &approve(LEAD, SignOff::Lead), now());
        assert_eq!(target(&lead_first), Some(State::AwaitingApproval));
        f.lead_approved_by = Some(LEAD.into());
        assert_eq!(
            target(&decide(&f, &approve(DBA, SignOff::Dba), now())),
            Some(State::Approved)
        );

        let mut g = facts(State::AwaitingApproval);
        g.needs_dba = true;
        assert_eq!(
            target(&decide(&g, &approve(DBA, SignOff::Dba), now())),
            Some(State::AwaitingApproval)
        );
        g.dba_approved_by = Some(DBA.into());
        assert_eq!(
            target(&decide(&g, &approve(LEAD, SignOff::Lead), now())),
            Some(State::Approved)
        );
    }

    #[test]
    fn one_person_cannot_give_both_sign_offs() {
        let mut f = facts(State::AwaitingApproval);
        f.needs_dba = true;
        f.lead_approved_by = Some(LEAD.into());
        assert_eq!(
            decide(&f, &approve(LEAD, SignOff::Dba), now()),
            Decision::Refuse(Refusal::SameApproverTwice)
        );
    }

    #[test]
    fn dba_sign_off_on_an_uncoupled_service_is_refused() {
        assert_eq!(
            decide(
                &facts(State::AwaitingApproval),
                &approve(DBA, SignOff::Dba),
                now()
            ),
            Decision::Refuse(Refusal::DbaSignOffNotNeeded)
        );
    }

    #[test]
    fn cancel_by_a_stranger_is_refused_and_by_a_lead_allowed() {
        let stranger = Event::Cancel {
            by: "U_X".into(),
            is_lead: false,
        };
        assert!(matches!(
            decide(&facts(State::AwaitingApproval), &stranger, now()),
            Decision::Refuse(Refusal::NotAuthorized(_))
        ));
        let lead = Event::Cancel {
            by: LEAD.into(),
            is_lead: true,
        };
        assert_eq!(
            target(&decide(&facts(State::Approved), &lead, now())),
            Some(State::Cancelled)
        );
        assert_eq!(
            decide(&facts(State::Executing), &lead, now()),
            Decision::Refuse(Refusal::TooLate(State::Executing))
        );
        assert_eq!(
            decide(&facts(State::Cancelled), &lead, now()),
            Decision::Duplicate
        );
    }

    #[test]
    fn pipeline_runs_in_order_then_succeeds() {
        let mut state = State::Approved;
        let mut seen = vec![];
        state = target(&decide(&facts(state), &Event::StartExecution, now())).unwrap();
        seen.push(state);
        while let Some(next) = target(&decide(&facts(state), &Event::StepSucceeded, now())) {
            state = next;
            seen.push(state);
        }
        let mut want = State::PIPELINE.to_vec();
        want.push(State::Succeeded);
        assert_eq!(seen, want);
    }

    #[test]
    fn every_non_terminal_state_but_awaiting_approval_has_a_worker_step() {
        for state in State::ALL {
            // `failed` is terminal for its target but still has its escalation to run.
            let expect_step = (!state.is_terminal() && state != State::AwaitingApproval)
                || state == State::Failed;
            assert_eq!(state.step().is_some(), expect_step, "{state}");
        }
    }
}
