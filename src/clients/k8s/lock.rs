//! The deploy lock's reads: a Deployment's lock (its annotations, [`read`]) and whether the
//! cluster's admission policy enforces it ([`enforcement`]). The pure parts (keys, the
//! [`Lock`], the verdict) are `crate::domain::lock`, re-exported here.

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;

pub use crate::domain::lock::*;

use crate::clients::k8s::{self, Executor, Target};

/// Reads the lock of `target` through the executor's client for its cluster.
///
/// # Errors
/// Unknown cluster, Deployment not found, API failures ([`k8s::Error`]).
pub async fn read(executor: &Executor, target: &Target) -> Result<Option<Lock>, k8s::Error> {
    let client = executor.clusters().client(&target.cluster)?.clone();
    let deployments: Api<Deployment> = Api::namespaced(client, &target.namespace);
    let deployment = deployments
        .get_opt(&target.deployment)
        .await?
        .ok_or_else(|| k8s::Error::UnknownDeployment {
            namespace: target.namespace.clone(),
            deployment: target.deployment.clone(),
            suggestions: vec![],
        })?;
    Ok(deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(Lock::from_annotations))
}

/// Whether the lock of a Deployment in `target`'s namespace is enforced: reads the policy
/// named `policy_name`, the bindings, and (only when a selector needs them) the namespace's
/// labels. A read the bot may not make or that fails is reported as the reason the lock is
/// not confirmed, never as enforced.
pub async fn enforcement(executor: &Executor, target: &Target, policy_name: &str) -> Enforcement {
    match read_policy_objects(executor, target, policy_name).await {
        Ok(enforcement) => enforcement,
        Err(e) => Enforcement::not_enforced(vec![format!(
            "the bot could not read the admission policy {policy_name} and its bindings ({e})"
        )]),
    }
}

async fn read_policy_objects(
    executor: &Executor,
    target: &Target,
    policy_name: &str,
) -> Result<Enforcement, k8s::Error> {
    let client = executor.clusters().client(&target.cluster)?.clone();
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let policy = policies.get_opt(policy_name).await?;
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let bindings = bindings.list(&ListParams::default()).await?.items;
    let labels = if needs_namespace_labels(policy.as_ref(), &bindings, policy_name) {
        let namespaces: Api<Namespace> = Api::all(client);
        let namespace = namespaces.get(&target.namespace).await?;
        let mut labels = namespace.metadata.labels.unwrap_or_default();
        labels
            .entry("kubernetes.io/metadata.name".to_owned())
            .or_insert_with(|| target.namespace.clone());
        Some(labels)
    } else {
        None
    };
    Ok(crate::domain::lock::enforcement(&PolicyObjects {
        policy_name,
        policy: policy.as_ref(),
        bindings: &bindings,
        namespace: &target.namespace,
        namespace_labels: labels.as_ref(),
    }))
}
