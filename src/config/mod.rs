//! Configuration: the TOML file (documented key by key in `config/rollback-bot.example.toml`),
//! a few environment overrides, and the secrets, which come only from the environment.
//!
//! Loading validates everything at start-up; an error names the file, the key and what was
//! expected, so a bad deploy fails before it can act on anything.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Slack's Web API, the default for `server.slack_api_url`.
pub const SLACK_API_URL: &str = "https://slack.com/api/";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {key}: {expected}")]
    Invalid {
        file: String,
        key: String,
        expected: String,
    },
    #[error("environment variable {name}: {expected}")]
    Env { name: String, expected: String },
}

/// How Slack reaches the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Slack POSTs to `/slack/commands` and `/slack/interactions` (needs a public URL).
    Http,
    /// The bot opens a WebSocket to Slack with the app token (no public URL needed).
    SocketMode,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// The Slack-facing listener: `/slack/commands`, `/slack/interactions`, `/healthz`.
    pub listen: SocketAddr,
    /// The operational listener: `/healthz`, `/readyz`, `/metrics`. Kept off `listen` so the
    /// address Slack (and the internet) reaches exposes neither metrics nor readiness details.
    pub admin_listen: SocketAddr,
    pub transport: Transport,
    pub slack_api_url: String,
    /// Public base URL of the bot, used in links (optional).
    pub public_url: Option<String>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            transport: Transport::Http,
            slack_api_url: SLACK_API_URL.into(),
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Slack {
    /// Channels where `/rollback` is accepted, by channel id (`C…`/`G…`). Names are refused:
    /// a channel can be renamed, and another channel can then take the name.
    pub incident_channels: Vec<String>,
    /// The workspace (`T…`) commands and clicks must come from; unset = not checked.
    pub team_id: Option<String>,
    /// The Slack app (`A…`) commands and clicks must be for; unset = not checked.
    pub app_id: Option<String>,
    /// On-call leads who may approve, by Slack user id.
    pub lead_user_ids: Vec<String>,
    /// A Slack user group (id `S…`) whose members may approve, resolved at click time.
    pub lead_user_group: Option<String>,
    /// The DBA group that signs off database-coupled rollbacks.
    pub dba_user_ids: Vec<String>,
    pub dba_user_group: Option<String>,
    /// Platform Engineering, paged when a rollback fails.
    pub escalation_user_group: Option<String>,
    /// A notifier's claim on one card, renewed every third of it while it works on the card;
    /// a crashed replica's cards are taken over after it.
    #[serde(with = "humantime_serde")]
    pub notifier_lease: Duration,
    /// Cards one replica brings up to date at the same time (one sync per card at most).
    pub notifier_concurrency: usize,
}

impl Default for Slack {
    fn default() -> Self {
        Slack {
            incident_channels: vec![],
            team_id: None,
            app_id: None,
            lead_user_ids: vec![],
            lead_user_group: None,
            dba_user_ids: vec![],
            dba_user_group: None,
            escalation_user_group: None,
            notifier_lease: Duration::from_secs(30),
            notifier_concurrency: 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    #[serde(with = "humantime_serde")]
    pub approval_expiry: Duration,
    #[serde(with = "humantime_serde")]
    pub verification: Duration,
    #[serde(with = "humantime_serde")]
    pub correlation_window: Duration,
    /// How long after the last sign-off execution may still start (default: the approval
    /// expiry). After a long outage of the bot or its database an approval goes stale
    /// instead of acting on a situation the approvers no longer see.
    #[serde(with = "humantime_serde")]
    pub approval_max_age: Option<Duration>,
}

impl Timeouts {
    /// `approval_max_age`, defaulting to `approval_expiry`.
    pub fn approval_max_age(&self) -> Duration {
        self.approval_max_age.unwrap_or(self.approval_expiry)
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            approval_expiry: Duration::from_secs(15 * 60),
            verification: Duration::from_secs(120),
            correlation_window: Duration::from_secs(60 * 60),
            approval_max_age: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Engine {
    /// Concurrent rollback workers in this process.
    pub workers: usize,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    pub max_retries: u32,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Postgres connections in the pool.
    pub max_connections: u32,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            workers: 4,
            lease: Duration::from_secs(30),
            max_retries: 5,
            shutdown_grace: Duration::from_secs(5),
            max_connections: 16,
        }
    }
}

/// Paging Platform Engineering when a rollback fails (the routing key is a secret:
/// `PAGERDUTY_ROUTING_KEY`; without it nobody is paged).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagerDuty {
    /// The Events API v2 endpoint (EU accounts: `https://events.eu.pagerduty.com/v2/enqueue`).
    pub events_url: String,
    /// `payload.severity` of the trigger.
    pub severity: String,
}

impl Default for PagerDuty {
    fn default() -> Self {
        PagerDuty {
            events_url: crate::clients::pagerduty::EVENTS_URL.into(),
            severity: "critical".into(),
        }
    }
}

/// The annotation [`Deployer::annotation`] defaults to.
pub const DEPLOYED_BY_ANNOTATION: &str = "rollback-bot.io/deployed-by";

/// `[deployer]`: who deployed the faulty revision, told by DM after a successful rollback
/// (src/steps/notify.rs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deployer {
    /// The annotation (on the faulty revision's ReplicaSet, else the Deployment) naming who
    /// deployed it: a Slack user id (`U…`/`W…`) or an email looked up with
    /// `users.lookupByEmail`.
    pub annotation: String,
    /// Per service, the owning team's Slack user group, mentioned in the card's thread when
    /// the deployer cannot be found.
    pub owner_user_groups: BTreeMap<String, String>,
    /// The user group mentioned when the deployer cannot be found and the service has no
    /// owner group; none = the card only says who could not be found and why.
    pub fallback_user_group: Option<String>,
}

impl Default for Deployer {
    fn default() -> Self {
        Deployer {
            annotation: DEPLOYED_BY_ANNOTATION.into(),
            owner_user_groups: BTreeMap::new(),
            fallback_user_group: None,
        }
    }
}

impl Deployer {
    /// The user group to mention for `service` when its deployer cannot be found.
    pub fn fallback_for(&self, service: &str) -> Option<&str> {
        self.owner_user_groups
            .get(service)
            .or(self.fallback_user_group.as_ref())
            .map(String::as_str)
    }
}

/// Which ticket tracker gets the post-incident ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackerKind {
    /// No ticket; the card says no tracker is configured.
    #[default]
    None,
    /// Jira Cloud, REST v3 (token: `JIRA_API_TOKEN`).
    Jira,
    /// GitHub Issues (token: `GITHUB_TOKEN`).
    Github,
}

/// `[tickets]`: the post-incident ticket opened after a successful rollback (src/steps/ticket.rs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tickets {
    pub tracker: TrackerKind,
    /// Labels every ticket gets (besides `rollback-bot-<id>`, which finds it again).
    pub labels: Vec<String>,
    /// Jira Cloud site, e.g. `https://example.atlassian.net`.
    pub jira_url: Option<String>,
    /// Jira project key, e.g. `OPS`.
    pub jira_project: Option<String>,
    /// Jira issue type name.
    pub jira_issue_type: String,
    /// The Atlassian account email the API token belongs to (Basic auth user).
    pub jira_email: Option<String>,
    /// GitHub REST API base URL (GitHub Enterprise: `https://<host>/api/v3`).
    pub github_api_url: String,
    /// `owner/repo` the issues are opened in.
    pub github_repository: Option<String>,
}

/// GitHub's REST API, the default for `tickets.github_api_url`.
pub const GITHUB_API_URL: &str = "https://api.github.com";

impl Default for Tickets {
    fn default() -> Self {
        Tickets {
            tracker: TrackerKind::None,
            labels: vec!["post-incident".into()],
            jira_url: None,
            jira_project: None,
            jira_issue_type: "Bug".into(),
            jira_email: None,
            github_api_url: GITHUB_API_URL.into(),
            github_repository: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Days a finished rollback keeps its full plan (pod template included); afterwards only
    /// the fingerprint and a short summary remain.
    pub plan_days: u32,
}

impl Retention {
    /// How long a finished rollback keeps its full plan.
    pub fn plan_period(&self) -> Duration {
        Duration::from_secs(u64::from(self.plan_days) * 24 * 3600)
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention { plan_days: 30 }
    }
}

/// A Kubernetes cluster the bot may act on.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// Kubeconfig context; none means the in-cluster service account or the current context.
    pub context: Option<String>,
    /// Kubeconfig file; none means `KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// The Prometheus recovery validation queries (e.g. `http://prometheus.monitoring:9090`);
    /// none turns validation off for the cluster's services.
    pub prometheus_url: Option<String>,
    /// Environment variable holding a bearer token for Prometheus, if it needs one.
    pub prometheus_token_env: Option<String>,
    /// Namespaces whose Deployments annotated `rollback-bot.io/service: <name>` become
    /// services without a `[services]` entry (`src/engine/catalog.rs`); none = no discovery.
    pub discover_namespaces: Vec<String>,
    /// The namespace of the Argo CD that manages (some of) the cluster's Deployments
    /// (docs/argocd.md); none = `argocd`.
    pub argocd_namespace: Option<String>,
}

/// A service `/rollback` knows, and the Deployment it maps to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub cluster: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Defaults to the service name.
    pub deployment: Option<String>,
    /// Migrations are a separate procedure: a DBA must sign off.
    #[serde(default)]
    pub database_coupled: bool,
    /// The Argo CD Application that manages the Deployment, when its markers do not say
    /// (docs/argocd.md); none = detected from the Deployment.
    #[serde(default)]
    pub argocd_application: Option<String>,
    /// Recovery validation after the rollback (runbook: P99, error rate, health, soak).
    #[serde(default)]
    pub recovery: Recovery,
}

/// `[services.<name>.recovery]`: how recovery is validated. Queries are PromQL templates in
/// which `$service`, `$namespace`, `$deployment` and `$window` are replaced; the defaults
/// ([`crate::domain::recovery::DEFAULT_P99_QUERY`] …) read the `http_request_duration_seconds`
/// histogram and the `http_requests_total` counter labelled with service and namespace.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recovery {
    /// `false` skips validation (the card says so). Default: on when the service's cluster
    /// has a `prometheus_url`.
    pub validation: Option<bool>,
    /// Must answer 200, e.g. the Service's in-cluster address; none skips the health check.
    pub health_url: Option<String>,
    #[serde(with = "humantime_serde")]
    pub health_timeout: Duration,
    pub p99_query: Option<String>,
    pub error_rate_query: Option<String>,
    pub request_rate_query: Option<String>,
    /// `$window` in the current queries (PromQL duration, at least 4 scrape intervals).
    pub rate_window: String,
    /// `$window` of the P99 baseline, evaluated when the faulty revision was rolled out.
    pub baseline_window: String,
    /// How often the checks run.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long recovery may take, from the end of verification.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub latency_tolerance: f64,
    pub max_error_rate: f64,
    pub min_request_rate: f64,
    pub consecutive_successes: u32,
    pub health_failure_limit: u32,
}

impl Default for Recovery {
    fn default() -> Self {
        let limits = crate::domain::recovery::Limits::default();
        Recovery {
            validation: None,
            health_url: None,
            health_timeout: Duration::from_secs(2),
            p99_query: None,
            error_rate_query: None,
            request_rate_query: None,
            rate_window: "1m".into(),
            baseline_window: "10m".into(),
            interval: Duration::from_secs(15),
            window: Duration::from_secs(300),
            latency_tolerance: limits.latency_tolerance,
            max_error_rate: limits.max_error_rate,
            min_request_rate: limits.min_request_rate,
            consecutive_successes: limits.consecutive_successes,
            health_failure_limit: limits.health_failure_limit,
        }
    }
}

impl Recovery {
    pub fn limits(&self) -> crate::domain::recovery::Limits {
        crate::domain::recovery::Limits {
            latency_tolerance: self.latency_tolerance,
            max_error_rate: self.max_error_rate,
            min_request_rate: self.min_request_rate,
            consecutive_successes: self.consecutive_successes,
            health_failure_limit: self.health_failure_limit,
        }
    }
}

/// Whether and against what a service's recovery is validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Validation<'a> {
    /// Not validated, and why (shown on the card).
    Skipped(String),
    On {
        prometheus_url: &'a str,
        prometheus_token_env: Option<&'a str>,
        settings: &'a Recovery,
    },
}

fn default_namespace() -> String {
    "production".into()
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub slack: Slack,
    pub timeouts: Timeouts,
    pub engine: Engine,
    pub retention: Retention,
    pub pagerduty: PagerDuty,
    pub deployer: Deployer,
    pub tickets: Tickets,
    pub clusters: BTreeMap<String, Cluster>,
    pub services: BTreeMap<String, Service>,
}

/// A service resolved against the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedService<'a> {
    pub name: &'a str,
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub deployment: &'a str,
    pub database_coupled: bool,
}

impl Config {
    /// Reads, overrides from the environment, and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let mut config = Config::parse(&text, &file)?;
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate(&file)?;
        Ok(config)
    }

    /// Parses TOML text; `file` names it in errors. Does not validate.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.into(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })
    }

    /// Environment overrides for what differs between deployments of the same file.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(listen) = var("ROLLBACK_BOT_LISTEN") {
            self.server.listen = listen.parse().map_err(|_| ConfigError::Env {
                name: "ROLLBACK_BOT_LISTEN".into(),
                expected: format!("an address like 0.0.0.0:8080, got {listen:?}"),
            })?;
        }
        if let Some(listen) = var("ROLLBACK_BOT_ADMIN_LISTEN") {
            self.server.admin_listen = listen.parse().map_err(|_| ConfigError::Env {
                name: "ROLLBACK_BOT_ADMIN_LISTEN".into(),
                expected: format!("an address like 0.0.0.0:9090, got {listen:?}"),
            })?;
        }
        if let Some(transport) = var("ROLLBACK_BOT_TRANSPORT") {
            self.server.transport = match transport.as_str() {
                "http" => Transport::Http,
                "socket_mode" => Transport::SocketMode,
                other => {
                    return Err(ConfigError::Env {
                        name: "ROLLBACK_BOT_TRANSPORT".into(),
                        expected: format!("http or socket_mode, got {other:?}"),
                    });
                }
            };
        }
        if let Some(url) = var("SLACK_API_URL") {
            self.server.slack_api_url = url;
        }
        Ok(())
    }

    /// Checks what the types alone cannot: references between sections, sane values.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, expected: String| ConfigError::Invalid {
            file: file.into(),
            key,
            expected,
        };
        if self.slack.incident_channels.is_empty() {
            return Err(invalid(
                "slack.incident_channels".into(),
                "at least one channel id like C0123ABCDEF".into(),
            ));
        }
        if let Some(bad) = self
            .slack
            .incident_channels
            .iter()
            .find(|c| !is_slack_id(c, &['C', 'G']))
        {
            return Err(invalid(
                "slack.incident_channels".into(),
                format!(
                    "channel ids like C0123ABCDEF (not names: a channel can be renamed and \
                     its name taken by another), got {bad:?}"
                ),
            ));
        }
        for (key, value, prefix, like) in [
            ("slack.team_id", &self.slack.team_id, 'T', "T0123ABCDEF"),
            ("slack.app_id", &self.slack.app_id, 'A', "A0123ABCDEF"),
        ] {
            if let Some(bad) = value.as_ref().filter(|v| !is_slack_id(v, &[prefix])) {
                return Err(invalid(
                    key.into(),
                    format!("an id like {like}, got {bad:?}"),
                ));
            }
        }
        if self.server.admin_listen == self.server.listen {
            return Err(invalid(
                "server.admin_listen".into(),
                format!(
                    "an address other than server.listen ({}): /readyz and /metrics stay off \
                     the Slack-facing listener",
                    self.server.listen
                ),
            ));
        }
        if self.slack.lead_user_ids.is_empty() && self.slack.lead_user_group.is_none() {
            return Err(invalid(
                "slack.lead_user_ids".into(),
                "at least one on-call lead: lead_user_ids or lead_user_group".into(),
            ));
        }
        for (key, value) in [
            ("slack.lead_user_ids", &self.slack.lead_user_ids),
            ("slack.dba_user_ids", &self.slack.dba_user_ids),
        ] {
            if let Some(bad) = value.iter().find(|id| !is_slack_user_id(id)) {
                return Err(invalid(
                    key.into(),
                    format!("Slack user ids like U012ABCDEF, got {bad:?}"),
                ));
            }
        }
        if !self.server.slack_api_url.starts_with("http://")
            && !self.server.slack_api_url.starts_with("https://")
        {
            return Err(invalid(
                "server.slack_api_url".into(),
                format!("an http(s) URL, got {:?}", self.server.slack_api_url),
            ));
        }
        for (key, value) in [
            ("timeouts.approval_expiry", self.timeouts.approval_expiry),
            ("timeouts.verification", self.timeouts.verification),
            (
                "timeouts.correlation_window",
                self.timeouts.correlation_window,
            ),
            ("engine.lease", self.engine.lease),
            (
                "timeouts.approval_max_age",
                self.timeouts.approval_max_age(),
            ),
            ("slack.notifier_lease", self.slack.notifier_lease),
        ] {
            if value.is_zero() {
                return Err(invalid(key.into(), "a positive duration like 90s".into()));
            }
        }
        if self.slack.notifier_concurrency == 0 {
            return Err(invalid(
                "slack.notifier_concurrency".into(),
                "at least 1".into(),
            ));
        }
        if self.engine.workers == 0 {
            return Err(invalid("engine.workers".into(), "at least 1".into()));
        }
        if self.engine.max_connections < 2 {
            return Err(invalid(
                "engine.max_connections".into(),
                "at least 2 (workers and Slack handlers share the pool)".into(),
            ));
        }
        let discovers = self
            .clusters
            .values()
            .any(|c| !c.discover_namespaces.is_empty());
        if self.services.is_empty() && !discovers {
            return Err(invalid(
                "services".into(),
                "at least one [services.<name>] table, or clusters.<name>.discover_namespaces"
                    .into(),
            ));
        }
        for (name, cluster) in &self.clusters {
            if let Some(bad) = cluster
                .discover_namespaces
                .iter()
                .find(|n| !is_dns_label(n))
            {
                return Err(invalid(
                    format!("clusters.{name}.discover_namespaces"),
                    format!("Kubernetes namespace names, got {bad:?}"),
                ));
            }
        }
        for (name, service) in &self.services {
            if !is_dns_label(name) {
                return Err(invalid(
                    format!("services.{name}"),
                    "a service name of lowercase letters, digits and '-'".into(),
                ));
            }
            if !self.clusters.contains_key(&service.cluster) {
                return Err(invalid(
                    format!("services.{name}.cluster"),
                    format!(
                        "one of the [clusters] ({}), got {:?}",
                        self.clusters.keys().cloned().collect::<Vec<_>>().join(", "),
                        service.cluster
                    ),
                ));
            }
            if !is_dns_label(&service.namespace) {
                return Err(invalid(
                    format!("services.{name}.namespace"),
                    format!("a Kubernetes namespace name, got {:?}", service.namespace),
                ));
            }
            if let Some(d) = &service.deployment
                && !is_dns_subdomain(d)
            {
                return Err(invalid(
                    format!("services.{name}.deployment"),
                    format!("a Kubernetes Deployment name, got {d:?}"),
                ));
            }
            self.validate_recovery(name, service, &invalid)?;
            // A sign-off nobody may give would leave every request of the service stuck.
            if service.database_coupled && !self.has_dba() {
                return Err(invalid(
                    format!("services.{name}.database_coupled"),
                    "needs a DBA: set slack.dba_user_ids or slack.dba_user_group".into(),
                ));
            }
        }
        if let Some(bad) = self
            .slack
            .escalation_user_group
            .as_ref()
            .filter(|g| !is_slack_id(g, &['S']))
        {
            return Err(invalid(
                "slack.escalation_user_group".into(),
                format!("a user group id like S0123ABCDEF, got {bad:?}"),
            ));
        }
        if !self.pagerduty.events_url.starts_with("http://")
            && !self.pagerduty.events_url.starts_with("https://")
        {
            return Err(invalid(
                "pagerduty.events_url".into(),
                format!("an http(s) URL, got {:?}", self.pagerduty.events_url),
            ));
        }
        if !["critical", "error", "warning", "info"].contains(&self.pagerduty.severity.as_str()) {
            return Err(invalid(
                "pagerduty.severity".into(),
                format!(
                    "critical, error, warning or info, got {:?}",
                    self.pagerduty.severity
                ),
            ));
        }
        self.validate_post_rollback(file)?;
        if self.retention.plan_days == 0 {
            return Err(invalid(
                "retention.plan_days".into(),
                "at least 1 (days a finished rollback keeps its full plan)".into(),
            ));
        }
        Ok(())
    }

    /// `[deployer]` and `[tickets]`.
    fn validate_post_rollback(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, expected: String| ConfigError::Invalid {
            file: file.into(),
            key,
            expected,
        };
        let annotation = &self.deployer.annotation;
        let name = annotation.rsplit('/').next().unwrap_or("");
        if annotation.is_empty()
            || name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                "deployer.annotation".into(),
                format!("an annotation key like {DEPLOYED_BY_ANNOTATION}, got {annotation:?}"),
            ));
        }
        let groups = self
            .deployer
            .owner_user_groups
            .iter()
            .map(|(service, g)| (format!("deployer.owner_user_groups.{service}"), g))
            .chain(
                self.deployer
                    .fallback_user_group
                    .iter()
                    .map(|g| ("deployer.fallback_user_group".to_owned(), g)),
            );
        for (key, group) in groups {
            if !is_slack_id(group, &['S']) {
                return Err(invalid(
                    key,
                    format!("a user group id like S0123ABCDEF, got {group:?}"),
                ));
            }
        }
        let t = &self.tickets;
        let required = |key: &str, value: &Option<String>| match value {
            Some(v) if !v.trim().is_empty() => Ok(()),
            _ => Err(invalid(
                format!("tickets.{key}"),
                format!("required with tickets.tracker = \"{:?}\"", t.tracker).to_lowercase(),
            )),
        };
        let url = |key: &str, value: &str| {
            if value.starts_with("http://") || value.starts_with("https://") {
                Ok(())
            } else {
                Err(invalid(
                    format!("tickets.{key}"),
                    format!("an http(s) URL, got {value:?}"),
                ))
            }
        };
        if let Some(bad) = t
            .labels
            .iter()
            .find(|l| l.is_empty() || l.contains(char::is_whitespace) || l.contains(','))
        {
            return Err(invalid(
                "tickets.labels".into(),
                format!("labels without spaces or commas, got {bad:?}"),
            ));
        }
        match t.tracker {
            TrackerKind::None => {}
            TrackerKind::Jira => {
                required("jira_url", &t.jira_url)?;
                url("jira_url", t.jira_url.as_deref().unwrap_or(""))?;
                required("jira_project", &t.jira_project)?;
                required("jira_email", &t.jira_email)?;
                if t.jira_issue_type.trim().is_empty() {
                    return Err(invalid(
                        "tickets.jira_issue_type".into(),
                        "an issue type name like Bug".into(),
                    ));
                }
            }
            TrackerKind::Github => {
                url("github_api_url", &t.github_api_url)?;
                required("github_repository", &t.github_repository)?;
                let repo = t.github_repository.as_deref().unwrap_or("");
                let parts: Vec<&str> = repo.split('/').collect();
                if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                    return Err(invalid(
                        "tickets.github_repository".into(),
                        format!("owner/repo, got {repo:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_recovery(
        &self,
        name: &str,
        service: &Service,
        invalid: &dyn Fn(String, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let r = &service.recovery;
        let key = |k: &str| format!("services.{name}.recovery.{k}");
        let cluster = self.clusters.get(&service.cluster);
        if r.validation == Some(true) && cluster.and_then(|c| c.prometheus_url.as_ref()).is_none() {
            return Err(invalid(
                key("validation"),
                format!(
                    "needs clusters.{}.prometheus_url (or set validation = false)",
                    service.cluster
                ),
            ));
        }
        if let Some(url) = &r.health_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                key("health_url"),
                format!("an http:// or https:// URL, got {url:?}"),
            ));
        }
        for (k, window) in [
            ("rate_window", &r.rate_window),
            ("baseline_window", &r.baseline_window),
        ] {
            if !is_promql_duration(window) {
                return Err(invalid(
                    key(k),
                    format!("a PromQL duration like 1m or 30s, got {window:?}"),
                ));
            }
        }
        if r.interval.is_zero() || r.window < r.interval {
            return Err(invalid(
                key("window"),
                "at least one interval (and interval > 0)".into(),
            ));
        }
        if !(r.latency_tolerance.is_finite() && r.latency_tolerance >= 1.0) {
            return Err(invalid(
                key("latency_tolerance"),
                format!("a factor ≥ 1 like 1.2, got {}", r.latency_tolerance),
            ));
        }
        if !(r.max_error_rate > 0.0 && r.max_error_rate <= 1.0) {
            return Err(invalid(
                key("max_error_rate"),
                format!("a ratio in (0, 1] like 0.001, got {}", r.max_error_rate),
            ));
        }
        if !(r.min_request_rate.is_finite() && r.min_request_rate > 0.0) {
            return Err(invalid(
                key("min_request_rate"),
                format!("requests per second > 0, got {}", r.min_request_rate),
            ));
        }
        if r.consecutive_successes == 0 || r.health_failure_limit == 0 {
            return Err(invalid(
                key("consecutive_successes"),
                "consecutive_successes and health_failure_limit must be at least 1".into(),
            ));
        }
        if let Some(c) = cluster
            && let Some(url) = &c.prometheus_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                format!("clusters.{}.prometheus_url", service.cluster),
                format!("an http:// or https:// URL, got {url:?}"),
            ));
        }
        Ok(())
    }

    /// Whether anyone can give a DBA sign-off.
    pub fn has_dba(&self) -> bool {
        !self.slack.dba_user_ids.is_empty() || self.slack.dba_user_group.is_some()
    }

    /// The configured service called `name`.
    pub fn service(&self, name: &str) -> Option<ResolvedService<'_>> {
        let (name, s) = self.services.get_key_value(name)?;
        Some(ResolvedService {
            name,
            cluster: &s.cluster,
            namespace: &s.namespace,
            deployment: s.deployment.as_deref().unwrap_or(name),
            database_coupled: s.database_coupled,
        })
    }

    /// Whether and how the recovery of `service` is validated.
    pub fn validation(&self, service: &str) -> Validation<'_> {
        let Some(s) = self.services.get(service) else {
            return Validation::Skipped(format!("service {service} is not configured"));
        };
        if s.recovery.validation == Some(false) {
            return Validation::Skipped(
                "turned off for this service (recovery.validation = false)".into(),
            );
        }
        let cluster = self.clusters.get(&s.cluster);
        match cluster.and_then(|c| c.prometheus_url.as_deref()) {
            Some(url) => Validation::On {
                prometheus_url: url,
                prometheus_token_env: cluster.and_then(|c| c.prometheus_token_env.as_deref()),
                settings: &s.recovery,
            },
            None => Validation::Skipped(format!(
                "no Prometheus configured for cluster {} (clusters.{}.prometheus_url)",
                s.cluster, s.cluster
            )),
        }
    }

    /// Whether `/rollback` may be used in this channel. By id only: a name can be renamed.
    pub fn is_incident_channel(&self, channel_id: &str) -> bool {
        self.slack.incident_channels.iter().any(|c| c == channel_id)
    }
}

/// A PromQL duration such as `30s`, `1m`, `1h30m`.
fn is_promql_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// A Slack id starting with one of `prefixes`, e.g. a channel `C0123ABCDEF`.
fn is_slack_id(id: &str, prefixes: &[char]) -> bool {
    id.len() >= 9
        && id.starts_with(prefixes)
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn is_slack_user_id(id: &str) -> bool {
    id.len() >= 9
        && (id.starts_with('U') || id.starts_with('W'))
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// RFC 1123 label: what Kubernetes accepts as a namespace name.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: what Kubernetes accepts as a Deployment name.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [slack]
        incident_channels = ["C0INCIDENT1"]
        lead_user_ids = ["U0LEAD0001"]
        [clusters.local]
        [services.checkout-api]
        cluster = "local"
    "#;

    fn invalid_key(text: &str) -> String {
        let config = Config::parse(text, "test.toml").unwrap();
        match config.validate("test.toml").unwrap_err() {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn minimal_config_gets_the_runbook_defaults() {
        let config = Config::parse(MINIMAL, "test.toml").unwrap();
        config.validate("test.toml").unwrap();
        assert_eq!(config.timeouts.approval_expiry, Duration::from_secs(900));
        assert_eq!(config.timeouts.verification, Duration::from_secs(120));
        assert_eq!(
            config.timeouts.correlation_window,
            Duration::from_secs(3600)
        );
        assert_eq!(config.slack.incident_channels, vec!["C0INCIDENT1"]);
        assert_eq!(config.server.admin_listen.port(), 9090);
        assert_eq!(
            (&config.slack.team_id, &config.slack.app_id),
            (&None, &None)
        );
        let service = config.service("checkout-api").unwrap();
        assert_eq!(
            (service.cluster, service.namespace, service.deployment),
            ("local", "production", "checkout-api")
        );
        assert!(config.service("nope").is_none());
        assert!(config.is_incident_channel("C0INCIDENT1"));
        assert!(!config.is_incident_channel("C0RANDOM001"));
    }

    #[test]
    fn validation_is_off_without_prometheus_and_on_with_it() {
        let config = Config::parse(MINIMAL, "test.toml").unwrap();
        assert!(matches!(
            config.validation("checkout-api"),
            Validation::Skipped(reason) if reason.contains("clusters.local.prometheus_url")
        ));
        let with = MINIMAL.replace(
            "[clusters.local]",
            "[clusters.local]\nprometheus_url = \"http://prom:9090\"",
        );
        let config = Config::parse(&with, "test.toml").unwrap();
        config.validate("test.toml").unwrap();
        let Validation::On {
            prometheus_url,
            settings,
            ..
        } = config.validation("checkout-api")
        else {
            panic!("validation should be on");
        };
        assert_eq!(prometheus_url, "http://prom:9090");
        assert_eq!(settings.interval, Duration::from_secs(15));
        assert_eq!(settings.window, Duration::from_secs(300));
        assert_eq!(
            settings.limits(),
            crate::domain::recovery::Limits::default()
        );
        let off = format!("{with}\n[services.checkout-api.recovery]\nvalidation = false");
        let config = Config::parse(&off, "test.toml").unwrap();
        assert!(matches!(
            config.validation("checkout-api"),
            Validation::Skipped(reason) if reason.contains("validation = false")
        ));
    }

    #[test]
    fn bad_recovery_settings_are_named() {
        let with = MINIMAL.replace(
            "[clusters.local]",
            "[clusters.local]\nprometheus_url = \"http://prom:9090\"",
        );
        for (setting, key) in [
            ("validation = true", None),
            (
                "health_url = \"prom:9090/health\"",
                Some("services.checkout-api.recovery.health_url"),
            ),
            (
                "rate_window = \"1 minute\"",
                Some("services.checkout-api.recovery.rate_window"),
            ),
            (
                "baseline_window = \"\"",
                Some("services.checkout-api.recovery.baseline_window"),
            ),
            (
                "interval = \"10s\"\nwindow = \"5s\"",
                Some("services.checkout-api.recovery.window"),
            ),
            (
                "latency_tolerance = 0.5",
                Some("services.checkout-api.recovery.latency_tolerance"),
            ),
            (
                "max_error_rate = 0.0",
                Some("services.checkout-api.recovery.max_error_rate"),
            ),
            (
                "min_request_rate = 0.0",
                Some("services.checkout-api.recovery.min_request_rate"),
            ),
            (
                "consecutive_successes = 0",
                Some("services.checkout-api.recovery.consecutive_successes"),
            ),
        ] {
            let text = format!("{with}\n[services.checkout-api.recovery]\n{setting}");
            match key {
                Some(key) => assert_eq!(invalid_key(&text), key, "{setting}"),
                None => Config::parse(&text, "t").unwrap().validate("t").unwrap(),
            }
        }
        // Asking for validation without a Prometheus is refused.
        let text = format!("{MINIMAL}\n[services.checkout-api.recovery]\nvalidation = true");
        assert_eq!(
            invalid_key(&text),
            "services.checkout-api.recovery.validation"
        );
        let text = MINIMAL.replace(
            "[clusters.local]",
            "[clusters.local]\nprometheus_url = \"prom:9090\"",
        );
        assert_eq!(invalid_key(&text), "clusters.local.prometheus_url");
        assert!(
            is_promql_duration("1h30m") && is_promql_duration("500ms") && !is_promql_duration("m")
        );
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../config/rollback-bot.example.toml");
        let config = Config::parse(text, "example").unwrap();
        config.validate("example").unwrap();
        assert!(config.services.len() >= 2);
    }

    #[test]
    fn argocd_keys_default_to_detection_and_are_read() {
        let config = Config::parse(MINIMAL, "test.toml").unwrap();
        assert_eq!(config.clusters["local"].argocd_namespace, None);
        assert_eq!(config.services["checkout-api"].argocd_application, None);
        let text = MINIMAL.replace(
            "[clusters.local]",
            "[clusters.local]\nargocd_namespace = \"gitops\"",
        ) + "argocd_application = \"checkout\"\n";
        let config = Config::parse(&text, "test.toml").unwrap();
        config.validate("test.toml").unwrap();
        assert_eq!(
            config.clusters["local"].argocd_namespace.as_deref(),
            Some("gitops")
        );
        assert_eq!(
            config.services["checkout-api"]
                .argocd_application
                .as_deref(),
            Some("checkout")
        );
    }

    #[test]
    fn the_kubernetes_configmap_config_is_valid() {
        let manifest = include_str!("../../config/kubernetes/base/configmap.yaml");
        let (_, block) = manifest
            .split_once("rollback-bot.toml: |\n")
            .expect("the configmap embeds rollback-bot.toml");
        let text: String = block
            .lines()
            .map(|l| l.strip_prefix("    ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&text, "configmap").unwrap();
        config.validate("configmap").unwrap();
        assert!(config.services.values().any(|s| s.database_coupled));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[slack]\nlead_users = []\n", "test.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("test.toml: "), "{text}");
        assert!(text.contains("lead_users"), "{text}");
    }

    #[test]
    fn bad_durations_are_named() {
        let err = Config::parse("[timeouts]\nverification = \"soon\"\n", "t.toml").unwrap_err();
        assert!(err.to_string().contains("verification"), "{err}");
    }

    #[test]
    fn references_and_values_are_validated() {
        assert_eq!(
            invalid_key(&MINIMAL.replace("cluster = \"local\"", "cluster = \"prod\"")),
            "services.checkout-api.cluster"
        );
        assert_eq!(
            invalid_key(&MINIMAL.replace("\"U0LEAD0001\"", "\"alice\"")),
            "slack.lead_user_ids"
        );
        assert_eq!(
            invalid_key(&format!(
                "{MINIMAL}\n[services.Bad_Name]\ncluster = \"local\"\n"
            )),
            "services.Bad_Name"
        );
        assert_eq!(
            invalid_key(&format!("{MINIMAL}\nnamespace = \"Prod\"\n")),
            "services.checkout-api.namespace"
        );
        assert_eq!(
            invalid_key(&format!("[timeouts]\nverification = \"0s\"\n{MINIMAL}")),
            "timeouts.verification"
        );
        assert_eq!(
            invalid_key(&MINIMAL.replace("lead_user_ids = [\"U0LEAD0001\"]", "")),
            "slack.lead_user_ids"
        );
    }

    #[test]
    fn incident_channels_workspace_and_app_are_ids() {
        let channels = |list: &str| {
            MINIMAL.replace(
                "incident_channels = [\"C0INCIDENT1\"]",
                &format!("incident_channels = {list}"),
            )
        };
        assert_eq!(
            invalid_key(&channels("[\"incident-response\"]")),
            "slack.incident_channels"
        );
        assert_eq!(
            invalid_key(&channels("[\"#incident-response\"]")),
            "slack.incident_channels"
        );
        assert_eq!(invalid_key(&channels("[]")), "slack.incident_channels");
        let private = Config::parse(&channels("[\"G0PRIVATE01\"]"), "t").unwrap();
        private.validate("t").unwrap();
        assert_eq!(
            invalid_key(&MINIMAL.replace("[slack]", "[slack]\nteam_id = \"example\"")),
            "slack.team_id"
        );
        assert_eq!(
            invalid_key(&MINIMAL.replace("[slack]", "[slack]\napp_id = \"T0001ABCDEF\"")),
            "slack.app_id"
        );
        let pinned = MINIMAL.replace(
            "[slack]",
            "[slack]\nteam_id = \"T0001ABCDEF\"\napp_id = \"A0ROLLBACK1\"",
        );
        Config::parse(&pinned, "t").unwrap().validate("t").unwrap();
        let same = format!(
            "[server]\nlisten = \"0.0.0.0:9090\"\nadmin_listen = \"0.0.0.0:9090\"\n{MINIMAL}"
        );
        assert_eq!(invalid_key(&same), "server.admin_listen");
    }

    #[test]
    fn escalation_keys_are_checked() {
        let config = Config::parse(MINIMAL, "t").unwrap();
        assert_eq!(
            config.pagerduty.events_url,
            crate::clients::pagerduty::EVENTS_URL
        );
        assert_eq!(config.pagerduty.severity, "critical");
        assert_eq!(
            invalid_key(&MINIMAL.replace(
                "[slack]",
                "[slack]\nescalation_user_group = \"platform-team\""
            )),
            "slack.escalation_user_group"
        );
        let paging = |table: &str| format!("[pagerduty]\n{table}\n{MINIMAL}");
        assert_eq!(
            invalid_key(&paging("events_url = \"events.pagerduty.com\"")),
            "pagerduty.events_url"
        );
        assert_eq!(
            invalid_key(&paging("severity = \"sev1\"")),
            "pagerduty.severity"
        );
        let good = paging("events_url = \"http://127.0.0.1:1/v2/enqueue\"\nseverity = \"error\"")
            .replace("[slack]", "[slack]\nescalation_user_group = \"S0PLATFORM\"");
        Config::parse(&good, "t").unwrap().validate("t").unwrap();
    }

    #[test]
    fn post_rollback_keys_are_checked() {
        let config = Config::parse(MINIMAL, "t").unwrap();
        assert_eq!(config.deployer.annotation, DEPLOYED_BY_ANNOTATION);
        assert_eq!(config.tickets.tracker, TrackerKind::None);
        let with = |table: &str| format!("{table}\n{MINIMAL}");
        assert_eq!(
            invalid_key(&with("[deployer]\nannotation = \"who deployed\"")),
            "deployer.annotation"
        );
        assert_eq!(
            invalid_key(&with("[deployer]\nfallback_user_group = \"web-team\"")),
            "deployer.fallback_user_group"
        );
        assert_eq!(
            invalid_key(&with("[deployer.owner_user_groups]\nweb = \"x\"")),
            "deployer.owner_user_groups.web"
        );
        assert_eq!(
            invalid_key(&with(
                "[tickets]\ntracker = \"jira\"\njira_project = \"OPS\""
            )),
            "tickets.jira_url"
        );
        assert_eq!(
            invalid_key(&with(
                "[tickets]\ntracker = \"jira\"\njira_url = \"https://x.atlassian.net\"\njira_project = \"OPS\""
            )),
            "tickets.jira_email"
        );
        assert_eq!(
            invalid_key(&with(
                "[tickets]\ntracker = \"github\"\ngithub_repository = \"ops\""
            )),
            "tickets.github_repository"
        );
        assert_eq!(
            invalid_key(&with("[tickets]\nlabels = [\"post incident\"]")),
            "tickets.labels"
        );
        let good = with(
            "[deployer]\nfallback_user_group = \"S0WEBTEAM1\"\n[deployer.owner_user_groups]\n\
             checkout-api = \"S0CHECKOUT\"\n[tickets]\ntracker = \"github\"\n\
             github_repository = \"acme/ops\"",
        );
        let config = Config::parse(&good, "t").unwrap();
        config.validate("t").unwrap();
        assert_eq!(
            config.deployer.fallback_for("checkout-api"),
            Some("S0CHECKOUT")
        );
        assert_eq!(config.deployer.fallback_for("web"), Some("S0WEBTEAM1"));
    }

    #[test]
    fn a_database_coupled_service_needs_a_dba() {
        let coupled = format!("{MINIMAL}database_coupled = true\n");
        let config = Config::parse(&coupled, "test.toml").unwrap();
        assert_eq!(
            config.validate("test.toml").unwrap_err().to_string(),
            "test.toml: services.checkout-api.database_coupled: needs a DBA: \
             set slack.dba_user_ids or slack.dba_user_group"
        );
        for dba in [
            "dba_user_ids = [\"U0DBA00001\"]",
            "dba_user_group = \"S0DBAGROUP\"",
        ] {
            let text = coupled.replace("[slack]", &format!("[slack]\n{dba}"));
            let config = Config::parse(&text, "test.toml").unwrap();
            config.validate("test.toml").unwrap();
            assert!(config.has_dba());
        }
    }

    #[test]
    fn discovery_namespaces_are_checked_and_replace_services() {
        assert!(
            Config::parse(MINIMAL, "t").unwrap().clusters["local"]
                .discover_namespaces
                .is_empty()
        );
        let discovering = MINIMAL
            .replace("[services.checkout-api]\n        cluster = \"local\"", "")
            .replace(
                "[clusters.local]",
                "[clusters.local]\ndiscover_namespaces = [\"apps\"]",
            );
        let config = Config::parse(&discovering, "t").unwrap();
        config.validate("t").unwrap();
        assert!(config.services.is_empty());
        assert_eq!(
            invalid_key(&discovering.replace("\"apps\"", "\"Apps\"")),
            "clusters.local.discover_namespaces"
        );
        assert_eq!(
            invalid_key(&discovering.replace("discover_namespaces = [\"apps\"]", "")),
            "services"
        );
    }

    #[test]
    fn plans_are_kept_30_days_unless_configured() {
        let config = Config::parse(MINIMAL, "t").unwrap();
        assert_eq!(config.retention.plan_days, 30);
        let text = format!("[retention]\nplan_days = 7\n{MINIMAL}");
        assert_eq!(Config::parse(&text, "t").unwrap().retention.plan_days, 7);
        assert_eq!(
            invalid_key(&format!("[retention]\nplan_days = 0\n{MINIMAL}")),
            "retention.plan_days"
        );
    }

    #[test]
    fn environment_overrides_apply_and_are_checked() {
        let mut config = Config::parse(MINIMAL, "t").unwrap();
        let env = |name: &str| match name {
            "ROLLBACK_BOT_LISTEN" => Some("127.0.0.1:9999".to_string()),
            "ROLLBACK_BOT_ADMIN_LISTEN" => Some("127.0.0.1:9998".to_string()),
            "ROLLBACK_BOT_TRANSPORT" => Some("socket_mode".to_string()),
            "SLACK_API_URL" => Some("http://127.0.0.1:1/api/".to_string()),
            _ => None,
        };
        config.apply_env(env).unwrap();
        assert_eq!(config.server.listen.port(), 9999);
        assert_eq!(config.server.admin_listen.port(), 9998);
        assert_eq!(config.server.transport, Transport::SocketMode);
        assert_eq!(config.server.slack_api_url, "http://127.0.0.1:1/api/");
        let bad = |name: &str| (name == "ROLLBACK_BOT_TRANSPORT").then(|| "carrier-pigeon".into());
        let err = config.apply_env(bad).unwrap_err().to_string();
        assert!(err.contains("ROLLBACK_BOT_TRANSPORT"), "{err}");
    }

    #[test]
    fn secrets_never_print_their_values() {
        let secrets = Secrets {
            slack_signing_secret: Some("s3cr3t".into()),
            slack_bot_token: Some("xoxb-123".into()),
            slack_app_token: None,
            database_url: Some("postgres://u:pw@h/db".into()),
            pagerduty_routing_key: Some("R0UTINGKEY".into()),
            lock_api_token: Some("l0ckt0ken".into()),
            jira_api_token: Some("j1ratoken".into()),
            github_token: Some("ghp_t0ken".into()),
        };
        let shown = format!("{secrets:?}");
        assert!(!shown.contains("j1ratoken") && !shown.contains("ghp_t0ken"));
        assert!(!shown.contains("s3cr3t") && !shown.contains("xoxb") && !shown.contains("pw"));
        assert!(!shown.contains("R0UTINGKEY") && !shown.contains("l0ckt0ken"));
        assert!(shown.contains("<set>") && shown.contains("<unset>"));
    }
}
