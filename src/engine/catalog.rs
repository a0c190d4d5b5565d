//! The service catalogue: the services `/rollback` knows, from the configuration file's
//! `[services]` merged with Deployments discovered in the cluster.
//!
//! A Deployment opts in with the annotation `rollback-bot.io/service: <name>` in a namespace
//! listed in `clusters.<name>.discover_namespaces`. One kube-rs watcher (a reflector: the
//! initial list, then a watch, relisting after errors) per watched namespace keeps the
//! catalogue current, so a new or re-annotated Deployment becomes rollback-able without a
//! restart. Only those namespaces are listed and watched (least privilege: the executor's
//! RoleBinding in each namespace already grants `deployments list, watch`).
//!
//! The configuration wins: a name in `[services]` always resolves to its configured
//! Deployment, whatever the cluster's annotations say. A discovered name claimed by two
//! Deployments is refused as ambiguous rather than guessed.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::{self, Store};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clients::k8s::{self, Clusters, DATABASE_COUPLED_ANNOTATION};
use crate::config::Config;

/// The annotation by which a Deployment opts in, its value being the service name.
pub const SERVICE_ANNOTATION: &str = "rollback-bot.io/service";

/// A service `/rollback` can act on, and the Deployment it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownService {
    pub name: String,
    pub cluster: String,
    pub namespace: String,
    pub deployment: String,
    /// Marked database-coupled (configuration, or the Deployment's annotation
    /// `rollback-bot/database-coupled`, which the plan reads again anyway).
    pub database_coupled: bool,
    /// Found through its annotation rather than in `[services]`.
    pub discovered: bool,
}

impl KnownService {
    /// `cluster/namespace/deployment`, for messages.
    pub fn location(&self) -> String {
        format!("{}/{}/{}", self.cluster, self.namespace, self.deployment)
    }
}

/// Why a name does not resolve to one service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error(
        "Unknown service `{name}`. Closest known services: {}.",
        backticked(suggestions)
    )]
    Unknown {
        name: String,
        suggestions: Vec<String>,
    },
    #[error(
        "Service `{name}` is ambiguous: the Deployments {} all carry the annotation \
         {SERVICE_ANNOTATION}: {name}. Remove it from all but one, or name the Deployment \
         in the bot's [services] configuration.",
        backticked(places)
    )]
    Ambiguous { name: String, places: Vec<String> },
}

fn backticked(names: &[String]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The services known right now; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    config: Arc<Config>,
    /// One store per watched `(cluster, namespace)`, kept current by its watcher.
    watched: Arc<Vec<(String, Store<Deployment>)>>,
}

impl Catalog {
    /// The configured services only (no discovery).
    pub fn from_config(config: Arc<Config>) -> Self {
        Catalog {
            config,
            watched: Arc::default(),
        }
    }

    /// The configured services plus a watcher per `clusters.<name>.discover_namespaces`
    /// entry; the watchers run until `shutdown`. They start empty and fill within moments;
    /// API errors are logged and retried with backoff (the catalogue keeps what it knew).
    ///
    /// # Errors
    /// A cluster with namespaces to watch but no client.
    pub fn watch(
        config: Arc<Config>,
        clusters: &Clusters,
        shutdown: &CancellationToken,
    ) -> Result<Self, k8s::Error> {
        let mut watched = Vec::new();
        for (cluster, settings) in &config.clusters {
            for namespace in &settings.discover_namespaces {
                let store = k8s::deployments::watch(clusters, cluster, namespace, shutdown)?;
                info!(
                    cluster,
                    namespace, "service discovery: watching Deployments"
                );
                watched.push((cluster.clone(), store));
            }
        }
        Ok(Catalog {
            config,
            watched: Arc::new(watched),
        })
    }

    /// Waits until every watcher has listed its namespace once (for one-shot commands: a
    /// long-running bot serves what it has and fills in as the lists arrive).
    ///
    /// # Errors
    /// A watcher stopped before its first list (shutdown).
    pub async fn ready(&self) -> Result<(), reflector::store::WriterDropped> {
        for (_, store) in self.watched.iter() {
            store.wait_until_ready().await?;
        }
        Ok(())
    }

    /// Every service discovered right now (configured names are not filtered out).
    fn discovered(&self) -> Vec<KnownService> {
        self.watched
            .iter()
            .flat_map(|(cluster, store)| {
                store
                    .state()
                    .iter()
                    .filter_map(|d| discovered_service(cluster, d))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The service called `name`: configured first, else the one Deployment annotated with it.
    ///
    /// # Errors
    /// [`LookupError::Unknown`] with the closest known names, [`LookupError::Ambiguous`].
    pub fn service(&self, name: &str) -> Result<KnownService, LookupError> {
        resolve(&self.config, self.discovered(), name)
    }

    /// All known service names, sorted, each once.
    pub fn names(&self) -> Vec<String> {
        known_names(&self.config, &self.discovered())
    }
}

/// The service a Deployment declares with [`SERVICE_ANNOTATION`], if it declares a valid one.
pub fn discovered_service(cluster: &str, deployment: &Deployment) -> Option<KnownService> {
    let annotations = deployment.metadata.annotations.as_ref()?;
    let name = annotations.get(SERVICE_ANNOTATION)?.trim();
    let (namespace, deployment_name) = (
        deployment.metadata.namespace.clone()?,
        deployment.metadata.name.clone()?,
    );
    if !is_service_name(name) {
        warn!(
            namespace,
            deployment = deployment_name,
            value = name,
            "service discovery: ignored an invalid {SERVICE_ANNOTATION} (lowercase letters, digits and -)"
        );
        return None;
    }
    Some(KnownService {
        name: name.to_owned(),
        cluster: cluster.to_owned(),
        namespace,
        deployment: deployment_name,
        database_coupled: annotations
            .get(DATABASE_COUPLED_ANNOTATION)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        discovered: true,
    })
}

/// What `/rollback` accepts as a service name.
fn is_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Resolves `name` against the configuration, then the discovered services.
///
/// # Errors
/// See [`Catalog::service`].
pub fn resolve(
    config: &Config,
    discovered: Vec<KnownService>,
    name: &str,
) -> Result<KnownService, LookupError> {
    if let Some(s) = config.service(name) {
        return Ok(KnownService {
            name: s.name.to_owned(),
            cluster: s.cluster.to_owned(),
            namespace: s.namespace.to_owned(),
            deployment: s.deployment.to_owned(),
            database_coupled: s.database_coupled,
            discovered: false,
        });
    }
    let names = known_names(config, &discovered);
    let mut matching: Vec<KnownService> =
        discovered.into_iter().filter(|s| s.name == name).collect();
    match matching.len() {
        0 => Err(LookupError::Unknown {
            name: name.to_owned(),
            suggestions: crate::support::text::closest(name, names.iter().map(String::as_str))
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }),
        1 => Ok(matching.remove(0)),
        _ => {
            let mut places: Vec<String> = matching.iter().map(KnownService::location).collect();
            places.sort();
            Err(LookupError::Ambiguous {
                name: name.to_owned(),
                places,
            })
        }
    }
}

fn known_names(config: &Config, discovered: &[KnownService]) -> Vec<String> {
    let mut names: Vec<String> = config
        .services
        .keys()
        .cloned()
        .chain(discovered.iter().map(|s| s.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    const CONFIG: &str = r#"
        [slack]
        incident_channels = ["C0INCIDENT1"]
        lead_user_ids = ["U0LEAD0001"]
        [clusters.local]
        discover_namespaces = ["apps"]
        [services.checkout-api]
        cluster = "local"
    "#;

    fn deployment(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Deployment::default()
        }
    }

    fn discovered(deployments: &[Deployment]) -> Vec<KnownService> {
        deployments
            .iter()
            .filter_map(|d| discovered_service("local", d))
            .collect()
    }

    #[test]
    fn only_annotated_deployments_with_valid_names_are_services() {
        let found = discovered(&[
            deployment("apps", "web-v2", &[(SERVICE_ANNOTATION, "web")]),
            deployment("apps", "plain", &[]),
            deployment("apps", "bad", &[(SERVICE_ANNOTATION, "Bad_Name")]),
            deployment(
                "apps",
                "orders",
                &[
                    (SERVICE_ANNOTATION, " orders "),
                    (DATABASE_COUPLED_ANNOTATION, "true"),
                ],
            ),
        ]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].location(), "local/apps/web-v2");
        assert_eq!(
            (found[0].name.as_str(), found[0].database_coupled),
            ("web", false)
        );
        assert_eq!(
            (found[1].name.as_str(), found[1].database_coupled),
            ("orders", true)
        );
    }

    #[test]
    fn configuration_wins_and_duplicates_are_ambiguous() {
        let config = Config::parse(CONFIG, "t").unwrap();
        config.validate("t").unwrap();
        let found = discovered(&[
            deployment("apps", "other", &[(SERVICE_ANNOTATION, "checkout-api")]),
            deployment("apps", "web-a", &[(SERVICE_ANNOTATION, "web")]),
            deployment("apps", "web-b", &[(SERVICE_ANNOTATION, "web")]),
            deployment("apps", "search", &[(SERVICE_ANNOTATION, "search")]),
        ]);
        let checkout = resolve(&config, found.clone(), "checkout-api").unwrap();
        assert_eq!(checkout.location(), "local/production/checkout-api");
        assert!(!checkout.discovered);
        assert!(
            resolve(&config, found.clone(), "search")
                .unwrap()
                .discovered
        );
        let ambiguous = resolve(&config, found.clone(), "web").unwrap_err();
        assert_eq!(
            ambiguous,
            LookupError::Ambiguous {
                name: "web".into(),
                places: vec!["local/apps/web-a".into(), "local/apps/web-b".into()],
            }
        );
        let unknown = resolve(&config, found.clone(), "serch")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.starts_with("Unknown service `serch`. Closest known services: `search`"),
            "{unknown}"
        );
        assert_eq!(
            known_names(&config, &found),
            ["checkout-api", "search", "web"]
        );
    }
}
