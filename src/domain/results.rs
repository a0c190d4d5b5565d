//! Typed step results: what a step records (in `rollback.steps.<step>` and its audit row's
//! detail), one type per step, serialized once for storage and read back by the renderer.
//! The stored JSON is what the steps always wrote, so existing rows read the same.
//!
//! So far the `ticket` step's; the other steps still record `serde_json::Value`.

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
}
