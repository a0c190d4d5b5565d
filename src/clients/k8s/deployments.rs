//! The Deployment and ReplicaSet calls the steps and the service catalogue make besides the
//! executor's: the lock's merge patch, the annotations the deployer is read from, and the
//! Deployment watchers of service discovery. With [`super::Executor`] and
//! [`super::lock`], every call this bot makes to the API server is in `clients::k8s`
//! (the RBAC list in `executor.rs` covers them).

use std::collections::BTreeMap;
use std::pin::pin;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::error::Result;
use super::{Clusters, Target};

/// Applies a JSON merge patch to the target Deployment with the bot's own identity.
///
/// # Errors
/// An unknown cluster; the API server's answer.
pub async fn merge_patch(clusters: &Clusters, target: &Target, patch: Value) -> Result<()> {
    let client = clusters.client(&target.cluster)?.clone();
    let deployments: Api<Deployment> = Api::namespaced(client, &target.namespace);
    deployments
        .patch(
            &target.deployment,
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
    Ok(())
}

/// The annotations of ReplicaSet `replica_set` (when given) and of Deployment `deployment`,
/// in `namespace` of `cluster`. The ReplicaSet is found with `list` by name: the bot's Role
/// lists ReplicaSets (rollout history) but does not `get` them, and needs no more for this.
///
/// # Errors
/// An unknown cluster; the API server's answer.
pub async fn annotations(
    clusters: &Clusters,
    cluster: &str,
    namespace: &str,
    replica_set: Option<&str>,
    deployment: &str,
) -> Result<(
    Option<BTreeMap<String, String>>,
    Option<BTreeMap<String, String>>,
)> {
    let client = clusters.client(cluster)?.clone();
    let replica_set = match replica_set {
        Some(name) => Api::<ReplicaSet>::namespaced(client.clone(), namespace)
            .list(&ListParams::default().fields(&format!("metadata.name={name}")))
            .await?
            .items
            .into_iter()
            .next()
            .and_then(|rs| rs.metadata.annotations),
        None => None,
    };
    let deployment = Api::<Deployment>::namespaced(client, namespace)
        .get_opt(deployment)
        .await?
        .and_then(|d| d.metadata.annotations);
    Ok((replica_set, deployment))
}

/// A cache of the Deployments in `namespace` of `cluster`, kept current by a watcher that
/// runs until `shutdown`. It starts empty and fills within moments; API errors are logged
/// and retried with backoff (the cache keeps what it had).
///
/// # Errors
/// An unknown cluster.
pub fn watch(
    clusters: &Clusters,
    cluster: &str,
    namespace: &str,
    shutdown: &CancellationToken,
) -> Result<Store<Deployment>> {
    let api: Api<Deployment> = Api::namespaced(clusters.client(cluster)?.clone(), namespace);
    let (store, writer) = reflector::store();
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let (shutdown, cluster_name, ns) = (shutdown.clone(), cluster.to_owned(), namespace.to_owned());
    tokio::spawn(async move {
        let mut events = pin!(events);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = events.next() => match event {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => warn!(
                        cluster = %cluster_name, namespace = %ns, error = %e,
                        "service discovery: watching Deployments failed; retrying"
                    ),
                    None => break,
                },
            }
        }
    });
    Ok(store)
}
