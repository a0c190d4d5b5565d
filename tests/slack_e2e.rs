//! From `/rollback` to a verified rollback on the real (kwok) control plane, through the real
//! axum handlers, the engine with the Kubernetes steps, and the Slack notifier talking to the
//! contract-enforcing Web API stand-in. Needs `make test` (Postgres and the cluster).

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/slack_standin.rs"]
mod slack_standin;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use cluster::TestCluster;
use rollback_bot::app::AppState;
use rollback_bot::config::{Config, Secrets};
use rollback_bot::discovery::Catalog;
use rollback_bot::k8s::Executor;
use rollback_bot::rollback::State;
use rollback_bot::rollback::engine::{Engine, EngineConfig};
use rollback_bot::rollback::repo::{self, Rollback};
use rollback_bot::slack::{Notifier, SlackApi, actions, handlers};
use rollback_bot::steps::KubernetesSteps;
use serde_json::Value;
use slack_standin::SlackStandIn;
use slack_standin::requests::{self, button_value, has_buttons};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const SECRET: &str = "e2e-signing-secret";
const TOKEN: &str = "xoxb-e2e";
const CHANNEL: &str = "C0INCIDENT1";
const REQUESTER: &str = "U0REQUEST01";
const LEAD: &str = "U0LEAD00001";
const WAIT: Duration = Duration::from_secs(90);

struct World {
    next_url: std::sync::atomic::AtomicU32,
    app: Router,
    pool: PgPool,
    slack: SlackStandIn,
    cluster: TestCluster,
    namespace: String,
    shutdown: CancellationToken,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn world(pool: PgPool) -> World {
    let cluster = TestCluster::connect().await;
    let namespace = cluster.namespace("slack-e2e").await;
    cluster
        .fixture(&namespace, "checkout-api", &["v1", "v2", "v3"])
        .await;
    let slack = SlackStandIn::start(TOKEN).await;
    let text = format!(
        r#"
        [server]
        slack_api_url = "{}"
        [slack]
        incident_channels = ["{CHANNEL}"]
        lead_user_ids = ["{LEAD}"]
        [timeouts]
        verification = "60s"
        [clusters.local]
        [services.checkout-api]
        cluster = "local"
        namespace = "{namespace}"
        "#,
        slack.api_url()
    );
    let config = Arc::new(Config::parse(&text, "e2e").unwrap());
    config.validate("e2e").unwrap();
    let executor = Arc::new(Executor::new(cluster.executor_clusters()));
    let api = Arc::new(SlackApi::new(&slack.api_url(), TOKEN).unwrap());
    let notifier = Arc::new(
        Notifier::new(pool.clone(), api.clone()).with_sweep_every(Duration::from_millis(250)),
    );
    let steps =
        KubernetesSteps::new(executor.clone(), config.clone()).with_progress(notifier.clone());
    let engine = Arc::new(
        Engine::new(
            pool.clone(),
            Arc::new(steps),
            EngineConfig {
                worker_id: "e2e".into(),
                workers: 2,
                lease: Duration::from_secs(10),
                poll_interval: Duration::from_millis(100),
                max_retries: 3,
                backoff_base: Duration::from_millis(100),
                backoff_max: Duration::from_secs(1),
                shutdown_grace: Duration::from_millis(500),
                expiry_sweep: Duration::from_secs(1),
            },
        )
        .with_observer(notifier.clone()),
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(engine.run(shutdown.clone()));
    tokio::spawn(notifier.run(shutdown.clone()));
    let state = AppState {
        pool: pool.clone(),
        catalog: Catalog::from_config(config.clone()),
        config,
        secrets: Arc::new(Secrets {
            slack_signing_secret: Some(SECRET.into()),
            slack_bot_token: Some(TOKEN.into()),
            ..Default::default()
        }),
        executor,
        slack: Some(api.clone()),
    };
    World {
        next_url: std::sync::atomic::AtomicU32::new(100),
        app: handlers::routes().with_state(state),
        pool,
        slack,
        cluster,
        namespace,
        shutdown,
    }
}

impl World {
    async fn command(&self, user: &str, text: &str) -> String {
        let n = self
            .next_url
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let body = requests::command_body(
            user,
            CHANNEL,
            "incident-response",
            text,
            &self.slack.response_url(n),
        );
        let response = self.post_signed("/slack/commands", body).await;
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let json: Value = serde_json::from_slice(&bytes).unwrap();
        let ack = json["text"].as_str().unwrap().to_owned();
        if ack == handlers::PENDING_ACK {
            return self.slack.answer_at(n).await;
        }
        ack
    }

    async fn click(&self, user: &str, ts: &str, action_id: &str, value: &str) {
        let body = requests::click_body(
            user,
            CHANNEL,
            ts,
            action_id,
            value,
            &self.slack.response_url(2),
        );
        self.post_signed("/slack/interactions", body).await;
    }

    /// POSTs `body` to the app as Slack would (signed now) and expects a 200.
    async fn post_signed(&self, path: &str, body: String) -> axum::response::Response {
        let response = self
            .app
            .clone()
            .oneshot(requests::signed(path, body, SECRET, &requests::now()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response
    }

    /// Requests the rollback to revision 2 and waits for its approval card.
    async fn card_awaiting_approval(&self) -> (i64, String, String) {
        let ack = self.command(REQUESTER, "checkout-api 2 INC-42").await;
        assert!(ack.contains("requested"), "{ack}");
        let (ts, value) = self
            .slack
            .wait_for("the approval card with its Approve button", WAIT, |s| {
                s.cards(CHANNEL).first().and_then(|c| {
                    button_value(&c.blocks, actions::APPROVE).map(|v| (c.ts.clone(), v))
                })
            })
            .await;
        let id: i64 = value.split(':').next().unwrap().parse().unwrap();
        (id, ts, value)
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

    /// Waits for the final card and returns (card text, thread text).
    async fn final_card(&self, ts: &str) -> (String, String) {
        let ts_owned = ts.to_owned();
        let card = self
            .slack
            .wait_for("the card's final state", WAIT, |s| {
                s.cards(CHANNEL)
                    .into_iter()
                    .find(|c| c.ts == ts_owned)
                    .filter(|c| {
                        serde_json::to_string(&c.blocks)
                            .unwrap()
                            .contains("Rolled back and verified")
                    })
            })
            .await;
        assert!(!has_buttons(&card.blocks), "no buttons after the decision");
        let thread = self
            .slack
            .wait_for("the verification reply in the thread", WAIT, |s| {
                let text: Vec<String> = s.thread(&ts_owned).into_iter().map(|m| m.text).collect();
                let text = text.join("\n");
                text.contains("Verification passed").then_some(text)
            })
            .await;
        (serde_json::to_string(&card.blocks).unwrap(), thread)
    }

    async fn deployment_image(&self) -> String {
        let d = self
            .cluster
            .deployments(&self.namespace)
            .get("checkout-api")
            .await
            .unwrap();
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    }
}

fn assert_card_and_thread(card: &str, thread: &str) {
    for line in [
        "Rolled back and verified",
        "INC-42",
        &format!("Approved by <@{LEAD}> (lead)"),
        "✅ Executing: rollback patch applied",
        "✅ Rollout status",
        "✅ Image check",
        "✅ Pod health",
        "registry.local/checkout-api:v3",
        "registry.local/checkout-api:v2",
    ] {
        assert!(card.contains(line), "card lacks {line:?}: {card}");
    }
    for line in [
        "Plan ready",
        &format!("Approved by <@{LEAD}>"),
        "Execution started",
        "Rollback patch applied",
        "Verification passed",
        "`images`",
    ] {
        assert!(thread.contains(line), "thread lacks {line:?}:\n{thread}");
    }
}

#[sqlx::test]
async fn happy_path_from_command_to_verified_rollback(pool: PgPool) {
    let w = world(pool).await;
    let (id, ts, value) = w.card_awaiting_approval().await;
    let card = serde_json::to_string(&w.slack.cards(CHANNEL)[0].blocks).unwrap();
    assert!(
        card.contains("3 → *2*"),
        "current → target revision: {card}"
    );
    assert!(card.contains("registry.local/checkout-api:v3"), "{card}");
    w.click(LEAD, &ts, actions::APPROVE, &value).await;
    w.wait_state(id, State::Succeeded).await;
    let (card, thread) = w.final_card(&ts).await;
    assert_card_and_thread(&card, &thread);
    assert_eq!(
        w.deployment_image().await,
        cluster::image("checkout-api", "v2")
    );
    assert_eq!(
        w.slack.cards(CHANNEL).len(),
        1,
        "one card, updated in place"
    );
    assert!(w.slack.calls_to("chat.update").len() >= 3);
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}

#[sqlx::test]
async fn slack_down_during_the_steps_the_rollback_completes_and_the_card_catches_up(pool: PgPool) {
    let w = world(pool).await;
    let (id, ts, value) = w.card_awaiting_approval().await;
    w.slack.set_down(true);
    w.click(LEAD, &ts, actions::APPROVE, &value).await;
    w.wait_state(id, State::Succeeded).await;
    assert_eq!(
        w.deployment_image().await,
        cluster::image("checkout-api", "v2")
    );
    // The notifier tried while Slack was down.
    w.slack
        .wait_for("a call refused while Slack is down", WAIT, |s| {
            s.calls().into_iter().find(|c| c.status == 503)
        })
        .await;
    let card = serde_json::to_string(&w.slack.cards(CHANNEL)[0].blocks).unwrap();
    assert!(!card.contains("Rolled back and verified"));
    w.slack.set_down(false);
    let (card, thread) = w.final_card(&ts).await;
    assert_card_and_thread(&card, &thread);
    assert_eq!(w.slack.cards(CHANNEL).len(), 1);
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}

#[sqlx::test]
async fn history_and_an_unknown_revision(pool: PgPool) {
    let w = world(pool).await;
    let ack = w.command(REQUESTER, "history checkout-api").await;
    assert!(ack.contains("Reading the rollout history"), "{ack}");
    let table = w
        .slack
        .wait_for("the history through response_url", WAIT, |s| {
            s.responses()
                .iter()
                .filter_map(|r| r["text"].as_str())
                .find(|t| t.contains("Revisions of"))
                .map(str::to_owned)
        })
        .await;
    for needle in [
        "registry.local/checkout-api:v1",
        "registry.local/checkout-api:v3",
        "← current",
        "deploy registry.local/checkout-api:v2",
    ] {
        assert!(table.contains(needle), "history lacks {needle:?}:\n{table}");
    }
    // Revision 99 does not exist: the plan step refuses, the card says why, no buttons.
    let ack = w.command(REQUESTER, "checkout-api 99").await;
    assert!(ack.contains("requested"), "{ack}");
    let card = w
        .slack
        .wait_for("the refused card", WAIT, |s| {
            s.cards(CHANNEL).into_iter().find(|c| {
                serde_json::to_string(&c.blocks)
                    .unwrap()
                    .contains("Refused")
            })
        })
        .await;
    assert!(!has_buttons(&card.blocks));
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}
