//! The `ticket` step: after a successful rollback, a post-incident ticket for the root-cause
//! analysis in the configured tracker (`tickets.tracker`: Jira Cloud, GitHub Issues or none),
//! carrying the incident, the service, the revisions and images, who requested and approved,
//! the verification and recovery evidence and the timeline from the audit trail. The ticket's
//! link goes on the card.
//!
//! - [`Ticket`]: the content, pure; rendered as Markdown (GitHub) or ADF (Jira).
//! - [`jira`], [`github`]: one client each.
//! - [`Tickets`]: the step. Neither API has an idempotency key, so the intent is recorded
//!   first (src/intent.rs) and every ticket carries the label [`marker_label`]: a run that
//!   finds the intent without a result looks the ticket up by that label before creating
//!   one. A tracker that is down never fails the rollback: after the client's retries the
//!   card shows that the ticket could not be opened.

pub mod github;
pub mod jira;

use std::sync::Arc;

use serde_json::{Value, json};
use sqlx::PgPool;
use tracing::{info, warn};

use crate::config::{Config, Secrets, TrackerKind};
use crate::failpoint;
use crate::intent::{self, Action, Begun};
use crate::k8s::RollbackPlan;
use crate::outbound::OutboundError;
use crate::rollback::repo::{self, AuditRow, Rollback};
use crate::slack::SlackApi;

pub use github::GitHub;
pub use jira::Jira;

/// Errors of the tracker layer.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("the tracker is {0}")]
    Outbound(#[from] OutboundError),
    /// A definite answer other than success (bad credentials, missing field, issues off).
    #[error("the tracker refused ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("{name} must be set (tickets.tracker = \"{tracker}\")")]
    MissingSecret {
        name: &'static str,
        tracker: &'static str,
    },
}

/// A ticket in the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// `OPS-24` (Jira) or `#24` (GitHub).
    pub key: String,
    pub url: String,
}

/// The label that finds rollback `id`'s ticket again.
pub fn marker_label(id: i64) -> String {
    format!("rollback-bot-{id}")
}

/// The error text a tracker answered with (Jira: `errorMessages` and `errors`; GitHub:
/// `message` and `errors`).
pub fn rejection_text(body: &Value) -> String {
    let mut parts: Vec<String> = vec![];
    if let Some(m) = body["message"].as_str() {
        parts.push(m.to_owned());
    }
    for m in body["errorMessages"].as_array().into_iter().flatten() {
        parts.extend(m.as_str().map(str::to_owned));
    }
    match &body["errors"] {
        Value::Object(fields) => {
            for (field, why) in fields {
                parts.push(format!("{field}: {}", why.as_str().unwrap_or("invalid")));
            }
        }
        Value::Array(errors) => {
            for e in errors {
                parts.push(
                    e["message"]
                        .as_str()
                        .or(e["code"].as_str())
                        .map_or_else(|| e.to_string(), str::to_owned),
                );
            }
        }
        _ => {}
    }
    if parts.is_empty() {
        "no reason given".into()
    } else {
        parts.join("; ")
    }
}

/// One heading and its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub heading: String,
    pub lines: Vec<String>,
}

/// A post-incident ticket's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub title: String,
    pub sections: Vec<Section>,
}

impl Ticket {
    /// GitHub's body: a heading per section, a bullet per line.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for s in &self.sections {
            out.push_str(&format!("### {}\n", s.heading));
            for line in &s.lines {
                out.push_str(&format!("- {line}\n"));
            }
            out.push('\n');
        }
        out
    }

    /// Jira's description in the Atlassian Document Format: a heading and a bullet list per
    /// section.
    pub fn adf(&self) -> Value {
        let mut content = vec![];
        for s in &self.sections {
            content.push(json!({
                "type": "heading", "attrs": { "level": 3 },
                "content": [{ "type": "text", "text": s.heading }],
            }));
            let items: Vec<Value> = s
                .lines
                .iter()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    json!({ "type": "listItem", "content": [{
                        "type": "paragraph", "content": [{ "type": "text", "text": l }],
                    }]})
                })
                .collect();
            if !items.is_empty() {
                content.push(json!({ "type": "bulletList", "content": items }));
            }
        }
        json!({ "type": "doc", "version": 1, "content": content })
    }
}

fn slack_user(id: &str) -> String {
    if id.starts_with("worker:") || id == "system" {
        "the bot".into()
    } else {
        format!("Slack user {id}")
    }
}

/// The ticket for a succeeded rollback. Pure.
pub fn ticket(
    r: &Rollback,
    plan: Option<&RollbackPlan>,
    trail: &[AuditRow],
    card_link: Option<&str>,
) -> Ticket {
    let incident = r.incident.as_deref().unwrap_or("none given");
    let title = format!(
        "Post-incident: {} rolled back (rollback #{}, incident {incident})",
        r.service, r.id
    );
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
    Ticket {
        title,
        sections: vec![
            Section {
                heading: "Summary".into(),
                lines: summary,
            },
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
        ],
    }
}

fn check_line(c: &Value, passed: bool) -> String {
    format!(
        "{} {}: {}",
        if passed { "✔" } else { "✘" },
        c["name"].as_str().unwrap_or("check"),
        crate::slack::render::truncate(c["evidence"].as_str().unwrap_or(""), 300)
    )
}

/// The configured tracker.
#[derive(Debug)]
pub enum Tracker {
    Jira(Jira),
    GitHub(GitHub),
}

impl Tracker {
    /// The tracker `tickets.tracker` names, with its token from the environment; `None` for
    /// `none`.
    ///
    /// # Errors
    /// The token is not set; a bad URL.
    pub fn from_config(config: &Config, secrets: &Secrets) -> Result<Option<Self>, TrackerError> {
        let t = &config.tickets;
        Ok(match t.tracker {
            TrackerKind::None => None,
            TrackerKind::Jira => {
                let token =
                    secrets
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

    pub fn name(&self) -> &'static str {
        match self {
            Tracker::Jira(_) => "jira",
            Tracker::GitHub(_) => "github",
        }
    }

    async fn find(&self, label: &str) -> Result<Option<Created>, TrackerError> {
        match self {
            Tracker::Jira(j) => j.find(label).await,
            Tracker::GitHub(g) => g.find(label).await,
        }
    }

    async fn create(&self, ticket: &Ticket, labels: &[String]) -> Result<Created, TrackerError> {
        match self {
            Tracker::Jira(j) => j.create(ticket, labels).await,
            Tracker::GitHub(g) => g.create(ticket, labels).await,
        }
    }
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
            return json!({ "status": "not_configured" });
        };
        match self.open_in(tracker, r).await {
            Ok((created, already)) => json!({
                "status": "opened",
                "tracker": tracker.name(),
                "key": created.key,
                "url": created.url,
                "already_opened": already,
            }),
            Err(e) => {
                warn!(rollback_id = r.id, error = %e, "post-incident ticket not opened");
                if let Err(db) =
                    intent::failed(&self.pool, r.id, Action::Ticket, &e.to_string()).await
                {
                    warn!(rollback_id = r.id, error = %db, "recording the failed ticket");
                }
                json!({ "status": "failed", "tracker": tracker.name(), "error": e.to_string() })
            }
        }
    }

    /// The ticket, found or created, and whether it existed already.
    async fn open_in(&self, tracker: &Tracker, r: &Rollback) -> Result<(Created, bool), StepError> {
        let marker = marker_label(r.id);
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
            Some(slack) => crate::deployer::card_link(&self.pool, slack, r.id).await,
            None => None,
        };
        let content = ticket(r, plan.as_ref(), &trail, link.as_deref());
        let mut labels = self.labels.clone();
        labels.push(marker);
        let created = tracker.create(&content, &labels).await?;
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

    #[test]
    fn rejections_name_the_trackers_reasons() {
        let jira = json!({"errorMessages": ["Field 'x' cannot be set"],
                          "errors": {"summary": "You must specify a summary of the issue."}});
        assert_eq!(
            rejection_text(&jira),
            "Field 'x' cannot be set; summary: You must specify a summary of the issue."
        );
        let github = json!({"message": "Validation Failed",
                            "errors": [{"resource": "Issue", "code": "missing_field", "field": "title"}]});
        assert_eq!(rejection_text(&github), "Validation Failed; missing_field");
        assert_eq!(rejection_text(&Value::Null), "no reason given");
    }

    fn sample() -> Ticket {
        Ticket {
            title: "t".into(),
            sections: vec![Section {
                heading: "Summary".into(),
                lines: vec!["Incident: INC-7".into(), "Service: web".into()],
            }],
        }
    }

    #[test]
    fn markdown_has_a_heading_and_bullets() {
        assert_eq!(
            sample().markdown(),
            "### Summary\n- Incident: INC-7\n- Service: web\n\n"
        );
    }

    #[test]
    fn adf_is_a_version_1_document() {
        let adf = sample().adf();
        assert_eq!(adf["type"], "doc");
        assert_eq!(adf["version"], 1);
        assert_eq!(adf["content"][0]["type"], "heading");
        assert_eq!(adf["content"][1]["type"], "bulletList");
        assert_eq!(
            adf["content"][1]["content"][1]["content"][0]["content"][0]["text"],
            "Service: web"
        );
    }

    #[test]
    fn the_ticket_carries_people_evidence_and_the_timeline() {
        use crate::rollback::State;
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
            "- Locked against re-deploys: rollback #7\n",
            "### Timeline (audit trail)\n- 2026-11-22 10:00:00 UTC — Slack user U0LEAD0001 — approve (awaiting_approval → approved)\n\n",
        ] {
            assert!(md.contains(part), "{part:?} missing:\n{md}");
        }
    }

    #[test]
    fn the_marker_names_the_rollback() {
        assert_eq!(marker_label(42), "rollback-bot-42");
    }
}
