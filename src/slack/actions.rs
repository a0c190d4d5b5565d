//! The card's buttons: stable action ids, and the value `<rollback id>:<plan fingerprint>` that
//! binds a click to the rollback and to the exact plan the clicker saw.

use super::authz::Membership;
use crate::domain::machine::{Event, SignOff};

pub const APPROVE: &str = "rollback.approve";
pub const APPROVE_OVERRIDE: &str = "rollback.approve_override";
pub const DBA_SIGN_OFF: &str = "rollback.dba_sign_off";
pub const REJECT: &str = "rollback.reject";
/// During recovery validation: validate on for [`VALIDATION_EXTENSION`] from the click (a lead).
pub const EXTEND_VALIDATION: &str = "rollback.extend_validation";
/// How long **Extend** validates on.
pub const VALIDATION_EXTENSION: std::time::Duration = std::time::Duration::from_secs(300);
/// After approval: stop the bot (the requester or a lead).
pub const ABORT: &str = "rollback.abort";
/// After approval: page Platform Engineering at once (a lead), for a data-integrity concern.
pub const ESCALATE_DATA_INTEGRITY: &str = "rollback.escalate_data_integrity";
/// The same for any other concern.
pub const ESCALATE_OTHER: &str = "rollback.escalate_other";

/// What a button asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Approve { overrides_correlation: bool },
    DbaSignOff,
    Reject,
    Abort,
    EscalateNow { data_integrity: bool },
    ExtendValidation,
}

impl Action {
    pub fn from_id(action_id: &str) -> Option<Action> {
        match action_id {
            APPROVE => Some(Action::Approve {
                overrides_correlation: false,
            }),
            APPROVE_OVERRIDE => Some(Action::Approve {
                overrides_correlation: true,
            }),
            DBA_SIGN_OFF => Some(Action::DbaSignOff),
            REJECT => Some(Action::Reject),
            ABORT => Some(Action::Abort),
            EXTEND_VALIDATION => Some(Action::ExtendValidation),
            ESCALATE_DATA_INTEGRITY => Some(Action::EscalateNow {
                data_integrity: true,
            }),
            ESCALATE_OTHER => Some(Action::EscalateNow {
                data_integrity: false,
            }),
            _ => None,
        }
    }

    /// The groups whose membership decides this click: a lead approves, a DBA signs off, and
    /// a reject may come from either (the state machine decides whether a DBA's counts).
    pub fn deciding_groups(self) -> &'static [SignOff] {
        match self {
            Action::Approve { .. } => &[SignOff::Lead],
            Action::DbaSignOff => &[SignOff::Dba],
            Action::Reject => &[SignOff::Lead, SignOff::Dba],
            Action::Abort | Action::EscalateNow { .. } | Action::ExtendValidation => {
                &[SignOff::Lead]
            }
        }
    }

    /// The engine event for a click by `by`, with the clicker's memberships as resolved at
    /// click time.
    pub fn event(self, by: &str, member: Membership, fingerprint: &str) -> Event {
        match self {
            Action::Approve {
                overrides_correlation,
            } => Event::Approve {
                by: by.into(),
                sign_off: SignOff::Lead,
                authorized: member.lead,
                fingerprint: fingerprint.into(),
                overrides_correlation,
            },
            Action::DbaSignOff => Event::Approve {
                by: by.into(),
                sign_off: SignOff::Dba,
                authorized: member.dba,
                fingerprint: fingerprint.into(),
                overrides_correlation: false,
            },
            Action::Reject => Event::Reject {
                by: by.into(),
                is_lead: member.lead,
                is_dba: member.dba,
            },
            Action::Abort => Event::Abort {
                by: by.into(),
                is_lead: member.lead,
            },
            Action::ExtendValidation => Event::ExtendValidation {
                by: by.into(),
                is_lead: member.lead,
            },
            Action::EscalateNow { data_integrity } => Event::EscalateNow {
                by: by.into(),
                is_lead: member.lead,
                reason: format!(
                    "an on-call lead asked to escalate at once: {}",
                    if data_integrity {
                        "a data-integrity concern"
                    } else {
                        "a concern the lead will explain in the thread"
                    }
                ),
            },
        }
    }
}

/// A button value.
pub fn value(id: i64, fingerprint: &str) -> String {
    format!("{id}:{fingerprint}")
}

/// Parses a button value into (rollback id, fingerprint).
pub fn parse_value(value: &str) -> Option<(i64, &str)> {
    let (id, fingerprint) = value.split_once(':')?;
    let id = id.parse().ok().filter(|id: &i64| *id > 0)?;
    (!fingerprint.is_empty()).then_some((id, fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v = value(42, "abc123");
        assert_eq!(v, "42:abc123");
        assert_eq!(parse_value(&v), Some((42, "abc123")));
        assert_eq!(parse_value("x:abc"), None);
        assert_eq!(parse_value("42:"), None);
        assert_eq!(parse_value("42"), None);
        assert_eq!(parse_value("-1:abc"), None);
    }

    #[test]
    fn action_ids_map_to_events() {
        for id in [
            APPROVE,
            APPROVE_OVERRIDE,
            DBA_SIGN_OFF,
            REJECT,
            ABORT,
            EXTEND_VALIDATION,
            ESCALATE_DATA_INTEGRITY,
            ESCALATE_OTHER,
        ] {
            assert!(Action::from_id(id).is_some(), "{id}");
        }
        assert_eq!(Action::from_id("rollback.nope"), None);
        let lead = Membership {
            lead: true,
            dba: false,
        };
        let e = Action::from_id(APPROVE_OVERRIDE)
            .unwrap()
            .event("U1", lead, "fp");
        assert!(matches!(
            e,
            Event::Approve {
                overrides_correlation: true,
                sign_off: SignOff::Lead,
                authorized: true,
                ..
            }
        ));
        assert_eq!(Action::DbaSignOff.deciding_groups(), &[SignOff::Dba]);
        let dba = Membership {
            lead: false,
            dba: true,
        };
        assert!(matches!(
            Action::from_id(ESCALATE_DATA_INTEGRITY).unwrap().event("U1", lead, "fp"),
            Event::EscalateNow { is_lead: true, reason, .. } if reason.ends_with("a data-integrity concern")
        ));
        assert_eq!(
            Action::Abort.event("U2", dba, "fp"),
            Event::Abort {
                by: "U2".into(),
                is_lead: false
            }
        );
        assert_eq!(
            Action::Reject.event("U2", dba, "fp"),
            Event::Reject {
                by: "U2".into(),
                is_lead: false,
                is_dba: true
            }
        );
    }
}
