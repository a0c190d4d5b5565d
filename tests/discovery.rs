//! Services discovered from the cluster (src/engine/catalog.rs), on the real (kwok) control plane
//! and Postgres, through the real signed Slack handlers and the engine's plan step: a
//! Deployment annotated `rollback-bot.io/service` after the bot started becomes rollback-able
//! without a configuration change or restart; an unannotated one stays unknown.

mod support;
use in_process::{CHANNEL, InProcessBot, WAIT};
use slack_sandbox::web_api as slack_standin;
use support::{cluster, in_process};

use std::sync::Arc;
use std::time::Duration;

use cluster::TestCluster;
use kube::api::{Patch, PatchParams};
use rollback_bot::config::Config;
use rollback_bot::domain::State;
use rollback_bot::engine::catalog::SERVICE_ANNOTATION;
use rollback_bot::slack::recent;
use serde_json::{Value, json};
use slack_standin::SlackStandIn;
use slack_standin::requests;
use sqlx::PgPool;

const SECRET: &str = "discovery-signing-secret";
const TOKEN: &str = "xoxb-discovery";
const REQUESTER: &str = "U0REQUEST01";
const LEAD: &str = "U0LEAD00001";
/// The `ts` of the ephemeral answer whose buttons are clicked (Slack sends one; the bot
/// answers through the click's response_url).
const EPHEMERAL: &str = "1700000000.000100";

/// The bot as `serve` wires it, watching `namespace` and configuring no service there.
async fn start_bot(pool: PgPool, cluster: &TestCluster, namespace: &str) -> InProcessBot {
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
    in_process::start(&pool, config, cluster, &slack, (TOKEN, SECRET), "discovery")
}

/// What only the discovery tests ask of the bot.
impl InProcessBot {
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

    async fn rollbacks(&self) -> i64 {
        sqlx::query_scalar::<_, i64>("select count(*) from rollback")
            .fetch_one(&self.pool)
            .await
            .unwrap()
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
    let before = bot.command(REQUESTER, "inventory").await;
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
        let ack = bot.command(REQUESTER, "inventory INC-7").await;
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
        let answer = bot.command(REQUESTER, "legacy-api").await;
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
    let history = bot.command(REQUESTER, "history legacy-api").await;
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
        .command(REQUESTER, "history inventory")
        .await
        .contains("Unknown service")
    {
        assert!(tokio::time::Instant::now() < deadline, "never discovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (n, ack) = bot.ack(REQUESTER, "").await;
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
    let n = bot
        .click(REQUESTER, EPHEMERAL, recent::REQUEST_ROLLBACK, "inventory")
        .await;
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
        .click(
            REQUESTER,
            EPHEMERAL,
            recent::REQUEST_ROLLBACK,
            "inventory 1 --force",
        )
        .await;
    let answer = bot.slack.answer_at(n).await;
    assert!(answer.contains("This button is malformed"), "{answer}");
    assert_eq!(bot.rollbacks().await, 1);
}
