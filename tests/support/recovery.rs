//! The bot wired for recovery validation end to end: a real (kwok) control plane, the test
//! environment's real Prometheus scraping the service simulator (whose behaviour follows the
//! Deployment's image tag), and the bot (handlers, engine with the Kubernetes steps, notifier)
//! talking to the Slack stand-in.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::Duration;

use super::cluster::TestCluster;
use super::in_process::{self, InProcessBot};
use super::simulator::{self, Simulator};
use super::slack_standin::SlackStandIn;
use super::slack_standin::requests::button_value;
use rollback_bot::config::Config;
use rollback_bot::db::rollbacks::Rollback;
use rollback_bot::domain::State;
use rollback_bot::slack::actions;
use serde_json::Value;
use slack_sandbox::files::SharedFile;
use sqlx::PgPool;

pub const SECRET: &str = "recovery-signing-secret";
pub const TOKEN: &str = "xoxb-recovery";
pub const CHANNEL: &str = "C0INCIDENT2";
pub const REQUESTER: &str = "U0REQUEST02";
pub const LEAD: &str = "U0LEAD00002";
pub const APP: &str = "web";
pub const WAIT: Duration = Duration::from_secs(90);

/// The bot, its Slack stand-in, and a service `web` whose simulator Prometheus scrapes.
pub struct World {
    pub bot: InProcessBot,
    pub namespace: String,
    /// Runs, and is scraped, as long as the world lives.
    _simulator: Simulator,
}

impl std::ops::Deref for World {
    type Target = InProcessBot;
    fn deref(&self) -> &InProcessBot {
        &self.bot
    }
}

/// How the service came to be degraded before a test rolls it back.
#[derive(Debug, Default, Clone, Copy)]
pub struct History<'a> {
    /// Tags rolled out in order (revisions 1, 2, …), each recorded by Prometheus for a
    /// baseline window before the next; the last one is the faulty one.
    pub tags: &'a [&'a str],
    /// The simulator, and so Prometheus, starts only after the last rollout: nothing was
    /// recorded before it, as for a new service or a fresh Prometheus.
    pub unrecorded: bool,
    /// More options for the service simulator.
    pub simulator: &'a [&'a str],
    /// `spec.minReadySeconds` for the last rollout, so that it takes that long per pod.
    pub min_ready_seconds: Option<i32>,
    /// The namespace's prefix (default `recovery`); the test Prometheus has alerting rules
    /// for `alerting` (scripts/prometheus.sh).
    pub namespace_prefix: Option<&'a str>,
}

/// Deploys `good` (revision 1), lets Prometheus record it for a baseline window, then rolls
/// `bad` out (revision 2). `recovery` is the service's `[recovery]` table (after the
/// test-speed settings).
pub async fn world(pool: PgPool, good: &str, bad: &str, recovery: &str) -> World {
    let history = History {
        tags: &[good, bad],
        ..History::default()
    };
    world_after(pool, history, recovery).await
}

/// Like [`world`], after `history`.
pub async fn world_after(pool: PgPool, history: History<'_>, recovery: &str) -> World {
    let (cluster, namespace, simulator) = degraded(history).await;
    let services = format!(
        r#"
        [services.{APP}]
        cluster = "local"
        namespace = "{namespace}"
        [services.{APP}.recovery]
        health_url = "{health}"
        interval = "1s"
        rate_window = "5s"
        baseline_window = "5s"
        min_request_rate = 1.0
        {recovery}
        "#,
        health = simulator.health_url(),
    );
    start(pool, cluster, namespace, simulator, "", &services).await
}

/// Like [`world`], but the service has no `[services]` entry: the bot finds it by the
/// Deployment's `rollback-bot.io/service` annotation, in a namespace it watches, and
/// validates it with the cluster's Prometheus and the default settings.
pub async fn world_discovered(pool: PgPool, good: &str, bad: &str) -> World {
    let history = History {
        tags: &[good, bad],
        ..History::default()
    };
    let (cluster, namespace, simulator) = degraded(history).await;
    cluster
        .kubectl_ok(&[
            "-n",
            &namespace,
            "annotate",
            &format!("deployment/{APP}"),
            &format!("rollback-bot.io/service={APP}"),
        ])
        .await;
    let discover = format!(r#"discover_namespaces = ["{namespace}"]"#);
    start(pool, cluster, namespace, simulator, &discover, "").await
}

/// The Deployment through `history`, with its simulator scraped by Prometheus.
async fn degraded(history: History<'_>) -> (TestCluster, String, Simulator) {
    let cluster = TestCluster::connect().await;
    let namespace = cluster
        .namespace(history.namespace_prefix.unwrap_or("recovery"))
        .await;
    let (recorded, rest) = if history.unrecorded {
        (history.tags, &[][..])
    } else {
        history.tags.split_at(1)
    };
    cluster.fixture(&namespace, APP, recorded).await;
    let simulator = Simulator::start_with(&namespace, APP, history.simulator);
    simulator::wait_for_value(
        "the simulator scraped",
        &format!(r#"count(http_requests_total{{namespace="{namespace}"}})"#),
        Duration::from_secs(30),
        |n| n >= 1.0,
    )
    .await;
    for (i, tag) in rest.iter().enumerate() {
        // A whole baseline window (5 s) of the revision before recorded.
        tokio::time::sleep(Duration::from_secs(7)).await;
        if i + 1 == rest.len()
            && let Some(seconds) = history.min_ready_seconds
        {
            let patch = format!(r#"{{"spec":{{"minReadySeconds":{seconds}}}}}"#);
            let deployment = format!("deployment/{APP}");
            cluster
                .kubectl_ok(&["-n", &namespace, "patch", &deployment, "-p", &patch])
                .await;
        }
        cluster.set_image(&namespace, APP, tag).await;
        cluster.wait_rollout(&namespace, APP).await;
    }
    (cluster, namespace, simulator)
}

/// The bot for the cluster `local` (its Prometheus, and `cluster` added to its table) and
/// `services`.
async fn start(
    pool: PgPool,
    cluster: TestCluster,
    namespace: String,
    simulator: Simulator,
    cluster_config: &str,
    services: &str,
) -> World {
    let slack = SlackStandIn::start(TOKEN).await;
    let text = format!(
        r#"
        [server]
        slack_api_url = "{api}"
        [slack]
        incident_channels = ["{CHANNEL}"]
        lead_user_ids = ["{LEAD}"]
        [timeouts]
        verification = "60s"
        [clusters.local]
        prometheus_url = "{prometheus}"
        {cluster_config}
        {services}
        "#,
        api = slack.api_url(),
        prometheus = simulator::prometheus_url(),
    );
    let config = Arc::new(Config::parse(&text, "recovery-e2e").unwrap());
    config.validate("recovery-e2e").unwrap();
    let bot = in_process::start(
        &pool,
        config,
        &cluster,
        &slack,
        (TOKEN, SECRET),
        "recovery-e2e",
    );
    World {
        bot,
        namespace,
        _simulator: simulator,
    }
}

impl World {
    /// `/rollback web 1`, approved by the lead: returns the rollback's id and card ts.
    pub async fn roll_back_to_revision_1(&self) -> (i64, String) {
        self.roll_back_to(1).await
    }

    /// `/rollback web <revision>`, approved by the lead: returns the rollback's id and card ts.
    pub async fn roll_back_to(&self, revision: i64) -> (i64, String) {
        // A discovered service is known once the catalog's watch has seen its annotation.
        let deadline = tokio::time::Instant::now() + WAIT;
        while self
            .command(REQUESTER, &format!("{APP} {revision} INC-7"))
            .await
            .contains("Unknown service")
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{APP} never discovered"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (ts, value) = self
            .slack
            .wait_for("the approval card", WAIT, |s| {
                s.cards(CHANNEL).first().and_then(|c| {
                    button_value(&c.blocks, actions::APPROVE).map(|v| (c.ts.clone(), v))
                })
            })
            .await;
        let id: i64 = value.split(':').next().unwrap().parse().unwrap();
        self.click(LEAD, &ts, actions::APPROVE, &value).await;
        (id, ts)
    }

    /// Rollback `id` once settled, asserting it was escalated for a reason that says every
    /// one of `because`; returns it and that reason.
    pub async fn escalated(&self, id: i64, because: &[&str]) -> (Rollback, String) {
        let done = self.settled(id).await;
        let reason = done.last_error.clone().unwrap_or_default();
        assert_eq!(done.state, State::Escalated, "{reason}");
        assert_contains(&reason, because);
        (done, reason)
    }

    /// The card once it contains `needle`, and the thread once it contains `thread_needle`.
    pub async fn card_and_thread(
        &self,
        ts: &str,
        needle: &str,
        thread_needle: &str,
    ) -> (String, String) {
        let card = self.card_containing(ts, needle).await;
        let card = serde_json::to_string(&card.blocks).unwrap();
        let thread = self
            .slack
            .wait_for(thread_needle, WAIT, |s| {
                let text: Vec<String> = s.thread(ts).into_iter().map(|m| m.text).collect();
                let text = text.join("\n");
                text.contains(thread_needle).then_some(text)
            })
            .await;
        (card, thread)
    }

    /// Waits until the bot is done with rollback `id`'s recovery chart: its `slack_chart`
    /// state, `shared` (in the thread) or `noted` (refused, and the thread says so).
    pub async fn chart_done(&self, id: i64) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let state: Option<String> =
                sqlx::query_scalar("select state from slack_chart where rollback_id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .unwrap();
            if let Some(state) = state.clone().filter(|s| s == "shared" || s == "noted") {
                return state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "rollback #{id}'s chart is {state:?}; calls: {:?}",
                self.slack
                    .calls()
                    .iter()
                    .filter(|c| c.method.starts_with("files.") || c.method == "upload")
                    .map(|c| format!("{} {} {:?}", c.method, c.status, c.error))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The one chart shared in the thread of `ts` once the bot is done with it (asserting
    /// there is exactly one, a PNG of the chart's size).
    pub async fn one_chart(&self, id: i64, ts: &str) -> SharedFile {
        assert_eq!(self.chart_done(id).await, "shared");
        let files = self.slack.files().in_thread(ts);
        assert_eq!(files.len(), 1, "one chart in the thread: {files:?}");
        let chart = files.into_iter().next().unwrap();
        assert_eq!(
            chart.png_dimensions(),
            (
                rollback_bot::support::chart::WIDTH,
                rollback_bot::support::chart::HEIGHT
            )
        );
        assert_eq!(chart.channel.as_deref(), Some(CHANNEL));
        assert_eq!(chart.filename, format!("rollback-{id}-recovery.png"));
        chart
    }

    pub fn p99_query(&self) -> String {
        format!(
            r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{namespace="{}"}}[5s])))"#,
            self.namespace
        )
    }
}

pub fn number(observation: &Value, key: &str) -> f64 {
    assert_eq!(observation[key]["kind"], "value", "{key}: {observation}");
    observation[key]["detail"].as_f64().unwrap()
}

pub fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
    }
}
