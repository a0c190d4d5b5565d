//! Typed step results: what a step records (in `rollback.steps.<step>` and its audit row's
//! detail), one type per step, serialized once for storage and read back by the renderer.
//! The stored JSON is what the steps always wrote, so existing rows read the same.
//!
//! So far the `notify` and `ticket` steps'; the other steps still record `serde_json::Value`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the `ticket` step recorded. Fields are optional when read, so a row written by hand
/// (or by an older version) renders with the renderer's defaults instead of not at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TicketResult {
    /// The ticket is open (opened now, or found by its marker label).
    Opened {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tracker: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// Found, not opened again (a re-run after a crash).
        #[serde(default)]
        already_opened: bool,
    },
    /// No tracker is configured (`tickets.tracker = "none"`).
    NotConfigured,
    /// The tracker refused or could not be reached after the client's retries.
    Failed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tracker: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A status this version does not know: shown like a failure.
    #[serde(other)]
    Unknown,
}

impl TicketResult {
    /// The stored form.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a ticket result serializes")
    }

    /// The result stored in `value`; `None` when it records none (no `status`).
    pub fn from_json(value: &Value) -> Option<Self> {
        value["status"].as_str()?;
        Some(serde_json::from_value(value.clone()).unwrap_or(TicketResult::Unknown))
    }
}

/// What the `notify` step (the DM to the deployer) recorded. Fields the step always writes
/// are written even when empty (`null`), as before; all are optional when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum NotifyResult {
    /// The DM is in the deployer's DM channel (sent now, or found from an earlier run).
    Sent {
        #[serde(default)]
        user: Option<String>,
        /// The email the annotation named, when it named one.
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        channel: Option<String>,
        #[serde(default)]
        ts: Option<String>,
        #[serde(default)]
        already_sent: bool,
    },
    /// Who deployed the revision is unknown; the fallback group (if any) is asked instead.
    NotFound {
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        annotation: Option<String>,
        #[serde(default)]
        how_to_fix: Option<String>,
        #[serde(default)]
        fallback_group: Option<String>,
    },
    /// No Slack bot token: nobody can be messaged.
    NotConfigured {
        #[serde(default)]
        error: Option<String>,
    },
    /// Reading the annotation or sending the DM failed.
    Failed {
        #[serde(default)]
        error: Option<String>,
        /// DM attempts made (absent when the annotation could not be read).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempts: Option<u32>,
    },
    /// A status this version does not know: shown like a failure.
    #[serde(other)]
    Unknown,
}

impl NotifyResult {
    /// The stored form.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a notify result serializes")
    }

    /// The result stored in `value`; `None` when it records none (no `status`).
    pub fn from_json(value: &Value) -> Option<Self> {
        value["status"].as_str()?;
        Some(serde_json::from_value(value.clone()).unwrap_or(NotifyResult::Unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ticket_results_store_what_the_step_always_wrote() {
        let opened = TicketResult::Opened {
            tracker: Some("jira".into()),
            key: Some("OPS-1".into()),
            url: Some("https://x/OPS-1".into()),
            already_opened: false,
        };
        assert_eq!(
            opened.to_json(),
            json!({ "status": "opened", "tracker": "jira", "key": "OPS-1",
                    "url": "https://x/OPS-1", "already_opened": false })
        );
        assert_eq!(
            TicketResult::NotConfigured.to_json(),
            json!({ "status": "not_configured" })
        );
        let failed = TicketResult::Failed {
            tracker: Some("github".into()),
            error: Some("down".into()),
        };
        assert_eq!(
            failed.to_json(),
            json!({ "status": "failed", "tracker": "github", "error": "down" })
        );
        for r in [opened, TicketResult::NotConfigured, failed] {
            assert_eq!(TicketResult::from_json(&r.to_json()), Some(r));
        }
    }

    #[test]
    fn ticket_results_read_leniently() {
        assert_eq!(TicketResult::from_json(&Value::Null), None);
        assert_eq!(TicketResult::from_json(&json!({})), None);
        assert_eq!(
            TicketResult::from_json(&json!({ "status": "later" })),
            Some(TicketResult::Unknown)
        );
        assert_eq!(
            TicketResult::from_json(&json!({ "status": "opened", "key": "OPS-2" })),
            Some(TicketResult::Opened {
                tracker: None,
                key: Some("OPS-2".into()),
                url: None,
                already_opened: false
            })
        );
    }

    #[test]
    fn notify_results_store_what_the_step_always_wrote() {
        let sent = NotifyResult::Sent {
            user: Some("U1".into()),
            email: None,
            channel: Some("D1".into()),
            ts: Some("1.2".into()),
            already_sent: false,
        };
        assert_eq!(
            sent.to_json(),
            json!({ "status": "sent", "user": "U1", "email": null, "channel": "D1",
                    "ts": "1.2", "already_sent": false })
        );
        let not_found = NotifyResult::NotFound {
            reason: Some("r".into()),
            annotation: Some("a".into()),
            how_to_fix: Some("h".into()),
            fallback_group: None,
        };
        assert_eq!(
            not_found.to_json(),
            json!({ "status": "not_found", "reason": "r", "annotation": "a",
                    "how_to_fix": "h", "fallback_group": null })
        );
        let read_failed = NotifyResult::Failed {
            error: Some("e".into()),
            attempts: None,
        };
        assert_eq!(
            read_failed.to_json(),
            json!({ "status": "failed", "error": "e" })
        );
        let dm_failed = NotifyResult::Failed {
            error: Some("e".into()),
            attempts: Some(3),
        };
        assert_eq!(
            dm_failed.to_json(),
            json!({ "status": "failed", "error": "e", "attempts": 3 })
        );
        let off = NotifyResult::NotConfigured {
            error: Some("x".into()),
        };
        assert_eq!(
            off.to_json(),
            json!({ "status": "not_configured", "error": "x" })
        );
        for r in [sent, not_found, read_failed, dm_failed, off] {
            assert_eq!(NotifyResult::from_json(&r.to_json()), Some(r));
        }
        assert_eq!(NotifyResult::from_json(&json!({})), None);
    }
}
