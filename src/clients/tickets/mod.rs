//! The ticket trackers: Jira Cloud and GitHub Issues, one client each ([`jira`], [`github`]),
//! behind [`Tracker`]. [`Ticket`] is the content, rendered as Markdown (GitHub) or ADF (Jira).
//! Every ticket carries the label [`marker_label`] so a retried step finds it again. Neither
//! API has an idempotency key, so [`Tracker::create`] never sends a second create after an
//! answer that may hide a success (a timeout, a 5xx): it looks the ticket up by its label
//! first. The step that opens tickets is `crate::steps::ticket`.

pub mod github;
pub mod jira;

use serde_json::{Value, json};

use crate::support::http::OutboundError;
use crate::support::text::escape_markdown;

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

/// How many times [`Tracker::create`] sends the create when the answers leave it unknown
/// whether the ticket exists (each one after a look-up found none).
pub const CREATE_ATTEMPTS: u32 = 3;

/// The label that finds rollback `id`'s ticket again: `installation` tells apart two bots
/// (say staging and production) that share a project and number their rollbacks alike.
pub fn marker_label(installation: &str, id: i64) -> String {
    format!("rollback-bot-{installation}-{id}")
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
    /// GitHub's body: a heading per section, a bullet per line. Every line is text, never
    /// markup: it may quote the cluster or the requester (annotations, termination messages,
    /// incident text), so it is escaped (no link, image, HTML or `@` notification survives).
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for s in &self.sections {
            out.push_str(&format!("### {}\n", escape_markdown(&s.heading)));
            for line in &s.lines {
                out.push_str(&format!("- {}\n", escape_markdown(line)));
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

/// The configured tracker.
#[derive(Debug)]
pub enum Tracker {
    Jira(Jira),
    GitHub(GitHub),
}

impl Tracker {
    pub fn name(&self) -> &'static str {
        match self {
            Tracker::Jira(_) => "jira",
            Tracker::GitHub(_) => "github",
        }
    }

    /// The ticket carrying `label`, if there is one.
    ///
    /// # Errors
    /// [`TrackerError`].
    pub async fn find(&self, label: &str) -> Result<Option<Created>, TrackerError> {
        match self {
            Tracker::Jira(j) => j.find(label).await,
            Tracker::GitHub(g) => g.find(label).await,
        }
    }

    /// Opens `ticket` with `labels`, once: `labels` includes `marker`, and after an answer
    /// that may hide a success (a timeout, a 5xx) the ticket is looked up by `marker` before
    /// the create is sent again, at most [`CREATE_ATTEMPTS`] times in all.
    ///
    /// # Errors
    /// [`TrackerError`].
    pub async fn create(
        &self,
        ticket: &Ticket,
        labels: &[String],
        marker: &str,
    ) -> Result<Created, TrackerError> {
        let mut attempt = 1;
        loop {
            let answer = match self {
                Tracker::Jira(j) => j.create(ticket, labels).await,
                Tracker::GitHub(g) => g.create(ticket, labels).await,
            };
            match answer {
                Err(TrackerError::Outbound(e))
                    if e.may_have_been_done() && attempt < CREATE_ATTEMPTS =>
                {
                    tracing::warn!(tracker = self.name(), attempt, error = %e,
                        "no answer to the ticket's create; looking it up before creating again");
                    if let Some(found) = self.find(marker).await? {
                        return Ok(found);
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
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
    fn the_marker_names_the_installation_and_the_rollback() {
        assert_eq!(
            marker_label("3f2a9c01d4e5", 42),
            "rollback-bot-3f2a9c01d4e5-42"
        );
    }
}
