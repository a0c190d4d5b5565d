//! Block Kit rendering, pure: the approval card of a [`Rollback`] (re-rendered from the
//! database row on every change, so it is right after a restart), the thread replies built
//! from the audit trail, and the ephemeral answers. Everything stays inside Block Kit's
//! limits (docs/slack.md lists them); long texts are cut, never rejected by Slack.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::clients::k8s::{Revision, RollbackPlan, Verification};
use crate::db::rollbacks::{AuditRow, Rollback};
use crate::domain::results::{Approvers, EscalateResult, PageResult};
use crate::domain::{Kind, State};

use super::actions;

mod answers;
mod card;
mod thread;

use crate::clients::k8s::image_lines;
use crate::clients::slack::Message;
use crate::support::text::{escape, truncate};
pub use answers::{history, lock_line, status_detail, status_line};
pub use card::card;
pub use thread::{thread_line, thread_reply};

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

/// `<@U1>, <@U2> or anyone in <!subteam^S1>`: mentions, so the people are notified.
fn anyone_of(ids: &[String], group: Option<&str>) -> Option<String> {
    let mut names: Vec<String> = ids.iter().map(|id| user(id)).collect();
    if let Some(group) = group {
        names.push(format!("anyone in <!subteam^{group}>"));
    }
    match names.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        [rest @ .., last] => Some(format!("{} or {last}", rest.join(", "))),
    }
}

/// Who may approve, as mentions: "<@U1> or anyone in <!subteam^S1> may approve (on-call
/// leads); DBA sign-off: <@U2>". The requester may not approve their own request.
pub(super) fn approvers_text(a: &Approvers) -> String {
    let leads = anyone_of(&a.lead_ids, a.lead_group.as_deref()).unwrap_or_else(|| {
        "nobody (no slack.lead_user_ids or lead_user_group is configured)".to_owned()
    });
    let mut text = format!("{leads} may approve (on-call leads)");
    if let Some(dba) = anyone_of(&a.dba_ids, a.dba_group.as_deref()) {
        text.push_str(&format!("; DBA sign-off: {dba}"));
    }
    text
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

fn recovery_label(name: &Value) -> &'static str {
    match name.as_str() {
        Some("latency") => "P99 latency",
        Some("error_rate") => "error rate",
        Some("health") => "health",
        Some("soak") => "soak",
        Some("alerts") => "new alerts",
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
            untrusted(c["evidence"].as_str().unwrap_or(""), 300)
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

/// Whom the escalation reached: the group mentioned, the page PagerDuty accepted (or is
/// being sent). Empty when nobody was told, which the card must then say instead of
/// "escalated".
fn escalation_reached(e: &EscalateResult) -> Vec<String> {
    let mut told = vec![];
    if let Some(group) = &e.mention {
        told.push(format!("<!subteam^{group}> mentioned"));
    }
    match &e.pagerduty {
        Some(PageResult::Triggered { dedup_key }) => told.push(format!(
            "PagerDuty paged (dedup key `{}`)",
            dedup_key.as_deref().unwrap_or("?")
        )),
        Some(PageResult::Sending { .. }) => told.push("PagerDuty page being sent".into()),
        _ => {}
    }
    told
}

/// Why nobody was told: what is not configured, or the page not delivered yet.
fn nobody_told_because(e: &EscalateResult) -> String {
    let page = match &e.pagerduty {
        Some(PageResult::Failed { .. }) => "PagerDuty page not delivered yet",
        Some(PageResult::GaveUp { .. }) => "PagerDuty page never delivered",
        _ => "no PagerDuty key",
    };
    match &e.mention {
        None => format!("no escalation group, {page}"),
        Some(_) => page.to_owned(),
    }
}

/// Text that came from outside the bot (container termination messages and log tails in the
/// checks' evidence, API server errors, the reasons steps recorded), bounded and escaped for
/// mrkdwn, so `<!channel>`, `<@U…>` or link markup in it is shown, never acted on.
fn untrusted(text: &str, max: usize) -> String {
    escape(&truncate(text, max))
}

/// What became of the escalation's page, from its recorded outcome.
fn pagerduty_text(p: Option<&PageResult>) -> String {
    let key = |k: &Option<String>| k.clone().unwrap_or_else(|| "?".into());
    match p {
        Some(PageResult::Triggered { dedup_key }) => {
            format!("PagerDuty paged (dedup key `{}`)", key(dedup_key))
        }
        Some(PageResult::Sending { dedup_key }) => {
            format!("PagerDuty page being sent (dedup key `{}`)", key(dedup_key))
        }
        Some(PageResult::Failed { error, .. }) => format!(
            "PagerDuty page not delivered yet: {}; the bot keeps retrying",
            escape(&truncate(error.as_deref().unwrap_or("unknown error"), 300))
        ),
        Some(PageResult::GaveUp {
            error, attempts, ..
        }) => format!(
            "PagerDuty page NOT delivered: the bot gave up after {attempts} attempts ({}); \
             page Platform Engineering by hand",
            escape(&truncate(error.as_deref().unwrap_or("unknown error"), 300))
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
                untrusted(c["evidence"].as_str().unwrap_or(""), 300)
            )
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::card::{checklist, incident_text};
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
    fn approvers_are_named_and_mentioned_when_the_plan_is_ready_and_at_the_reminder() {
        let approvers = Approvers {
            lead_ids: vec!["U0LEAD0001".into(), "U0LEAD0002".into()],
            lead_group: Some("S0ONCALL01".into()),
            dba_ids: vec!["U0DBA00001".into()],
            dba_group: None,
        };
        let detail = json!({ "fingerprint": "f", "approvers": approvers.to_json() });
        let ready = audit(
            "plan_ready",
            State::Requested,
            State::AwaitingApproval,
            detail.clone(),
        );
        assert_eq!(
            thread_line(&ready).unwrap(),
            "📋 Plan ready; waiting for approval: <@U0LEAD0001>, <@U0LEAD0002> or anyone in \
             <!subteam^S0ONCALL01> may approve (on-call leads); DBA sign-off: <@U0DBA00001> \
             (not the requester)"
        );
        let remind = audit(
            "remind",
            State::AwaitingApproval,
            State::AwaitingApproval,
            json!({ "expires_at": "2026-11-22T17:15:00+00:00", "approvers": approvers.to_json() }),
        );
        let line = thread_line(&remind).unwrap();
        assert!(
            line.starts_with("⏰ Still waiting for approval, half of the approval window has passed: <@U0LEAD0001>"),
            "{line}"
        );
        assert!(line.contains("|2026-11-22 17:15 UTC>"), "{line}");
        // Rows from before approvers were recorded read as they did.
        let old = audit(
            "plan_ready",
            State::Requested,
            State::AwaitingApproval,
            json!({}),
        );
        assert_eq!(
            thread_line(&old).unwrap(),
            "📋 Plan ready; waiting for approval"
        );
        // And the card says who may approve.
        let mut r = rollback(State::AwaitingApproval);
        r.steps = json!({ "plan": detail });
        let text = serde_json::to_string(&card(&r, None, None, Utc::now()).blocks).unwrap();
        assert!(
            text.contains("Who may approve: <@U0LEAD0001>, <@U0LEAD0002> or anyone in <!subteam^S0ONCALL01> may approve"),
            "{text}"
        );
        let nobody = Approvers::default();
        assert!(approvers_text(&nobody).starts_with("nobody (no slack.lead_user_ids"));
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
            line.starts_with(
                "❌ Failed — nobody paged (no slack.escalation_user_group configured)"
            ),
            "{line}"
        );
        assert!(!line.contains("Escalated"), "{line}");
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

    /// The headline says "locked" only when the policy was seen to enforce the lock.
    #[test]
    fn the_headline_claims_a_lock_only_as_far_as_it_was_confirmed() {
        let mut r = rollback(State::Succeeded);
        let lock = json!({"reason": "r", "rollback_id": 7, "service": "web"});
        let headline = |steps: Value, r: &mut Rollback| {
            r.steps = steps;
            card::headline(r)
        };
        let enforced = headline(
            json!({"lock": {"lock": lock, "enforcement": {"enforced": true}}}),
            &mut r,
        );
        assert!(
            enforced.ends_with("🔒 locked until a fix is approved"),
            "{enforced}"
        );
        let not = headline(
            json!({"lock": {"lock": lock, "enforcement": {"enforced": false, "problems": ["x"]}}}),
            &mut r,
        );
        assert!(not.ends_with("lock recorded but *NOT enforced*"), "{not}");
        let unchecked = headline(json!({"lock": {"lock": lock}}), &mut r);
        assert!(
            unchecked.ends_with("lock recorded (enforcement not checked)"),
            "{unchecked}"
        );
        assert!(!unchecked.contains("locked until"), "{unchecked}");
        let none = headline(json!({}), &mut r);
        assert!(!none.contains("lock"), "{none}");
    }

    /// Text from the cluster (termination messages and log tails in the checks' evidence,
    /// API errors in the failure reason) never pings anyone or links anywhere.
    #[test]
    fn cluster_text_on_the_card_and_in_the_thread_is_escaped() {
        let hostile =
            "boom <!channel> <!here> <@U0ADMIN01> <#C0SECRET1|x> <https://evil.example|click>";
        let markup = [
            "<!channel>",
            "<!here>",
            "<@U0ADMIN01>",
            "<#C0SECRET1",
            "<https://evil",
        ];
        let checks = json!([{"name": "pods-no-restarts", "passed": false, "evidence": hostile}]);
        let mut r = rollback(State::Failed);
        r.lead_approved_by = Some("U0LEAD".into());
        r.last_error = Some(hostile.into());
        r.steps = json!({
            "execute": {"generation": 2},
            "verify": {"summary": hostile, "checks": checks},
            "validate": {"summary": hostile},
        });
        let mut rendered =
            serde_json::to_string(&card(&r, Some(hostile), None, Utc::now()).blocks).unwrap();
        r.state = State::Escalated;
        rendered
            .push_str(&serde_json::to_string(&card(&r, None, None, Utc::now()).blocks).unwrap());
        for (action, from, detail) in [
            (
                "step_failed",
                State::Verifying,
                json!({"summary": hostile, "checks": checks}),
            ),
            (
                "step_failed",
                State::Validating,
                json!({"summary": hostile}),
            ),
            ("step_failed", State::Failed, json!({"error": hostile})),
            (
                "plan_refused",
                State::Requested,
                json!({"refusal": hostile}),
            ),
            (
                "step_succeeded",
                State::Verifying,
                json!({"summary": hostile, "checks": checks}),
            ),
        ] {
            rendered.push_str(&thread_line(&audit(action, from, State::Failed, detail)).unwrap());
        }
        for m in markup {
            assert!(!rendered.contains(m), "{m} survived: {rendered}");
        }
        assert!(rendered.contains("&lt;!channel&gt;"), "{rendered}");
    }

    /// The headline never says "escalated" when nobody was told.
    #[test]
    fn the_headline_says_exactly_who_was_told() {
        let mut r = rollback(State::Escalated);
        r.last_error = Some("pods do not stabilise".into());
        let headline = |r: &Rollback| card::headline(r);
        r.steps = json!({"escalate": {"pagerduty": {"status": "not_configured"}}});
        assert_eq!(
            headline(&r),
            "❌ *Failed — nobody paged* (no escalation group, no PagerDuty key): pods do not stabilise"
        );
        r.steps =
            json!({"escalate": {"mention": "S0PLAT", "pagerduty": {"status": "not_configured"}}});
        assert_eq!(
            headline(&r),
            "📣 *Escalated*: <!subteam^S0PLAT> mentioned — pods do not stabilise"
        );
        r.steps = json!({"escalate": {"mention": "S0PLAT",
            "pagerduty": {"status": "triggered", "dedup_key": "k"}}});
        assert_eq!(
            headline(&r),
            "📣 *Escalated*: <!subteam^S0PLAT> mentioned, PagerDuty paged (dedup key `k`) — pods do not stabilise"
        );
        r.steps = json!({"escalate": {"pagerduty": {"status": "failed", "error": "503"}}});
        assert!(
            headline(&r).starts_with(
                "❌ *Failed — nobody paged* (no escalation group, PagerDuty page not delivered yet)"
            ),
            "{}",
            headline(&r)
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
            State::Approved,
            State::Executing,
            State::Cancelled,
            State::Escalated,
        ] {
            let m = card(&rollback(state), None, None, Utc::now());
            assert!(action_ids(&m).is_empty(), "{state}");
        }
        // After the patch the lead has controls: abort while steps remain, escalate now
        // until the rollback has failed (a succeeded one included).
        for state in [State::Verifying, State::Ticketing] {
            assert_eq!(
                action_ids(&card(&rollback(state), None, None, Utc::now())),
                vec![
                    actions::ABORT,
                    actions::ESCALATE_DATA_INTEGRITY,
                    actions::ESCALATE_OTHER
                ],
                "{state}"
            );
        }
        // While validating, also Extend; the card says how to accept.
        let validating = card(&rollback(State::Validating), None, None, Utc::now());
        assert_eq!(
            action_ids(&validating),
            vec![
                actions::EXTEND_VALIDATION,
                actions::ABORT,
                actions::ESCALATE_DATA_INTEGRITY,
                actions::ESCALATE_OTHER
            ]
        );
        let text = serde_json::to_string(&validating.blocks).unwrap();
        assert!(text.contains("`/rollback accept 7 <reason>`"), "{text}");
        assert_eq!(
            action_ids(&card(&rollback(State::Succeeded), None, None, Utc::now())),
            vec![actions::ESCALATE_DATA_INTEGRITY, actions::ESCALATE_OTHER]
        );
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
        assert!(
            text.contains(
                "⚠️ *Rolled back and verified — recovery NOT validated*: no Prometheus configured"
            ),
            "{text}"
        );
        assert!(
            text.contains("Recovery NOT validated: no Prometheus"),
            "{text}"
        );
        assert!(!text.contains("service recovered"), "{text}");
        assert!(
            !text.contains("✅ *Rolled back"),
            "never green when not validated: {text}"
        );

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
            "✅ Recovery · P99 latency: 0.099 s → 0.101 s",
            "❌ Recovery · error rate: 5.00 %",
            "➖ Recovery · health",
            "⏳ Recovery · soak: no pods",
        ] {
            assert!(text.contains(line), "card lacks {line:?}: {text}");
        }

        assert!(
            !text.contains("⏱️"),
            "not validated, so no time to recover: {text}"
        );

        // Validated: how long recovery took, from the faulty rollout and from approval.
        r.steps["validate"]["recovery"]["validated"] = json!(true);
        r.steps["validate"]["recovery"]["ended_at"] = json!("2026-11-22T17:14:03Z");
        r.plan = Some(json!({ "correlation": {
            "rolled_out_at": "2026-11-22T17:00:30Z",
            "rollout_started_at": "2026-11-22T17:00:00Z",
        } }));
        r.approved_at = Some("2026-11-22T17:11:53Z".parse().unwrap());
        let text = serde_json::to_string(&card(&r, None, None, Utc::now()).blocks).unwrap();
        assert!(
            text.contains(
                "⏱️ Recovered 14 min 3 s after the faulty rollout started, 2 min 10 s after approval"
            ),
            "{text}"
        );

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
            "⚠️ Recovery NOT validated (runbook step 4 did not run): turned off"
        );
    }
}
