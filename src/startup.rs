//! The composition root: builds the clients, the engine with its steps and the Slack notifier
//! from the configuration. `main` (serve), the tests and the benches all build the app here.

use std::sync::Arc;

use crate::clients::k8s::{self, Clusters};
use crate::clients::pagerduty::{PagerDuty, PagerDutyError};
use crate::clients::slack::SlackApi;
use crate::clients::slack::SlackError;
use crate::clients::tickets::Tracker;
use crate::config::{Config, Secrets};
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
    Ok(Arc::new(Escalation::new(
        state.pool.clone(),
        pager,
        state.config.slack.escalation_user_group.clone(),
        &state.config.pagerduty.severity,
    )))
}

/// The rollback engine as configured, with its steps carried out on Kubernetes, the
/// post-incident ticket opened in `tracker`, failures escalated by `escalation`, and the
/// Slack notifier it reports to (none without `SLACK_BOT_TOKEN`: the bot then works,
/// silently).
pub fn engine(
    state: &AppState,
    escalation: Arc<Escalation>,
    tracker: Option<Tracker>,
) -> (Engine, Option<Arc<Notifier>>) {
    let engine_config = EngineConfig {
        workers: state.config.engine.workers,
        lease: state.config.engine.lease,
        max_retries: state.config.engine.max_retries,
        shutdown_grace: state.config.engine.shutdown_grace,
        ..EngineConfig::default()
    };
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
    let mut steps = KubernetesSteps::new(state.executor.clone(), state.config.clone())
        .with_post_rollback(Arc::new(deployer), Arc::new(tickets));
    let notifier = state.slack.clone().map(|api| {
        Arc::new(
            Notifier::new(state.pool.clone(), api)
                .with_charts(ChartMaker::new(state.config.clone()))
                .with_lease(state.config.slack.notifier_lease)
                .with_concurrency(state.config.slack.notifier_concurrency),
        )
    });
    if let Some(notifier) = &notifier {
        steps = steps.with_progress(notifier.clone());
    }
    let mut engine =
        Engine::new(state.pool.clone(), Arc::new(steps), engine_config).with_escalator(escalation);
    if let Some(notifier) = &notifier {
        engine = engine.with_observer(notifier.clone());
    }
    (engine, notifier)
}

/// The Slack client for the configured API URL and bot token, if a token is set.
pub fn slack_api(config: &Config, secrets: &Secrets) -> Result<Option<Arc<SlackApi>>, SlackError> {
    secrets
        .slack_bot_token
        .as_deref()
        .map(|token| SlackApi::new(&config.server.slack_api_url, token).map(Arc::new))
        .transpose()
}
