//! The GitOps path: rolling back a Deployment that an Argo CD Application manages, through
//! Argo CD instead of `rollout undo` (which Argo CD's self-heal would revert at once).
//!
//! This module holds the pure decisions, unit-tested without I/O: which path a Deployment
//! takes and why ([`detect`]), which history entries a rollback goes from and to
//! ([`select_history`]), when Argo CD must not be asked to act ([`refusal`],
//! [`unchanged_since_plan`]), the patches that do what `argocd app rollback --prune` does
//! inside Argo CD ([`operation_patch`], [`disable_auto_sync_patch`]) and the lock's deny
//! sync window ([`with_lock_window`]). The I/O lives in [`client`]; the steps that use both
//! in `src/steps/argocd.rs`. docs/argocd.md explains the whole path.

pub mod client;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Annotation Argo CD's annotation tracking (the default since 2.x) puts on what it applies:
/// `<app>:<group>/<kind>:<namespace>/<name>`, `<app>` being `<app namespace>_<app>` for
/// Applications outside Argo CD's own namespace.
pub const TRACKING_ID_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
/// Label Argo CD's label tracking sets to the Application's name (Helm uses it too, for the
/// release name, so on its own it is only a hint).
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Where the bot remembers the Application's `spec.syncPolicy.automated` as it was before
/// the bot turned auto-sync off; the approved unlock restores it from here.
pub const PREVIOUS_POLICY_ANNOTATION: &str = "rollback-bot.io/previous-automated-sync";
/// The `operation.info` entry that names the rollback an Argo CD operation belongs to.
pub const OPERATION_INFO_NAME: &str = "rollback-bot.io/rollback";
/// Every deny sync window the bot adds starts its description with this.
pub const WINDOW_PREFIX: &str = "rollback-bot lock";
/// Argo CD's namespace when `clusters.<name>.argocd_namespace` is not set.
pub const DEFAULT_NAMESPACE: &str = "argocd";

/// Errors of the GitOps path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Argo CD must not be asked to act (or the request makes no sense); nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The Application changed since the plan was approved; nothing changed.
    #[error("the Argo CD application changed since the plan was made, nothing was changed: {0}")]
    Stale(String),
    /// Argo CD ran the rollback's sync and it did not succeed.
    #[error("the Argo CD sync ended {phase}: {message}")]
    OperationFailed { phase: String, message: String },
    /// The sync was started but did not end in time.
    #[error("the Argo CD sync did not finish within {seconds}s (last: {last})")]
    Timeout { seconds: u64, last: String },
    /// The Application is not in the shape the bot understands.
    #[error("Argo CD application {application:?} is malformed: {reason}")]
    Malformed { application: String, reason: String },
    /// Kubernetes API failures (the Application and AppProject are custom resources).
    #[error(transparent)]
    Kube(#[from] crate::clients::k8s::Error),
}

impl Error {
    /// A refusal: the request is answered, nothing was changed.
    pub fn is_refusal(&self) -> bool {
        match self {
            Self::Refused(_) | Self::Stale(_) => true,
            Self::Kube(e) => e.is_refusal(),
            _ => false,
        }
    }

    /// Worth retrying later (API outage, conflict).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Kube(e) if e.is_transient())
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Self::Kube(e.into())
    }
}

/// The parts of an `argoproj.io/v1alpha1` Application the bot reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: AppSpec,
    #[serde(default)]
    pub status: AppStatus,
    /// The operation Argo CD is asked to run; non-null while it runs.
    #[serde(default)]
    pub operation: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppSpec {
    pub project: String,
    pub source: Option<Value>,
    pub sources: Option<Vec<Value>>,
    pub destination: Destination,
    pub sync_policy: Option<SyncPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Destination {
    pub server: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncPolicy {
    /// `automated`, kept as JSON so that restoring it restores every field.
    pub automated: Option<Value>,
    pub sync_options: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppStatus {
    pub history: Vec<HistoryEntry>,
    pub sync: Option<SyncStatus>,
    pub health: Option<HealthStatus>,
    pub operation_state: Option<OperationState>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncStatus {
    pub status: Option<String>,
    pub revision: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HealthStatus {
    pub status: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OperationState {
    pub phase: Option<String>,
    pub message: Option<String>,
    pub operation: Option<Value>,
}

/// One entry of `status.history`: what `argocd app rollback <app> <id>` goes back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The history ID (what `/rollback <service> <N>` names on the GitOps path).
    pub id: i64,
    /// The git revision that was synced.
    #[serde(default)]
    pub revision: String,
    /// The source it was synced from (repo, path, targetRevision…), sent back as is.
    #[serde(default)]
    pub source: Option<Value>,
    /// Multi-source Applications (refused, see [`select_history`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<Value>>,
    #[serde(default)]
    pub deployed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub deploy_started_at: Option<DateTime<Utc>>,
    /// Who started that sync (`{automated: true}` or `{username: …}`).
    #[serde(default)]
    pub initiated_by: Option<Value>,
}

impl HistoryEntry {
    /// `#2 (abc1234)` for people.
    pub fn short(&self) -> String {
        format!("#{} ({})", self.id, short_revision(&self.revision))
    }
}

/// The first 7 characters of a git SHA; other revisions (tags, chart versions) as they are.
pub fn short_revision(revision: &str) -> &str {
    if revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit()) {
        &revision[..7]
    } else {
        revision
    }
}

/// How the bot found the Application managing a Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// `services.<name>.argocd_application`.
    Configured { application: String },
    /// The `argocd.argoproj.io/tracking-id` annotation (namespace: apps in any namespace).
    TrackingId {
        application: String,
        namespace: Option<String>,
    },
    /// Only the `app.kubernetes.io/instance` label: a hint, the Application must exist.
    InstanceLabel { application: String },
    /// A tracking annotation that names another resource than this Deployment (copied from
    /// another Deployment's manifest, or set by hand): trusted, it would point the bot at any
    /// Application, so the plan is refused.
    ForeignTrackingId { id: String, expected: String },
    /// No marker at all.
    None,
}

impl Detection {
    /// Why, in words, for the plan.
    pub fn describe(&self) -> String {
        match self {
            Self::Configured { application } => {
                format!("the service's argocd_application setting names application {application}")
            }
            Self::TrackingId { application, .. } => {
                format!("its {TRACKING_ID_ANNOTATION} annotation names application {application}")
            }
            Self::InstanceLabel { application } => {
                format!("its {INSTANCE_LABEL} label is {application}")
            }
            Self::ForeignTrackingId { id, expected } => format!(
                "its {TRACKING_ID_ANNOTATION} annotation {id:?} names another resource than this deployment \
                 ({expected})"
            ),
            Self::None => format!(
                "no Argo CD marker (no {TRACKING_ID_ANNOTATION} annotation, no {INSTANCE_LABEL} label, \
                 no argocd_application setting)"
            ),
        }
    }

    /// The Application's name and namespace (the default one unless the marker says).
    pub fn application<'a>(&'a self, default_namespace: &'a str) -> Option<(&'a str, &'a str)> {
        match self {
            Self::Configured { application } | Self::InstanceLabel { application } => {
                Some((default_namespace, application))
            }
            Self::TrackingId {
                application,
                namespace,
            } => Some((
                namespace.as_deref().unwrap_or(default_namespace),
                application,
            )),
            Self::ForeignTrackingId { .. } | Self::None => None,
        }
    }
}

/// Which marker says an Argo CD Application manages `deployment`, strongest first: the
/// operator's explicit setting, Argo CD's tracking annotation for this very Deployment, then
/// the instance label.
pub fn detect(configured: Option<&str>, deployment: &Deployment) -> Detection {
    if let Some(application) = configured.filter(|a| !a.trim().is_empty()) {
        return Detection::Configured {
            application: application.trim().to_owned(),
        };
    }
    let meta = &deployment.metadata;
    if let Some(id) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRACKING_ID_ANNOTATION))
        && let Some((application, namespace, resource)) = parse_tracking_id(id)
    {
        // Argo CD writes `<group>/<kind>:<namespace>/<name>` of the very object it applied.
        let expected = format!(
            "apps/Deployment:{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        );
        if resource != expected {
            return Detection::ForeignTrackingId {
                id: id.clone(),
                expected,
            };
        }
        return Detection::TrackingId {
            application,
            namespace,
        };
    }
    if let Some(instance) = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(INSTANCE_LABEL))
        .filter(|v| !v.is_empty())
    {
        return Detection::InstanceLabel {
            application: instance.clone(),
        };
    }
    Detection::None
}

/// `demo:apps/Deployment:ns/demo` → (`demo`, None, `apps/Deployment:ns/demo`);
/// `team_demo:…` → (`demo`, Some(`team`), …). Application names are DNS labels, so `_` can
/// only be the namespace separator.
fn parse_tracking_id(id: &str) -> Option<(String, Option<String>, String)> {
    let (app, rest) = id.split_once(':')?;
    if app.is_empty() || !rest.contains('/') {
        return None;
    }
    let (application, namespace) = match app.split_once('_') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
            (name.to_owned(), Some(ns.to_owned()))
        }
        _ => (app.to_owned(), None),
    };
    Some((application, namespace, rest.to_owned()))
}

/// The Argo CD destination of the cluster the bot reads the Application from (Argo CD runs
/// in the cluster whose Deployments it manages: `clusters.<name>.argocd_namespace`).
pub const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";

/// Why `app` cannot be what deploys the Deployment in `namespace` of this cluster, if so:
/// its destination is another cluster or another namespace.
pub fn destination_mismatch(app: &Application, namespace: &str) -> Option<String> {
    let d = &app.spec.destination;
    let in_cluster = match (d.server.as_deref(), d.name.as_deref()) {
        (Some(server), _) => server.trim_end_matches('/') == IN_CLUSTER_SERVER,
        (None, Some(name)) => name == "in-cluster",
        (None, None) => false,
    };
    let cluster = d
        .server
        .as_deref()
        .or(d.name.as_deref())
        .unwrap_or("(no destination)");
    if !in_cluster {
        return Some(format!(
            "its destination is cluster {cluster}, not the cluster the bot reads it from ({IN_CLUSTER_SERVER})"
        ));
    }
    let to = d.namespace.as_deref().unwrap_or("(none)");
    (to != namespace).then(|| format!("its destination is namespace {to}, not {namespace}"))
}

/// Whether `spec.syncPolicy.automated` turns auto-sync on (present, `enabled` absent or true),
/// as Argo CD's `IsAutomatedSyncEnabled`.
pub fn auto_sync_enabled(automated: Option<&Value>) -> bool {
    match automated {
        Some(Value::Object(a)) => a.get("enabled").and_then(Value::as_bool) != Some(false),
        _ => false,
    }
}

impl Application {
    /// `spec.syncPolicy.automated` as found.
    pub fn automated(&self) -> Option<&Value> {
        self.spec
            .sync_policy
            .as_ref()
            .and_then(|p| p.automated.as_ref())
    }

    /// Whether auto-sync is on ([`auto_sync_enabled`]).
    pub fn auto_sync(&self) -> bool {
        auto_sync_enabled(self.automated())
    }
}

/// Why Argo CD must not be asked to act on `app` now, if so: it is being deleted, or an
/// operation is running (`argo.SetAppOperation` refuses the same).
pub fn refusal(app: &Application) -> Option<String> {
    let name = app.metadata.name.as_deref().unwrap_or("?");
    if app.metadata.deletion_timestamp.is_some() {
        return Some(format!(
            "Argo CD application {name} is being deleted: nothing to roll back through it"
        ));
    }
    let running = app
        .status
        .operation_state
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Running" || p == "Terminating");
    if app.operation.as_ref().is_some_and(|o| !o.is_null()) || running {
        let message = app
            .status
            .operation_state
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_default();
        return Some(format!(
            "another Argo CD operation is in progress on application {name}{}: wait for it to finish \
             (or terminate it in Argo CD) and request the rollback again",
            if message.is_empty() {
                String::new()
            } else {
                format!(" ({message})")
            }
        ));
    }
    None
}

/// The current history entry (the newest) and the one to roll back to: `requested` by
/// history ID, else the newest entry with another revision than the current one (like
/// `argocd app rollback` without an ID, which takes the second-to-last entry, but skipping
/// entries that only re-synced the current revision, e.g. self-heal).
///
/// # Errors
/// A refusal naming the available IDs when the ID is unknown, when there is no earlier
/// entry, when the requested entry is the current one, or for multi-source Applications.
pub fn select_history(
    app: &Application,
    requested: Option<i64>,
) -> Result<(HistoryEntry, HistoryEntry), String> {
    let name = app.metadata.name.as_deref().unwrap_or("?");
    if app.spec.sources.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(format!(
            "Argo CD application {name} has several sources; rolling back multi-source applications \
             is not supported, use `argocd app rollback` instead"
        ));
    }
    let history = &app.status.history;
    let Some(current) = history.last() else {
        return Err(format!(
            "Argo CD application {name} has no sync history: nothing to roll back to"
        ));
    };
    let ids = || {
        history
            .iter()
            .map(|h| h.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let target = match requested {
        Some(id) => history.iter().find(|h| h.id == id).ok_or_else(|| {
            format!(
                "Argo CD application {name} has no history ID {id}; available history IDs: {}",
                ids()
            )
        })?,
        // Self-heal and retried syncs repeat the current revision: skip those entries.
        None => history
            .iter()
            .rev()
            .find(|h| h.revision != current.revision)
            .ok_or_else(|| {
                format!(
                    "Argo CD application {name} has deployed only revision {} ({}): nothing earlier to roll back to",
                    short_revision(&current.revision),
                    current.short()
                )
            })?,
    };
    if target.id == current.id {
        return Err(format!(
            "history ID {} is what Argo CD application {name} deployed last: nothing to roll back",
            target.id
        ));
    }
    Ok((current.clone(), target.clone()))
}

/// The ReplicaSet revision that ran `target`: the newest ReplicaSet created by the time the
/// target's sync finished, preferring ones created before the next sync started (so a
/// ReplicaSet of the next sync in the same second is not taken). `replica_sets` are
/// (revision, creation time). None when no ReplicaSet is old enough.
pub fn replica_set_for(
    target: &HistoryEntry,
    next: Option<&HistoryEntry>,
    replica_sets: &[(i64, Option<DateTime<Utc>>)],
) -> Option<i64> {
    let deployed = target.deployed_at?;
    let until_deployed: Vec<(DateTime<Utc>, i64)> = replica_sets
        .iter()
        .filter_map(|(rev, at)| at.filter(|at| *at <= deployed).map(|at| (at, *rev)))
        .collect();
    let next_started = next.and_then(|n| n.deploy_started_at.or(n.deployed_at));
    let before_next = until_deployed
        .iter()
        .filter(|(at, _)| next_started.is_none_or(|n| *at < n))
        .max();
    before_next
        .or_else(|| until_deployed.iter().max())
        .map(|(_, rev)| *rev)
}

/// What the plan records about the Argo CD path, shown on the card and bound by the
/// fingerprint (application UID, current history entry, target entry and revision).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArgoCdPlan {
    /// Argo CD's namespace (where the Application lives).
    pub namespace: String,
    pub application: String,
    pub uid: String,
    pub project: String,
    /// How the Application was found ([`Detection::describe`]).
    pub detected_by: String,
    /// The newest history entry when planned.
    pub current: HistoryEntry,
    /// The entry the rollback syncs back to.
    pub target: HistoryEntry,
    /// `status.sync.status` / `.revision` and `status.health.status` when planned.
    pub sync_status: Option<String>,
    pub sync_revision: Option<String>,
    pub health: Option<String>,
    /// Auto-sync is on now (the rollback turns it off).
    pub auto_sync: bool,
    /// `spec.syncPolicy.syncOptions`, sent with the sync like Argo CD's own rollback.
    #[serde(default)]
    pub sync_options: Option<Vec<String>>,
}

impl ArgoCdPlan {
    /// The plan's Argo CD part for `app`, rolling back from `current` to `target`.
    pub fn new(
        app: &Application,
        namespace: &str,
        detection: &Detection,
        current: HistoryEntry,
        target: HistoryEntry,
    ) -> Self {
        ArgoCdPlan {
            namespace: namespace.to_owned(),
            application: app.metadata.name.clone().unwrap_or_default(),
            uid: app.metadata.uid.clone().unwrap_or_default(),
            project: app.spec.project.clone(),
            detected_by: detection.describe(),
            current,
            target,
            sync_status: app.status.sync.as_ref().and_then(|s| s.status.clone()),
            sync_revision: app.status.sync.as_ref().and_then(|s| s.revision.clone()),
            health: app.status.health.as_ref().and_then(|h| h.status.clone()),
            auto_sync: app.auto_sync(),
            sync_options: app
                .spec
                .sync_policy
                .as_ref()
                .and_then(|p| p.sync_options.clone()),
        }
    }

    /// The fields an approval is bound to, as (name, value) pairs for the plan fingerprint.
    pub fn fingerprint_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "argocd-application",
                format!("{}/{}/{}", self.namespace, self.application, self.uid),
            ),
            (
                "argocd-current",
                format!("{}/{}", self.current.id, self.current.revision),
            ),
            (
                "argocd-target",
                format!("{}/{}", self.target.id, self.target.revision),
            ),
        ]
    }

    /// One paragraph for the card.
    pub fn summary(&self) -> String {
        let when = |h: &HistoryEntry| {
            h.deployed_at
                .map(|t| format!(", deployed {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
                .unwrap_or_default()
        };
        format!(
            "*Argo CD rollback* of application `{}` (project `{}`), because {}.\n\
             History {}{} → *{}*{}: Argo CD syncs revision `{}` again, with prune.\n{}",
            self.application,
            self.project,
            self.detected_by,
            self.current.short(),
            when(&self.current),
            self.target.short(),
            when(&self.target),
            short_revision(&self.target.revision),
            if self.auto_sync {
                "Auto-sync will be turned off, and stays off (with a deny sync window) until an approved unlock."
            } else {
                "Auto-sync is already off; a deny sync window keeps it from syncing until an approved unlock."
            }
        )
    }
}

/// Whether the Application is still what the plan was approved for: same UID, the same
/// newest history entry (a sync since then is a new situation) and the target entry still in
/// the history with the same revision.
///
/// # Errors
/// What changed, for a stale-plan refusal.
pub fn unchanged_since_plan(plan: &ArgoCdPlan, app: &Application) -> Result<(), String> {
    if app.metadata.uid.as_deref() != Some(plan.uid.as_str()) {
        return Err(format!(
            "application {} was re-created since the plan was made",
            plan.application
        ));
    }
    let newest = app.status.history.last();
    if newest.map(|h| (h.id, h.revision.as_str()))
        != Some((plan.current.id, plan.current.revision.as_str()))
    {
        return Err(format!(
            "application {} synced again since the plan was made (history now ends at {}, the plan was made at {}); request the rollback again",
            plan.application,
            newest.map_or_else(|| "nothing".to_owned(), HistoryEntry::short),
            plan.current.short()
        ));
    }
    match app.status.history.iter().find(|h| h.id == plan.target.id) {
        Some(h) if h.revision == plan.target.revision => Ok(()),
        _ => Err(format!(
            "history entry {} of application {} is gone or changed",
            plan.target.short(),
            plan.application
        )),
    }
}

/// The merge patch that turns auto-sync off the way Argo CD 3.x does
/// (`automated.enabled: false`, keeping prune/selfHeal) and records the previous policy for
/// the unlock, unless an earlier rollback already recorded one (then that one is kept: it is
/// the team's, not the bot's). None when auto-sync is already off.
pub fn disable_auto_sync_patch(app: &Application) -> Option<Value> {
    if !app.auto_sync() {
        return None;
    }
    let automated = app.automated();
    let recorded = app
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(PREVIOUS_POLICY_ANNOTATION));
    let mut patch = json!({"spec": {"syncPolicy": {"automated": {"enabled": false}}}});
    if !recorded {
        patch["metadata"] = json!({"annotations": {
            PREVIOUS_POLICY_ANNOTATION: automated.map(Value::to_string).unwrap_or_default()
        }});
    }
    Some(patch)
}

/// The merge patch an approved unlock applies: the recorded `automated` policy back exactly
/// (an `enabled` it did not have is removed again, which means on), and the record removed.
/// None when nothing was recorded (auto-sync was off before the rollback: it stays off).
pub fn restore_auto_sync_patch(app: &Application) -> Option<Value> {
    let recorded = app
        .metadata
        .annotations
        .as_ref()?
        .get(PREVIOUS_POLICY_ANNOTATION)?;
    let mut previous: Value = serde_json::from_str(recorded).unwrap_or_else(|_| json!({}));
    if let Value::Object(fields) = &mut previous {
        fields.entry("enabled").or_insert(Value::Null);
    }
    Some(json!({
        "metadata": {"annotations": {PREVIOUS_POLICY_ANNOTATION: null}},
        "spec": {"syncPolicy": {"automated": previous}},
    }))
}

/// The merge patch that asks Argo CD to roll back, as `Server.Rollback` builds it: a sync
/// to the target entry's revision and source, with prune and the apply strategy (hooks do
/// not run), the Application's sync options, `initiatedBy` naming the bot and the approver,
/// `info` naming the rollback. Guarded by `resource_version`; clears the old
/// `status.operationState` like `SetAppOperation` (the CRD has no status subresource).
pub fn operation_patch(
    plan: &ArgoCdPlan,
    resource_version: &str,
    rollback_id: i64,
    approver: &str,
    reason: &str,
) -> Value {
    let mut sync = json!({
        "revision": plan.target.revision,
        "prune": true,
        "syncStrategy": {"apply": {}},
    });
    if let Some(source) = &plan.target.source {
        sync["source"] = source.clone();
    }
    if let Some(options) = &plan.sync_options {
        sync["syncOptions"] = json!(options);
    }
    json!({
        "metadata": {"resourceVersion": resource_version},
        "operation": {
            "initiatedBy": {"username": format!("rollback-bot (approved by {approver})")},
            "info": [
                {"name": OPERATION_INFO_NAME, "value": rollback_id.to_string()},
                {"name": "reason", "value": reason},
            ],
            "sync": sync,
        },
        "status": {"operationState": null},
    })
}

/// Where rollback `rollback_id`'s Argo CD operation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationProgress {
    /// No operation of this rollback is recorded on the Application.
    NotStarted,
    /// Requested or running; the message is Argo CD's.
    Running(String),
    Succeeded(String),
    /// Failed, Error (or terminated).
    Failed {
        phase: String,
        message: String,
    },
}

fn names_rollback(operation: Option<&Value>, rollback_id: i64) -> bool {
    operation
        .and_then(|o| o["info"].as_array())
        .is_some_and(|info| {
            info.iter().any(|i| {
                i["name"] == OPERATION_INFO_NAME && i["value"] == rollback_id.to_string().as_str()
            })
        })
}

/// Reads `status.operationState` (and the pending `operation`) for rollback `rollback_id`.
pub fn operation_progress(app: &Application, rollback_id: i64) -> OperationProgress {
    if names_rollback(app.operation.as_ref(), rollback_id) {
        // Requested; the controller has not finished it (it clears `operation` when done).
        let message = app
            .status
            .operation_state
            .as_ref()
            .filter(|s| names_rollback(s.operation.as_ref(), rollback_id))
            .and_then(|s| s.message.clone())
            .unwrap_or_else(|| "waiting for the application controller".to_owned());
        return OperationProgress::Running(message);
    }
    let Some(state) = app
        .status
        .operation_state
        .as_ref()
        .filter(|s| names_rollback(s.operation.as_ref(), rollback_id))
    else {
        return OperationProgress::NotStarted;
    };
    let message = state.message.clone().unwrap_or_default();
    match state.phase.as_deref() {
        Some("Succeeded") => OperationProgress::Succeeded(message),
        Some(phase @ ("Failed" | "Error")) => OperationProgress::Failed {
            phase: phase.to_owned(),
            message,
        },
        _ => OperationProgress::Running(message),
    }
}

/// The deny sync window that locks `application` after rollback `rollback_id`: always
/// active, also for manual syncs (only the approved unlock removes it).
pub fn lock_window(application: &str, rollback_id: i64, reason: &str) -> Value {
    json!({
        "kind": "deny",
        "schedule": "* * * * *",
        "duration": "1h",
        "applications": [application],
        "manualSync": false,
        "description": format!("{WINDOW_PREFIX} {application} #{rollback_id}: {reason}"),
    })
}

/// Whether `windows` hold a lock window of the bot for `application`: an earlier rollback's
/// lock keeps its auto-sync off.
pub fn has_lock_window(windows: &[Value], application: &str) -> bool {
    windows.iter().any(|w| is_lock_window_of(w, application))
}

fn is_lock_window_of(window: &Value, application: &str) -> bool {
    window["description"]
        .as_str()
        .is_some_and(|d| d.starts_with(&format!("{WINDOW_PREFIX} {application} #")))
}

/// The project's sync windows with `window` added, or None when this application already
/// has a lock window of the bot (a retried step: nothing to do).
pub fn with_lock_window(windows: &[Value], application: &str, window: Value) -> Option<Vec<Value>> {
    if has_lock_window(windows, application) {
        return None;
    }
    let mut out = windows.to_vec();
    out.push(window);
    Some(out)
}

/// The project's sync windows without the bot's lock windows for `application`, or None
/// when there are none (nothing to do).
pub fn without_lock_window(windows: &[Value], application: &str) -> Option<Vec<Value>> {
    let kept: Vec<Value> = windows
        .iter()
        .filter(|w| !is_lock_window_of(w, application))
        .cloned()
        .collect();
    (kept.len() != windows.len()).then_some(kept)
}

/// The bot's annotations on an Application, for the unlock's card.
pub fn recorded_policy(app: &Application) -> Option<String> {
    app.metadata
        .annotations
        .as_ref()
        .unwrap_or(&BTreeMap::new())
        .get(PREVIOUS_POLICY_ANNOTATION)
        .cloned()
}

#[cfg(test)]
mod tests;
