//! The deploy lock: the annotations that mark a Deployment as locked after a rollback, and
//! reading them back.
//!
//! A locked Deployment carries [`LOCKED`] (a one-line reason naming the rollback and the
//! incident, quoted in the API server's denial message) and the companions below. The
//! ValidatingAdmissionPolicy in `config/kubernetes/base/deploy-lock.yaml` enforces the lock: while
//! [`LOCKED`] is present nobody but the bot's ServiceAccount may change the pod template or
//! any of these annotations. The key names here and in that file must stay the same.
//!
//! Pure parts ([`Lock::from_annotations`], [`Lock::annotations`], [`unlock_patch`]) are apart
//! from the one read through the executor's clients ([`read`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde::Serialize;
use serde_json::{Value, json};

use crate::clients::k8s::{self, Executor, Target};

/// Present while the Deployment is locked; its value is the human-readable reason.
pub const LOCKED: &str = "rollback-bot.io/locked";
/// The id of the rollback that locked the Deployment.
pub const ROLLBACK: &str = "rollback-bot.io/lock-rollback";
/// The service name `/rollback unlock` takes.
pub const SERVICE: &str = "rollback-bot.io/lock-service";
/// The incident reference or link the rollback was requested for.
pub const INCIDENT: &str = "rollback-bot.io/lock-incident";
/// When the lock was set, RFC 3339.
pub const SINCE: &str = "rollback-bot.io/lock-since";

/// Every lock annotation; the admission policy protects exactly these.
pub const KEYS: [&str; 5] = [LOCKED, ROLLBACK, SERVICE, INCIDENT, SINCE];

/// A Deployment's lock as its annotations describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lock {
    /// Why it is locked (the [`LOCKED`] annotation's value).
    pub reason: String,
    /// The rollback that locked it, when the annotation is readable.
    pub rollback_id: Option<i64>,
    pub service: Option<String>,
    pub incident: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

impl Lock {
    /// The lock a Deployment's annotations describe, or `None` when it is not locked. A
    /// companion that is missing or unreadable is `None`: the lock itself still holds, since
    /// the API server enforces it on [`LOCKED`] alone.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Option<Lock> {
        let reason = annotations.get(LOCKED)?.clone();
        let text = |key: &str| {
            annotations
                .get(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Some(Lock {
            reason,
            rollback_id: text(ROLLBACK).and_then(|v| v.parse().ok()),
            service: text(SERVICE),
            incident: text(INCIDENT),
            since: text(SINCE)
                .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
                .map(|at| at.with_timezone(&Utc)),
        })
    }

    /// The annotations that record this lock.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::from([(LOCKED.to_owned(), self.reason.clone())]);
        let mut put = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                out.insert(key.to_owned(), value);
            }
        };
        put(ROLLBACK, self.rollback_id.map(|id| id.to_string()));
        put(SERVICE, self.service.clone());
        put(INCIDENT, self.incident.clone());
        put(SINCE, self.since.map(|at| at.to_rfc3339()));
        out
    }

    /// A JSON merge patch that sets this lock (and clears companions it does not name).
    pub fn lock_patch(&self) -> Value {
        let set = self.annotations();
        let annotations: serde_json::Map<String, Value> = KEYS
            .iter()
            .map(|key| {
                (
                    key.to_string(),
                    set.get(*key).map_or(Value::Null, |v| json!(v)),
                )
            })
            .collect();
        json!({ "metadata": { "annotations": annotations } })
    }
}

/// A JSON merge patch that removes every lock annotation.
pub fn unlock_patch() -> Value {
    let annotations: serde_json::Map<String, Value> = KEYS
        .iter()
        .map(|key| (key.to_string(), Value::Null))
        .collect();
    json!({ "metadata": { "annotations": annotations } })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> Lock {
        Lock {
            reason: "rollback #42 of checkout-api for incident INC-7".into(),
            rollback_id: Some(42),
            service: Some("checkout-api".into()),
            incident: Some("https://incidents.example/INC-7".into()),
            since: Some(
                DateTime::parse_from_rfc3339("2026-11-22T17:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
            ),
        }
    }

    #[test]
    fn annotations_round_trip() {
        let l = lock();
        assert_eq!(Lock::from_annotations(&l.annotations()), Some(l));
    }

    #[test]
    fn no_locked_annotation_means_unlocked() {
        let mut a = lock().annotations();
        a.remove(LOCKED);
        assert_eq!(Lock::from_annotations(&a), None);
    }

    #[test]
    fn unreadable_companions_leave_the_lock_in_place() {
        let a = BTreeMap::from([
            (LOCKED.to_owned(), "by hand".to_owned()),
            (ROLLBACK.to_owned(), "forty-two".to_owned()),
            (SINCE.to_owned(), "yesterday".to_owned()),
            (SERVICE.to_owned(), "  ".to_owned()),
        ]);
        assert_eq!(
            Lock::from_annotations(&a),
            Some(Lock {
                reason: "by hand".into(),
                rollback_id: None,
                service: None,
                incident: None,
                since: None,
            })
        );
    }

    #[test]
    fn patches_name_every_key() {
        let unlock = unlock_patch();
        for key in KEYS {
            assert_eq!(unlock["metadata"]["annotations"][key], Value::Null, "{key}");
        }
        let mut partial = lock();
        partial.incident = None;
        let set = partial.lock_patch();
        assert_eq!(
            set["metadata"]["annotations"][LOCKED],
            json!(partial.reason)
        );
        assert_eq!(set["metadata"]["annotations"][ROLLBACK], json!("42"));
        assert_eq!(set["metadata"]["annotations"][INCIDENT], Value::Null);
    }
}
