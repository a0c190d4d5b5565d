//! The bot wired in one test process for end-to-end tests through `serve`'s composition root
//! (`rollback_bot::startup`): the axum
//! handlers, the service catalog (watching the configured discovery namespaces), the engine
//! with the Kubernetes steps (progress to the notifier) and the Slack notifier, all on the
//! test's database, cluster and Slack stand-in, with short test timings; and the signed
//! requests a person's Slack client would send it (commands and clicks), with the waits the
//! tests share.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use rollback_bot::clients::slack::SlackApi;
use rollback_bot::config::{Config, Secrets};
use rollback_bot::db::rollbacks::{self as repo, Rollback};
use rollback_bot::domain::State;
use rollback_bot::engine::EngineConfig;
use rollback_bot::slack::handlers;
use rollback_bot::startup::{self, Tuning};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::cluster::TestCluster;
use super::slack_standin::requests;
use super::slack_standin::{Posted, SlackStandIn};

/// The incident channel most in-process tests configure.
pub const CHANNEL: &str = "C0INCIDENT1";
/// How long a test waits for the bot before it fails.
pub const WAIT: Duration = Duration::from_secs(90);

/// A running bot: send it Slack requests through `app` (or the helpers below); it stops when
/// dropped.
pub struct InProcessBot {
    pub app: Router,
    pub pool: PgPool,
    pub slack: SlackStandIn,
    pub shutdown: CancellationToken,
    /// Where commands and clicks are sent from: the first configured incident channel.
    channel: String,
    secret: String,
    /// The next `response_url` number handed to a request.
    next_url: AtomicU32,
}

impl Drop for InProcessBot {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the engine and the notifier for `config` and returns the handlers' router.
pub fn start(
    pool: &PgPool,
    config: Arc<Config>,
    cluster: &TestCluster,
    slack: &SlackStandIn,
    (token, secret): (&str, &str),
    worker_id: &str,
) -> InProcessBot {
    let channel = config.slack.incident_channels[0].clone();
    let api = Arc::new(SlackApi::new(&slack.api_url(), token).unwrap());
    let shutdown = CancellationToken::new();
    // With the executor's least-privilege ServiceAccount, as `serve` does.
    let state = startup::state(
        pool.clone(),
        config,
        Arc::new(Secrets {
            slack_signing_secret: Some(secret.into()),
            slack_bot_token: Some(token.into()),
            ..Default::default()
        }),
        cluster.executor_clusters(),
        Some(api),
        &shutdown,
    )
    .unwrap();
    // The engine and the notifier as `serve` builds them, with test timings; the deployer's
    // DM, the ticket and escalation are exercised by the binary's tests.
    let (engine, notifier) = startup::build(
        &state,
        Tuning {
            engine: EngineConfig {
                worker_id: worker_id.into(),
                workers: 2,
                lease: Duration::from_secs(10),
                poll_interval: Duration::from_millis(100),
                max_retries: 3,
                backoff_base: Duration::from_millis(100),
                backoff_max: Duration::from_secs(1),
                shutdown_grace: Duration::from_millis(500),
                expiry_sweep: Duration::from_secs(1),
            },
            notifier_sweep: Some(Duration::from_millis(250)),
            notifier_lease: None,
            notifier_concurrency: None,
            post_rollback: None,
            escalation: None,
        },
    );
    tokio::spawn(Arc::new(engine).run(shutdown.clone()));
    tokio::spawn(notifier.expect("a Slack client").run(shutdown.clone()));
    InProcessBot {
        app: handlers::routes().with_state(state),
        pool: pool.clone(),
        slack: slack.clone(),
        shutdown,
        channel,
        secret: secret.to_owned(),
        next_url: AtomicU32::new(100),
    }
}

impl InProcessBot {
    /// A fresh `response_url` number, so each request's answers can be told apart.
    pub fn next_response_url(&self) -> u32 {
        self.next_url.fetch_add(1, Ordering::SeqCst)
    }

    /// POSTs `body` to `path` as Slack would (signed now), expects a 200 and returns the
    /// answer's JSON (null when there is none).
    pub async fn post_signed(&self, path: &str, body: String) -> Value {
        let request = requests::signed(path, body, &self.secret, &requests::now());
        let response = self.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }

    /// `/rollback <text>` by `user` in the incident channel: its `response_url` number and
    /// the immediate ack.
    pub async fn ack(&self, user: &str, text: &str) -> (u32, String) {
        let n = self.next_response_url();
        let url = self.slack.response_url(n);
        let body = requests::command_body(user, &self.channel, "incident-response", text, &url);
        let json = self.post_signed("/slack/commands", body).await;
        (n, json["text"].as_str().unwrap().to_owned())
    }

    /// `/rollback <text>` by `user`: the answer, whether in the ack or after it.
    pub async fn command(&self, user: &str, text: &str) -> String {
        let (n, ack) = self.ack(user, text).await;
        if ack == handlers::PENDING_ACK {
            return self.slack.answer_at(n).await;
        }
        ack
    }

    /// A signed click by `user` on button `action_id` of message `ts`; the click's
    /// `response_url` number.
    pub async fn click(&self, user: &str, ts: &str, action_id: &str, value: &str) -> u32 {
        let n = self.next_response_url();
        let url = self.slack.response_url(n);
        let body = requests::click_body(user, &self.channel, ts, action_id, value, &url);
        self.post_signed("/slack/interactions", body).await;
        n
    }

    /// The card posted at `ts` once its blocks contain `needle`.
    pub async fn card_containing(&self, ts: &str, needle: &str) -> Posted {
        self.slack
            .wait_for(needle, WAIT, |s| {
                s.cards(&self.channel).into_iter().find(|c| {
                    c.ts == ts && serde_json::to_string(&c.blocks).unwrap().contains(needle)
                })
            })
            .await
    }

    /// Rollback `id` once it is in state `want`; fails if it ends elsewhere or takes too long.
    pub async fn wait_state(&self, id: i64, want: State) -> Rollback {
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

    /// Rollback `id` once it is settled: terminal with nothing left to do (a failure is
    /// escalated first).
    pub async fn settled(&self, id: i64) -> Rollback {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = repo::get(&self.pool, id).await.unwrap();
            if r.state.is_settled() {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "rollback #{id} stuck in {}: {:?}",
                r.state,
                r.last_error
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
