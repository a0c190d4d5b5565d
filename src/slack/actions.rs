//! The card's buttons: stable action ids, and the value `<rollback id>:<plan fingerprint>` that
//! binds a click to the rollback and to the exact plan the clicker saw.

use crate::rollback::machine::{Event, SignOff};

pub const APPROVE: &str = "rollback.approve";
pub const APPROVE_OVERRIDE: &str = "rollback.approve_override";
pub const DBA_SIGN_OFF: &str = "rollback.dba_sign_off";
pub const REJECT: &str = "rollback.reject";

/// What a button asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Approve { overrides_correlation: bool },
    DbaSignOff,
    Reject,
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
            _ => None,
        }
    }

    /// The group whose membership authorises this click.
    pub fn sign_off(self) -> SignOff {
        match self {
            Action::DbaSignOff => SignOff::Dba,
            Action::Approve { .. } | Action::Reject => SignOff::Lead,
        }
    }

    /// The engine event for a click by `by`, `authorized` as resolved at click time.
    pub fn event(self, by: &str, authorized: bool, fingerprint: &str) -> Event {
        match self {
            Action::Approve {
                overrides_correlation,
            } => Event::Approve {
                by: by.into(),
                sign_off: SignOff::Lead,
                authorized,
                fingerprint: fingerprint.into(),
                overrides_correlation,
            },
            Action::DbaSignOff => Event::Approve {
                by: by.into(),
                sign_off: SignOff::Dba,
                authorized,
                fingerprint: fingerprint.into(),
                overrides_correlation: false,
            },
            Action::Reject => Event::Reject {
                by: by.into(),
                authorized,
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
        for id in [APPROVE, APPROVE_OVERRIDE, DBA_SIGN_OFF, REJECT] {
            assert!(Action::from_id(id).is_some(), "{id}");
        }
        assert_eq!(Action::from_id("rollback.nope"), None);
        let e = Action::from_id(APPROVE_OVERRIDE)
            .unwrap()
            .event("U1", true, "fp");
        assert!(matches!(
            e,
            Event::Approve {
                overrides_correlation: true,
                sign_off: SignOff::Lead,
                ..
            }
        ));
        assert_eq!(Action::DbaSignOff.sign_off(), SignOff::Dba);
    }
}
