//! Configuration: the TOML file (documented key by key in `config/rollback-bot.example.toml`),
//! a few environment overrides, and the secrets, which come only from the environment.
//!
//! Loading validates everything at start-up; an error names the file, the key and what was
//! expected, so a bad deploy fails before it can act on anything.
//!
//! - [`types`]: the tables and their defaults (re-exported here).
//! - [`validation`]: loading, environment overrides, validation.
//! - [`secrets`]: the secrets, [`Secrets`], from the environment only.

mod secrets;
mod types;
mod validation;

pub use secrets::Secrets;
pub use types::*;
pub use validation::{is_dns_label, is_dns_subdomain};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::validation::*;
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
            config.validation("checkout-api", "local"),
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
        } = config.validation("checkout-api", "local")
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
        // A service found by its annotation: the cluster's Prometheus, the default settings.
        let Validation::On {
            prometheus_url,
            settings: discovered,
            ..
        } = config.validation("discovered-api", "local")
        else {
            panic!("a discovered service is validated too");
        };
        assert_eq!(prometheus_url, "http://prom:9090");
        assert_eq!(discovered, &crate::config::Recovery::default());
        assert!(matches!(
            config.validation("discovered-api", "elsewhere"),
            Validation::Skipped(reason) if reason.contains("clusters.elsewhere.prometheus_url")
        ));
        let off = format!("{with}\n[services.checkout-api.recovery]\nvalidation = false");
        let config = Config::parse(&off, "test.toml").unwrap();
        assert!(matches!(
            config.validation("checkout-api", "local"),
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
                "p99_ceiling = \"0s\"",
                Some("services.checkout-api.recovery.p99_ceiling"),
            ),
            (
                "alert_labels = {}",
                Some("services.checkout-api.recovery.alert_labels"),
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
