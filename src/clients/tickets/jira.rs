//! Jira Cloud, REST v3: create an issue, and find the one a rollback opened by its label.
//!
//! Contract: `POST <site>/rest/api/3/issue` with `Authorization: Basic base64(email:token)`,
//! `{"fields": {project: {key}, issuetype: {name}, summary, description: <ADF>, labels}}`;
//! 201 `{id, key, self}`; 400 `{errorMessages, errors}`; 401/403 bad credentials. The look-up
//! is `POST <site>/rest/api/3/search/jql` with `{jql, fields, maxResults}` → `{issues: [...]}`.
//! The API token comes only from the environment (`JIRA_API_TOKEN`) and is never logged.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};

use super::{Created, Ticket, TrackerError, rejection_text};
use crate::support::http::{self as outbound, JsonClient, Request};

/// Jira's limit on `summary`.
const MAX_SUMMARY: usize = 255;

pub struct Jira {
    client: JsonClient,
    site: String,
    project: String,
    issue_type: String,
    authorization: String,
}

impl std::fmt::Debug for Jira {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jira")
            .field("site", &self.site)
            .field("project", &self.project)
            .field("authorization", &"<set>")
            .finish()
    }
}

impl Jira {
    /// # Errors
    /// A site that is not an http(s) URL; no TLS roots.
    pub fn new(
        site: &str,
        project: &str,
        issue_type: &str,
        email: &str,
        token: &str,
    ) -> Result<Self, TrackerError> {
        let site = site.trim_end_matches('/').to_owned();
        outbound::parse_url("tickets.jira_url", &site)?;
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{email}:{token}"));
        Ok(Jira {
            client: JsonClient::new("jira")?,
            site,
            project: project.to_owned(),
            issue_type: issue_type.to_owned(),
            authorization: format!("Basic {credentials}"),
        })
    }

    pub fn with_retries(mut self, retries: outbound::Retries) -> Self {
        self.client = self.client.with_retries(retries);
        self
    }

    fn post(&self, path: &str, body: &Value) -> Result<Request, TrackerError> {
        Ok(Request {
            method: http::Method::POST,
            uri: outbound::parse_url("Jira URL", &format!("{}{path}", self.site))?,
            headers: vec![("authorization", self.authorization.clone())],
            body: Some(Bytes::from(body.to_string())),
        })
    }

    fn browse(&self, key: &str) -> String {
        format!("{}/browse/{key}", self.site)
    }

    /// The issue labelled `label` in the project, if any.
    pub async fn find(&self, label: &str) -> Result<Option<Created>, TrackerError> {
        let jql = format!(
            "project = \"{}\" AND labels = \"{label}\" ORDER BY created ASC",
            self.project
        );
        let body = json!({ "jql": jql, "fields": ["summary"], "maxResults": 1 });
        let answer = self
            .client
            .send(&self.post("/rest/api/3/search/jql", &body)?)
            .await?;
        if answer.status != 200 {
            return Err(TrackerError::Rejected {
                status: answer.status,
                message: rejection_text(&answer.body),
            });
        }
        Ok(answer.body["issues"]
            .as_array()
            .and_then(|issues| issues.first())
            .and_then(|issue| issue["key"].as_str())
            .map(|key| Created {
                key: key.to_owned(),
                url: self.browse(key),
            }))
    }

    /// Creates the issue.
    pub async fn create(
        &self,
        ticket: &Ticket,
        labels: &[String],
    ) -> Result<Created, TrackerError> {
        let body = json!({ "fields": {
            "project": { "key": self.project },
            "issuetype": { "name": self.issue_type },
            "summary": crate::support::text::truncate(&ticket.title, MAX_SUMMARY),
            "description": ticket.adf(),
            "labels": labels,
        }});
        let answer = self
            .client
            .send_creating(&self.post("/rest/api/3/issue", &body)?)
            .await?;
        match (answer.status, answer.body["key"].as_str()) {
            (201, Some(key)) => Ok(Created {
                key: key.to_owned(),
                url: self.browse(key),
            }),
            (status, _) => Err(TrackerError::Rejected {
                status,
                message: rejection_text(&answer.body),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_not_in_debug_output() {
        let jira = Jira::new("https://x.atlassian.net/", "OPS", "Bug", "bot@x", "S3CRET").unwrap();
        assert!(!format!("{jira:?}").contains("S3CRET"));
        assert_eq!(jira.browse("OPS-1"), "https://x.atlassian.net/browse/OPS-1");
        // base64("bot@x:S3CRET")
        assert_eq!(jira.authorization, "Basic Ym90QHg6UzNDUkVU");
    }
}
