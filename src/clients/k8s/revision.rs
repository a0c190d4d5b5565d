//! Pure rollout-history logic with `kubectl`'s semantics: which ReplicaSets belong to a
//! Deployment, revision numbers, which ReplicaSet is current, target selection for
//! `rollout undo [--to-revision N]`, hash-insensitive template comparison, kubectl's
//! annotation merge and the JSON patch it sends, and the `rollout history` table.
//!
//! Nothing here talks to the API server; `executor.rs` feeds it listed objects.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::{Error, Result};

/// Annotation holding a ReplicaSet's (and the Deployment's) revision number.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Earlier revision numbers of a ReplicaSet that was re-activated by a rollback.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// Free-text reason for a rollout, copied by the controller from Deployment to ReplicaSet.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// Label the controller adds to a ReplicaSet's template and pods.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Set by `kubectl apply`; kubectl warns before rolling such a Deployment back.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Deployment annotations `kubectl rollout undo` keeps; every other Deployment annotation is
/// replaced by the target ReplicaSet's annotations.
const ANNOTATIONS_KEPT_FROM_DEPLOYMENT: [&str; 6] = [
    LAST_APPLIED_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// One container's image in a pod template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerImage {
    /// Container name.
    pub container: String,
    /// Image reference as written in the template.
    pub image: String,
    /// Whether this is an init container.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
}

/// One entry of a Deployment's rollout history (one owned ReplicaSet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// `deployment.kubernetes.io/revision` of the ReplicaSet (0 when missing, like kubectl).
    pub number: i64,
    /// ReplicaSet name.
    pub replica_set: String,
    /// The ReplicaSet's `pod-template-hash` label.
    pub pod_template_hash: String,
    /// Images of its pod template.
    pub images: Vec<ContainerImage>,
    /// `kubernetes.io/change-cause`, if recorded.
    pub change_cause: Option<String>,
    /// When the ReplicaSet was created (a re-activated ReplicaSet keeps its old timestamp).
    pub created_at: Option<DateTime<Utc>>,
    /// Desired replicas of the ReplicaSet.
    pub replicas: i32,
    /// Ready replicas of the ReplicaSet.
    pub ready_replicas: i32,
    /// Available replicas of the ReplicaSet.
    pub available_replicas: i32,
    /// Whether this is the Deployment's current ("new") ReplicaSet.
    pub current: bool,
    /// Numbers this ReplicaSet had before earlier rollbacks renumbered it.
    pub previous_numbers: Vec<i64>,
}

/// Keeps the ReplicaSets *controlled by* the Deployment (label matches alone are not enough)
/// and sorts them like kubectl: by creation time, name as tie-breaker.
pub fn owned_replica_sets(deployment: &Deployment, candidates: Vec<ReplicaSet>) -> Vec<ReplicaSet> {
    let Some(uid) = deployment.metadata.uid.as_deref() else {
        return Vec::new();
    };
    let mut owned: Vec<ReplicaSet> = candidates
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .collect();
    owned.sort_by(|a, b| {
        let key = |rs: &ReplicaSet| {
            (
                rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
                rs.metadata.name.clone().unwrap_or_default(),
            )
        };
        key(a).cmp(&key(b))
    });
    owned
}

/// The revision number of a ReplicaSet; a missing annotation counts as 0 (kubectl does the
/// same), an unparsable one is an error.
///
/// # Errors
/// [`Error::InvalidRevision`] when the annotation is not an integer.
pub fn revision_of(rs: &ReplicaSet) -> Result<i64> {
    match annotation(&rs.metadata.annotations, REVISION_ANNOTATION) {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| Error::InvalidRevision {
            replica_set: name_of(rs),
            value: v.to_owned(),
        }),
    }
}

/// Pod-template equality the way the deployment controller and kubectl judge it: the
/// `pod-template-hash` label is ignored, and (Go's semantic equality) absent, empty and null
/// collections are the same thing.
pub fn templates_equal(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized_template(a) == normalized_template(b)
}

/// The current ("new") ReplicaSet: the oldest owned one whose template equals the
/// Deployment's. `owned` must be sorted as [`owned_replica_sets`] returns it.
pub fn current_replica_set<'a>(
    deployment: &Deployment,
    owned: &'a [ReplicaSet],
) -> Option<&'a ReplicaSet> {
    let template = &deployment.spec.as_ref()?.template;
    owned.iter().find(|rs| {
        rs.spec.as_ref().is_some_and(|s| {
            s.template
                .as_ref()
                .is_some_and(|t| templates_equal(t, template))
        })
    })
}

/// The rollout history like `kubectl rollout history`: one entry per revision number,
/// ascending. ReplicaSets whose revision does not parse are skipped (kubectl warns and skips
/// them too); when two share a number, the later one in creation order wins, as in kubectl's map.
pub fn history(deployment: &Deployment, owned: &[ReplicaSet]) -> Vec<Revision> {
    let current = current_replica_set(deployment, owned).map(name_of);
    let mut by_number = BTreeMap::new();
    for rs in owned {
        let number = match revision_of(rs) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "skipping ReplicaSet in rollout history");
                continue;
            }
        };
        let name = name_of(rs);
        let status = rs.status.as_ref();
        let revision = Revision {
            number,
            current: current.as_deref() == Some(name.as_str()),
            pod_template_hash: pod_template_hash(rs),
            images: replica_set_images(rs),
            change_cause: change_cause(rs),
            created_at: created_at(rs),
            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
            available_replicas: status.and_then(|s| s.available_replicas).unwrap_or(0),
            previous_numbers: annotation(&rs.metadata.annotations, REVISION_HISTORY_ANNOTATION)
                .map(|h| h.split(',').filter_map(|n| n.trim().parse().ok()).collect())
                .unwrap_or_default(),
            replica_set: name,
        };
        by_number.insert(number, revision);
    }
    by_number.into_values().collect()
}

/// `kubectl rollout history`'s table for these revisions (without kubectl's first line,
/// `deployment.apps/<name>`): `REVISION  CHANGE-CAUSE`, then one row per revision, columns
/// aligned the way Go's tabwriter (padding 2) aligns them.
pub fn format_history(revisions: &[Revision]) -> String {
    if revisions.is_empty() {
        return "No rollout history found.\n".to_owned();
    }
    let rows: Vec<(String, String)> = revisions
        .iter()
        .map(|r| {
            (
                r.number.to_string(),
                r.change_cause
                    .clone()
                    .unwrap_or_else(|| "<none>".to_owned()),
            )
        })
        .collect();
    let width = rows
        .iter()
        .map(|(n, _)| n.len())
        .chain(["REVISION".len()])
        .max()
        .unwrap_or(0)
        + 2;
    let mut out = format!("{:<width$}CHANGE-CAUSE\n", "REVISION");
    for (number, cause) in rows {
        out.push_str(&format!("{number:<width$}{cause}\n"));
    }
    out
}

/// Picks the ReplicaSet `rollout undo` would restore. `None` or `Some(0)` means "previous":
/// the ReplicaSet with the second-highest revision. ReplicaSets with unparsable revisions are
/// ignored, as kubectl ignores them.
///
/// # Errors
/// [`Error::UnknownRevision`] (listing the available ones) or [`Error::NoPreviousRevision`].
pub fn select_target<'a>(
    deployment: &Deployment,
    owned: &'a [ReplicaSet],
    requested: Option<i64>,
) -> Result<&'a ReplicaSet> {
    let numbered: Vec<(i64, &ReplicaSet)> = owned
        .iter()
        .filter_map(|rs| revision_of(rs).ok().map(|n| (n, rs)))
        .collect();
    let unknown = |revision| {
        let mut available: Vec<i64> = numbered.iter().map(|(n, _)| *n).collect();
        available.sort_unstable();
        available.dedup();
        Error::UnknownRevision {
            revision,
            available,
        }
    };
    match requested {
        Some(n) if n < 0 => Err(unknown(n)),
        Some(n) if n > 0 => numbered
            .iter()
            .find(|(v, _)| *v == n)
            .map(|(_, rs)| *rs)
            .ok_or_else(|| unknown(n)),
        _ => {
            let mut latest: Option<(i64, &ReplicaSet)> = None;
            let mut previous: Option<(i64, &ReplicaSet)> = None;
            for &(n, rs) in &numbered {
                if latest.is_none_or(|(l, _)| n > l) {
                    previous = latest;
                    latest = Some((n, rs));
                } else if previous.is_none_or(|(p, _)| n > p) {
                    previous = Some((n, rs));
                }
            }
            previous
                .map(|(_, rs)| rs)
                .ok_or_else(|| Error::NoPreviousRevision {
                    deployment: deployment.metadata.name.clone().unwrap_or_default(),
                })
        }
    }
}

/// The template kubectl writes into the Deployment: the ReplicaSet's, minus the
/// `pod-template-hash` label (the controller would otherwise see a different template).
pub fn rollback_template(rs: &ReplicaSet) -> PodTemplateSpec {
    let mut template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    template
}

/// What the bot's rollback does to the Deployment's annotations beyond `kubectl rollout undo`'s
/// merge. The default is kubectl's merge exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnotationChanges {
    /// Deployment annotations that keep the Deployment's value (the bot's own operational
    /// ones: discovery, database coupling, who deployed).
    pub keep: Vec<String>,
    /// Annotations set (`Some`) or removed (`None`) whatever either side had: the lock.
    pub set: BTreeMap<String, Option<String>>,
}

/// kubectl's annotation merge for `rollout undo` (start empty, keep the Deployment's own
/// bookkeeping annotations, then take every other annotation from the target ReplicaSet),
/// then `changes`: the kept keys get the Deployment's value back and the set keys their
/// value. Other Deployment annotations the ReplicaSet lacks are dropped, as kubectl does.
pub fn rollback_annotations(
    deployment: &BTreeMap<String, String>,
    replica_set: &BTreeMap<String, String>,
    changes: &AnnotationChanges,
) -> BTreeMap<String, String> {
    let mut merged = BTreeMap::new();
    for key in ANNOTATIONS_KEPT_FROM_DEPLOYMENT {
        if let Some(v) = deployment.get(key) {
            merged.insert(key.to_owned(), v.clone());
        }
    }
    for (k, v) in replica_set {
        if !ANNOTATIONS_KEPT_FROM_DEPLOYMENT.contains(&k.as_str()) {
            merged.insert(k.clone(), v.clone());
        }
    }
    for key in &changes.keep {
        if let Some(v) = deployment.get(key) {
            merged.insert(key.clone(), v.clone());
        }
    }
    for (key, value) in &changes.set {
        match value {
            Some(v) => merged.insert(key.clone(), v.clone()),
            None => merged.remove(key),
        };
    }
    merged
}

/// Deployment annotations that [`rollback_annotations`] will drop (worth showing in a plan):
/// neither kept nor replaced by `changes`.
pub fn dropped_annotations(
    deployment: &BTreeMap<String, String>,
    replica_set: &BTreeMap<String, String>,
    changes: &AnnotationChanges,
) -> Vec<String> {
    let merged = rollback_annotations(deployment, replica_set, changes);
    deployment
        .keys()
        .filter(|k| !merged.contains_key(*k) && !changes.set.contains_key(*k))
        .cloned()
        .collect()
}

/// The JSON patch of `kubectl rollout undo`: replace `/spec/template` and
/// `/metadata/annotations` in one request. With `guard_resource_version`, the patch also sets
/// `metadata.resourceVersion` to the version that was read, which makes the API server apply
/// it only to exactly that object and answer 409 Conflict otherwise (kubectl's patch is
/// last-writer-wins); the executor then re-reads and re-checks. `annotations_exist` selects
/// `replace` vs `add`, because `replace` fails on a missing member.
pub fn rollback_patch(
    template: &PodTemplateSpec,
    annotations: &BTreeMap<String, String>,
    annotations_exist: bool,
    guard_resource_version: Option<&str>,
) -> Value {
    let mut ops = Vec::with_capacity(3);
    if let Some(version) = guard_resource_version {
        ops.push(json!({"op": "replace", "path": "/metadata/resourceVersion", "value": version}));
    }
    ops.push(json!({"op": "replace", "path": "/spec/template", "value": template}));
    let op = if annotations_exist { "replace" } else { "add" };
    ops.push(json!({"op": op, "path": "/metadata/annotations", "value": annotations}));
    Value::Array(ops)
}

/// Images of all containers (init containers first, as the pod runs them).
pub fn template_images(template: &PodTemplateSpec) -> Vec<ContainerImage> {
    let Some(spec) = template.spec.as_ref() else {
        return Vec::new();
    };
    let init = spec.init_containers.iter().flatten().map(|c| (c, true));
    let main = spec.containers.iter().map(|c| (c, false));
    init.chain(main)
        .map(|(c, init)| ContainerImage {
            container: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            init,
        })
        .collect()
}

/// The images of a ReplicaSet's pod template.
pub fn replica_set_images(rs: &ReplicaSet) -> Vec<ContainerImage> {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .map(template_images)
        .unwrap_or_default()
}

/// A ReplicaSet's `kubernetes.io/change-cause`.
pub fn change_cause(rs: &ReplicaSet) -> Option<String> {
    annotation(&rs.metadata.annotations, CHANGE_CAUSE_ANNOTATION).map(str::to_owned)
}

/// A ReplicaSet's creation time.
pub fn created_at(rs: &ReplicaSet) -> Option<DateTime<Utc>> {
    rs.metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| to_chrono(&t.0))
}

/// The `pod-template-hash` label of a ReplicaSet (empty if absent).
pub fn pod_template_hash(rs: &ReplicaSet) -> String {
    rs.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
        .or_else(|| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.as_ref())
                .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
        })
        .cloned()
        .unwrap_or_default()
}

/// A template as JSON with the hash label removed and empty values pruned, for comparison.
pub(crate) fn normalized_template(template: &PodTemplateSpec) -> Value {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    let mut value = serde_json::to_value(&template).unwrap_or(Value::Null);
    prune_empty(&mut value);
    value
}

/// SHA-256 (hex) of the normalized template: equal for templates the controller treats as
/// equal, different for any change that matters (image, env value, command, ...). Plans bind
/// to it, so execution can prove it applies exactly the approved template without keeping
/// the template's secrets.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let canonical = normalized_template(template).to_string();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Removes nulls, empty arrays and empty objects recursively; returns whether `v` itself is
/// now empty.
fn prune_empty(v: &mut Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => {
            for item in items.iter_mut() {
                prune_empty(item);
            }
            items.is_empty()
        }
        Value::Object(map) => {
            map.retain(|_, child| !prune_empty(child));
            map.is_empty()
        }
        _ => false,
    }
}

pub(crate) fn annotation<'a>(
    annotations: &'a Option<BTreeMap<String, String>>,
    key: &str,
) -> Option<&'a str> {
    annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

pub(crate) fn name_of(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

pub(crate) fn to_chrono(ts: &k8s_openapi::jiff::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(
        ts.as_second(),
        ts.subsec_nanosecond().try_into().unwrap_or(0),
    )
}

/// Images as `container=image, …`.
pub fn fmt_images(images: &[ContainerImage]) -> String {
    images
        .iter()
        .map(|i| format!("{}={}", i.container, i.image))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec};
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

    pub(crate) const UID: &str = "5f0c7c1e-0000-4000-8000-000000000001";

    pub(crate) fn template(image: &str, hash: Option<&str>) -> PodTemplateSpec {
        let mut labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
        if let Some(h) = hash {
            labels.insert(POD_TEMPLATE_HASH_LABEL.to_owned(), h.to_owned());
        }
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    pub(crate) fn deployment(image: &str, annotations: &[(&str, &str)]) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("production".into()),
                uid: Some(UID.into()),
                generation: Some(7),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(3),
                template: template(image, None),
                ..Default::default()
            }),
            status: None,
        }
    }

    pub(crate) fn replica_set(
        hash: &str,
        revision: Option<&str>,
        image: &str,
        created_secs: i64,
    ) -> ReplicaSet {
        let mut annotations = BTreeMap::new();
        if let Some(r) = revision {
            annotations.insert(REVISION_ANNOTATION.to_owned(), r.to_owned());
        }
        annotations.insert(
            CHANGE_CAUSE_ANNOTATION.to_owned(),
            format!("deploy {image}"),
        );
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("web-{hash}")),
                labels: Some(BTreeMap::from([
                    ("app".to_owned(), "web".to_owned()),
                    (POD_TEMPLATE_HASH_LABEL.to_owned(), hash.to_owned()),
                ])),
                annotations: Some(annotations),
                creation_timestamp: Some(Time(
                    k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + created_secs)
                        .unwrap(),
                )),
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: "web".into(),
                    uid: UID.into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                template: Some(template(image, Some(hash))),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Three rollouts v1 → v2 → v3; the Deployment runs v3.
    pub(crate) fn three_revisions() -> (Deployment, Vec<ReplicaSet>) {
        let dep = deployment(
            "web:3",
            &[
                (REVISION_ANNOTATION, "3"),
                (CHANGE_CAUSE_ANNOTATION, "deploy web:3"),
            ],
        );
        let rss = vec![
            replica_set("bbb", Some("2"), "web:2", 20),
            replica_set("ccc", Some("3"), "web:3", 30),
            replica_set("aaa", Some("1"), "web:1", 10),
        ];
        (dep.clone(), owned_replica_sets(&dep, rss))
    }

    #[test]
    fn only_controlled_replica_sets_count_and_they_sort_by_creation() {
        let (dep, mut rss) = three_revisions();
        let mut stranger = replica_set("zzz", Some("9"), "web:9", 5);
        stranger.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
        let mut not_controller = replica_set("yyy", Some("8"), "web:8", 6);
        not_controller.metadata.owner_references.as_mut().unwrap()[0].controller = None;
        rss.push(stranger);
        rss.push(not_controller);
        let owned = owned_replica_sets(&dep, rss);
        let names: Vec<String> = owned.iter().map(name_of).collect();
        assert_eq!(names, ["web-aaa", "web-bbb", "web-ccc"]);
    }

    #[test]
    fn current_replica_set_ignores_the_hash_label() {
        let (dep, rss) = three_revisions();
        assert_eq!(
            current_replica_set(&dep, &rss).map(name_of).as_deref(),
            Some("web-ccc")
        );
    }

    #[test]
    fn semantic_equality_treats_empty_and_missing_alike() {
        let a = template("web:1", None);
        let mut b = template("web:1", Some("abc"));
        b.spec.as_mut().unwrap().volumes = Some(vec![]);
        b.spec.as_mut().unwrap().containers[0].env = Some(vec![]);
        assert!(templates_equal(&a, &b));
        assert!(!templates_equal(&a, &template("web:2", None)));
    }

    #[test]
    fn history_matches_kubectl_table() {
        let (dep, mut rss) = three_revisions();
        rss[0]
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(CHANGE_CAUSE_ANNOTATION);
        let revisions = history(&dep, &rss);
        assert_eq!(
            revisions.iter().map(|r| r.number).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(revisions[2].current && !revisions[0].current);
        // Golden value: `kubectl rollout history` output minus its `deployment.apps/web` line.
        assert_eq!(
            format_history(&revisions),
            "REVISION  CHANGE-CAUSE\n1         <none>\n2         deploy web:2\n3         deploy web:3\n"
        );
    }

    #[test]
    fn history_skips_unparsable_and_reads_renumbering() {
        let (dep, mut rss) = three_revisions();
        rss.push(replica_set("bad", Some("x1"), "web:x", 40));
        rss[0]
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION_ANNOTATION.into(), "4".into());
        rss[0]
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION_HISTORY_ANNOTATION.into(), "1".into());
        let revisions = history(&dep, &rss);
        assert_eq!(
            revisions.iter().map(|r| r.number).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(revisions[2].previous_numbers, [1]);
        assert_eq!(format_history(&[]), "No rollout history found.\n");
    }

    #[test]
    fn target_selection_follows_kubectl() {
        let (dep, rss) = three_revisions();
        assert_eq!(name_of(select_target(&dep, &rss, None).unwrap()), "web-bbb");
        assert_eq!(
            name_of(select_target(&dep, &rss, Some(0)).unwrap()),
            "web-bbb"
        );
        assert_eq!(
            name_of(select_target(&dep, &rss, Some(1)).unwrap()),
            "web-aaa"
        );
        match select_target(&dep, &rss, Some(7)) {
            Err(Error::UnknownRevision {
                revision: 7,
                available,
            }) => assert_eq!(available, [1, 2, 3]),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            select_target(&dep, &rss, Some(-1)),
            Err(Error::UnknownRevision { revision: -1, .. })
        ));
        let only = vec![rss[2].clone()];
        assert_eq!(
            select_target(&dep, &only, None).unwrap_err().to_string(),
            "no rollout history found for deployment \"web\""
        );
    }

    #[test]
    fn annotation_merge_is_kubectls() {
        let dep = BTreeMap::from([
            (REVISION_ANNOTATION.to_owned(), "3".to_owned()),
            (LAST_APPLIED_ANNOTATION.to_owned(), "{}".to_owned()),
            (
                CHANGE_CAUSE_ANNOTATION.to_owned(),
                "deploy web:3".to_owned(),
            ),
            ("team".to_owned(), "payments".to_owned()),
        ]);
        let rs = BTreeMap::from([
            (REVISION_ANNOTATION.to_owned(), "1".to_owned()),
            (
                CHANGE_CAUSE_ANNOTATION.to_owned(),
                "deploy web:1".to_owned(),
            ),
            (
                "deployment.kubernetes.io/desired-replicas".to_owned(),
                "3".to_owned(),
            ),
        ]);
        let kubectl = AnnotationChanges::default();
        let merged = rollback_annotations(&dep, &rs, &kubectl);
        assert_eq!(
            merged,
            BTreeMap::from([
                (REVISION_ANNOTATION.to_owned(), "3".to_owned()),
                (LAST_APPLIED_ANNOTATION.to_owned(), "{}".to_owned()),
                (
                    CHANGE_CAUSE_ANNOTATION.to_owned(),
                    "deploy web:1".to_owned()
                ),
            ])
        );
        assert_eq!(dropped_annotations(&dep, &rs, &kubectl), ["team"]);
    }

    #[test]
    fn the_bots_merge_keeps_its_own_annotations_and_sets_the_lock() {
        let dep = BTreeMap::from([
            ("rollback-bot.io/service".to_owned(), "web".to_owned()),
            ("rollback-bot.io/locked".to_owned(), "old lock".to_owned()),
            (
                "rollback-bot.io/lock-incident".to_owned(),
                "INC-1".to_owned(),
            ),
            ("team".to_owned(), "payments".to_owned()),
        ]);
        // The target ReplicaSet still carries a stale lock the controller copied to it.
        let rs = BTreeMap::from([
            ("rollback-bot.io/service".to_owned(), "old-name".to_owned()),
            ("rollback-bot.io/lock-since".to_owned(), "stale".to_owned()),
        ]);
        let changes = AnnotationChanges {
            keep: vec!["rollback-bot.io/service".to_owned(), "absent".to_owned()],
            set: BTreeMap::from([
                (
                    "rollback-bot.io/locked".to_owned(),
                    Some("new lock".to_owned()),
                ),
                ("rollback-bot.io/lock-incident".to_owned(), None),
                ("rollback-bot.io/lock-since".to_owned(), None),
            ]),
        };
        assert_eq!(
            rollback_annotations(&dep, &rs, &changes),
            BTreeMap::from([
                ("rollback-bot.io/service".to_owned(), "web".to_owned()),
                ("rollback-bot.io/locked".to_owned(), "new lock".to_owned()),
            ])
        );
        // Replaced lock keys are not "dropped"; only what really goes is.
        assert_eq!(dropped_annotations(&dep, &rs, &changes), ["team"]);
    }

    #[test]
    fn patch_is_kubectls_two_ops_with_optional_guard() {
        let (_, rss) = three_revisions();
        let template = rollback_template(&rss[0]);
        let labels = template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert!(!labels.contains_key(POD_TEMPLATE_HASH_LABEL));
        let annotations = BTreeMap::from([(
            CHANGE_CAUSE_ANNOTATION.to_owned(),
            "deploy web:1".to_owned(),
        )]);
        let patch = rollback_patch(&template, &annotations, true, None);
        assert_eq!(
            patch,
            json!([
                {"op": "replace", "path": "/spec/template", "value": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "web:1"}]}}},
                {"op": "replace", "path": "/metadata/annotations", "value": {"kubernetes.io/change-cause": "deploy web:1"}}
            ])
        );
        let guarded = rollback_patch(&template, &annotations, false, Some("4711"));
        assert_eq!(
            guarded[0],
            json!({"op": "replace", "path": "/metadata/resourceVersion", "value": "4711"})
        );
        assert_eq!(guarded[2]["op"], "add");
    }
}
