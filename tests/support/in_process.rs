//! The bot wired in one test process for end-to-end tests: the axum handlers, the engine with
//! the Kubernetes steps (progress to the notifier) and the Slack notifier, all on the test's
//! database, cluster and Slack stand-in, with short test timings.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rollback_bot::app::AppState;
use rollback_bot::config::{Config, Secrets};
use rollback_bot::k8s::Executor;
use rollback_bot::recovery_chart::ChartMaker;
use rollback_bot::rollback::engine::{Engine, EngineConfig};
use rollback_bot::slack::{Notifier, SlackApi, handlers};
use rollback_bot::steps::KubernetesSteps;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::cluster::TestCluster;
use super::slack_standin::SlackStandIn;

/// A running bot: send it Slack requests through `app`; cancel `shutdown` to stop it.
pub struct InProcessBot {
    pub app: Router,
    pub shutdown: CancellationToken,
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
    let executor = Arc::new(Executor::new(cluster.executor_clusters()));
    let api = Arc::new(SlackApi::new(&slack.api_url(), token).unwrap());
    let notifier = Arc::new(
        Notifier::new(pool.clone(), api.clone())
            .with_sweep_every(Duration::from_millis(250))
            .with_charts(ChartMaker::new(config.clone())),
    );
    let steps =
        KubernetesSteps::new(executor.clone(), config.clone()).with_progress(notifier.clone());
    let engine = Arc::new(
        Engine::new(
            pool.clone(),
            Arc::new(steps),
            EngineConfig {
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
        )
        .with_observer(notifier.clone()),
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(engine.run(shutdown.clone()));
    tokio::spawn(notifier.run(shutdown.clone()));
    let state = AppState {
        pool: pool.clone(),
        catalog: rollback_bot::discovery::Catalog::from_config(config.clone()),
        config,
        secrets: Arc::new(Secrets {
            slack_signing_secret: Some(secret.into()),
            slack_bot_token: Some(token.into()),
            ..Default::default()
        }),
        executor,
        slack: Some(api),
    };
    InProcessBot {
        app: handlers::routes().with_state(state),
        shutdown,
    }
}
