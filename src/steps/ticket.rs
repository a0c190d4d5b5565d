//! The `ticket` step: after a successful rollback, a post-incident ticket for the root-cause
//! analysis in the configured tracker (`tickets.tracker`: Jira Cloud, GitHub Issues or none),
//! carrying the incident, the service, the revisions and images, who requested and approved,
//! the verification and recovery evidence and the timeline from the audit trail. The ticket's
//! link goes on the card.
//!
//! - [`ticket`]: the content, pure.
//! - [`Tickets`]: the step. Neither API has an idempotency key, so the intent is recorded
//!   first (`crate::db::intents`) and every ticket carries the label [`marker_label`]
//!   (installation and rollback): a run that finds the intent without a result looks the
//!   ticket up by that label before creating one, and so does the client after a create
//!   that got no answer. A tracker that is down never fails the rollback: after the client's retries the
//!   card shows that the ticket could not be opened.

use std::sync::Arc;

use serde_json::{Value, json};
use sqlx::PgPool;
use tracing::{info, warn};

use crate::clients::k8s::RollbackPlan;
use crate::clients::slack::SlackApi;
use crate::clients::tickets::{
    Created, GitHub, Jira, Section, Ticket, Tracker, TrackerError, marker_label,
};
use crate::config::{Config, Secrets, TrackerKind};
use crate::db::intents::{self as intent, Action, Begun};
use crate::db::rollbacks::{self as repo, AuditRow, Rollback};
use crate::domain::State;
use crate::domain::results::{EscalateResult, PageResult, TicketResult};
use crate::support::failpoint;

/// The tracker `tickets.tracker` names, with its token from the environment; `None` for
/// `none`.
///
/// # Errors
/// The token is not set; a bad URL.
pub fn tracker_from_config(
    config: &Config,
    secrets: &Secrets,
) -> Result<Option<Tracker>, TrackerError> {
    let t = &config.tickets;
    Ok(match t.tracker {
        TrackerKind::None => None,
        TrackerKind::Jira => {
            let token = secrets
                .jira_api_token
                .as_deref()
                .ok_or(TrackerError::MissingSecret {
                    name: "JIRA_API_TOKEN",
                    tracker: "jira",
                })?;
            Some(Tracker::Jira(Jira::new(
                t.jira_url.as_deref().unwrap_or_default(),
                t.jira_project.as_deref().unwrap_or_default(),
                &t.jira_issue_type,
                t.jira_email.as_deref().unwrap_or_default(),
                token,
            )?))
        }
        TrackerKind::Github => {
            let token = secrets
                .github_token
                .as_deref()
                .ok_or(TrackerError::MissingSecret {
                    name: "GITHUB_TOKEN",
                    tracker: "github",
                })?;
            Some(Tracker::GitHub(GitHub::new(
                &t.github_api_url,
                t.github_repository.as_deref().unwrap_or_default(),
                token,
            )?))
        }
    })
}

fn slack_user(id: &str) -> String {
    if id.starts_with("worker:") || id == "system" {
        "the bot".into()
    } else {
        format!("Slack user {id}")
    }
}

/// The ticket for a succeeded rollback, or for a failed one being escalated (its title says
/// FAILED and its "Escalation" section carries the reason and the evidence recorded in
/// `steps.escalate`). Pure.
pub fn ticket(
    r: &Rollback,
    plan: Option<&RollbackPlan>,
    trail: &[AuditRow],
    card_link: Option<&str>,
) -> Ticket {
    let incident = r.incident.as_deref().unwrap_or("none given");
    let escalation =
        (r.state == State::Failed).then(|| EscalateResult::from_json(&r.steps["escalate"]));
    let title = match &escalation {
        None => format!(
            "Post-incident: {} rolled back (rollback #{}, incident {incident})",
            r.service, r.id
        ),
        Some(_) => format!(
            "Post-incident: rollback of {} FAILED, escalated (rollback #{}, incident {incident})",
            r.service, r.id
        ),
    };
    let mut summary = vec![
        format!("Incident: {incident}"),
        format!(
            "Rollback card: {}",
            card_link.unwrap_or("(no link: the card was not posted)")
        ),
        format!("Service: {}", r.service),
        format!(
            "Deployment: {} / {} / {}",
            r.cluster, r.namespace, r.deployment
        ),
    ];
    if let Some(p) = plan {
        summary.push(format!(
            "Revision: {} → {}",
            p.current
                .as_ref()
                .map_or_else(|| "?".to_owned(), |c| c.revision.to_string()),
            p.rollback_to.revision
        ));
        for c in &p.image_changes {
            summary.push(format!(
                "Image {}: {} → {}",
                c.container,
                c.from.as_deref().unwrap_or("(none)"),
                c.to.as_deref().unwrap_or("(removed)")
            ));
        }
    }
    let mut people = vec![format!("Requested by {}", slack_user(&r.requested_by))];
    if let Some(lead) = &r.lead_approved_by {
        people.push(format!("Approved by {} (on-call lead)", slack_user(lead)));
    }
    if let Some(dba) = &r.dba_approved_by {
        people.push(format!("Signed off by {} (DBA)", slack_user(dba)));
    }
    match r.steps["notify"]["status"].as_str() {
        Some("sent") => people.push(format!(
            "Deployer notified: {}",
            slack_user(r.steps["notify"]["user"].as_str().unwrap_or("?"))
        )),
        Some(_) => people.push(format!(
            "Deployer not notified: {}",
            r.steps["notify"]["reason"]
                .as_str()
                .or(r.steps["notify"]["error"].as_str())
                .unwrap_or("see the card")
        )),
        None => {}
    }
    let verify = &r.steps["verify"];
    let mut verification = vec![verify["summary"].as_str().unwrap_or("none").to_owned()];
    for c in verify["checks"].as_array().into_iter().flatten() {
        verification.push(check_line(c, c["passed"].as_bool() == Some(true)));
    }
    let validate = &r.steps["validate"];
    let recovery = match validate["skipped"].as_str() {
        Some(reason) => vec![format!("Skipped: {reason}")],
        None => {
            let mut lines = vec![validate["summary"].as_str().unwrap_or("none").to_owned()];
            for c in validate["recovery"]["checks"]
                .as_array()
                .into_iter()
                .flatten()
            {
                lines.push(check_line(c, c["status"].as_str() == Some("pass")));
            }
            lines
        }
    };
    let lock = &r.steps["lock"];
    let lock_lines = match lock["lock"]["reason"].as_str() {
        Some(reason) => vec![
            format!("Locked against re-deploys: {reason}"),
            format!(
                "Lift it once the fix is approved: {}",
                lock["unlock"].as_str().unwrap_or("/rollback unlock")
            ),
        ],
        None => vec!["Not locked".into()],
    };
    let timeline = trail
        .iter()
        .filter(|a| a.outcome == "applied")
        .map(|a| {
            format!(
                "{} — {} — {} ({} → {})",
                a.at.format("%Y-%m-%d %H:%M:%S UTC"),
                slack_user(&a.actor),
                a.action,
                a.from_state,
                a.to_state
            )
        })
        .collect();
    let mut sections = vec![Section {
        heading: "Summary".into(),
        lines: summary,
    }];
    if let Some(e) = escalation {
        let mut lines = vec![
            format!("Result: FAILED; {}", who_was_told(&e)),
            format!(
                "Reason: {}",
                e.reason.as_deref().unwrap_or("the rollback failed")
            ),
        ];
        // A pod's line carries its log tail on the lines below it: one bullet each.
        lines.extend(
            e.evidence
                .iter()
                .flat_map(|l| l.lines().map(|l| l.trim().to_owned()).collect::<Vec<_>>()),
        );
        sections.push(Section {
            heading: "Escalation".into(),
            lines,
        });
    }
    sections.extend([
        Section {
            heading: "People".into(),
            lines: people,
        },
        Section {
            heading: "Verification".into(),
            lines: verification,
        },
        Section {
            heading: "Recovery".into(),
            lines: recovery,
        },
        Section {
            heading: "Deploy lock".into(),
            lines: lock_lines,
        },
        Section {
            heading: "Timeline (audit trail)".into(),
            lines: timeline,
        },
        Section {
            heading: "Root-cause analysis".into(),
            lines: vec!["To do: what went wrong, why it was not caught, and the fix.".into()],
        },
    ]);
    Ticket { title, sections }
}

/// Who the escalation reached, as recorded: never "escalated" when nobody was told.
fn who_was_told(e: &EscalateResult) -> String {
    let page = match &e.pagerduty {
        Some(PageResult::Triggered { .. }) => Some("PagerDuty paged"),
        Some(PageResult::Sending { .. }) => Some("PagerDuty page being sent"),
        Some(PageResult::Failed { .. }) => Some("PagerDuty page not delivered yet"),
        Some(PageResult::GaveUp { .. }) => Some("PagerDuty page never delivered"),
        _ => None,
    };
    let told: Vec<String> = e
        .mention
        .iter()
        .map(|g| format!("Slack group {g} mentioned"))
        .chain(page.map(str::to_owned))
        .collect();
    if told.is_empty() {
        "nobody was paged (no escalation group, no PagerDuty key)".into()
    } else {
        told.join(", ")
    }
}

fn check_line(c: &Value, passed: bool) -> String {
    format!(
        "{} {}: {}",
        if passed { "✔" } else { "✘" },
        c["name"].as_str().unwrap_or("check"),
        crate::support::text::truncate(c["evidence"].as_str().unwrap_or(""), 300)
    )
}

/// The `ticket` step as configured.
pub struct Tickets {
    pool: PgPool,
    tracker: Option<Tracker>,
    labels: Vec<String>,
    slack: Option<Arc<SlackApi>>,
}

impl Tickets {
    pub fn new(
        pool: PgPool,
        tracker: Option<Tracker>,
        labels: Vec<String>,
        slack: Option<Arc<SlackApi>>,
    ) -> Self {
        Tickets {
            pool,
            tracker,
            labels,
            slack,
        }
    }

    /// Runs the step; returns its detail for the card (it never fails the rollback).
    pub async fn open(&self, r: &Rollback) -> Value {
        let Some(tracker) = &self.tracker else {
            return TicketResult::NotConfigured.to_json();
        };
        match self.open_in(tracker, r).await {
            Ok((created, already)) => TicketResult::Opened {
                tracker: Some(tracker.name().to_owned()),
                key: Some(created.key),
                url: Some(created.url),
                already_opened: already,
            }
            .to_json(),
            Err(e) => {
                warn!(rollback_id = r.id, error = %e, "post-incident ticket not opened");
                if let Err(db) =
                    intent::failed(&self.pool, r.id, Action::Ticket, &e.to_string()).await
                {
                    warn!(rollback_id = r.id, error = %db, "recording the failed ticket");
                }
                TicketResult::Failed {
                    tracker: Some(tracker.name().to_owned()),
                    error: Some(e.to_string()),
                }
                .to_json()
            }
        }
    }

    /// The ticket, found or created, and whether it existed already.
    async fn open_in(&self, tracker: &Tracker, r: &Rollback) -> Result<(Created, bool), StepError> {
        let marker = marker_label(&crate::db::installation_id(&self.pool).await?, r.id);
        let pending = match intent::begin(&self.pool, r.id, Action::Ticket).await? {
            Begun::Done(result) => {
                let created: Option<Created> = (|| {
                    Some(Created {
                        key: result["key"].as_str()?.to_owned(),
                        url: result["url"].as_str()?.to_owned(),
                    })
                })();
                if let Some(created) = created {
                    return Ok((created, true));
                }
                true
            }
            Begun::Fresh => false,
            Begun::Pending { .. } => true,
        };
        failpoint::hit("ticket.after_intent");
        if pending && let Some(found) = tracker.find(&marker).await? {
            info!(rollback_id = r.id, key = %found.key,
                  "found the post-incident ticket opened before; not opening another");
            self.record(r.id, &found).await?;
            return Ok((found, true));
        }
        let plan: Option<RollbackPlan> =
            r.plan.clone().and_then(|p| serde_json::from_value(p).ok());
        let trail = repo::audit_trail(&self.pool, r.id).await?;
        let link = match &self.slack {
            Some(slack) => crate::steps::notify::card_link(&self.pool, slack, r.id).await,
            None => None,
        };
        let content = ticket(r, plan.as_ref(), &trail, link.as_deref());
        let mut labels = self.labels.clone();
        labels.push(marker.clone());
        let created = tracker.create(&content, &labels, &marker).await?;
        failpoint::hit("ticket.after_create");
        self.record(r.id, &created).await?;
        info!(rollback_id = r.id, key = %created.key, "post-incident ticket opened");
        Ok((created, false))
    }

    async fn record(&self, id: i64, created: &Created) -> Result<(), sqlx::Error> {
        intent::complete(
            &self.pool,
            id,
            Action::Ticket,
            &json!({ "key": created.key, "url": created.url }),
        )
        .await
    }
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Tracker(#[from] TrackerError),
    #[error("recording the ticket: {0}")]
    Database(#[from] sqlx::Error),
    #[error("reading the audit trail: {0}")]
    Repo(#[from] repo::RepoError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The incident text is the requester's and the evidence is the cluster's: in the issue
    /// they are text, never a link, an image, HTML or an `@` notification.
    #[test]
    fn untrusted_text_in_the_ticket_is_not_markup() {
        use crate::domain::State;
        let mut r = crate::slack::render::tests::rollback(State::Ticketing);
        r.incident = Some("INC-9 @octocat ![x](https://evil.example/p.png) <img src=x>".into());
        r.steps = json!({
            "verify": {"summary": "failed", "checks": [{"name": "pods", "passed": false,
                "evidence": "web-1: OOMKilled: [click](https://evil.example) **now** @org/team"}]},
        });
        let md = ticket(&r, None, &[], None).markdown();
        for part in [
            "- Incident: INC\u{2D}9",
            "@\u{200B}octocat \\!\\[x\\](https://evil.example/p.png) \\<img src=x\\>",
            "\\[click\\](https://evil.example) \\*\\*now\\*\\* @\u{200B}org/team",
        ] {
            assert!(md.contains(part), "{part:?} missing:\n{md}");
        }
    }

    #[test]
    fn the_ticket_carries_people_evidence_and_the_timeline() {
        use crate::domain::State;
        let mut r = crate::slack::render::tests::rollback(State::Ticketing);
        r.incident = Some("INC-9".into());
        r.lead_approved_by = Some("U0LEAD0001".into());
        r.steps = json!({
            "verify": {"summary": "verified", "checks": [{"name": "images", "passed": true, "evidence": "web:1.1"}]},
            "validate": {"skipped": "no Prometheus"},
            "lock": {"lock": {"reason": "rollback #7"}, "unlock": "/rollback unlock checkout-api <fix reference>"},
            "notify": {"status": "not_found", "reason": "no annotation"},
        });
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let row = AuditRow {
            id: 1,
            rollback_id: 7,
            at,
            actor: "U0LEAD0001".into(),
            action: "approve".into(),
            outcome: "applied".into(),
            from_state: State::AwaitingApproval,
            to_state: State::Approved,
            detail: json!({}),
        };
        let refused = AuditRow {
            outcome: "refused".into(),
            ..row.clone()
        };
        let t = ticket(&r, None, &[row, refused], Some("https://slack/card"));
        assert_eq!(
            t.title,
            "Post-incident: checkout-api rolled back (rollback #7, incident INC-9)"
        );
        let md = t.markdown();
        for part in [
            "- Incident: INC-9\n",
            "- Rollback card: https://slack/card\n",
            "- Approved by Slack user U0LEAD0001 (on-call lead)\n",
            "- Deployer not notified: no annotation\n",
            "- ✔ images: web:1.1\n",
            "- Skipped: no Prometheus\n",
            "- Locked against re-deploys: rollback \\#7\n",
            "### Timeline (audit trail)\n- 2026-11-22 10:00:00 UTC — Slack user U0LEAD0001 — approve (awaiting\\_approval → approved)\n\n",
        ] {
            assert!(md.contains(part), "{part:?} missing:\n{md}");
        }
    }
}
