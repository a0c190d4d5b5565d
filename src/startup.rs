//! The composition root: builds the clients, the engine with its steps and the Slack notifier
//! from the configuration. `main` (serve), the tests and the benches all build the app here.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::clients::k8s::{self, Clusters, Executor};
use crate::clients::pagerduty::{PagerDuty, PagerDutyError};
use crate::clients::slack::SlackApi;
use crate::clients::slack::SlackError;
use crate::clients::tickets::Tracker;
use crate::config::{Config, Secrets};
use crate::engine::catalog::Catalog;
use crate::engine::{Engine, EngineConfig};
use crate::slack::Notifier;
use crate::slack::recovery_chart::ChartMaker;
pub use crate::slack::state::AppState;
use crate::steps::KubernetesSteps;
use crate::steps::escalate::Escalation;
use crate::steps::notify::DeployerNotifier;
use crate::steps::ticket::Tickets;

/// One Kubernetes client per configured cluster: a kubeconfig file when the cluster names
/// one, else the context (or the in-cluster / current context when none is given).
pub async fn connect_clusters(config: &Config) -> Result<Clusters, k8s::Error> {
    let mut clusters = Clusters::default();
    for (name, cluster) in &config.clusters {
        let client = match &cluster.kubeconfig {
            Some(file) => Clusters::client_from_kubeconfig_file(name, file).await?,
            None => {
                let one =
                    Clusters::from_contexts([(name.clone(), cluster.context.clone())]).await?;
                one.client(name)?.clone()
            }
        };
        clusters = clusters.with_client(name.clone(), client);
    }
    Ok(clusters)
}

/// Escalation of failed rollbacks as configured: the user group to mention and, with
/// `PAGERDUTY_ROUTING_KEY`, the PagerDuty integration to page.
pub fn escalation(state: &AppState) -> Result<Arc<Escalation>, PagerDutyError> {
    let pager = state
        .secrets
        .pagerduty_routing_key
        .as_deref()
        .map(|key| PagerDuty::new(&state.config.pagerduty.events_url, key).map(Arc::new))
        .transpose()?;
    Ok(Arc::new(
        Escalation::new(
            state.pool.clone(),
            pager,
            state.config.slack.escalation_user_group.clone(),
            &state.config.pagerduty.severity,
        )
        .with_diagnosis(state.executor.clone()),
    ))
}

/// How the engine and the Slack notifier are built. `serve` takes [`Tuning::serve`], from the
/// configuration; tests and benches start from it (or build their own) with shorter timings
/// and the parts they exercise.
pub struct Tuning {
    pub engine: EngineConfig,
    /// How often the notifier sweeps for cards to sync; its default when `None`.
    pub notifier_sweep: Option<Duration>,
    /// The notifier's claim on a card; its default when `None`.
    pub notifier_lease: Option<Duration>,
    /// Cards the notifier syncs at once; its default when `None`.
    pub notifier_concurrency: Option<usize>,
    /// The steps after a successful rollback: the deployer's DM and the post-incident ticket
    /// (in this tracker, if any). `None`: those steps have nothing to do.
    pub post_rollback: Option<Option<Tracker>>,
    /// Who escalates failed rollbacks; `None`: the reason only, nobody mentioned or paged.
    pub escalation: Option<Arc<Escalation>>,
}

impl Tuning {
    /// `serve`'s: everything as configured, failures escalated by `escalation`, tickets in
    /// `tracker`.
    pub fn serve(config: &Config, escalation: Arc<Escalation>, tracker: Option<Tracker>) -> Self {
        Tuning {
            engine: EngineConfig {
                workers: config.engine.workers,
                lease: config.engine.lease,
                max_retries: config.engine.max_retries,
                shutdown_grace: config.engine.shutdown_grace,
                ..EngineConfig::default()
            },
            notifier_sweep: None,
            notifier_lease: Some(config.slack.notifier_lease),
            notifier_concurrency: Some(config.slack.notifier_concurrency),
            post_rollback: Some(tracker),
            escalation: Some(escalation),
        }
    }
}

/// The rollback engine with its steps carried out on Kubernetes, and the Slack notifier it
/// reports to (none without a Slack client: the bot then works, silently).
pub fn build(state: &AppState, tuning: Tuning) -> (Engine, Option<Arc<Notifier>>) {
    let mut steps = KubernetesSteps::new(state.executor.clone(), state.config.clone());
    let mut post_incident = None;
    if let Some(tracker) = tuning.post_rollback {
        let deployer = DeployerNotifier::new(
            state.pool.clone(),
            state.slack.clone(),
            state.config.clone(),
            state.executor.clone(),
        );
        let tickets = Tickets::new(
            state.pool.clone(),
            tracker,
            state.config.tickets.labels.clone(),
            state.slack.clone(),
        );
        let (deployer, tickets) = (Arc::new(deployer), Arc::new(tickets));
        steps = steps.with_post_rollback(deployer.clone(), tickets.clone());
        post_incident = Some((deployer, tickets));
    }
    let notifier = state.slack.clone().map(|api| {
        let mut notifier = Notifier::new(state.pool.clone(), api)
            .with_charts(ChartMaker::new(state.config.clone()));
        if let Some(every) = tuning.notifier_sweep {
            notifier = notifier.with_sweep_every(every);
        }
        if let Some(lease) = tuning.notifier_lease {
            notifier = notifier.with_lease(lease);
        }
        if let Some(concurrency) = tuning.notifier_concurrency {
            notifier = notifier.with_concurrency(concurrency);
        }
        Arc::new(notifier)
    });
    if let Some(notifier) = &notifier {
        steps = steps.with_progress(notifier.clone());
    }
    let mut engine = Engine::new(state.pool.clone(), Arc::new(steps), tuning.engine);
    if let Some(escalation) = tuning.escalation {
        // A failed rollback gets the DM and the ticket too (the sweep needs neither).
        let escalation = match post_incident {
            Some((deployer, tickets)) => {
                Arc::new(Escalation::clone(&escalation).with_post_incident(deployer, tickets))
            }
            None => escalation,
        };
        engine = engine.with_escalator(escalation);
    }
    if let Some(notifier) = &notifier {
        engine = engine.with_observer(notifier.clone());
    }
    (engine, notifier)
}

/// The rollback engine as `serve` runs it: [`build`] with [`Tuning::serve`].
pub fn engine(
    state: &AppState,
    escalation: Arc<Escalation>,
    tracker: Option<Tracker>,
) -> (Engine, Option<Arc<Notifier>>) {
    build(state, Tuning::serve(&state.config, escalation, tracker))
}

/// The shared state on `clusters` (one executor for all of them), with the service
/// catalogue watching the configured discovery namespaces until `shutdown`.
///
/// # Errors
/// A cluster with namespaces to watch but no client.
pub fn state(
    pool: PgPool,
    config: Arc<Config>,
    secrets: Arc<Secrets>,
    clusters: Clusters,
    slack: Option<Arc<SlackApi>>,
    shutdown: &CancellationToken,
) -> Result<AppState, k8s::Error> {
    let executor = Arc::new(Executor::new(clusters));
    let catalog = Catalog::watch(config.clone(), executor.clusters(), shutdown)?;
    Ok(AppState {
        pool,
        config,
        secrets,
        executor,
        catalog,
        slack,
    })
}

/// The Slack client for the configured API URL and bot token, if a token is set.
pub fn slack_api(config: &Config, secrets: &Secrets) -> Result<Option<Arc<SlackApi>>, SlackError> {
    secrets
        .slack_bot_token
        .as_deref()
        .map(|token| SlackApi::new(&config.server.slack_api_url, token).map(Arc::new))
        .transpose()
}
