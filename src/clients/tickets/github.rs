//! GitHub Issues: create an issue, and find the one a rollback opened by its label.
//!
//! Contract: `POST <api>/repos/{owner}/{repo}/issues` with `Authorization: Bearer <token>`,
//! `Accept: application/vnd.github+json`, `X-GitHub-Api-Version: 2022-11-28` and a
//! `User-Agent`; body `{title, body, labels}`; 201 `{number, html_url}`; 410 issues
//! disabled, 422 validation, 403/429 rate limits with `Retry-After` (retried). The look-up is
//! `GET <api>/repos/{owner}/{repo}/issues?labels=<label>&state=all` (the repository's own
//! list, not the eventually consistent search index). Labels are dropped silently without
//! push/triage access, so the token needs it for the look-up to work. The token comes only
//! from the environment (`GITHUB_TOKEN`) and is never logged.

use bytes::Bytes;
use serde_json::json;

use super::{Created, Ticket, TrackerError, rejection_text};
use crate::support::http::{self as outbound, JsonClient, Request};

pub struct GitHub {
    client: JsonClient,
    api: String,
    repository: String,
    token: String,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api", &self.api)
            .field("repository", &self.repository)
            .field("token", &"<set>")
            .finish()
    }
}

impl GitHub {
    /// # Errors
    /// An API URL that is not http(s); no TLS roots.
    pub fn new(api: &str, repository: &str, token: &str) -> Result<Self, TrackerError> {
        let api = api.trim_end_matches('/').to_owned();
        outbound::parse_url("tickets.github_api_url", &api)?;
        Ok(GitHub {
            client: JsonClient::new("github")?,
            api,
            repository: repository.to_owned(),
            token: token.to_owned(),
        })
    }

    pub fn with_retries(mut self, retries: outbound::Retries) -> Self {
        self.client = self.client.with_retries(retries);
        self
    }

    fn request(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Request, TrackerError> {
        Ok(Request {
            method,
            uri: outbound::parse_url(
                "GitHub URL",
                &format!("{}/repos/{}{path_and_query}", self.api, self.repository),
            )?,
            headers: vec![
                ("authorization", format!("Bearer {}", self.token)),
                ("accept", "application/vnd.github+json".to_owned()),
                ("x-github-api-version", "2022-11-28".to_owned()),
            ],
            body: body.map(|b| Bytes::from(b.to_string())),
        })
    }

    /// The issue labelled `label` (open or closed), if any.
    pub async fn find(&self, label: &str) -> Result<Option<Created>, TrackerError> {
        let request = self.request(
            http::Method::GET,
            &format!("/issues?labels={label}&state=all&per_page=1"),
            None,
        )?;
        let answer = self.client.send(&request).await?;
        if answer.status != 200 {
            return Err(TrackerError::Rejected {
                status: answer.status,
                message: rejection_text(&answer.body),
            });
        }
        Ok(answer
            .body
            .as_array()
            .and_then(|issues| issues.first())
            .and_then(created))
    }

    /// Creates the issue.
    pub async fn create(
        &self,
        ticket: &Ticket,
        labels: &[String],
    ) -> Result<Created, TrackerError> {
        let body = json!({ "title": ticket.title, "body": ticket.markdown(), "labels": labels });
        let request = self.request(http::Method::POST, "/issues", Some(body))?;
        let answer = self.client.send_creating(&request).await?;
        match (answer.status, created(&answer.body)) {
            (201, Some(issue)) => Ok(issue),
            (status, _) => Err(TrackerError::Rejected {
                status,
                message: rejection_text(&answer.body),
            }),
        }
    }
}

fn created(issue: &serde_json::Value) -> Option<Created> {
    Some(Created {
        key: format!("#{}", issue["number"].as_u64()?),
        url: issue["html_url"].as_str()?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_not_in_debug_output() {
        let gh = GitHub::new("https://api.github.com/", "acme/ops", "ghp_S3CRET").unwrap();
        assert!(!format!("{gh:?}").contains("S3CRET"));
        assert_eq!(
            created(&json!({"number": 7, "html_url": "https://github.com/acme/ops/issues/7"})),
            Some(Created {
                key: "#7".into(),
                url: "https://github.com/acme/ops/issues/7".into()
            })
        );
    }
}
