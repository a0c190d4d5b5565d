//! The thread under the card: one line per audit row.

use serde_json::Value;

use super::*;
use crate::domain::results::{Approvers, EscalateResult, LockResult, NotifyResult, TicketResult};

/// One thread line for an audit row, or `None` for rows the thread does not show (the request
/// itself, refused clicks: those are answered privately).
pub fn thread_line(row: &AuditRow) -> Option<String> {
    if row.outcome != "applied" {
        return None;
    }
    let who = user(&row.actor);
    let d = &row.detail;
    Some(match row.action.as_str() {
        // Neither is news in the thread: the request is the card; a retention purge
        // happens weeks after the rollback ended.
        "request" | "purge_plan" => return None,
        "plan_ready" => match Approvers::from_json(d) {
            Some(approvers) => format!(
                "📋 Plan ready; waiting for approval: {} (not the requester)",
                approvers_text(&approvers)
            ),
            None => "📋 Plan ready; waiting for approval".into(),
        },
        "remind" => format!(
            "⏰ Still waiting for approval, half of the approval window has passed: {}. \
             The request expires {}.",
            Approvers::from_json(d).map_or_else(
                || "an on-call lead may approve".to_owned(),
                |a| approvers_text(&a)
            ),
            d["expires_at"]
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                .map_or_else(|| "soon".to_owned(), slack_date)
        ),
        "plan_refused" => format!(
            "🚫 No plan: {}",
            untrusted(d["refusal"].as_str().unwrap_or("refused"), 600)
        ),
        "approve" | "dba_sign_off" if row.to_state == State::Approved => {
            format!("✅ Approved by {who}: all sign-offs are in")
        }
        "approve" | "dba_sign_off" if row.to_state == State::Expired => {
            "⌛ Approval came after the deadline: the request expired".into()
        }
        "approve" => format!("✅ Lead approval by {who}; DBA sign-off still needed"),
        "dba_sign_off" => format!("✅ DBA sign-off by {who}; lead approval still needed"),
        "reject" => format!("❌ Rejected by {who}"),
        "cancel" => format!("🚫 Cancelled by {who}"),
        "abort" => format!("🛑 Aborted by {who}: the bot does nothing more for this rollback"),
        "extend_validation" => format!(
            "⏳ {who} extended recovery validation: it runs until {}",
            d["until"]
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                .map_or_else(|| "5 minutes after the click".to_owned(), slack_date)
        ),
        "accept_recovery" => format!(
            "⚠️ {who} accepted the recovery without a full validation: {}",
            untrusted(d["accepted"]["reason"].as_str().unwrap_or(""), 300)
        ),
        "escalate_now" => format!(
            "📣 {who} asked to escalate at once (the escalation's own line says who was told): {}",
            untrusted(d["reason"].as_str().unwrap_or("no reason recorded"), 300)
        ),
        "expire" => "⌛ Expired without a decision".into(),
        "start_execution" => "▶️ Execution started".into(),
        "step_succeeded" if row.from_state == State::Executing => format!(
            "⚙️ Rollback patch applied: generation {}{}{}",
            d["generation"],
            if d["already_applied"].as_bool() == Some(true) {
                " (already applied; nothing sent again)"
            } else {
                ""
            },
            LockResult::from_json(d)
                .map(|lock| format!("\n{}", card::lock_text(&lock)))
                .unwrap_or_default()
        ),
        "step_succeeded" if row.from_state == State::Verifying => {
            format!(
                "🔍 Verification passed: {}{}",
                untrusted(d["summary"].as_str().unwrap_or(""), 600),
                checks_text(d)
            )
        }
        "step_succeeded" if row.from_state == State::Validating => match d["skipped"].as_str() {
            Some(reason) => format!(
                "⚠️ Recovery NOT validated (runbook step 4 did not run): {}",
                escape(reason)
            ),
            None => format!(
                "📈 Recovery validated: {}{}",
                untrusted(d["summary"].as_str().unwrap_or(""), 600),
                recovery_text(d)
            ),
        },
        "step_failed" if row.from_state == State::Validating => format!(
            "❌ Recovery not validated: {}{}",
            untrusted(
                d["summary"]
                    .as_str()
                    .or(d["error"].as_str())
                    .unwrap_or("see the card"),
                600
            ),
            recovery_text(d)
        ),
        "step_succeeded" if d["unlocked"].is_object() => format!(
            "🔓 Lock removed ({}); the pod template may change again",
            d["unlocked"]["reason"].as_str().unwrap_or("")
        ),
        "step_succeeded" if d["already_unlocked"].as_bool() == Some(true) => {
            "🔓 The deployment was no longer locked; nothing to remove".to_owned()
        }
        "step_succeeded" if row.from_state == State::Locking => {
            let lock = LockResult::from_json(d).unwrap_or_default();
            let reason = lock
                .lock
                .as_ref()
                .map_or("by this rollback", |l| l.reason.as_str());
            let unlock = lock
                .unlock
                .as_deref()
                .unwrap_or("/rollback unlock <service> <fix reference>");
            let set = if lock.already_set {
                " (set by the rollback patch; nothing sent again)"
            } else {
                ""
            };
            match &lock.enforcement {
                Some(e) if !e.enforced => format!(
                    "⚠️ Lock recorded but *NOT enforced*: {reason}{set}. {}. Nothing stops a re-deploy of the faulty build until an operator installs the policy; to lift the lock: `{unlock}`",
                    escape(&e.summary())
                ),
                _ => format!(
                    "🔒 Deployment locked until a fix is approved: {reason}{set}; to lift it: `{unlock}`"
                ),
            }
        }
        "step_succeeded" if row.from_state == State::Notifying => {
            match NotifyResult::from_json(d) {
                Some(NotifyResult::Sent {
                    user: who,
                    already_sent,
                    ..
                }) => format!(
                    "✉️ {} (who deployed the faulty revision) told by DM{}",
                    user(who.as_deref().unwrap_or("?")),
                    if already_sent {
                        " (already sent; nothing sent again)"
                    } else {
                        ""
                    }
                ),
                Some(NotifyResult::NotFound {
                    reason,
                    how_to_fix,
                    fallback_group,
                    ..
                }) => format!(
                "⚠️ Who deployed the faulty revision is unknown: {}; to fix it, {}{}",
                reason.as_deref().unwrap_or(""),
                how_to_fix.as_deref().unwrap_or(""),
                fallback_group
                    .map(|g| format!(
                        "\n<!subteam^{g}>: this rollback concerns your service; please follow up"
                    ))
                    .unwrap_or_default()
            ),
                Some(NotifyResult::NotConfigured { .. }) => {
                    "➖ The deployer was not told: no Slack bot token".into()
                }
                failed => {
                    let error = match &failed {
                        Some(NotifyResult::Failed { error, .. }) => error.as_deref(),
                        _ => None,
                    };
                    format!(
                        "❌ The DM to the deployer could not be sent: {}",
                        escape(error.unwrap_or("unknown error"))
                    )
                }
            }
        }
        "step_succeeded" if row.from_state == State::Ticketing => {
            match TicketResult::from_json(d) {
                Some(TicketResult::Opened {
                    key,
                    url,
                    already_opened,
                    ..
                }) => format!(
                    "🎫 Post-incident ticket <{}|{}>{}",
                    url.as_deref().unwrap_or(""),
                    escape(key.as_deref().unwrap_or("ticket")),
                    if already_opened {
                        " (found, already opened; not opened again)"
                    } else {
                        " opened"
                    }
                ),
                Some(TicketResult::NotConfigured) => {
                    "➖ No post-incident ticket: no ticket tracker is configured (tickets.tracker)"
                        .into()
                }
                failed => {
                    let (tracker, error) = match &failed {
                        Some(TicketResult::Failed { tracker, error }) => {
                            (tracker.as_deref(), error.as_deref())
                        }
                        _ => (None, None),
                    };
                    format!(
                        "❌ The post-incident ticket could not be opened in {}: {}",
                        tracker.unwrap_or("the tracker"),
                        escape(error.unwrap_or("unknown error"))
                    )
                }
            }
        }
        "step_succeeded" => format!("✅ {} done", row.from_state),
        "step_failed" if row.from_state == State::Failed => format!(
            "📣 Escalated, but the escalation could not be completed: {}",
            untrusted(d["error"].as_str().unwrap_or("see the logs"), 600)
        ),
        "step_failed" => format!(
            "❌ {} failed: {}{}",
            row.from_state,
            untrusted(
                d["summary"]
                    .as_str()
                    .or(d["error"].as_str())
                    .or(d["refusal"].as_str())
                    .unwrap_or("see the card"),
                600
            ),
            checks_text(d)
        ),
        "escalate" => escalation_line(d),
        "pagerduty_trigger" => format!(
            "📟 PagerDuty paged Platform Engineering (dedup key `{}`)",
            d["dedup_key"].as_str().unwrap_or("?")
        ),
        "pagerduty_resolve" => format!(
            "📟 PagerDuty alert `{}` of an earlier failed rollback resolved: this rollback succeeded",
            d["dedup_key"].as_str().unwrap_or("?")
        ),
        "pagerduty_resolve_withheld" => format!(
            "📟 PagerDuty alert `{}` left open: rollback #{} failed after this one succeeded",
            d["dedup_key"].as_str().unwrap_or("?"),
            d["newer_failure"].as_i64().unwrap_or_default()
        ),
        "pagerduty_gave_up" => format!(
            "🚨 PagerDuty {} NOT delivered: the bot gave up after {} attempts ({}); {}",
            d["event"].as_str().unwrap_or("event"),
            d["attempts"].as_i64().unwrap_or_default(),
            untrusted(d["error"].as_str().unwrap_or("unknown error"), 300),
            if d["event"] == "trigger" {
                "page Platform Engineering by hand"
            } else {
                "resolve the alert by hand"
            }
        ),
        other => format!("{other}: {} → {}", row.from_state, row.to_state),
    })
}

/// The escalation's thread line: the mention, the reason, the evidence and the page.
fn escalation_line(d: &Value) -> String {
    let escalation = EscalateResult::from_json(d);
    let reason = escape(escalation.reason.as_deref().unwrap_or("see the card"));
    let mut text = match &escalation.mention {
        None if escalation_reached(&escalation).is_empty() => format!(
            "❌ Failed — nobody paged (no slack.escalation_user_group configured): the rollback failed: {reason}"
        ),
        Some(group) => format!("📣 Escalated to <!subteam^{group}>: the rollback failed: {reason}"),
        None => format!(
            "📣 Escalated to Platform Engineering (no slack.escalation_user_group configured): the rollback failed: {reason}"
        ),
    };
    // The page's line before the evidence: a long evidence list is what gets cut.
    text.push_str("\n📟 ");
    text.push_str(&pagerduty_text(escalation.pagerduty.as_ref()));
    if !escalation.evidence.is_empty() {
        text.push_str("\n*Evidence*");
        for line in &escalation.evidence {
            text.push_str(&format!("\n• {}", escape(&truncate(line, 1200))));
        }
    }
    text
}

/// One thread reply for several audit rows (coalesced), or `None` if none is shown.
pub fn thread_reply(r: &Rollback, rows: &[AuditRow]) -> Option<Message> {
    let lines: Vec<String> = rows.iter().filter_map(thread_line).collect();
    if lines.is_empty() {
        return None;
    }
    let blocks: Vec<Value> = lines
        .iter()
        .zip(rows.iter().filter(|row| thread_line(row).is_some()))
        .take(MAX_BLOCKS)
        .map(|(line, row)| section(format!("rb{}.a{}", r.id, row.id), line))
        .collect();
    Some(Message {
        text: truncate(&lines.join("\n"), MAX_FALLBACK_TEXT),
        blocks,
    })
}
