//! The configured Kubernetes clusters: cluster name → `kube::Client`.
//!
//! Each cluster comes from a kubeconfig context, or from the default configuration (the
//! current context of `KUBECONFIG` / `~/.kube/config`, else the in-cluster service account).

use std::collections::BTreeMap;
use std::fmt;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};

use super::error::{Error, Result};

/// Named Kubernetes API clients, one per cluster.
#[derive(Clone, Default)]
pub struct Clusters {
    clients: BTreeMap<String, kube::Client>,
}

impl Clusters {
    /// One client per `(cluster name, kubeconfig context)`; `None` as context means the
    /// default configuration (the current kubeconfig context, else in-cluster).
    ///
    /// # Errors
    /// [`Error::Config`] naming the cluster whose configuration could not be loaded.
    pub async fn from_contexts<N, C>(
        entries: impl IntoIterator<Item = (N, Option<C>)>,
    ) -> Result<Self>
    where
        N: Into<String>,
        C: Into<String>,
    {
        let mut clusters = Self::default();
        for (name, context) in entries {
            let name = name.into();
            let config = match context {
                None => Config::infer().await.map_err(|e| config_error(&name, &e)),
                Some(context) => {
                    let options = KubeConfigOptions {
                        context: Some(context.into()),
                        ..KubeConfigOptions::default()
                    };
                    Config::from_kubeconfig(&options)
                        .await
                        .map_err(|e| config_error(&name, &e))
                }
            }?;
            let client = kube::Client::try_from(config).map_err(|e| config_error(&name, &e))?;
            clusters.clients.insert(name, client);
        }
        Ok(clusters)
    }

    /// A client from a kubeconfig file (its current context), e.g. a test's or a mounted
    /// secret's.
    ///
    /// # Errors
    /// [`Error::Config`] when the file cannot be read or used.
    pub async fn client_from_kubeconfig_file(
        cluster: &str,
        path: impl AsRef<std::path::Path>,
    ) -> Result<kube::Client> {
        let kubeconfig = Kubeconfig::read_from(path).map_err(|e| config_error(cluster, &e))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| config_error(cluster, &e))?;
        kube::Client::try_from(config).map_err(|e| config_error(cluster, &e))
    }

    /// A single cluster with a ready-made client (tests, or callers that build clients).
    pub fn from_client(name: impl Into<String>, client: kube::Client) -> Self {
        Self::default().with_client(name, client)
    }

    /// Adds (or replaces) a cluster.
    #[must_use]
    pub fn with_client(mut self, name: impl Into<String>, client: kube::Client) -> Self {
        self.clients.insert(name.into(), client);
        self
    }

    /// The client of a cluster.
    ///
    /// # Errors
    /// [`Error::UnknownCluster`] listing the configured names.
    pub fn client(&self, cluster: &str) -> Result<&kube::Client> {
        self.clients
            .get(cluster)
            .ok_or_else(|| Error::UnknownCluster {
                cluster: cluster.to_owned(),
                known: self.names(),
            })
    }

    /// Configured cluster names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.clients.keys().cloned().collect()
    }
}

impl fmt::Debug for Clusters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clusters")
            .field("names", &self.names())
            .finish()
    }
}

fn config_error(cluster: &str, e: &dyn std::error::Error) -> Error {
    Error::Config {
        cluster: cluster.to_owned(),
        message: e.to_string(),
    }
}
