//! Services discovered from the cluster (src/discovery.rs), on the real (kwok) control plane
//! and Postgres, through the real signed Slack handlers and the engine's plan step: a
//! Deployment annotated `rollback-bot.io/service` after the bot started becomes rollback-able
//! without a configuration change or restart; an unannotated one stays unknown.

#[path = "support/cluster.rs"]
mod cluster;
use rollback_bot::sandbox::web_api as slack_standin;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use cluster::TestCluster;
use kube::api::{Patch, PatchParams};
use rollback_bot::app::AppState;
use rollback_bot::config::{Config, Secrets};
use rollback_bot::discovery::{Catalog, SERVICE_ANNOTATION};
use rollback_bot::k8s::Executor;
use rollback_bot::rollback::State;
use rollback_bot::rollback::engine::{Engine, EngineConfig};
use rollback_bot::rollback::repo::{self, Rollback};
use rollback_bot::slack::{SlackApi, handlers, recent};
use rollback_bot::steps::KubernetesSteps;
use serde_json::{Value, json};
use slack_standin::SlackStandIn;
use slack_standin::requests;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const SECRET: &str = "discovery-signing-secret";
const TOKEN: &str = "xoxb-discovery";
const CHANNEL: &str = "C0INCIDENT1";
const REQUESTER: &str = "U0REQUEST01";
const LEAD: &str = "U0LEAD00001";
const WAIT: Duration = Duration::from_secs(60);

struct Bot {
    next_url: std::sync::atomic::AtomicU32,
    app: Router,
    pool: PgPool,
    slack: SlackStandIn,
    shutdown: CancellationToken,
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The bot as `serve` wires it, watching `namespace` and configuring no service at all.
async fn start_bot(pool: PgPool, cluster: &TestCluster, namespace: &str) -> Bot {
    let slack = SlackStandIn::start(TOKEN).await;
    let text = format!(
        r#"
        [server]
        slack_api_url = "{}"
        [slack]
        incident_channels = ["{CHANNEL}"]
        lead_user_ids = ["{LEAD}"]
        [clusters.local]
        discover_namespaces = ["{namespace}"]
        # Configured, outside discovery, never rolled out: listed among the other services.
        [services.elsewhere]
        cluster = "local"
        namespace = "{namespace}"
        deployment = "not-deployed"
        "#,
        slack.api_url()
    );
    let config = Arc::new(Config::parse(&text, "discovery").unwrap());
    config.validate("discovery").unwrap();
    let executor = Arc::new(Executor::new(cluster.executor_clusters()));
    let shutdown = CancellationToken::new();
    // With the executor's least-privilege ServiceAccount: list/watch in `namespace` only.
    let catalog = Catalog::watch(config.clone(), executor.clusters(), &shutdown).unwrap();
    let steps = KubernetesSteps::new(executor.clone(), config.clone());
    let engine = Arc::new(Engine::new(
        pool.clone(),
        Arc::new(steps),
        EngineConfig {
            worker_id: "discovery".into(),
            workers: 1,
            poll_interval: Duration::from_millis(100),
            ..EngineConfig::default()
        },
    ));
    tokio::spawn(engine.run(shutdown.clone()));
    let state = AppState {
        pool: pool.clone(),
        catalog,
        config,
        secrets: Arc::new(Secrets {
            slack_signing_secret: Some(SECRET.into()),
            slack_bot_token: Some(TOKEN.into()),
            ..Default::default()
        }),
        executor,
        // Answers that miss the ack budget arrive through response_url.
        slack: Some(Arc::new(SlackApi::new(&slack.api_url(), TOKEN).unwrap())),
    };
    Bot {
        next_url: std::sync::atomic::AtomicU32::new(100),
        app: handlers::routes().with_state(state),
        pool,
        slack,
        shutdown,
    }
}

impl Bot {
    fn next_response_url(&self) -> u32 {
        self.next_url
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    /// POSTs `body` to `path` as Slack would (signed now); the answer's JSON, if any.
    async fn post_signed(&self, path: &str, body: String) -> Value {
        let response = self
            .app
            .clone()
            .oneshot(requests::signed(path, body, SECRET, &requests::now()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    /// A signed click on a button of an ephemeral answer; the click's response_url number.
    async fn click(&self, action_id: &str, value: &str) -> u32 {
        let n = self.next_response_url();
        let url = self.slack.response_url(n);
        let body = requests::click_body(
            REQUESTER,
            CHANNEL,
            "1700000000.000100",
            action_id,
            value,
            &url,
        );
        self.post_signed("/slack/interactions", body).await;
        n
    }

    /// The blocks answered at `response_url(n)`.
    async fn blocks_at(&self, n: u32) -> Vec<Value> {
        let id = n.to_string();
        self.slack
            .wait_for("blocks at the response_url", WAIT, |s| {
                s.responses()
                    .iter()
                    .find(|r| r["_response_url_id"] == id.as_str())
                    .and_then(|r| r["blocks"].as_array().cloned())
            })
            .await
    }

    /// `/rollback <text>` in the incident channel, signed; its response_url number and ack.
    async fn ack(&self, text: &str) -> (u32, String) {
        let n = self.next_response_url();
        let url = self.slack.response_url(n);
        let body = requests::command_body(REQUESTER, CHANNEL, "incident-response", text, &url);
        let json = self.post_signed("/slack/commands", body).await;
        (n, json["text"].as_str().unwrap().to_owned())
    }

    /// `/rollback <text>`'s answer: the ack, or the answer that follows it.
    async fn command(&self, text: &str) -> String {
        let (n, ack) = self.ack(text).await;
        if ack == handlers::PENDING_ACK {
            return self.slack.answer_at(n).await;
        }
        ack
    }

    async fn rollbacks(&self) -> i64 {
        sqlx::query_scalar::<_, i64>("select count(*) from rollback")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn wait_state(&self, id: i64, want: State) -> Rollback {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = repo::get(&self.pool, id).await.unwrap();
            if r.state == want {
                return r;
            }
            assert!(
                !r.state.is_terminal() && tokio::time::Instant::now() < deadline,
                "rollback #{id} is {} (wanted {want}); last error: {:?}",
                r.state,
                r.last_error
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn annotate(cluster: &TestCluster, namespace: &str, deployment: &str, service: &str) {
    let patch = json!({ "metadata": { "annotations": { SERVICE_ANNOTATION: service } } });
    cluster
        .deployments(namespace)
        .patch(deployment, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

#[sqlx::test]
async fn an_annotated_deployment_becomes_rollback_able_without_a_restart(pool: PgPool) {
    let cluster = TestCluster::connect().await;
    let namespace = cluster.namespace("discovery").await;
    let bot = start_bot(pool, &cluster, &namespace).await;

    // Before the Deployment exists the name is unknown, and nothing is recorded.
    let before = bot.command("inventory").await;
    assert!(before.contains("Unknown service `inventory`"), "{before}");
    assert_eq!(bot.rollbacks().await, 0);

    // Created (two revisions) and annotated while the bot runs; the service name differs
    // from the Deployment's, so the mapping comes from the annotation.
    cluster
        .fixture(&namespace, "inventory-v2", &["v1", "v2"])
        .await;
    annotate(&cluster, &namespace, "inventory-v2", "inventory").await;

    // The watch delivers the annotation within moments; until then the answer is "unknown".
    let deadline = tokio::time::Instant::now() + WAIT;
    let ack = loop {
        let ack = bot.command("inventory INC-7").await;
        if !ack.contains("Unknown service") {
            break ack;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never discovered: {ack}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(ack.contains("requested"), "{ack}");
    let id: i64 = sqlx::query_scalar("select id from rollback")
        .fetch_one(&bot.pool)
        .await
        .unwrap();
    let planned = bot.wait_state(id, State::AwaitingApproval).await;
    assert_eq!(
        (
            planned.service.as_str(),
            planned.namespace.as_str(),
            planned.deployment.as_str()
        ),
        ("inventory", namespace.as_str(), "inventory-v2")
    );
    let plan = planned.plan.expect("the plan step stored its plan");
    assert_eq!(plan["rollback_to"]["revision"], 1, "{plan}");
}

#[sqlx::test]
async fn an_unannotated_deployment_is_not_a_service(pool: PgPool) {
    let cluster = TestCluster::connect().await;
    let namespace = cluster.namespace("discovery").await;
    cluster
        .fixture(&namespace, "legacy-api", &["v1", "v2"])
        .await;
    cluster.fixture(&namespace, "ledger-api", &["v1"]).await;
    annotate(&cluster, &namespace, "ledger-api", "ledger-api").await;
    let bot = start_bot(pool, &cluster, &namespace).await;

    // Once the annotated neighbour is known, the unannotated one is refused with it as the
    // closest match, and nothing is recorded.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = bot.command("legacy-api").await;
        assert!(
            answer.starts_with("❌ Unknown service `legacy-api`. Closest known services:"),
            "{answer}"
        );
        if answer.contains("`ledger-api`") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the annotated neighbour never appeared: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let history = bot.command("history legacy-api").await;
    assert!(
        history.contains("Unknown service `legacy-api`"),
        "{history}"
    );
    assert_eq!(bot.rollbacks().await, 0);
}

#[sqlx::test]
async fn a_bare_rollback_lists_recent_rollouts_first_and_a_click_requests_one(pool: PgPool) {
    let cluster = TestCluster::connect().await;
    let namespace = cluster.namespace("discovery").await;
    cluster
        .fixture(&namespace, "inventory-v2", &["v1", "v2"])
        .await;
    annotate(&cluster, &namespace, "inventory-v2", "inventory").await;
    let bot = start_bot(pool, &cluster, &namespace).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while bot
        .command("history inventory")
        .await
        .contains("Unknown service")
    {
        assert!(tokio::time::Instant::now() < deadline, "never discovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (n, ack) = bot.ack("").await;
    assert!(
        ack.contains("Looking at what rolled out in the last 60 min"),
        "{ack}"
    );
    let blocks = bot.blocks_at(n).await;
    let text = serde_json::to_string(&blocks).unwrap();
    let image = |tag: &str| cluster::image("inventory-v2", tag);
    let inventory = text
        .find(&format!("*inventory*: {} → {}", image("v1"), image("v2")))
        .unwrap_or_else(|| panic!("inventory's rollout is not listed: {text}"));
    assert!(
        text.contains(&format!("deploy {}", image("v2"))),
        "who deployed: {text}"
    );
    let others = text.find("*Other services*: `elsewhere`").expect(&text);
    assert!(inventory < others, "{text}");
    assert_eq!(
        requests::button_value(&blocks, recent::REQUEST_ROLLBACK).as_deref(),
        Some("inventory")
    );
    assert_eq!(bot.rollbacks().await, 0, "listing requests nothing");

    // The click is `/rollback inventory` by the clicker: recorded, then planned.
    let n = bot.click(recent::REQUEST_ROLLBACK, "inventory").await;
    let answer = bot.slack.answer_at(n).await;
    assert!(
        answer.contains("Rollback #") && answer.contains("requested"),
        "{answer}"
    );
    let id: i64 = sqlx::query_scalar("select id from rollback")
        .fetch_one(&bot.pool)
        .await
        .unwrap();
    let planned = bot.wait_state(id, State::AwaitingApproval).await;
    assert_eq!(
        (planned.deployment.as_str(), planned.requested_by.as_str()),
        ("inventory-v2", REQUESTER)
    );

    // The button carries a service name and nothing else: no revision, incident or force.
    let n = bot
        .click(recent::REQUEST_ROLLBACK, "inventory 1 --force")
        .await;
    let answer = bot.slack.answer_at(n).await;
    assert!(answer.contains("This button is malformed"), "{answer}");
    assert_eq!(bot.rollbacks().await, 1);
}
