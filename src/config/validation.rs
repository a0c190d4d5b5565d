//! Loading the configuration: parsing, the environment overrides, and the validation that
//! names the file, the key and what was expected.

use std::path::Path;

use super::*;

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
        if r.alert_labels.is_empty() {
            return Err(invalid(
                key("alert_labels"),
                "at least one label, like { service = \"$service\" } (an empty set would \
                 match every alert in Prometheus)"
                    .into(),
            ));
        }
        if r.p99_ceiling.is_some_and(|c| c.is_zero()) {
            return Err(invalid(
                key("p99_ceiling"),
                "a latency > 0 like \"800ms\" (the P99 SLO)".into(),
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
}

/// A PromQL duration such as `30s`, `1m`, `1h30m`.
pub(super) fn is_promql_duration(s: &str) -> bool {
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
pub(super) fn is_slack_id(id: &str, prefixes: &[char]) -> bool {
    id.len() >= 9
        && id.starts_with(prefixes)
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

pub(super) fn is_slack_user_id(id: &str) -> bool {
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
