//! The configuration's types, one per table of the file, with their defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// The ValidatingAdmissionPolicy that enforces the deploy lock in this cluster (installed
    /// from config/kubernetes/base/deploy-lock.yaml, renamed when several bots share a
    /// cluster); none = `rollback-bot-deploy-lock`. The card says "locked" only when it and a
    /// denying binding are in place.
    pub lock_policy: Option<String>,
}

impl Cluster {
    /// The name of the lock's admission policy in this cluster.
    pub fn lock_policy(&self) -> &str {
        self.lock_policy
            .as_deref()
            .unwrap_or(crate::domain::lock::POLICY_NAME)
    }
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
    /// An absolute P99 bound (an SLO) that stands in when there is no baseline (a new
    /// service, a fresh Prometheus, short retention). Default: none (no baseline is
    /// inconclusive).
    #[serde(with = "humantime_serde")]
    pub p99_ceiling: Option<Duration>,
    /// The labels (templates like the queries') an alert in Prometheus must carry to be the
    /// service's: one firing since the faulty rollout started fails validation.
    pub alert_labels: std::collections::BTreeMap<String, String>,
}

/// The recovery settings of a service that has no `[services]` entry (found by annotation).
fn default_recovery() -> &'static Recovery {
    static DEFAULT: std::sync::LazyLock<Recovery> = std::sync::LazyLock::new(Recovery::default);
    &DEFAULT
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
            p99_ceiling: None,
            alert_labels: [("service", "$service"), ("namespace", "$namespace")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
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
            p99_ceiling: self.p99_ceiling.map(|c| c.as_secs_f64()),
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
    /// Who may approve a request (and give the DBA sign-off when it needs one).
    pub fn approvers(&self, needs_dba: bool) -> crate::domain::results::Approvers {
        let slack = &self.slack;
        crate::domain::results::Approvers {
            lead_ids: slack.lead_user_ids.clone(),
            lead_group: slack.lead_user_group.clone(),
            dba_ids: if needs_dba {
                slack.dba_user_ids.clone()
            } else {
                vec![]
            },
            dba_group: slack.dba_user_group.clone().filter(|_| needs_dba),
        }
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

    /// Whether and how the recovery of `service`, a Deployment in `cluster`, is validated. A
    /// service found by its annotation (not in `[services]`) is validated like any other:
    /// with its cluster's Prometheus and the default queries and limits.
    pub fn validation(&self, service: &str, cluster: &str) -> Validation<'_> {
        let (cluster, settings) = match self.services.get(service) {
            Some(s) => (s.cluster.as_str(), &s.recovery),
            None => (cluster, default_recovery()),
        };
        if settings.validation == Some(false) {
            return Validation::Skipped(
                "turned off for this service (recovery.validation = false)".into(),
            );
        }
        let found = self.clusters.get(cluster);
        match found.and_then(|c| c.prometheus_url.as_deref()) {
            Some(url) => Validation::On {
                prometheus_url: url,
                prometheus_token_env: found.and_then(|c| c.prometheus_token_env.as_deref()),
                settings,
            },
            None => Validation::Skipped(format!(
                "no Prometheus configured for cluster {cluster} (set clusters.{cluster}.prometheus_url)"
            )),
        }
    }

    /// Whether `/rollback` may be used in this channel. By id only: a name can be renamed.
    pub fn is_incident_channel(&self, channel_id: &str) -> bool {
        self.slack.incident_channels.iter().any(|c| c == channel_id)
    }
}
