//! The deploy lock, pure: the annotations that mark a workload as locked after a rollback,
//! reading them back, extending a lock by a later rollback, and the verdict on whether the
//! cluster's admission policy enforces it.
//!
//! A locked Deployment carries [`LOCKED`] (a one-line reason naming the rollback and the
//! incident, quoted in the API server's denial message) and the companions below. The
//! ValidatingAdmissionPolicy in `config/kubernetes/base/deploy-lock.yaml` enforces the lock:
//! while [`LOCKED`] is present nobody but the bot's ServiceAccount may change the pod template
//! or any of these annotations. The key names here and in that file must stay the same, and
//! [`POLICY_VERSION`] must be the version that file carries (a unit test checks both).
//!
//! The rollback patch itself sets the lock (`crate::clients::k8s::Executor::execute`), so a
//! rolled-back Deployment is never unlocked between the patch and an approved unlock. The
//! reads live in `crate::clients::k8s::lock`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Present while the Deployment is locked; its value is the human-readable reason.
pub const LOCKED: &str = "rollback-bot.io/locked";
/// The id of the rollback that holds the lock now (the latest one that rolled it back).
pub const ROLLBACK: &str = "rollback-bot.io/lock-rollback";
/// The service name `/rollback unlock` takes.
pub const SERVICE: &str = "rollback-bot.io/lock-service";
/// The incident reference or link the rollback was requested for.
pub const INCIDENT: &str = "rollback-bot.io/lock-incident";
/// When the lock was first set, RFC 3339 (a later rollback that extends it keeps this).
pub const SINCE: &str = "rollback-bot.io/lock-since";
/// The Slack user id of the on-call lead who approved the rollback.
pub const APPROVER: &str = "rollback-bot.io/lock-approver";
/// The revision numbers rolled away from (comma-separated, oldest first): the faulty ones.
pub const FAULTY_REVISIONS: &str = "rollback-bot.io/lock-faulty-revisions";
/// The faulty revision's images, `container=image` comma-separated.
pub const FAULTY_IMAGES: &str = "rollback-bot.io/lock-faulty-images";
/// Earlier rollbacks that held this lock before [`ROLLBACK`] (comma-separated ids).
pub const EARLIER_ROLLBACKS: &str = "rollback-bot.io/lock-earlier-rollbacks";

/// Every lock annotation; the admission policy protects exactly these.
pub const KEYS: [&str; 9] = [
    LOCKED,
    ROLLBACK,
    SERVICE,
    INCIDENT,
    SINCE,
    APPROVER,
    FAULTY_REVISIONS,
    FAULTY_IMAGES,
    EARLIER_ROLLBACKS,
];

/// The admission policy (and its binding) `config/kubernetes/base/deploy-lock.yaml` installs.
pub const POLICY_NAME: &str = "rollback-bot-deploy-lock";
/// The annotation on the policy and its binding that names their version.
pub const POLICY_VERSION_ANNOTATION: &str = "rollback-bot.io/policy-version";
/// The version of the policy this bot ships and relies on.
pub const POLICY_VERSION: &str = "3";
/// The manifest that installs the policy, as the card tells operators.
pub const POLICY_MANIFEST: &str = "config/kubernetes/base/deploy-lock.yaml";

/// A Deployment's lock as its annotations describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Why it is locked (the [`LOCKED`] annotation's value).
    pub reason: String,
    /// The rollback that holds the lock, when the annotation is readable.
    pub rollback_id: Option<i64>,
    pub service: Option<String>,
    pub incident: Option<String>,
    pub since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faulty_revisions: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faulty_images: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_rollbacks: Vec<i64>,
}

fn ids(value: Option<String>) -> Vec<i64> {
    value
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_default()
}

fn joined(ids: &[i64]) -> Option<String> {
    (!ids.is_empty()).then(|| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","))
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
            approver: text(APPROVER),
            faulty_revisions: ids(text(FAULTY_REVISIONS)),
            faulty_images: text(FAULTY_IMAGES),
            earlier_rollbacks: ids(text(EARLIER_ROLLBACKS)),
        })
    }

    /// Every lock annotation: `Some` what this lock sets, `None` what it clears (a companion
    /// it does not name). The rollback patch and [`Lock::lock_patch`] both apply exactly this.
    pub fn changes(&self) -> BTreeMap<String, Option<String>> {
        let values = [
            (LOCKED, Some(self.reason.clone())),
            (ROLLBACK, self.rollback_id.map(|id| id.to_string())),
            (SERVICE, self.service.clone()),
            (INCIDENT, self.incident.clone()),
            (SINCE, self.since.map(|at| at.to_rfc3339())),
            (APPROVER, self.approver.clone()),
            (FAULTY_REVISIONS, joined(&self.faulty_revisions)),
            (FAULTY_IMAGES, self.faulty_images.clone()),
            (EARLIER_ROLLBACKS, joined(&self.earlier_rollbacks)),
        ];
        values
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect()
    }

    /// The annotations that record this lock.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.changes()
            .into_iter()
            .filter_map(|(key, value)| Some((key, value?)))
            .collect()
    }

    /// A JSON merge patch that sets this lock (and clears companions it does not name).
    pub fn lock_patch(&self) -> Value {
        let annotations: serde_json::Map<String, Value> = self
            .changes()
            .into_iter()
            .map(|(key, value)| (key, value.map_or(Value::Null, Value::String)))
            .collect();
        json!({ "metadata": { "annotations": annotations } })
    }

    /// This lock, set by a rollback of a Deployment that `previous` already locks: the lock
    /// never lapses, so it keeps its original `since`, the faulty revisions of both and the
    /// earlier holders. The same rollback (a retry) or no previous lock: unchanged.
    pub fn extending(mut self, previous: Option<&Lock>) -> Lock {
        let Some(previous) = previous else {
            return self;
        };
        if previous.rollback_id.is_some() && previous.rollback_id == self.rollback_id {
            return self;
        }
        let mut earlier = previous.earlier_rollbacks.clone();
        earlier.extend(previous.rollback_id);
        earlier.retain(|id| Some(*id) != self.rollback_id);
        earlier.dedup();
        self.earlier_rollbacks = earlier;
        let mut faulty = previous.faulty_revisions.clone();
        for revision in &self.faulty_revisions {
            if !faulty.contains(revision) {
                faulty.push(*revision);
            }
        }
        self.faulty_revisions = faulty;
        self.since = previous.since.or(self.since);
        self
    }

    /// Whether `revision` is one this lock keeps out (a faulty revision it was set for).
    pub fn locks_out(&self, revision: i64) -> bool {
        self.faulty_revisions.contains(&revision)
    }

    /// The rollbacks that set this lock, oldest first ("#7, #12").
    pub fn holders(&self) -> String {
        let mut all = self.earlier_rollbacks.clone();
        all.extend(self.rollback_id);
        if all.is_empty() {
            return "set by hand".to_owned();
        }
        all.iter()
            .map(|id| format!("#{id}"))
            .collect::<Vec<_>>()
            .join(", ")
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

/// Whether the cluster enforces the lock for a namespace: the verdict the card shows next to
/// "locked". `problems` says what is missing, in words an operator can act on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    pub enforced: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl Enforcement {
    /// Enforced, nothing missing.
    pub fn enforced() -> Self {
        Enforcement {
            enforced: true,
            problems: vec![],
        }
    }

    /// Not enforced, for these reasons.
    pub fn not_enforced(problems: Vec<String>) -> Self {
        Enforcement {
            enforced: false,
            problems,
        }
    }

    /// One line: "enforced by …" or what is missing and how to fix it.
    pub fn summary(&self) -> String {
        if self.enforced {
            format!("enforced by the admission policy {POLICY_NAME}")
        } else {
            format!(
                "{} — install {POLICY_MANIFEST} (kubectl apply -f {POLICY_MANIFEST})",
                self.problems.join("; ")
            )
        }
    }
}

/// What the cluster has, as the Kubernetes client read it, for [`enforcement`].
#[derive(Debug, Clone, Copy)]
pub struct PolicyObjects<'a> {
    /// The policy's name the bot is configured with (default [`POLICY_NAME`]).
    pub policy_name: &'a str,
    pub policy: Option<&'a ValidatingAdmissionPolicy>,
    /// Every binding in the cluster; those of other policies are ignored.
    pub bindings: &'a [ValidatingAdmissionPolicyBinding],
    /// The Deployment's namespace.
    pub namespace: &'a str,
    /// That namespace's labels (`kubernetes.io/metadata.name` at least), when a selector
    /// needed them; `None` when they were not read.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
}

fn version_of(annotations: Option<&BTreeMap<String, String>>) -> Option<&str> {
    annotations?
        .get(POLICY_VERSION_ANNOTATION)
        .map(String::as_str)
}

fn selects_something(selector: Option<&LabelSelector>) -> bool {
    selector.is_some_and(|s| {
        s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
            || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
    })
}

/// Whether a namespace selector of the policy or of one of its bindings restricts namespaces,
/// so that [`enforcement`] needs the namespace's labels.
pub fn needs_namespace_labels(
    policy: Option<&ValidatingAdmissionPolicy>,
    bindings: &[ValidatingAdmissionPolicyBinding],
    policy_name: &str,
) -> bool {
    let of_policy = policy
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.match_constraints.as_ref())
        .and_then(|m| m.namespace_selector.as_ref());
    selects_something(of_policy)
        || bindings_of(bindings, policy_name).any(|b| {
            selects_something(
                b.spec
                    .match_resources
                    .as_ref()
                    .and_then(|m| m.namespace_selector.as_ref()),
            )
        })
}

fn bindings_of<'a>(
    bindings: &'a [ValidatingAdmissionPolicyBinding],
    policy_name: &'a str,
) -> impl Iterator<Item = &'a ValidatingAdmissionPolicyBinding> {
    bindings
        .iter()
        .filter(move |b| b.spec.policy_name == policy_name)
}

/// Kubernetes label-selector semantics: every `matchLabels` pair and every expression holds;
/// an empty or absent selector matches everything.
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let pairs = selector.match_labels.iter().flatten();
    let pairs_hold = pairs.into_iter().all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten();
    pairs_hold
        && expressions.into_iter().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// The verdict: the policy exists in the version this bot ships, and at least one binding of
/// it denies (`validationActions` has `Deny`) in the Deployment's namespace.
pub fn enforcement(objects: &PolicyObjects) -> Enforcement {
    let name = objects.policy_name;
    let Some(policy) = objects.policy else {
        return Enforcement::not_enforced(vec![format!(
            "the ValidatingAdmissionPolicy {name} is not installed"
        )]);
    };
    let mut problems = Vec::new();
    match version_of(policy.metadata.annotations.as_ref()) {
        Some(POLICY_VERSION) => {}
        other => problems.push(format!(
            "the ValidatingAdmissionPolicy {name} is version {}, this bot needs version {POLICY_VERSION}",
            other.unwrap_or("unknown (no rollback-bot.io/policy-version)")
        )),
    }
    let covers = |selector: Option<&LabelSelector>| match objects.namespace_labels {
        Some(labels) => selector_matches(selector, labels),
        None => !selects_something(selector),
    };
    let policy_selector = policy
        .spec
        .as_ref()
        .and_then(|s| s.match_constraints.as_ref())
        .and_then(|m| m.namespace_selector.as_ref());
    if !covers(policy_selector) {
        problems.push(format!(
            "the ValidatingAdmissionPolicy {name}'s namespaceSelector does not match namespace {}",
            objects.namespace
        ));
    }
    let bindings: Vec<_> = bindings_of(objects.bindings, name).collect();
    if bindings.is_empty() {
        problems.push(format!(
            "no ValidatingAdmissionPolicyBinding binds the policy {name}"
        ));
    } else {
        let denying = bindings
            .iter()
            .find(|b| binding_problem(b, objects, &covers).is_none());
        if denying.is_none() {
            problems.extend(
                bindings
                    .iter()
                    .filter_map(|b| binding_problem(b, objects, &covers)),
            );
        }
    }
    if problems.is_empty() {
        Enforcement::enforced()
    } else {
        Enforcement::not_enforced(problems)
    }
}

/// Why one binding does not enforce the lock in the namespace, or `None` when it does.
fn binding_problem(
    binding: &ValidatingAdmissionPolicyBinding,
    objects: &PolicyObjects,
    covers: &dyn Fn(Option<&LabelSelector>) -> bool,
) -> Option<String> {
    let name = binding.metadata.name.as_deref().unwrap_or("(unnamed)");
    let spec = &binding.spec;
    let actions = &spec.validation_actions;
    if !actions.iter().any(|a| a == "Deny") {
        return Some(format!(
            "the binding {name} has validationActions [{}], not Deny: it only reports",
            actions.join(", ")
        ));
    }
    if version_of(binding.metadata.annotations.as_ref()) != Some(POLICY_VERSION) {
        return Some(format!(
            "the binding {name} is not version {POLICY_VERSION} of {POLICY_MANIFEST}"
        ));
    }
    let resources = spec.match_resources.as_ref();
    if !covers(resources.and_then(|m| m.namespace_selector.as_ref())) {
        return Some(format!(
            "the binding {name}'s namespaceSelector does not match namespace {}",
            objects.namespace
        ));
    }
    let narrowed = resources.is_some_and(|m| {
        selects_something(m.object_selector.as_ref())
            || m.resource_rules.as_ref().is_some_and(|r| !r.is_empty())
            || m.exclude_resource_rules
                .as_ref()
                .is_some_and(|r| !r.is_empty())
    });
    narrowed.then(|| {
        format!(
            "the binding {name} narrows what it matches (objectSelector or resource rules); \
             the bot cannot confirm it covers this deployment"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::{
        MatchResources, ValidatingAdmissionPolicyBindingSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta};

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
            approver: Some("U0LEAD".into()),
            faulty_revisions: vec![5],
            faulty_images: Some("app=web:bad".into()),
            earlier_rollbacks: vec![],
        }
    }

    #[test]
    fn annotations_round_trip() {
        let l = lock();
        assert_eq!(Lock::from_annotations(&l.annotations()), Some(l));
        let extended = Lock {
            rollback_id: Some(43),
            faulty_revisions: vec![6],
            ..lock()
        }
        .extending(Some(&lock()));
        assert_eq!(
            Lock::from_annotations(&extended.annotations()),
            Some(extended)
        );
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
            (FAULTY_REVISIONS.to_owned(), "x, 4".to_owned()),
        ]);
        assert_eq!(
            Lock::from_annotations(&a),
            Some(Lock {
                reason: "by hand".into(),
                faulty_revisions: vec![4],
                ..Lock::default()
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
        for key in KEYS {
            assert!(set["metadata"]["annotations"].get(key).is_some(), "{key}");
        }
        assert_eq!(
            set["metadata"]["annotations"][LOCKED],
            json!(partial.reason)
        );
        assert_eq!(set["metadata"]["annotations"][ROLLBACK], json!("42"));
        assert_eq!(set["metadata"]["annotations"][FAULTY_REVISIONS], json!("5"));
        assert_eq!(set["metadata"]["annotations"][INCIDENT], Value::Null);
        assert_eq!(
            set["metadata"]["annotations"][EARLIER_ROLLBACKS],
            Value::Null
        );
    }

    #[test]
    fn a_later_rollback_extends_the_lock_without_a_gap() {
        let first = lock();
        let second = Lock {
            reason: "rollback #50 of checkout-api".into(),
            rollback_id: Some(50),
            since: Some(Utc::now()),
            faulty_revisions: vec![7, 5],
            ..lock()
        };
        let extended = second.clone().extending(Some(&first));
        assert_eq!(extended.rollback_id, Some(50));
        assert_eq!(extended.reason, second.reason);
        assert_eq!(
            extended.since, first.since,
            "the lock has held since the first"
        );
        assert_eq!(extended.earlier_rollbacks, vec![42]);
        assert_eq!(extended.faulty_revisions, vec![5, 7]);
        assert!(extended.locks_out(5) && extended.locks_out(7) && !extended.locks_out(6));
        assert_eq!(extended.holders(), "#42, #50");
        // A retry of the same rollback, or nothing before it: unchanged.
        assert_eq!(first.clone().extending(Some(&first)), first);
        assert_eq!(second.clone().extending(None), second);
    }

    #[test]
    fn the_shipped_policy_names_every_key_and_this_version() {
        let manifest = include_str!("../../config/kubernetes/base/deploy-lock.yaml");
        for key in KEYS {
            assert!(
                manifest.contains(&format!("'{key}'")),
                "{key} missing from the policy"
            );
        }
        let version = format!("{POLICY_VERSION_ANNOTATION}: \"{POLICY_VERSION}\"");
        assert_eq!(
            manifest.matches(&version).count(),
            2,
            "policy and binding carry {version}"
        );
        assert!(manifest.contains(&format!("name: {POLICY_NAME}")));
    }

    fn meta(name: &str, version: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            annotations: version
                .map(|v| BTreeMap::from([(POLICY_VERSION_ANNOTATION.to_owned(), v.to_owned())])),
            ..Default::default()
        }
    }

    fn policy(version: Option<&str>) -> ValidatingAdmissionPolicy {
        ValidatingAdmissionPolicy {
            metadata: meta(POLICY_NAME, version),
            ..Default::default()
        }
    }

    fn binding(
        actions: &[&str],
        selector: Option<LabelSelector>,
    ) -> ValidatingAdmissionPolicyBinding {
        ValidatingAdmissionPolicyBinding {
            metadata: meta(POLICY_NAME, Some(POLICY_VERSION)),
            spec: ValidatingAdmissionPolicyBindingSpec {
                policy_name: POLICY_NAME.into(),
                validation_actions: actions.iter().map(|a| a.to_string()).collect(),
                match_resources: selector.map(|s| MatchResources {
                    namespace_selector: Some(s),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }
    }

    fn verdict(
        policy: Option<&ValidatingAdmissionPolicy>,
        bindings: &[ValidatingAdmissionPolicyBinding],
        labels: Option<&BTreeMap<String, String>>,
    ) -> Enforcement {
        enforcement(&PolicyObjects {
            policy_name: POLICY_NAME,
            policy,
            bindings,
            namespace: "shop",
            namespace_labels: labels,
        })
    }

    #[test]
    fn enforced_only_with_the_shipped_policy_and_a_denying_binding() {
        let p = policy(Some(POLICY_VERSION));
        assert_eq!(
            verdict(Some(&p), &[binding(&["Deny"], None)], None),
            Enforcement::enforced()
        );

        let missing = verdict(None, &[binding(&["Deny"], None)], None);
        assert!(!missing.enforced);
        assert!(
            missing.problems[0].contains("is not installed"),
            "{missing:?}"
        );

        let unbound = verdict(Some(&p), &[], None);
        assert!(
            unbound.problems[0].contains("no ValidatingAdmissionPolicyBinding"),
            "{unbound:?}"
        );

        let warn_only = verdict(Some(&p), &[binding(&["Warn", "Audit"], None)], None);
        assert!(
            warn_only.problems[0].contains("[Warn, Audit], not Deny"),
            "{warn_only:?}"
        );

        let old = verdict(Some(&policy(Some("1"))), &[binding(&["Deny"], None)], None);
        assert!(old.problems[0].contains("is version 1"), "{old:?}");
        let unversioned = verdict(Some(&policy(None)), &[binding(&["Deny"], None)], None);
        assert!(!unversioned.enforced);

        // One denying binding is enough, whatever the others do.
        let both = [binding(&["Audit"], None), binding(&["Deny"], None)];
        assert!(verdict(Some(&p), &both, None).enforced);
        assert!(
            Enforcement::not_enforced(vec!["x".into()])
                .summary()
                .contains(POLICY_MANIFEST)
        );
    }

    #[test]
    fn a_namespace_selector_must_match_the_deployments_namespace() {
        let p = policy(Some(POLICY_VERSION));
        let only_prod = LabelSelector {
            match_labels: Some(BTreeMap::from([("env".into(), "prod".into())])),
            ..Default::default()
        };
        let bindings = [binding(&["Deny"], Some(only_prod))];
        assert!(needs_namespace_labels(Some(&p), &bindings, POLICY_NAME));
        assert!(!needs_namespace_labels(
            Some(&p),
            &[binding(&["Deny"], None)],
            POLICY_NAME
        ));
        let staging = BTreeMap::from([("env".to_owned(), "staging".to_owned())]);
        let prod = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
        let outside = verdict(Some(&p), &bindings, Some(&staging));
        assert!(
            outside.problems[0].contains("does not match namespace shop"),
            "{outside:?}"
        );
        assert!(verdict(Some(&p), &bindings, Some(&prod)).enforced);
        // Labels not read: a restricting selector cannot be confirmed.
        assert!(!verdict(Some(&p), &bindings, None).enforced);
    }

    #[test]
    fn label_selectors_follow_kubernetes() {
        let labels = BTreeMap::from([("team".to_owned(), "pay".to_owned())]);
        let expr = |op: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "team".into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
        };
        assert!(selector_matches(None, &labels));
        assert!(selector_matches(Some(&LabelSelector::default()), &labels));
        assert!(selector_matches(Some(&expr("In", &["pay", "x"])), &labels));
        assert!(!selector_matches(Some(&expr("NotIn", &["pay"])), &labels));
        assert!(selector_matches(Some(&expr("Exists", &[])), &labels));
        assert!(!selector_matches(Some(&expr("DoesNotExist", &[])), &labels));
        assert!(!selector_matches(Some(&expr("Bogus", &[])), &labels));
        assert!(selector_matches(
            Some(&expr("NotIn", &["x"])),
            &BTreeMap::new()
        ));
    }
}
