//! The secrets: read only from the environment, never printed.

use std::fmt;

use super::types::ConfigError;

/// Secrets, read only from the environment and never printed.
#[derive(Clone, Default)]
pub struct Secrets {
    pub slack_signing_secret: Option<String>,
    pub slack_bot_token: Option<String>,
    pub slack_app_token: Option<String>,
    pub database_url: Option<String>,
    /// The PagerDuty Events API v2 integration key (`PAGERDUTY_ROUTING_KEY`).
    pub pagerduty_routing_key: Option<String>,
    /// The bearer token CI/CD pipelines present to `GET /v1/locks/…`
    /// (`ROLLBACK_BOT_LOCK_API_TOKEN`); unset = the endpoint answers 404.
    pub lock_api_token: Option<String>,
    /// The Jira Cloud API token (`JIRA_API_TOKEN`), with `tickets.jira_email`.
    pub jira_api_token: Option<String>,
    /// A GitHub token with "Issues: write" (`GITHUB_TOKEN`).
    pub github_token: Option<String>,
}

impl Secrets {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Secrets {
            slack_signing_secret: var("SLACK_SIGNING_SECRET"),
            slack_bot_token: var("SLACK_BOT_TOKEN"),
            slack_app_token: var("SLACK_APP_TOKEN"),
            database_url: var("DATABASE_URL"),
            pagerduty_routing_key: var("PAGERDUTY_ROUTING_KEY"),
            lock_api_token: var("ROLLBACK_BOT_LOCK_API_TOKEN"),
            jira_api_token: var("JIRA_API_TOKEN"),
            github_token: var("GITHUB_TOKEN"),
        }
    }

    /// The database URL for `migrate`: `DATABASE_MIGRATION_URL` (the schema owner, when
    /// `serve` runs as a separate application role), else `DATABASE_URL`.
    pub fn migration_database_url(&self) -> Option<String> {
        std::env::var("DATABASE_MIGRATION_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| self.database_url.clone())
    }

    /// The secret or an error naming the variable that must be set.
    pub fn require<'a>(
        value: &'a Option<String>,
        name: &str,
        why: &str,
    ) -> Result<&'a str, ConfigError> {
        value.as_deref().ok_or_else(|| ConfigError::Env {
            name: name.into(),
            expected: format!("must be set ({why})"),
        })
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<String>| if v.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Secrets")
            .field("slack_signing_secret", &shown(&self.slack_signing_secret))
            .field("slack_bot_token", &shown(&self.slack_bot_token))
            .field("slack_app_token", &shown(&self.slack_app_token))
            .field("database_url", &shown(&self.database_url))
            .field("pagerduty_routing_key", &shown(&self.pagerduty_routing_key))
            .field("lock_api_token", &shown(&self.lock_api_token))
            .field("jira_api_token", &shown(&self.jira_api_token))
            .field("github_token", &shown(&self.github_token))
            .finish()
    }
}
