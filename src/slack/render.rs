//! Block Kit rendering, pure: the approval card of a [`Rollback`] (re-rendered from the
//! database row on every change, so it is right after a restart), the thread replies built
//! from the audit trail, and the ephemeral answers. Everything stays inside Block Kit's
//! limits (docs/slack.md lists them); long texts are cut, never rejected by Slack.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::clients::k8s::{Revision, RollbackPlan, Verification};
use crate::db::rollbacks::{AuditRow, Rollback};
use crate::domain::{Kind, State};

use super::actions;
use crate::clients::k8s::image_lines;
use crate::clients::slack::Message;
use crate::support::text::{escape, truncate};

/// Block Kit limits the renderer respects.
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_BUTTON_TEXT: usize = 75;
pub const MAX_FALLBACK_TEXT: usize = 4000;

/// How much of a user's own text an answer repeats.
pub const MAX_ECHO: usize = 100;

/// A user's text as an answer may repeat it: cut to [`MAX_ECHO`] characters, then escaped
/// (in that order, so the cut never splits an escape).
pub fn echo(s: &str) -> String {
    escape(&truncate(s, MAX_ECHO))
}

fn section(block_id: String, text: &str) -> Value {
    json!({
        "type": "section",
        "block_id": block_id,
        "text": { "type": "mrkdwn", "text": truncate(text, MAX_SECTION_TEXT) },
    })
}

fn context(block_id: String, text: &str) -> Value {
    json!({
        "type": "context",
        "block_id": block_id,
        "elements": [{ "type": "mrkdwn", "text": truncate(text, MAX_SECTION_TEXT) }],
    })
}

fn slack_date(at: DateTime<Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        at.timestamp(),
        at.format("%Y-%m-%d %H:%M UTC")
    )
}

fn user(id: &str) -> String {
    if id.starts_with("worker:") || id == "system" {
        "the bot".to_owned()
    } else {
        format!("<@{id}>")
    }
}

/// The stored plan, if it is readable.
pub fn plan_of(r: &Rollback) -> Option<RollbackPlan> {
    r.plan
        .clone()
        .and_then(|p| serde_json::from_value::<RollbackPlan>(p).ok())
}

fn kind_title(kind: Kind) -> &'static str {
    match kind {
        Kind::Rollback => "Rollback",
        Kind::Unlock => "Unlock",
    }
}

/// The headline of an unlock request where it differs from a rollback's.
fn unlock_headline(r: &Rollback) -> Option<String> {
    Some(match r.state {
        State::Requested => "⏳ *Checking the lock* on the deployment…".into(),
        State::AwaitingApproval => {
            "🟡 *Unlock awaiting approval* by an on-call lead other than the requester".into()
        }
        State::Approved | State::Executing => "🔓 *Removing the lock*".into(),
        State::Succeeded => "🔓 *Unlocked* — deploys may change the pod template again".into(),
        _ => return None,
    })
}

fn headline(r: &Rollback) -> String {
    let by = |v: &Option<String>| v.as_deref().map_or_else(|| "someone".to_owned(), user);
    if r.kind == Kind::Unlock
        && let Some(line) = unlock_headline(r)
    {
        return line;
    }
    match r.state {
        State::Requested => "⏳ *Planning* — reading the deployment's history…".into(),
        State::AwaitingApproval => match (&r.lead_approved_by, &r.dba_approved_by) {
            (Some(lead), None) if r.needs_dba => {
                format!("🟡 *Awaiting DBA sign-off* — approved by {}", user(lead))
            }
            (None, Some(dba)) => format!(
                "🟡 *Awaiting on-call lead approval* — DBA sign-off by {}",
                user(dba)
            ),
            _ => "🟡 *Awaiting approval* by an on-call lead".into(),
        },
        State::Approved => format!("✅ *Approved* by {} — starting", by(&r.decided_by)),
        State::Executing => "⚙️ *Executing* the rollback".into(),
        State::Verifying => "🔍 *Verifying* the rollout".into(),
        State::Validating => {
            "📈 *Validating recovery* — P99 latency, error rate, health and soak".into()
        }
        State::Locking => "🔒 *Locking* the deployment against re-deploys".into(),
        State::Notifying => "✉️ *Rolled back* — telling the engineer who deployed it".into(),
        State::Ticketing => "🎫 *Rolled back* — opening the post-incident ticket".into(),
        State::Succeeded => {
            let done = match &r.steps["validate"] {
                v if v["skipped"].is_string() => {
                    "✅ *Rolled back and verified* — recovery validation skipped"
                }
                v if v["recovery"].is_object() => {
                    "✅ *Rolled back and verified* — service recovered"
                }
                _ => "✅ *Rolled back and verified*",
            };
            if r.steps["lock"]["lock"].is_object() {
                format!("{done} — 🔒 locked until a fix is approved")
            } else {
                done.to_owned()
            }
        }
        State::Refused => format!(
            "🚫 *Refused*: {}",
            r.last_error.as_deref().unwrap_or("no plan could be made")
        ),
        State::Rejected => format!("❌ *Rejected* by {}", by(&r.decided_by)),
        State::Expired => format!(
            "⌛ *Expired* — no decision before {}; request again if it is still needed",
            slack_date(r.expires_at)
        ),
        State::Cancelled => "🚫 *Cancelled*".into(),
        State::Failed => format!(
            "❌ *Failed*: {}",
            r.last_error.as_deref().unwrap_or("unknown error")
        ),
        State::Escalated => format!(
            "📣 *Escalated* to Platform Engineering: {}",
            r.last_error.as_deref().unwrap_or("")
        ),
    }
}

fn incident_text(r: &Rollback, permalink: Option<&str>) -> String {
    match (r.incident.as_deref(), permalink) {
        (Some(i), _) if i.starts_with("http://") || i.starts_with("https://") => {
            format!("<{}>", escape(i))
        }
        (Some(i), _) => escape(i),
        (None, Some(link)) => {
            format!("no incident given: <{link}|this card> is the incident record")
        }
        (None, None) => "no incident given (this card is the incident record)".into(),
    }
}

/// The approval card for the rollback as stored; `progress` is the live verification line,
/// `permalink` the card's own link (the incident link when the request named none).
pub fn card(
    r: &Rollback,
    progress: Option<&str>,
    permalink: Option<&str>,
    now: DateTime<Utc>,
) -> Message {
    let id = r.id;
    // Block ids are unique per message and change with every version (Slack requires new ids
    // on update for stateful blocks).
    let bid = |name: &str| format!("rb{id}.v{}.{name}", r.version);
    let plan = plan_of(r);
    let mut blocks = vec![json!({
        "type": "header",
        "block_id": bid("header"),
        "text": {
            "type": "plain_text",
            "text": truncate(&format!("{} #{id}: {}", kind_title(r.kind), r.service), MAX_HEADER_TEXT),
        },
    })];
    blocks.push(section(bid("state"), &headline(r)));

    let revisions = match &plan {
        Some(p) => format!(
            "{} → *{}*",
            p.current
                .as_ref()
                .map_or_else(|| "(no ReplicaSet)".to_owned(), |c| c.revision.to_string()),
            p.rollback_to.revision
        ),
        None => match r.requested_revision {
            Some(rev) => format!("current → *{rev}*"),
            None => "current → *previous*".into(),
        },
    };
    let third = match r.kind {
        Kind::Rollback => format!("*Revision*\n{revisions}"),
        Kind::Unlock => format!(
            "*Fix*\n{}\n*Lock*\n{}{}",
            echo(r.fix_reference.as_deref().unwrap_or("")),
            r.plan
                .as_ref()
                .and_then(|p| p["lock"]["reason"].as_str())
                .unwrap_or("(reading…)"),
            // The GitOps path (docs/argocd.md): the unlock also gives Argo CD its sync back.
            r.plan
                .as_ref()
                .and_then(|p| p["argocd"]["application"].as_str())
                .map(|app| format!(
                    "\n*Argo CD*\nremoves the deny sync window of `{app}` and restores its auto-sync policy"
                ))
                .unwrap_or_default()
        ),
    };
    let fields = [
        format!("*Service*\n{}", r.service),
        format!("*Cluster / namespace*\n{} / {}", r.cluster, r.namespace),
        third,
        format!("*Requested by*\n{}", user(&r.requested_by)),
        format!("*Incident*\n{}", incident_text(r, permalink)),
        format!("*Approval expires*\n{}", slack_date(r.expires_at)),
    ];
    blocks.push(json!({
        "type": "section",
        "block_id": bid("facts"),
        "fields": fields
            .iter()
            .map(|f| json!({ "type": "mrkdwn", "text": truncate(f, 2000) }))
            .collect::<Vec<_>>(),
    }));

    if let Some(argocd) = plan.as_ref().and_then(|p| p.argocd.as_ref()) {
        blocks.push(section(bid("argocd"), &argocd.summary()));
    }
    if let Some(p) = &plan {
        blocks.push(section(
            bid("images"),
            &format!("*Images*\n{}", image_lines(&p.image_changes)),
        ));
        let other = if p.template_differences.is_empty() {
            "none".to_owned()
        } else {
            p.template_differences
                .iter()
                .map(|d| format!("• {} `{}`: {}", d.scope, d.field, d.summary))
                .collect::<Vec<_>>()
                .join("\n")
        };
        blocks.push(section(
            bid("template"),
            &format!("*Other template changes*\n{other}"),
        ));
        let marker = if p.correlation.inside_window {
            "✅"
        } else {
            "⚠️"
        };
        blocks.push(section(
            bid("correlation"),
            &format!(
                "*Deploy ↔ incident correlation*\n{marker} {}",
                p.correlation.summary
            ),
        ));
        let others: Vec<String> = p
            .warnings
            .iter()
            .filter(|w| {
                !matches!(
                    w.kind,
                    crate::clients::k8s::WarningKind::DatabaseCoupled
                        | crate::clients::k8s::WarningKind::OutsideCorrelationWindow
                )
            })
            .map(|w| format!("⚠️ {}", w.message))
            .collect();
        if !others.is_empty() {
            blocks.push(section(bid("warnings"), &others.join("\n")));
        }
    }

    if r.needs_dba || plan.as_ref().is_some_and(|p| p.database.coupled) {
        blocks.push(section(
            bid("database"),
            "⚠️ *Database-coupled service*: the rollback does not undo migrations. A DBA must sign off as well as an on-call lead.",
        ));
    }

    let decided = r.lead_approved_by.is_some() && !r.state.awaits_decision()
        || matches!(
            r.state,
            State::Executing
                | State::Verifying
                | State::Validating
                | State::Locking
                | State::Notifying
                | State::Ticketing
                | State::Succeeded
                | State::Failed
                | State::Escalated
        );
    // An unlock has no rollout to check: its headline and thread tell the whole story.
    if decided && r.kind == Kind::Rollback {
        blocks.push(json!({ "type": "divider", "block_id": bid("divider") }));
        blocks.push(section(bid("checklist"), &checklist(r, progress)));
    }

    if r.state == State::AwaitingApproval && now < r.expires_at {
        blocks.push(buttons(r, &bid("actions")));
        blocks.push(context(
            bid("hint"),
            "Only the on-call lead(s) may approve; the requester cannot approve their own request.",
        ));
    }
    blocks.truncate(MAX_BLOCKS);

    let what = match r.kind {
        Kind::Rollback => revisions.replace('*', ""),
        Kind::Unlock => "deploy lock".to_owned(),
    };
    let text = truncate(
        &format!(
            "{} #{id} of {} ({what}): {}",
            kind_title(r.kind),
            r.service,
            r.state.as_str().replace('_', " ")
        ),
        MAX_FALLBACK_TEXT,
    );
    Message { text, blocks }
}

fn button(action_id: &str, text: &str, value: &str, style: Option<&str>) -> Value {
    let mut b = json!({
        "type": "button",
        "action_id": action_id,
        "text": { "type": "plain_text", "text": truncate(text, MAX_BUTTON_TEXT) },
        "value": value,
    });
    if let Some(style) = style {
        b["style"] = json!(style);
    }
    b
}

fn confirm(title: &str, text: &str, yes: &str) -> Value {
    json!({
        "title": { "type": "plain_text", "text": truncate(title, 100) },
        "text": { "type": "mrkdwn", "text": truncate(text, 300) },
        "confirm": { "type": "plain_text", "text": truncate(yes, 30) },
        "deny": { "type": "plain_text", "text": "Not yet" },
    })
}

fn buttons(r: &Rollback, block_id: &str) -> Value {
    let value = actions::value(r.id, r.plan_fingerprint.as_deref().unwrap_or("none"));
    let mut elements = vec![];
    if r.lead_approved_by.is_none() {
        let (action, text, why) = if r.needs_override {
            (
                actions::APPROVE_OVERRIDE,
                "Approve (override correlation warning)",
                " The current revision was NOT rolled out inside the correlation window: you are overriding that warning.",
            )
        } else {
            (actions::APPROVE, "Approve", "")
        };
        let mut b = button(action, text, &value, Some("primary"));
        b["confirm"] = confirm(
            &format!("Roll back {}?", r.service),
            &format!(
                "This rolls {} in {}/{} back as shown on the card.{why}",
                r.deployment, r.cluster, r.namespace
            ),
            "Roll back",
        );
        elements.push(b);
    }
    if r.needs_dba && r.dba_approved_by.is_none() {
        let mut b = button(actions::DBA_SIGN_OFF, "DBA sign-off", &value, None);
        b["confirm"] = confirm(
            "Sign off as DBA?",
            "The database schema stays as it is; you confirm the old revision works with it.",
            "Sign off",
        );
        elements.push(b);
    }
    elements.push(button(actions::REJECT, "Reject", &value, Some("danger")));
    json!({ "type": "actions", "block_id": block_id, "elements": elements })
}

fn checklist(r: &Rollback, progress: Option<&str>) -> String {
    let mut lines = vec![];
    let mut approvers = vec![];
    if let Some(lead) = &r.lead_approved_by {
        approvers.push(format!("{} (lead)", user(lead)));
    }
    if let Some(dba) = &r.dba_approved_by {
        approvers.push(format!("{} (DBA)", user(dba)));
    }
    lines.push(format!("✅ Approved by {}", approvers.join(", ")));

    let failed = matches!(r.state, State::Failed | State::Escalated);
    let execute = &r.steps["execute"];
    let executed = execute.get("generation").is_some();
    let exec_line = if executed {
        let again = if execute["already_applied"].as_bool() == Some(true) {
            ", already applied"
        } else {
            ""
        };
        format!(
            "✅ Executing: rollback patch applied (generation {}{again})",
            execute["generation"]
        )
    } else if r.state == State::Executing || r.state == State::Approved {
        "⏳ Executing: applying the rollback patch".into()
    } else if failed {
        "❌ Executing: not completed".into()
    } else {
        "⬜ Executing".into()
    };
    lines.push(exec_line);

    let verification: Option<Verification> = serde_json::from_value(r.steps["verify"].clone()).ok();
    let checks: [(&str, &[&str]); 3] = [
        ("Rollout status", &["rollout-status"]),
        ("Image check", &["images"]),
        (
            "Pod health",
            &[
                "pods-owned-by-target",
                "pods-running-ready",
                "pods-no-restarts",
            ],
        ),
    ];
    for (label, names) in checks {
        let line = match &verification {
            Some(v) => {
                let found: Vec<_> = v
                    .checks
                    .iter()
                    .filter(|c| names.contains(&c.name.as_str()))
                    .collect();
                let ok = !found.is_empty() && found.iter().all(|c| c.passed);
                let evidence = found
                    .iter()
                    .map(|c| c.evidence.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                format!(
                    "{} {label}: {}",
                    if ok { "✅" } else { "❌" },
                    truncate(&evidence, 300)
                )
            }
            None if r.state == State::Verifying => format!(
                "⏳ {label}{}",
                progress
                    .map(|p| format!(": {}", truncate(p, 300)))
                    .unwrap_or_default()
            ),
            None if failed && executed => format!("❌ {label}: not verified"),
            None => format!("⬜ {label}"),
        };
        lines.push(line);
    }
    lines.extend(recovery_lines(r, progress));
    lines.extend(post_rollback_lines(r));
    if r.state == State::Escalated {
        lines.push(format!(
            "📣 Escalated to Platform Engineering; {}",
            pagerduty_text(&r.steps["escalate"]["pagerduty"])
        ));
    }
    lines.join("\n")
}

/// The card's lines for the DM to the deployer and the post-incident ticket, once their
/// steps have run (or while they run).
fn post_rollback_lines(r: &Rollback) -> Vec<String> {
    let mut lines = vec![];
    let notify = &r.steps["notify"];
    match notify["status"].as_str() {
        Some("sent") => lines.push(format!(
            "✉️ Deployer {} told by DM",
            user(notify["user"].as_str().unwrap_or("?"))
        )),
        Some("not_found") => {
            let mut line = format!(
                "⚠️ Deployer not identified: {}; to fix it, {}",
                truncate(notify["reason"].as_str().unwrap_or(""), 300),
                notify["how_to_fix"].as_str().unwrap_or("")
            );
            if let Some(group) = notify["fallback_group"].as_str() {
                line.push_str(&format!(" — <!subteam^{group}> please take it"));
            }
            lines.push(line);
        }
        Some("not_configured") => {
            lines.push("➖ Deployer not told: no Slack bot token".into());
        }
        Some(_) => lines.push(format!(
            "❌ DM to the deployer failed: {}",
            escape(&truncate(
                notify["error"].as_str().unwrap_or("unknown error"),
                300
            ))
        )),
        None if r.state == State::Notifying => {
            lines.push("⏳ Telling the engineer who deployed it".into());
        }
        None => {}
    }
    let ticket = &r.steps["ticket"];
    match ticket["status"].as_str() {
        Some("opened") => lines.push(format!(
            "🎫 Post-incident ticket: <{}|{}>",
            ticket["url"].as_str().unwrap_or(""),
            escape(ticket["key"].as_str().unwrap_or("ticket"))
        )),
        Some("not_configured") => lines.push(
            "➖ No post-incident ticket: no ticket tracker is configured (tickets.tracker)".into(),
        ),
        Some(_) => lines.push(format!(
            "❌ Post-incident ticket not opened ({}): {}",
            ticket["tracker"].as_str().unwrap_or("tracker"),
            escape(&truncate(
                ticket["error"].as_str().unwrap_or("unknown error"),
                300
            ))
        )),
        None if r.state == State::Ticketing => {
            lines.push("⏳ Opening the post-incident ticket".into());
        }
        None => {}
    }
    lines
}

/// The card's recovery section: each check with its numbers (✅ / ❌ / ⏳), live while
/// validating, or why validation was skipped.
fn recovery_lines(r: &Rollback, progress: Option<&str>) -> Vec<String> {
    let validate = &r.steps["validate"];
    if let Some(reason) = validate["skipped"].as_str() {
        return vec![format!(
            "➖ Recovery validation skipped: {}",
            truncate(reason, 300)
        )];
    }
    if let Some(checks) = validate["recovery"]["checks"].as_array() {
        return checks
            .iter()
            .map(|c| {
                let mark = match c["status"].as_str() {
                    Some("pass") => "✅",
                    Some("fail") => "❌",
                    Some("skipped") => "➖",
                    _ => "⏳",
                };
                format!(
                    "{mark} Recovery · {}: {}",
                    recovery_label(&c["name"]),
                    truncate(c["evidence"].as_str().unwrap_or(""), 300)
                )
            })
            .collect();
    }
    match r.state {
        State::Validating => vec![format!(
            "⏳ Recovery: {}",
            truncate(progress.unwrap_or("waiting for the first check"), 600)
        )],
        State::Failed | State::Escalated if validate.is_object() => vec![format!(
            "❌ Recovery: {}",
            truncate(validate["summary"].as_str().unwrap_or("not validated"), 300)
        )],
        _ => vec![],
    }
}

fn recovery_label(name: &Value) -> &'static str {
    match name.as_str() {
        Some("latency") => "P99 latency (baseline → now)",
        Some("error_rate") => "error rate",
        Some("health") => "health",
        Some("soak") => "soak",
        _ => "check",
    }
}

/// The verdict's evidence for the thread: every check with its numbers, and the queries.
fn recovery_text(d: &Value) -> String {
    let recovery = &d["recovery"];
    let Some(checks) = recovery["checks"].as_array() else {
        return String::new();
    };
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "\n{} {}: {}",
            match c["status"].as_str() {
                Some("pass") => "✅",
                Some("fail") => "❌",
                Some("skipped") => "➖",
                _ => "⏳",
            },
            recovery_label(&c["name"]),
            truncate(c["evidence"].as_str().unwrap_or(""), 300)
        ));
    }
    if let Some(queries) = recovery["queries"].as_object() {
        out.push_str(&format!(
            "\nQueries ({}; baseline at {}):",
            recovery["prometheus"].as_str().unwrap_or("Prometheus"),
            recovery["baseline_at"].as_str().unwrap_or("unknown")
        ));
        for (name, q) in queries {
            out.push_str(&format!(
                "\n• {name}: `{}`",
                truncate(q.as_str().unwrap_or(""), 400)
            ));
        }
    }
    out
}

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
        "plan_ready" => "📋 Plan ready; waiting for approval".into(),
        "plan_refused" => format!("🚫 No plan: {}", d["refusal"].as_str().unwrap_or("refused")),
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
        "expire" => "⌛ Expired without a decision".into(),
        "start_execution" => "▶️ Execution started".into(),
        "step_succeeded" if row.from_state == State::Executing => format!(
            "⚙️ Rollback patch applied: generation {}{}",
            d["generation"],
            if d["already_applied"].as_bool() == Some(true) {
                " (already applied; nothing sent again)"
            } else {
                ""
            }
        ),
        "step_succeeded" if row.from_state == State::Verifying => {
            format!(
                "🔍 Verification passed: {}{}",
                d["summary"].as_str().unwrap_or(""),
                checks_text(d)
            )
        }
        "step_succeeded" if row.from_state == State::Validating => match d["skipped"].as_str() {
            Some(reason) => format!("➖ Recovery validation skipped: {reason}"),
            None => format!(
                "📈 Recovery validated: {}{}",
                d["summary"].as_str().unwrap_or(""),
                recovery_text(d)
            ),
        },
        "step_failed" if row.from_state == State::Validating => format!(
            "❌ Recovery not validated: {}{}",
            d["summary"]
                .as_str()
                .or(d["error"].as_str())
                .unwrap_or("see the card"),
            recovery_text(d)
        ),
        "step_succeeded" if d["unlocked"].is_object() => format!(
            "🔓 Lock removed ({}); the pod template may change again",
            d["unlocked"]["reason"].as_str().unwrap_or("")
        ),
        "step_succeeded" if d["already_unlocked"].as_bool() == Some(true) => {
            "🔓 The deployment was no longer locked; nothing to remove".to_owned()
        }
        "step_succeeded" if row.from_state == State::Locking => format!(
            "🔒 Deployment locked until a fix is approved: {}{}; to lift it: `{}`",
            d["lock"]["reason"].as_str().unwrap_or("by this rollback"),
            if d["already_set"].as_bool() == Some(true) {
                " (the lock was already set; nothing sent again)"
            } else {
                ""
            },
            d["unlock"]
                .as_str()
                .unwrap_or("/rollback unlock <service> <fix reference>")
        ),
        "step_succeeded" if row.from_state == State::Notifying => match d["status"].as_str() {
            Some("sent") => format!(
                "✉️ {} (who deployed the faulty revision) told by DM{}",
                user(d["user"].as_str().unwrap_or("?")),
                if d["already_sent"].as_bool() == Some(true) {
                    " (already sent; nothing sent again)"
                } else {
                    ""
                }
            ),
            Some("not_found") => format!(
                "⚠️ Who deployed the faulty revision is unknown: {}; to fix it, {}{}",
                d["reason"].as_str().unwrap_or(""),
                d["how_to_fix"].as_str().unwrap_or(""),
                d["fallback_group"]
                    .as_str()
                    .map(|g| format!(
                        "\n<!subteam^{g}>: this rollback concerns your service; please follow up"
                    ))
                    .unwrap_or_default()
            ),
            Some("not_configured") => "➖ The deployer was not told: no Slack bot token".into(),
            _ => format!(
                "❌ The DM to the deployer could not be sent: {}",
                escape(d["error"].as_str().unwrap_or("unknown error"))
            ),
        },
        "step_succeeded" if row.from_state == State::Ticketing => match d["status"].as_str() {
            Some("opened") => format!(
                "🎫 Post-incident ticket <{}|{}>{}",
                d["url"].as_str().unwrap_or(""),
                escape(d["key"].as_str().unwrap_or("ticket")),
                if d["already_opened"].as_bool() == Some(true) {
                    " (found, already opened; not opened again)"
                } else {
                    " opened"
                }
            ),
            Some("not_configured") => {
                "➖ No post-incident ticket: no ticket tracker is configured (tickets.tracker)"
                    .into()
            }
            _ => format!(
                "❌ The post-incident ticket could not be opened in {}: {}",
                d["tracker"].as_str().unwrap_or("the tracker"),
                escape(d["error"].as_str().unwrap_or("unknown error"))
            ),
        },
        "step_succeeded" => format!("✅ {} done", row.from_state),
        "step_failed" if row.from_state == State::Failed => format!(
            "📣 Escalated, but the escalation could not be completed: {}",
            d["error"].as_str().unwrap_or("see the logs")
        ),
        "step_failed" => format!(
            "❌ {} failed: {}{}",
            row.from_state,
            d["summary"]
                .as_str()
                .or(d["error"].as_str())
                .or(d["refusal"].as_str())
                .unwrap_or("see the card"),
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
        other => format!("{other}: {} → {}", row.from_state, row.to_state),
    })
}

/// The escalation's thread line: the mention, the reason, the evidence and the page.
fn escalation_line(d: &Value) -> String {
    let who = match d["mention"].as_str() {
        Some(group) => format!("<!subteam^{group}>"),
        None => "Platform Engineering (no slack.escalation_user_group configured)".into(),
    };
    let mut text = format!(
        "📣 Escalated to {who}: the rollback failed: {}",
        escape(d["reason"].as_str().unwrap_or("see the card"))
    );
    if let Some(evidence) = d["evidence"].as_array().filter(|e| !e.is_empty()) {
        text.push_str("\n*Evidence*");
        for line in evidence.iter().filter_map(Value::as_str) {
            text.push_str(&format!("\n• {}", escape(&truncate(line, 300))));
        }
    }
    text.push_str("\n📟 ");
    text.push_str(&pagerduty_text(&d["pagerduty"]));
    text
}

/// What became of the escalation's page, from its recorded outcome.
fn pagerduty_text(p: &Value) -> String {
    let key = p["dedup_key"].as_str().unwrap_or("?");
    match p["status"].as_str() {
        Some("triggered") => format!("PagerDuty paged (dedup key `{key}`)"),
        Some("sending") => format!("PagerDuty page being sent (dedup key `{key}`)"),
        Some("failed") => format!(
            "PagerDuty page not delivered yet: {}; the bot keeps retrying",
            escape(&truncate(
                p["error"].as_str().unwrap_or("unknown error"),
                300
            ))
        ),
        _ => "PagerDuty not configured (set PAGERDUTY_ROUTING_KEY): nobody was paged".into(),
    }
}

fn checks_text(d: &Value) -> String {
    let Some(checks) = d["checks"].as_array() else {
        return String::new();
    };
    checks
        .iter()
        .map(|c| {
            format!(
                "\n{} `{}`: {}",
                if c["passed"].as_bool() == Some(true) {
                    "✅"
                } else {
                    "❌"
                },
                c["name"].as_str().unwrap_or("?"),
                truncate(c["evidence"].as_str().unwrap_or(""), 300)
            )
        })
        .collect()
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

/// `/rollback history` as an ephemeral table.
pub fn history(service: &str, revisions: &[Revision], now: DateTime<Utc>) -> String {
    if revisions.is_empty() {
        return format!("`{service}` has no rollout history.");
    }
    let mut out = format!(
        "*Revisions of `{service}`* (newest first)\n```\nREV  IMAGES                                   CHANGE-CAUSE                                 AGE\n"
    );
    for r in revisions.iter().rev().take(20) {
        let images = r
            .images
            .iter()
            .map(|i| i.image.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let age = r
            .created_at
            .map(|c| human_age(now - c))
            .unwrap_or_else(|| "?".into());
        out.push_str(&format!(
            "{:<4} {:<40} {:<44} {:<6}{}\n",
            r.number,
            truncate(&images, 40),
            truncate(r.change_cause.as_deref().unwrap_or("<none>"), 44),
            age,
            if r.current { " ← current" } else { "" }
        ));
    }
    out.push_str("```");
    truncate(&out, MAX_SECTION_TEXT)
}

fn human_age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// One line of `/rollback status`.
pub fn status_line(r: &Rollback) -> String {
    format!(
        "#{} `{}` ({}/{}) — *{}* — requested by {} {}",
        r.id,
        r.service,
        r.cluster,
        r.namespace,
        r.state.as_str().replace('_', " "),
        user(&r.requested_by),
        slack_date(r.created_at)
    )
}

/// One active deploy lock in `/rollback status`: who locked it, since when, and how to lift it.
pub fn lock_line(service: &str, lock: &crate::clients::k8s::lock::Lock) -> String {
    format!(
        "🔒 `{service}` — {}{} — `/rollback unlock {service} <fix reference>`",
        escape(&lock.reason),
        lock.since
            .map(|at| format!(", since {}", slack_date(at)))
            .unwrap_or_default()
    )
}

/// `/rollback status <id>` in detail.
pub fn status_detail(r: &Rollback) -> String {
    let mut out = status_line(r);
    out.push('\n');
    out.push_str(&headline(r));
    if r.decided_by.is_some() || r.lead_approved_by.is_some() {
        out.push('\n');
        out.push_str(&checklist(r, None));
    }
    truncate(&out, MAX_SECTION_TEXT)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A rollback for pure tests (also of other modules).
    pub(crate) fn rollback(state: State) -> Rollback {
        let now = Utc::now();
        Rollback {
            id: 7,
            service: "checkout-api".into(),
            cluster: "local".into(),
            namespace: "production".into(),
            deployment: "checkout-api".into(),
            requested_revision: Some(2),
            incident: None,
            requested_by: "U0REQUESTER".into(),
            channel_id: "C1".into(),
            response_url: None,
            force: false,
            state,
            version: 3,
            plan: Some(json!({"not": "a plan"})),
            plan_fingerprint: Some("fp".into()),
            needs_dba: false,
            needs_override: false,
            lead_approved_by: None,
            dba_approved_by: None,
            decided_by: None,
            expires_at: now + chrono::Duration::minutes(15),
            lease_owner: None,
            lease_expires_at: None,
            attempt: 0,
            retries: 0,
            next_attempt_at: None,
            last_error: None,
            steps: json!({}),
            created_at: now,
            updated_at: now,
            approved_at: None,
            kind: Kind::Rollback,
            fix_reference: None,
        }
    }

    fn action_ids(m: &Message) -> Vec<String> {
        m.blocks
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().unwrap().clone())
            .map(|e| e["action_id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn audit(action: &str, from: State, to: State, detail: Value) -> AuditRow {
        AuditRow {
            id: 1,
            rollback_id: 7,
            at: Utc::now(),
            actor: "worker:w".into(),
            action: action.into(),
            outcome: "applied".into(),
            from_state: from,
            to_state: to,
            detail,
        }
    }

    #[test]
    fn the_card_shows_the_dm_and_the_ticket() {
        let mut r = rollback(State::Succeeded);
        r.lead_approved_by = Some("U0LEAD".into());
        r.steps = json!({
            "notify": {"status": "sent", "user": "U0DEPLOYER1"},
            "ticket": {"status": "opened", "key": "OPS-3", "url": "https://x.atlassian.net/browse/OPS-3"},
        });
        let text = checklist(&r, None);
        assert!(
            text.contains("✉️ Deployer <@U0DEPLOYER1> told by DM"),
            "{text}"
        );
        assert!(
            text.contains("🎫 Post-incident ticket: <https://x.atlassian.net/browse/OPS-3|OPS-3>"),
            "{text}"
        );
        r.steps = json!({
            "notify": {"status": "not_found", "reason": "no annotation",
                       "how_to_fix": "set `a/b`", "fallback_group": "S0TEAM0001"},
            "ticket": {"status": "not_configured"},
        });
        let text = checklist(&r, None);
        assert!(
            text.contains("⚠️ Deployer not identified: no annotation; to fix it, set `a/b` — <!subteam^S0TEAM0001> please take it"),
            "{text}"
        );
        assert!(text.contains("no ticket tracker is configured"), "{text}");
        r.steps = json!({
            "notify": {"status": "failed", "error": "user_not_found <!channel>"},
            "ticket": {"status": "failed", "tracker": "github", "error": "the tracker is unavailable"},
        });
        let text = checklist(&r, None);
        assert!(
            text.contains("❌ DM to the deployer failed: user_not_found &lt;!channel&gt;"),
            "{text}"
        );
        assert!(
            text.contains(
                "❌ Post-incident ticket not opened (github): the tracker is unavailable"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_thread_mentions_the_owning_team_when_nobody_is_found() {
        let row = audit(
            "step_succeeded",
            State::Notifying,
            State::Ticketing,
            json!({"status": "not_found", "reason": "r", "how_to_fix": "f", "fallback_group": "S0TEAM0001"}),
        );
        let line = thread_line(&row).unwrap();
        assert!(line.contains("<!subteam^S0TEAM0001>"), "{line}");
        let row = audit(
            "step_succeeded",
            State::Ticketing,
            State::Succeeded,
            json!({"status": "opened", "key": "#4", "url": "https://github.com/a/b/issues/4", "already_opened": true}),
        );
        assert_eq!(
            thread_line(&row).unwrap(),
            "🎫 Post-incident ticket <https://github.com/a/b/issues/4|#4> (found, already opened; not opened again)"
        );
    }

    #[test]
    fn the_escalation_mentions_the_group_with_reason_evidence_and_page() {
        let row = audit(
            "escalate",
            State::Failed,
            State::Escalated,
            json!({
                "reason": "pods do not stabilise <!channel>",
                "evidence": ["pods-no-restarts: web-1 CrashLoopBackOff"],
                "mention": "S0PLATFORM",
                "pagerduty": {"status": "triggered", "dedup_key": "rollback-bot/local/p/web"},
            }),
        );
        let line = thread_line(&row).unwrap();
        assert!(
            line.starts_with("📣 Escalated to <!subteam^S0PLATFORM>: "),
            "{line}"
        );
        assert!(
            line.contains("pods do not stabilise &lt;!channel&gt;"),
            "{line}"
        );
        assert!(
            line.contains("• pods-no-restarts: web-1 CrashLoopBackOff"),
            "{line}"
        );
        assert!(
            line.contains("PagerDuty paged (dedup key `rollback-bot/local/p/web`)"),
            "{line}"
        );

        let unconfigured = audit(
            "escalate",
            State::Failed,
            State::Escalated,
            json!({"reason": "x", "pagerduty": {"status": "not_configured"}}),
        );
        let line = thread_line(&unconfigured).unwrap();
        assert!(
            line.contains("no slack.escalation_user_group configured"),
            "{line}"
        );
        assert!(line.contains("nobody was paged"), "{line}");

        let mut r = rollback(State::Escalated);
        r.lead_approved_by = Some("U0LEAD".into());
        r.steps = json!({"escalate": {"pagerduty": {"status": "failed", "dedup_key": "k",
                                                    "error": "PagerDuty unavailable"}}});
        let card = serde_json::to_string(&card(&r, None, None, Utc::now()).blocks).unwrap();
        assert!(
            card.contains("PagerDuty page not delivered yet: PagerDuty unavailable"),
            "{card}"
        );
    }

    #[test]
    fn escape_neutralises_slack_control_sequences() {
        assert_eq!(
            escape("<!channel> <@U0ADMIN01> <#C0SECRET1|x> a&b"),
            "&lt;!channel&gt; &lt;@U0ADMIN01&gt; &lt;#C0SECRET1|x&gt; a&amp;b"
        );
        assert_eq!(escape("checkout-api"), "checkout-api");
        // Already-escaped text is escaped again: it is shown exactly as typed.
        assert_eq!(escape("&lt;"), "&amp;lt;");
    }

    #[test]
    fn echo_cuts_then_escapes() {
        let long = format!("{}<!here>", "x".repeat(3000));
        let echoed = echo(&long);
        assert_eq!(echoed.chars().count(), MAX_ECHO);
        assert!(echoed.ends_with('…') && !echoed.contains('<'), "{echoed}");
        // The cut happens before escaping, so an escape is never split.
        let edge = format!("{}<", "x".repeat(MAX_ECHO - 2));
        assert_eq!(echo(&edge), format!("{}&lt;", "x".repeat(MAX_ECHO - 2)));
        let over = format!("{}<<<", "x".repeat(MAX_ECHO - 2));
        assert_eq!(echo(&over), format!("{}&lt;…", "x".repeat(MAX_ECHO - 2)));
    }

    #[test]
    fn an_incident_cannot_mention_the_channel_from_the_card() {
        let mut r = rollback(State::AwaitingApproval);
        r.incident = Some("INC-1<!channel>".into());
        let text = incident_text(&r, None);
        assert_eq!(text, "INC-1&lt;!channel&gt;");
        r.incident = Some("https://inc.example/1><!here".into());
        assert_eq!(
            incident_text(&r, None),
            "<https://inc.example/1&gt;&lt;!here>"
        );
    }

    #[test]
    fn awaiting_card_has_buttons_and_says_no_incident() {
        let r = rollback(State::AwaitingApproval);
        let m = card(&r, None, None, Utc::now());
        assert_eq!(action_ids(&m), vec![actions::APPROVE, actions::REJECT]);
        let all = serde_json::to_string(&m.blocks).unwrap();
        assert!(all.contains("no incident given"));
        assert!(all.contains("\"confirm\""));
        assert!(all.contains("7:fp"));
    }

    #[test]
    fn override_and_dba_buttons_appear_when_needed() {
        let mut r = rollback(State::AwaitingApproval);
        r.needs_override = true;
        r.needs_dba = true;
        let m = card(&r, None, None, Utc::now());
        assert_eq!(
            action_ids(&m),
            vec![
                actions::APPROVE_OVERRIDE,
                actions::DBA_SIGN_OFF,
                actions::REJECT
            ]
        );
        r.lead_approved_by = Some("U0LEAD".into());
        assert_eq!(
            action_ids(&card(&r, None, None, Utc::now())),
            vec![actions::DBA_SIGN_OFF, actions::REJECT]
        );
    }

    #[test]
    fn decided_expired_and_finished_cards_have_no_buttons() {
        for state in [
            State::Expired,
            State::Rejected,
            State::Succeeded,
            State::Approved,
        ] {
            let m = card(&rollback(state), None, None, Utc::now());
            assert!(action_ids(&m).is_empty(), "{state}");
        }
        let mut r = rollback(State::AwaitingApproval);
        r.expires_at = Utc::now() - chrono::Duration::seconds(1);
        assert!(action_ids(&card(&r, None, None, Utc::now())).is_empty());
        let expired =
            serde_json::to_string(&card(&rollback(State::Expired), None, None, Utc::now()).blocks)
                .unwrap();
        assert!(expired.contains("Expired"));
    }

    #[test]
    fn block_ids_are_unique_and_change_with_the_version() {
        let mut r = rollback(State::Verifying);
        r.lead_approved_by = Some("U0LEAD".into());
        let a = card(
            &r,
            Some("1 of 3 updated replicas are available"),
            None,
            Utc::now(),
        );
        let ids: Vec<_> = a.blocks.iter().map(|b| b["block_id"].clone()).collect();
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(ids.len(), unique.len());
        r.version += 1;
        let b = card(&r, None, None, Utc::now());
        assert_ne!(a.blocks[0]["block_id"], b.blocks[0]["block_id"]);
        assert!(
            serde_json::to_string(&a.blocks)
                .unwrap()
                .contains("1 of 3 updated")
        );
    }

    #[test]
    fn without_an_incident_the_card_links_itself() {
        let r = rollback(State::AwaitingApproval);
        let link = "https://example.slack.com/archives/C1/p1700000000000100";
        let m = card(&r, None, Some(link), Utc::now());
        let all = serde_json::to_string(&m.blocks).unwrap();
        assert!(all.contains(&format!("<{link}|this card> is the incident record")));
        let mut r = r;
        r.incident = Some("https://inc.example/42".into());
        let all = serde_json::to_string(&card(&r, None, Some(link), Utc::now()).blocks).unwrap();
        assert!(all.contains("<https://inc.example/42>") && !all.contains(link));
    }

    #[test]
    fn long_texts_are_cut() {
        let mut r = rollback(State::Failed);
        r.last_error = Some("x".repeat(10_000));
        let m = card(&r, None, None, Utc::now());
        for b in &m.blocks {
            if let Some(t) = b["text"]["text"].as_str() {
                assert!(t.chars().count() <= MAX_SECTION_TEXT);
            }
        }
    }

    #[test]
    fn recovery_on_the_card_and_in_the_thread() {
        let mut r = rollback(State::Succeeded);
        r.steps =
            json!({ "validate": { "skipped": "no Prometheus configured for cluster local" } });
        let text = serde_json::to_string(&card(&r, None, None, Utc::now()).blocks).unwrap();
        assert!(text.contains("recovery validation skipped"), "{text}");
        assert!(
            text.contains("Recovery validation skipped: no Prometheus"),
            "{text}"
        );
        assert!(!text.contains("service recovered"), "{text}");

        r.steps = json!({ "validate": { "summary": "recovered", "recovery": {
            "checks": [
                { "name": "latency", "status": "pass", "evidence": "0.099 s → 0.101 s" },
                { "name": "error_rate", "status": "fail", "evidence": "5.00 % of 100.0 req/s" },
                { "name": "health", "status": "skipped", "evidence": "no health URL configured" },
                { "name": "soak", "status": "inconclusive", "evidence": "no pods" },
            ],
            "queries": { "p99": "histogram_quantile(0.99, x)" },
            "prometheus": "http://prom:9090/",
            "baseline_at": "2026-11-22T17:00:00Z",
        } } });
        let text = serde_json::to_string(&card(&r, None, None, Utc::now()).blocks).unwrap();
        for line in [
            "service recovered",
            "✅ Recovery · P99 latency (baseline → now): 0.099 s → 0.101 s",
            "❌ Recovery · error rate: 5.00 %",
            "➖ Recovery · health",
            "⏳ Recovery · soak: no pods",
        ] {
            assert!(text.contains(line), "card lacks {line:?}: {text}");
        }

        let mut live = rollback(State::Validating);
        live.lead_approved_by = Some("U0LEAD00001".into());
        let text = serde_json::to_string(
            &card(&live, Some("✓ P99 latency: … (1 of 3)"), None, Utc::now()).blocks,
        )
        .unwrap();
        assert!(text.contains("Validating recovery"), "{text}");
        assert!(
            text.contains("⏳ Recovery: ✓ P99 latency: … (1 of 3)"),
            "{text}"
        );

        let row = |action: &str, to_state: State| AuditRow {
            id: 1,
            rollback_id: 1,
            at: Utc::now(),
            actor: "worker:w".into(),
            action: action.into(),
            outcome: "applied".into(),
            from_state: State::Validating,
            to_state,
            detail: r.steps["validate"].clone(),
        };
        let line = thread_line(&row("step_failed", State::Failed)).unwrap();
        for part in [
            "❌ Recovery not validated: recovered",
            "❌ error rate: 5.00 %",
            "Queries (http://prom:9090/; baseline at 2026-11-22T17:00:00Z):",
            "• p99: `histogram_quantile(0.99, x)`",
        ] {
            assert!(line.contains(part), "thread lacks {part:?}: {line}");
        }
        let line = thread_line(&row("step_succeeded", State::Succeeded)).unwrap();
        assert!(
            line.starts_with("📈 Recovery validated: recovered"),
            "{line}"
        );
        let mut skipped = row("step_succeeded", State::Succeeded);
        skipped.detail = json!({ "skipped": "turned off" });
        assert_eq!(
            thread_line(&skipped).unwrap(),
            "➖ Recovery validation skipped: turned off"
        );
    }
}
