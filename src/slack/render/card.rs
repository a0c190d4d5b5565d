//! The approval card: headline, plan, checklist, buttons, re-rendered from the row.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::domain::results::{Approvers, EscalateResult, LockResult, NotifyResult, TicketResult};

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

pub(super) fn headline(r: &Rollback) -> String {
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
            let validate = &r.steps["validate"];
            // Runbook step 4 did not happen: never a green "verified" headline then.
            let done = match validate["skipped"].as_str() {
                Some(why) => format!(
                    "⚠️ *Rolled back and verified — recovery NOT validated*: {}",
                    untrusted(why, 300)
                ),
                None if validate["accepted"].is_object() => format!(
                    "⚠️ *Rolled back and verified — recovery accepted by {}, NOT validated*: {}",
                    user(validate["accepted"]["by"].as_str().unwrap_or("?")),
                    untrusted(validate["accepted"]["reason"].as_str().unwrap_or(""), 300)
                ),
                None if validate["recovery"].is_object() => {
                    "✅ *Rolled back and verified* — service recovered".to_owned()
                }
                None => "✅ *Rolled back and verified*".to_owned(),
            };
            format!("{done}{}", lock_claim(r))
        }
        State::Refused => format!(
            "🚫 *Refused*: {}",
            untrusted(
                r.last_error.as_deref().unwrap_or("no plan could be made"),
                1500
            )
        ),
        State::Rejected => format!("❌ *Rejected* by {}", by(&r.decided_by)),
        State::Expired => format!(
            "⌛ *Expired* — no decision before {}; request again if it is still needed",
            slack_date(r.expires_at)
        ),
        State::Cancelled if r.steps.get("execute").is_some() => {
            aborted_headline(r, &by(&r.decided_by))
        }
        State::Cancelled => match &r.decided_by {
            Some(who) => format!("🚫 *Cancelled* by {}", user(who)),
            None => "🚫 *Cancelled*".into(),
        },
        State::Failed => format!(
            "❌ *Failed*: {}",
            untrusted(r.last_error.as_deref().unwrap_or("unknown error"), 1500)
        ),
        State::Escalated => {
            let escalation = EscalateResult::from_json(&r.steps["escalate"]);
            let reason = untrusted(r.last_error.as_deref().unwrap_or(""), 1500);
            let told = escalation_reached(&escalation);
            if told.is_empty() {
                format!(
                    "❌ *Failed — nobody paged* ({}): {reason}",
                    nobody_told_because(&escalation)
                )
            } else {
                format!("📣 *Escalated*: {} — {reason}", told.join(", "))
            }
        }
    }
}

/// The deploy lock this rollback recorded: the lock step's result, else the one its rollback
/// patch set (verifying, validating, and a rollback that failed after the patch).
pub(super) fn current_lock(r: &Rollback) -> Option<LockResult> {
    LockResult::of_steps(&r.steps)
}

/// The card's and the thread's lock line: locked and enforced, or plainly "not enforced" with
/// what is missing.
pub(super) fn lock_text(lock: &LockResult) -> String {
    let service = lock.lock.as_ref().and_then(|l| l.service.as_deref());
    let unlock = format!(
        "`{}`",
        crate::steps::unlock_command(service.unwrap_or("<service>"))
    );
    let holders = lock
        .lock
        .as_ref()
        .map_or_else(|| "?".to_owned(), crate::domain::lock::Lock::holders);
    match &lock.enforcement {
        Some(e) if !e.enforced => format!(
            "⚠️ *Lock recorded but NOT enforced* (rollback {holders}): {} — nothing stops a re-deploy of the faulty build until it is installed",
            escape(&e.summary())
        ),
        Some(e) => format!(
            "🔒 *Locked* against re-deploys by rollback {holders} ({}); only an approved {unlock} lifts it",
            escape(&e.summary())
        ),
        None => format!(
            "🔒 *Locked* by rollback {holders} (enforcement not checked); only an approved {unlock} lifts it"
        ),
    }
}

pub(super) fn incident_text(r: &Rollback, permalink: Option<&str>) -> String {
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
    if r.kind == Kind::Rollback
        && let Some(lock) = current_lock(r)
    {
        blocks.push(section(bid("lock"), &lock_text(&lock)));
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
        let hint = match Approvers::from_json(&r.steps["plan"]) {
            Some(approvers) => format!(
                "Who may approve: {}. The requester cannot approve their own request.",
                approvers_text(&approvers)
            ),
            None => "Only the on-call lead(s) may approve; the requester cannot approve their own request."
                .to_owned(),
        };
        blocks.push(context(bid("hint"), &hint));
    }
    if let Some(controls) = lead_controls(r, &bid("controls")) {
        blocks.push(controls);
        let mut hint = "*Abort* (the requester or an on-call lead) stops the bot: it does nothing more and leaves the deployment as it is. *Escalate now* (an on-call lead) pages Platform Engineering at once.".to_owned();
        if r.state == State::Validating {
            hint.push_str(&format!(
                " *Extend* (an on-call lead) validates 5 more minutes from the click. To accept the recovery as it stands, an on-call lead other than the requester types `/rollback accept {} <reason>`.",
                r.id
            ));
        }
        blocks.push(context(bid("controls-hint"), &hint));
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

/// The lead's controls after approval: **Abort** while the bot still has steps to run after
/// the patch, **Escalate now** until the rollback has failed (a succeeded one included: a
/// data-integrity concern can show up later). None while the patch is being applied.
fn lead_controls(r: &Rollback, block_id: &str) -> Option<Value> {
    if r.kind != Kind::Rollback {
        return None;
    }
    let running = matches!(
        r.state,
        State::Verifying | State::Validating | State::Locking | State::Notifying | State::Ticketing
    );
    if !running && r.state != State::Succeeded {
        return None;
    }
    let value = actions::value(r.id, r.plan_fingerprint.as_deref().unwrap_or("-"));
    let mut elements = vec![];
    if r.state == State::Validating {
        elements.push(button(
            actions::EXTEND_VALIDATION,
            "Extend validation 5 min",
            &value,
            None,
        ));
    }
    if running {
        let mut abort = button(actions::ABORT, "Abort", &value, Some("danger"));
        abort["confirm"] = confirm(
            &format!("Abort rollback #{}?", r.id),
            "The bot stops here and does nothing more for this rollback. The deployment stays as the rollback patch left it, and locked if it is.",
            "Abort",
        );
        elements.push(abort);
    }
    for (action, text) in [
        (
            actions::ESCALATE_DATA_INTEGRITY,
            "Escalate now: data integrity",
        ),
        (actions::ESCALATE_OTHER, "Escalate now: other"),
    ] {
        let mut b = button(action, text, &value, None);
        b["confirm"] = confirm(
            "Page Platform Engineering now?",
            "The rollback is marked failed and escalated at once, with what the bot knows so far.",
            "Escalate",
        );
        elements.push(b);
    }
    Some(json!({ "type": "actions", "block_id": block_id, "elements": elements }))
}

/// " — 🔒 locked until a fix is approved" for the headline: "locked" only as far as the
/// admission policy was seen to enforce it; nothing without a lock.
fn lock_claim(r: &Rollback) -> String {
    match current_lock(r).map(|lock| lock.enforcement) {
        Some(Some(e)) if e.enforced => " — 🔒 locked until a fix is approved".into(),
        Some(Some(_)) => " — ⚠️ lock recorded but *NOT enforced*".into(),
        Some(None) => " — 🔒 lock recorded (enforcement not checked)".into(),
        None => String::new(),
    }
}

/// "🛑 Aborted by … after the rollback patch …": what was and was not done.
fn aborted_headline(r: &Rollback, by: &str) -> String {
    let mut text = format!(
        "🛑 *Aborted* by {by} after the rollback patch: the bot does nothing more; the deployment stays as the patch left it"
    );
    if let Some(p) = plan_of(r) {
        text.push_str(&format!(" (revision {})", p.rollback_to.revision));
    }
    text.push_str(&lock_claim(r));
    let not_done: Vec<&str> = [
        ("verify", "verification"),
        ("validate", "recovery validation"),
        ("lock", "lock check"),
        ("notify", "deployer DM"),
        ("ticket", "post-incident ticket"),
    ]
    .into_iter()
    .filter(|(step, _)| r.steps.get(*step).is_none())
    .map(|(_, what)| what)
    .collect();
    if !not_done.is_empty() {
        text.push_str(&format!(". Not done: {}", not_done.join(", ")));
    }
    text
}

pub(super) fn checklist(r: &Rollback, progress: Option<&str>) -> String {
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
                    untrusted(&evidence, 300)
                )
            }
            None if r.state == State::Verifying => format!(
                "⏳ {label}{}",
                progress
                    .map(|p| format!(": {}", untrusted(p, 300)))
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
        let escalation = EscalateResult::from_json(&r.steps["escalate"]);
        let page = pagerduty_text(escalation.pagerduty.as_ref());
        lines.push(if escalation_reached(&escalation).is_empty() {
            format!(
                "❌ Nobody paged ({}); {page}",
                nobody_told_because(&escalation)
            )
        } else {
            format!("📣 Escalated to Platform Engineering; {page}")
        });
    }
    lines.join("\n")
}

/// The card's lines for the DM to the deployer and the post-incident ticket, once their
/// steps have run (or while they run).
fn post_rollback_lines(r: &Rollback) -> Vec<String> {
    let mut lines = vec![];
    // A failed rollback's escalation sends the DM and opens the ticket itself.
    let escalation = EscalateResult::from_json(&r.steps["escalate"]);
    match NotifyResult::from_json(&r.steps["notify"]).or(escalation.notify) {
        Some(NotifyResult::Sent { user: who, .. }) => lines.push(format!(
            "✉️ Deployer {} told by DM",
            user(who.as_deref().unwrap_or("?"))
        )),
        Some(NotifyResult::NotFound {
            reason,
            how_to_fix,
            fallback_group,
            ..
        }) => {
            let mut line = format!(
                "⚠️ Deployer not identified: {}; to fix it, {}",
                truncate(reason.as_deref().unwrap_or(""), 300),
                how_to_fix.as_deref().unwrap_or("")
            );
            if let Some(group) = fallback_group {
                line.push_str(&format!(" — <!subteam^{group}> please take it"));
            }
            lines.push(line);
        }
        Some(NotifyResult::NotConfigured { .. }) => {
            lines.push("➖ Deployer not told: no Slack bot token".into());
        }
        Some(failed) => {
            let error = match &failed {
                NotifyResult::Failed { error, .. } => error.as_deref(),
                _ => None,
            };
            lines.push(format!(
                "❌ DM to the deployer failed: {}",
                escape(&truncate(error.unwrap_or("unknown error"), 300))
            ));
        }
        None if r.state == State::Notifying => {
            lines.push("⏳ Telling the engineer who deployed it".into());
        }
        None => {}
    }
    match TicketResult::from_json(&r.steps["ticket"]).or(escalation.ticket) {
        Some(TicketResult::Opened { key, url, .. }) => lines.push(format!(
            "🎫 Post-incident ticket: <{}|{}>",
            url.as_deref().unwrap_or(""),
            escape(key.as_deref().unwrap_or("ticket"))
        )),
        Some(TicketResult::NotConfigured) => lines.push(
            "➖ No post-incident ticket: no ticket tracker is configured (tickets.tracker)".into(),
        ),
        Some(failed) => {
            let (tracker, error) = match &failed {
                TicketResult::Failed { tracker, error } => (tracker.as_deref(), error.as_deref()),
                _ => (None, None),
            };
            lines.push(format!(
                "❌ Post-incident ticket not opened ({}): {}",
                tracker.unwrap_or("tracker"),
                escape(&truncate(error.unwrap_or("unknown error"), 300))
            ));
        }
        None if r.state == State::Ticketing => {
            lines.push("⏳ Opening the post-incident ticket".into());
        }
        None => {}
    }
    lines
}

/// The card's recovery section: each check with its numbers (✅ / ❌ / ⏳), live while
/// validating, or why validation was skipped.
/// " — extended by @lead until 17:05": a lead's Extend, while validation runs.
fn extension_text(extended: &Value) -> String {
    let until = extended["until"]
        .as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok());
    match (extended["by"].as_str(), until) {
        (Some(by), Some(until)) => {
            format!(" — extended by {} until {}", user(by), slack_date(until))
        }
        _ => String::new(),
    }
}

/// "⏱️ Recovered 14 min 3 s after the faulty rollout started, 2 min 10 s after approval": for
/// the incident review, once validation proved the recovery.
fn time_to_recover(r: &Rollback) -> Option<String> {
    let recovery = &r.steps["validate"]["recovery"];
    if recovery["validated"] != true {
        return None;
    }
    let time = |v: &Value| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok();
    let recovered = time(&recovery["ended_at"])?;
    let correlation = r.plan.as_ref().map(|p| &p["correlation"]);
    let faulty = correlation.and_then(|c| {
        time(&c["rollout_started_at"])
            .map(|t| (t, "after the faulty rollout started"))
            .or_else(|| time(&c["rolled_out_at"]).map(|t| (t, "after the faulty rollout")))
    });
    let since = |at: DateTime<Utc>| crate::support::text::elapsed((recovered - at).num_seconds());
    let parts: Vec<String> = faulty
        .map(|(at, what)| format!("{} {what}", since(at)))
        .into_iter()
        .chain(
            r.approved_at
                .map(|at| format!("{} after approval", since(at))),
        )
        .collect();
    (!parts.is_empty()).then(|| format!("⏱️ Recovered {}", parts.join(", ")))
}

fn recovery_lines(r: &Rollback, progress: Option<&str>) -> Vec<String> {
    let validate = &r.steps["validate"];
    if let Some(reason) = validate["skipped"].as_str() {
        return vec![format!(
            "⚠️ Recovery NOT validated: {}",
            untrusted(reason, 300)
        )];
    }
    if validate["accepted"].is_object() {
        return vec![format!(
            "⚠️ Recovery accepted by {} without a full validation: {}",
            user(validate["accepted"]["by"].as_str().unwrap_or("?")),
            untrusted(validate["accepted"]["reason"].as_str().unwrap_or(""), 300)
        )];
    }
    if let Some(checks) = validate["recovery"]["checks"].as_array() {
        let lines = checks.iter().map(|c| {
            let mark = match c["status"].as_str() {
                Some("pass") => "✅",
                Some("fail") => "❌",
                Some("skipped") => "➖",
                _ => "⏳",
            };
            format!(
                "{mark} Recovery · {}: {}",
                recovery_label(&c["name"]),
                untrusted(c["evidence"].as_str().unwrap_or(""), 300)
            )
        });
        return lines.chain(time_to_recover(r)).collect();
    }
    match r.state {
        State::Validating => vec![format!(
            "⏳ Recovery: {}{}",
            untrusted(progress.unwrap_or("waiting for the first check"), 600),
            extension_text(&r.steps["validate_extended"])
        )],
        State::Failed | State::Escalated if validate.is_object() => vec![format!(
            "❌ Recovery: {}",
            untrusted(validate["summary"].as_str().unwrap_or("not validated"), 300)
        )],
        _ => vec![],
    }
}
