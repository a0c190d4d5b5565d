//! Typed step results: what a step records (in `rollback.steps.<step>` and its audit row's
//! detail), one type per step, serialized once for storage and read back by the renderer.
//! The stored JSON is what the steps always wrote, so existing rows read the same.
//!
//! So far the `notify`, `ticket`, `escalate` and `lock` steps' (and the lock part of
//! `execute`'s, and who may approve in `plan`'s); the others still record
//! `serde_json::Value`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lock::{Enforcement, Lock};

/// Who may approve a request, as configured when its plan was made: the card says it and the
/// thread mentions them (so they are notified) when the plan is ready and at the reminder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approvers {
    #[serde(default)]
    pub lead_ids: Vec<String>,
    #[serde(default)]
    pub lead_group: Option<String>,
    /// Only for a request that needs a DBA sign-off.
    #[serde(default)]
    pub dba_ids: Vec<String>,
    #[serde(default)]
    pub dba_group: Option<String>,
}

impl Approvers {
    /// The stored form.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("approvers serialize")
    }

    /// Read back from a step's detail (`{"approvers": …}`); `None` for rows from before.
    pub fn from_json(detail: &Value) -> Option<Approvers> {
        serde_json::from_value(detail.get("approvers")?.clone()).ok()
    }
}

/// The deploy lock as a step recorded it: the `lock` step's result, and the part of the
/// `execute` step's that the rollback patch set (`lock`, `enforcement`). All fields are
/// optional when read, so rows from before the enforcement check read as "not checked".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LockResult {
    /// The lock on the Deployment (set, or found set).
    #[serde(default)]
    pub lock: Option<Lock>,
    /// Found already set (by the rollback patch, or by a run before a crash), not patched.
    #[serde(default)]
    pub already_set: bool,
    /// Whether the cluster's admission policy enforces it; `None`: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
    /// The command that lifts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlock: Option<String>,
    /// The GitOps part (docs/argocd.md), as `src/steps/argocd.rs` records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argocd: Option<Value>,
}

impl LockResult {
    /// The stored form.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a lock result serializes")
    }

    /// The lock recorded in `value` (a `lock` or `execute` step result); `None` when it
    /// records no lock.
    pub fn from_json(value: &Value) -> Option<Self> {
        let result: Self = serde_json::from_value(value.clone()).ok()?;
        result.lock.is_some().then_some(result)
    }

    /// The lock a rollback's `steps` record: the `lock` step's result, else the one its
    /// rollback patch set (verifying, validating, and a rollback that failed after the patch).
    pub fn of_steps(steps: &Value) -> Option<Self> {
        Self::from_json(&steps["lock"]).or_else(|| Self::from_json(&steps["execute"]))
    }

    /// Locked and known to be enforced.
    pub fn enforced(&self) -> bool {
        self.enforcement.as_ref().is_some_and(|e| e.enforced)
    }

    /// One line of plain text: by which rollbacks the Deployment is locked and whether
    /// anything enforces it. The card, the thread and the escalation all say this.
    pub fn describe(&self) -> String {
        let holders = self
            .lock
            .as_ref()
            .map_or_else(|| "?".to_owned(), Lock::holders);
        match &self.enforcement {
            Some(e) if e.enforced => {
                format!("locked by rollback {holders}, {}", e.summary())
            }
            Some(e) => format!(
                "lock recorded by rollback {holders} but NOT enforced: {}",
                e.summary()
            ),
            None => format!("locked by rollback {holders} (enforcement not checked)"),
        }
    }
}

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

/// What the `escalate` step recorded. Every field is written; all are optional when read
/// (rows from before PagerDuty have no `pagerduty`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EscalateResult {
    #[serde(default)]
    pub reason: Option<String>,
    /// Failed checks, else the error, one line each.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// The user group mentioned (`slack.escalation_user_group`).
    #[serde(default)]
    pub mention: Option<String>,
    /// Earlier failed rollbacks of the same target in the same incident.
    #[serde(default)]
    pub earlier_failures: Vec<i64>,
    #[serde(default)]
    pub pagerduty: Option<PageResult>,
    /// The DM to the deployer of a failed rollback (`None`: not sent by this escalation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyResult>,
    /// The post-incident ticket of a failed rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<TicketResult>,
}

/// Where the PagerDuty page of an escalation stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PageResult {
    /// PagerDuty accepted it.
    Triggered {
        #[serde(default)]
        dedup_key: Option<String>,
    },
    /// Another replica is sending it.
    Sending {
        #[serde(default)]
        dedup_key: Option<String>,
    },
    /// Not accepted yet; the sweep retries.
    Failed {
        #[serde(default)]
        dedup_key: Option<String>,
        #[serde(default)]
        error: Option<String>,
    },
    /// Never accepted: the sweep gave up after its attempts. Nobody was paged.
    GaveUp {
        #[serde(default)]
        dedup_key: Option<String>,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        attempts: i32,
    },
    /// No `PAGERDUTY_ROUTING_KEY`: nobody is paged.
    NotConfigured,
    /// A status this version does not know: shown as not configured.
    #[serde(other)]
    Unknown,
}

impl EscalateResult {
    /// The stored form.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("an escalate result serializes")
    }

    /// The result stored in `value`; what cannot be read is left empty (the page is read on
    /// its own, so an unreadable page never hides the rest).
    pub fn from_json(value: &Value) -> Self {
        let mut rest = value.clone();
        let page = rest.as_object_mut().and_then(|o| o.remove("pagerduty"));
        let mut result: Self = serde_json::from_value(rest).unwrap_or_default();
        result.pagerduty = page.as_ref().and_then(PageResult::from_json);
        result
    }
}

impl PageResult {
    /// The stored form.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a page result serializes")
    }

    /// The page stored in `value`; `None` when it records none (no `status`).
    pub fn from_json(value: &Value) -> Option<Self> {
        value["status"].as_str()?;
        Some(serde_json::from_value(value.clone()).unwrap_or(PageResult::Unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lock_results_read_old_rows_and_execute_results() {
        // A row from before the enforcement check: a lock, not known to be enforced.
        let old = json!({"lock": {"reason": "r", "rollback_id": 4, "service": "web",
            "incident": null, "since": null}, "already_set": false, "unlock": "/rollback unlock web <fix reference>"});
        let read = LockResult::from_json(&old).expect("a lock");
        assert_eq!(read.lock.as_ref().unwrap().rollback_id, Some(4));
        assert!(read.enforcement.is_none() && !read.enforced());
        // The execute step's result carries the lock the patch set, among its own fields.
        let executed = json!({"generation": 3, "already_applied": false, "at": "2026-12-04T00:00:00Z",
            "lock": {"reason": "r", "rollback_id": 5, "service": null, "incident": null, "since": null},
            "enforcement": {"enforced": true}});
        assert!(LockResult::from_json(&executed).unwrap().enforced());
        // No lock recorded: none.
        assert_eq!(LockResult::from_json(&json!({"error": "boom"})), None);
        assert_eq!(LockResult::from_json(&Value::Null), None);
        let round = LockResult {
            enforcement: Some(Enforcement::not_enforced(vec!["x".into()])),
            ..read
        };
        assert_eq!(LockResult::from_json(&round.to_json()), Some(round));
    }

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

    #[test]
    fn escalate_results_store_what_the_step_always_wrote() {
        let r = EscalateResult {
            reason: Some("r".into()),
            evidence: vec!["e".into()],
            mention: None,
            earlier_failures: vec![3],
            pagerduty: Some(PageResult::Failed {
                dedup_key: Some("k".into()),
                error: Some("down".into()),
            }),
            notify: None,
            ticket: None,
        };
        assert_eq!(
            r.to_json(),
            json!({ "reason": "r", "evidence": ["e"], "mention": null, "earlier_failures": [3],
                    "pagerduty": { "status": "failed", "dedup_key": "k", "error": "down" } })
        );
        assert_eq!(EscalateResult::from_json(&r.to_json()), r);
        // A failed rollback's DM and ticket, recorded by its escalation, read back.
        let documented = EscalateResult {
            notify: Some(NotifyResult::NotConfigured { error: None }),
            ticket: Some(TicketResult::NotConfigured),
            ..r.clone()
        };
        assert_eq!(EscalateResult::from_json(&documented.to_json()), documented);
        assert_eq!(
            PageResult::NotConfigured.to_json(),
            json!({ "status": "not_configured" })
        );
        assert_eq!(
            PageResult::Triggered {
                dedup_key: Some("k".into())
            }
            .to_json(),
            json!({ "status": "triggered", "dedup_key": "k" })
        );
        assert_eq!(
            PageResult::Sending {
                dedup_key: Some("k".into())
            }
            .to_json(),
            json!({ "status": "sending", "dedup_key": "k" })
        );
        assert_eq!(
            EscalateResult::from_json(&json!({})),
            EscalateResult::default()
        );
        let unreadable_page = EscalateResult::from_json(&json!({ "reason": "r", "pagerduty": {} }));
        assert_eq!(unreadable_page.reason.as_deref(), Some("r"));
        assert_eq!(unreadable_page.pagerduty, None);
        assert_eq!(PageResult::from_json(&Value::Null), None);
    }
}
