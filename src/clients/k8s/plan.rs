//! Pure rollback planning: the [`RollbackPlan`] an approver sees and approves, the
//! refusals (`kubectl rollout undo`'s checks plus "rollout in progress"), the runbook
//! preconditions (deploy–incident correlation, database coupling), the pod-template
//! difference summary and the plan fingerprint an approval is bound to.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, PodTemplateSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Target;
use super::error::{Error, Result};
use super::redact;
use super::revision::{
    self, ContainerImage, LAST_APPLIED_ANNOTATION, REVISION_HISTORY_ANNOTATION, annotation,
    name_of, normalized_template, templates_equal, to_chrono,
};
use super::status::{RolloutStatus, last_observed_rollout_status};
use crate::domain::lock;

/// Deployment annotation that marks a service as database-coupled.
pub const DATABASE_COUPLED_ANNOTATION: &str = "rollback-bot/database-coupled";

/// Default deploy–incident correlation window.
pub const DEFAULT_CORRELATION_WINDOW_MINUTES: i64 = 60;

/// Inputs to planning that come from the request and the configuration, not the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanContext {
    /// When the incident / request happened; the correlation window ends here.
    pub request_time: DateTime<Utc>,
    /// How long before `request_time` a rollout counts as a likely cause.
    pub correlation_window: Duration,
    /// The service is marked database-coupled in the bot's configuration.
    pub database_coupled: bool,
    /// Roll back even though a rollout is in progress.
    pub force: bool,
    /// Deployment annotations the bot's rollback keeps ([`super::UndoOptions`]), so the
    /// plan lists only what the revision swap really drops.
    pub kept_annotations: Vec<String>,
}

impl PlanContext {
    /// Context for a request made at `request_time`, with the default window and no flags.
    pub fn new(request_time: DateTime<Utc>) -> Self {
        Self {
            request_time,
            correlation_window: Duration::minutes(DEFAULT_CORRELATION_WINDOW_MINUTES),
            database_coupled: false,
            force: false,
            kept_annotations: Vec::new(),
        }
    }
}

impl Default for PlanContext {
    fn default() -> Self {
        Self::new(Utc::now())
    }
}

/// A ReplicaSet as the plan pins it: by name, UID and pod-template hash, because revision
/// numbers change when a rollback re-activates an old ReplicaSet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSetRef {
    /// ReplicaSet name.
    pub name: String,
    /// ReplicaSet UID.
    pub uid: String,
    /// Its `pod-template-hash` label.
    pub pod_template_hash: String,
    /// Its revision number when the plan was made.
    pub revision: i64,
    /// Images of its pod template.
    pub images: Vec<ContainerImage>,
    /// Its `kubernetes.io/change-cause`.
    pub change_cause: Option<String>,
    /// Its creation time.
    pub created_at: Option<DateTime<Utc>>,
    /// [`revision::template_hash`] of its template as the Deployment would get it: what an
    /// approval of this ReplicaSet as the target is bound to.
    #[serde(default)]
    pub template_hash: String,
}

/// One container whose image differs between the current and the target template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageChange {
    /// Container name.
    pub container: String,
    /// Current image (`None`: the container does not exist now).
    pub from: Option<String>,
    /// Image after the rollback (`None`: the rollback removes the container).
    pub to: Option<String>,
}

/// A pod-template difference other than an image, summarised for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateDifference {
    /// `pod`, `container <name>` or `init container <name>`.
    pub scope: String,
    /// The field, e.g. `env`, `resources`, `command`, `labels`, `volumes`.
    pub field: String,
    /// What changes, current → target, e.g. `+FEATURE_X, -DEBUG, ~LOG_LEVEL`.
    pub summary: String,
}

/// Whether the current revision was rolled out shortly before the incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correlation {
    /// When the current revision was rolled out (best estimate, see `rolled_out_at`).
    pub rolled_out_at: Option<DateTime<Utc>>,
    /// When the current revision's rollout started, where known (see `rollout_started_at`):
    /// the recovery baseline ends here, before the bad traffic. Absent in plans made before
    /// it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_started_at: Option<DateTime<Utc>>,
    /// The request / incident time.
    pub request_time: DateTime<Utc>,
    /// The window length in minutes.
    pub window_minutes: i64,
    /// Rolled out within the window before the request.
    pub inside_window: bool,
    /// One sentence for the approval card.
    pub summary: String,
}

/// Where the database-coupled marking came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseCoupling {
    /// The service is database-coupled.
    pub coupled: bool,
    /// Marked in the bot's configuration.
    pub from_config: bool,
    /// Marked by the `rollback-bot/database-coupled: "true"` annotation.
    pub from_annotation: bool,
}

/// What a warning demands before the rollback may be executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// Informational only.
    None,
    /// An approver must explicitly override it.
    ApproverOverride,
    /// Additional sign-off from the DBA group.
    DbaSignOff,
}

/// Kinds of plan warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// The current revision was not rolled out within the correlation window.
    OutsideCorrelationWindow,
    /// The service is database-coupled.
    DatabaseCoupled,
    /// A rollout is in progress and the requester forced the rollback.
    RolloutInProgress,
    /// The Deployment is managed with `kubectl apply`; the next apply will undo the rollback.
    ManagedByKubectlApply,
    /// Deployment annotations that the rollback drops (kubectl's annotation handling).
    AnnotationsDropped,
    /// The Deployment is locked by an earlier rollback; this one keeps and extends the lock.
    Locked,
    /// The target revision is one an active lock keeps out as faulty.
    TargetIsLockedOut,
}

/// A warning shown on the approval card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// What kind.
    pub kind: WarningKind,
    /// What it requires.
    pub requires: Requirement,
    /// Text for humans.
    pub message: String,
}

/// Everything an approver needs to decide on one rollback, and everything the executor
/// needs to carry it out safely later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackPlan {
    /// Cluster, namespace and Deployment.
    pub target: Target,
    /// The Deployment's UID (a re-created Deployment is a different one).
    pub deployment_uid: String,
    /// `metadata.generation` when planned.
    pub deployment_generation: i64,
    /// The requested revision; `None` = the previous one.
    pub requested_revision: Option<i64>,
    /// The ReplicaSet running now; `None` when the Deployment's template never got one
    /// (a rollout denied by quota or admission, rolled back with force).
    pub current: Option<ReplicaSetRef>,
    /// Images of the Deployment's current template.
    #[serde(default)]
    pub current_images: Vec<ContainerImage>,
    /// [`revision::template_hash`] of the Deployment's current template: execution refuses
    /// if the Deployment's template changed since the plan was made.
    #[serde(default)]
    pub current_template_hash: String,
    /// The ReplicaSet to restore.
    pub rollback_to: ReplicaSetRef,
    /// The pod template the Deployment will get (the target's, without `pod-template-hash`),
    /// for people to read: env values and secret-looking arguments are redacted
    /// ([`super::redact`]). Execution applies the target ReplicaSet's live template only if
    /// its hash is `rollback_to.template_hash`.
    pub rollback_to_template: PodTemplateSpec,
    /// Image changes per container, current → target.
    pub image_changes: Vec<ImageChange>,
    /// Other template differences, summarised.
    pub template_differences: Vec<TemplateDifference>,
    /// kubectl's rollout-status message when planned.
    pub rollout_status: String,
    /// Deploy–incident correlation.
    pub correlation: Correlation,
    /// Database coupling.
    pub database: DatabaseCoupling,
    /// Warnings for the approval card, blocking ones first.
    pub warnings: Vec<Warning>,
    /// When the plan was made.
    pub planned_at: DateTime<Utc>,
    /// Which path the rollback takes and why: a native `rollout undo`, or through the Argo CD
    /// Application that manages the Deployment (`src/clients/k8s/argocd/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The Argo CD part of the plan; none = the native path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argocd: Option<crate::clients::k8s::argocd::ArgoCdPlan>,
}

impl RollbackPlan {
    /// SHA-256 (hex) of the parts an approval is bound to: the Deployment (cluster,
    /// namespace, name, UID), its current template (hash, images, ReplicaSet if any) and the
    /// target ReplicaSet (name, pod-template-hash, hash of the exact template, images).
    /// Anything else (warnings, times, status text) may be re-rendered without invalidating
    /// an approval. Execution recomputes it from the stored plan and refuses on a mismatch,
    /// so the stored plan is exactly what was approved.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |k: &str, v: &str| {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([b'\n']);
        };
        field("v", "2");
        field("cluster", &self.target.cluster);
        field("namespace", &self.target.namespace);
        field("deployment", &self.target.deployment);
        field("uid", &self.deployment_uid);
        field("current-template", &self.current_template_hash);
        if let Some(rs) = &self.current {
            field(
                "current-rs",
                &format!("{}/{}", rs.name, rs.pod_template_hash),
            );
        }
        field(
            "target-rs",
            &format!(
                "{}/{}/{}",
                self.rollback_to.name,
                self.rollback_to.pod_template_hash,
                self.rollback_to.template_hash
            ),
        );
        for (side, images) in [
            ("current", &self.current_images),
            ("target", &self.rollback_to.images),
        ] {
            for i in images {
                field(
                    &format!("{side}-image"),
                    &format!(
                        "{}{}={}",
                        if i.init { "init:" } else { "" },
                        i.container,
                        i.image
                    ),
                );
            }
        }
        // The GitOps path also binds the Application's history (a new sync is a new plan).
        for (k, v) in self.argocd.iter().flat_map(|a| a.fingerprint_fields()) {
            field(k, &v);
        }
        hex::encode(h.finalize())
    }

    /// Whether the DBA group must sign off.
    pub fn requires_dba_sign_off(&self) -> bool {
        self.warnings
            .iter()
            .any(|w| w.requires == Requirement::DbaSignOff)
    }

    /// Whether an approver must explicitly override a warning.
    pub fn requires_override(&self) -> bool {
        self.warnings
            .iter()
            .any(|w| w.requires == Requirement::ApproverOverride)
    }
}

/// What a ReplicaSet's pods are doing, from its status: "0 of 3 pods ready (3 created, 3
/// not ready)".
fn replica_set_pods(rs: &ReplicaSet) -> String {
    let wanted = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let status = rs.status.as_ref();
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let created = status.map_or(0, |s| s.replicas);
    let not_ready = (created - ready).max(0);
    format!("{ready} of {wanted} pods ready ({created} created, {not_ready} not ready)")
}

/// The warning for a plan on a locked Deployment: the lock stays (this rollback extends it),
/// and a target revision the lock keeps out as faulty is said loudly, before anyone approves
/// (not blocked: after a failed rollback, going back to that build is often the way out).
fn lock_warning(current: &lock::Lock, target_revision: i64) -> Warning {
    let held = format!(
        "this deployment is locked by rollback {} ({}); rolling back keeps the lock and adds this rollback to it",
        current.holders(),
        current.reason
    );
    if current.locks_out(target_revision) {
        Warning {
            kind: WarningKind::TargetIsLockedOut,
            requires: Requirement::None,
            message: format!(
                "⚠️ revision {target_revision} is the faulty revision the lock keeps out{}: rolling back to it brings \
                 the build the lock was set against back. Approve only if that build is known good. ({held})",
                current
                    .faulty_images
                    .as_deref()
                    .map(|images| format!(" ({images})"))
                    .unwrap_or_default()
            ),
        }
    } else {
        Warning {
            kind: WarningKind::Locked,
            requires: Requirement::None,
            message: held,
        }
    }
}

/// Builds the plan for rolling `deployment` back to `requested` (`None`/0 = previous), with
/// kubectl's refusals in kubectl's order (revision lookup, paused, same template), then
/// "rollout in progress" unless forced.
///
/// # Errors
/// The refusals of [`Error`]; [`Error::Malformed`] for a Deployment without UID or spec.
pub fn build_plan(
    target: &Target,
    deployment: &Deployment,
    owned: &[ReplicaSet],
    requested: Option<i64>,
    ctx: &PlanContext,
) -> Result<RollbackPlan> {
    let malformed = |reason: &str| Error::Malformed {
        deployment: target.deployment.clone(),
        reason: reason.to_owned(),
    };
    let uid = deployment
        .metadata
        .uid
        .clone()
        .ok_or_else(|| malformed("no metadata.uid"))?;
    let spec = deployment
        .spec
        .as_ref()
        .ok_or_else(|| malformed("no spec"))?;

    let rollback_to = revision::select_target(deployment, owned, requested)?;
    if spec.paused == Some(true) {
        return Err(Error::Paused {
            deployment: target.deployment.clone(),
        });
    }
    let target_template = revision::rollback_template(rollback_to);
    if templates_equal(&target_template, &spec.template) {
        return Err(Error::NothingToRollBack {
            revision: revision::revision_of(rollback_to)?,
            replica_set: name_of(rollback_to),
        });
    }
    // Without a ReplicaSet for the current template the controller never started the rollout
    // (quota, admission denial) or has not yet: a rollout in progress, which force may roll
    // back like `kubectl rollout undo --to-revision` does.
    let current = revision::current_replica_set(deployment, owned);
    let status = match current {
        // The template has its ReplicaSet, so an unobserved generation is a metadata or scale
        // edit, not a new rollout; judge progress by what the controller last reported.
        Some(_) => last_observed_rollout_status(deployment),
        None => RolloutStatus::Waiting(
            "the deployment controller has not created a ReplicaSet for the current template (yet): \
             the rollout may have been denied by a quota or an admission policy"
                .to_owned(),
        ),
    };
    // A rollout still progressing (its new pods crash-looping before the progress deadline)
    // is the moment the runbook is for: planned without force, as `kubectl rollout undo`
    // does, and the card says it replaces that rollout. Force stays for the ambiguous case:
    // a template without a ReplicaSet, where "the previous revision" may not be what runs.
    if status.is_waiting() && current.is_none() && !ctx.force {
        return Err(Error::RolloutInProgress {
            deployment: target.deployment.clone(),
            status: status.message().to_owned(),
        });
    }

    let current_ref = current.map(replica_set_ref).transpose()?;
    let target_ref = replica_set_ref(rollback_to)?;
    let rolled_out = match current {
        Some(rs) => rolled_out_at(deployment, rs),
        None => progressing_since(deployment),
    };
    let mut correlation = correlate(rolled_out, ctx);
    correlation.rollout_started_at = match current {
        Some(rs) => rollout_started_at(rs),
        None => rolled_out,
    };
    let database = DatabaseCoupling {
        coupled: false,
        from_config: ctx.database_coupled,
        from_annotation: annotation(
            &deployment.metadata.annotations,
            DATABASE_COUPLED_ANNOTATION,
        )
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
    };
    let database = DatabaseCoupling {
        coupled: database.from_config || database.from_annotation,
        ..database
    };

    let mut warnings = Vec::new();
    if database.coupled {
        let source = match (database.from_config, database.from_annotation) {
            (true, true) => "the bot's configuration and the deployment annotation",
            (true, false) => "the bot's configuration",
            _ => "the deployment annotation rollback-bot/database-coupled",
        };
        warnings.push(Warning {
            kind: WarningKind::DatabaseCoupled,
            requires: Requirement::DbaSignOff,
            message: format!(
                "{} is database-coupled (per {source}): this rollback needs an additional sign-off from the DBA group. \
                 It only changes the pod template; database migrations are NOT rolled back, follow the runbook's \
                 database-migration procedure separately.",
                target.deployment
            ),
        });
    }
    if !correlation.inside_window {
        warnings.push(Warning {
            kind: WarningKind::OutsideCorrelationWindow,
            requires: Requirement::ApproverOverride,
            message: format!(
                "{} An approver must explicitly override this to proceed.",
                correlation.summary
            ),
        });
    }
    if status.is_waiting() {
        let message = match current {
            Some(rs) => format!(
                "the current rollout (revision {}, {}) has not completed: {} Its ReplicaSet {} has {}; \
                 rolling back replaces that rollout",
                revision::revision_of(rs).unwrap_or(0),
                revision::fmt_images(&revision::replica_set_images(rs)),
                status.message(),
                name_of(rs),
                replica_set_pods(rs),
            ),
            None => format!(
                "rolling back over a rollout in progress (forced): {}",
                status.message()
            ),
        };
        warnings.push(Warning {
            kind: WarningKind::RolloutInProgress,
            requires: Requirement::None,
            message,
        });
    }
    if current.is_none()
        && requested.is_none_or(|n| n == 0)
        && let Some(newest) = owned
            .iter()
            .max_by_key(|rs| revision::revision_of(rs).unwrap_or(0))
        && name_of(newest) != name_of(rollback_to)
    {
        warnings.push(Warning {
            kind: WarningKind::RolloutInProgress,
            requires: Requirement::None,
            message: format!(
                "the pods still run revision {} ({}); like `kubectl rollout undo`, \"the previous revision\" is revision {}. \
                 To restore what is running, request revision {} instead",
                revision::revision_of(newest).unwrap_or(0),
                super::revision::fmt_images(&revision::replica_set_images(newest)),
                revision::revision_of(rollback_to).unwrap_or(0),
                revision::revision_of(newest).unwrap_or(0),
            ),
        });
    }
    let dep_annotations = deployment.metadata.annotations.clone().unwrap_or_default();
    if dep_annotations.contains_key(LAST_APPLIED_ANNOTATION) {
        warnings.push(Warning {
            kind: WarningKind::ManagedByKubectlApply,
            requires: Requirement::None,
            message: "this deployment is managed with `kubectl apply`; the next apply of the old manifest will undo the rollback"
                .to_owned(),
        });
    }
    // The bot's rollback sets the deploy lock in the same patch: lock keys are replaced,
    // never "dropped".
    let changes = revision::AnnotationChanges {
        keep: ctx.kept_annotations.clone(),
        set: lock::KEYS.iter().map(|k| (k.to_string(), None)).collect(),
    };
    let dropped = revision::dropped_annotations(
        &dep_annotations,
        &rollback_to.metadata.annotations.clone().unwrap_or_default(),
        &changes,
    );
    if let Some(current_lock) = lock::Lock::from_annotations(&dep_annotations) {
        warnings.push(lock_warning(&current_lock, target_ref.revision));
    }
    if !dropped.is_empty() {
        warnings.push(Warning {
            kind: WarningKind::AnnotationsDropped,
            requires: Requirement::None,
            message: format!(
                "like `kubectl rollout undo`, the rollback replaces the deployment's annotations with the target revision's; dropped: {}",
                dropped.join(", ")
            ),
        });
    }

    Ok(RollbackPlan {
        target: target.clone(),
        deployment_uid: uid,
        deployment_generation: deployment.metadata.generation.unwrap_or(0),
        requested_revision: requested.filter(|n| *n > 0),
        image_changes: image_changes(
            &revision::template_images(&spec.template),
            &target_ref.images,
        ),
        template_differences: template_differences(&spec.template, &target_template),
        current: current_ref,
        current_images: revision::template_images(&spec.template),
        current_template_hash: revision::template_hash(&spec.template),
        rollback_to: target_ref,
        rollback_to_template: redact::template(&target_template),
        rollout_status: status.message().to_owned(),
        correlation,
        database,
        warnings,
        planned_at: ctx.request_time.max(Utc::now()),
        path: None,
        argocd: None,
    })
}

/// Pins a ReplicaSet for the plan.
///
/// # Errors
/// [`Error::InvalidRevision`].
pub fn replica_set_ref(rs: &ReplicaSet) -> Result<ReplicaSetRef> {
    Ok(ReplicaSetRef {
        name: name_of(rs),
        uid: rs.metadata.uid.clone().unwrap_or_default(),
        pod_template_hash: revision::pod_template_hash(rs),
        revision: revision::revision_of(rs)?,
        images: revision::replica_set_images(rs),
        change_cause: revision::change_cause(rs),
        created_at: revision::created_at(rs),
        template_hash: revision::template_hash(&revision::rollback_template(rs)),
    })
}

/// When the Deployment's Progressing condition last changed: the best record of a rollout
/// whose template never got a ReplicaSet.
fn progressing_since(deployment: &Deployment) -> Option<DateTime<Utc>> {
    deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Progressing"))
        .and_then(|c| c.last_update_time.as_ref())
        .and_then(|t| to_chrono(&t.0))
}

/// When the current revision was rolled out. A fresh ReplicaSet was created for the rollout,
/// so its creation time is the start. A ReplicaSet re-activated by an earlier rollback
/// (it has a revision history) keeps its old creation time; then the Progressing condition's
/// last update, if it names this ReplicaSet, is the best record of that rollback.
pub fn rolled_out_at(deployment: &Deployment, current: &ReplicaSet) -> Option<DateTime<Utc>> {
    let created = current
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| to_chrono(&t.0));
    if annotation(&current.metadata.annotations, REVISION_HISTORY_ANNOTATION).is_none() {
        return created;
    }
    let quoted = format!("\"{}\"", name_of(current));
    let progressed = deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Progressing"))
        .filter(|c| c.message.as_deref().is_some_and(|m| m.contains(&quoted)))
        .and_then(|c| c.last_update_time.as_ref())
        .and_then(|t| to_chrono(&t.0));
    progressed.max(created)
}

/// When the current ReplicaSet's rollout started, if its own metadata says so: a fresh
/// ReplicaSet was created for it. A re-activated one (it has a revision history) keeps its
/// old creation time, and nothing on it records when it was scaled up again: `None`, and
/// the executor looks for the Deployment's scaling events ([`scaled_up_from_zero_at`]).
pub fn rollout_started_at(current: &ReplicaSet) -> Option<DateTime<Utc>> {
    if annotation(&current.metadata.annotations, REVISION_HISTORY_ANNOTATION).is_some() {
        return None;
    }
    current
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| to_chrono(&t.0))
}

/// The latest time the Deployment controller scaled `replica_set` up from zero, from the
/// Deployment's `ScalingReplicaSet` events (`Scaled up replica set <name> from 0 to N`;
/// controllers before 1.29 say `… to N`, then the earliest such event counts, which is no
/// later than the start). `None` when no event names it (events expire, by default after
/// an hour).
pub fn scaled_up_from_zero_at(events: &[Event], replica_set: &str) -> Option<DateTime<Utc>> {
    let prefix = format!("Scaled up replica set {replica_set} ");
    let scale_ups = || {
        events.iter().filter_map(|e| {
            // The event correlator folds the 11th similar event on into one whose message
            // is the latest, prefixed.
            let message = e.message.as_deref()?;
            let message = message
                .strip_prefix("(combined from similar events): ")
                .unwrap_or(message);
            let rest = message.strip_prefix(&prefix)?;
            let at = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.event_time.as_ref().map(|t| t.0))
                .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))?;
            Some((rest, to_chrono(&at)?))
        })
    };
    scale_ups()
        .filter(|(rest, _)| rest.starts_with("from 0 to "))
        .map(|(_, at)| at)
        .max()
        .or_else(|| {
            scale_ups()
                .filter(|(rest, _)| rest.starts_with("to "))
                .map(|(_, at)| at)
                .min()
        })
}

/// Correlates a rollout time with the request time and window.
pub fn correlate(rolled_out_at: Option<DateTime<Utc>>, ctx: &PlanContext) -> Correlation {
    let window_minutes = ctx.correlation_window.num_minutes();
    let (inside_window, summary) = match rolled_out_at {
        None => (
            false,
            "The time the current revision was rolled out is unknown.".to_owned(),
        ),
        Some(at) => {
            let before = ctx.request_time - at;
            let minutes = before.num_minutes();
            if before < Duration::zero() {
                (
                    false,
                    format!(
                        "The current revision was rolled out {} min after the incident started, so it is unlikely to be the cause.",
                        -minutes
                    ),
                )
            } else if before <= ctx.correlation_window {
                (
                    true,
                    format!(
                        "The current revision was rolled out {minutes} min before the incident (window {window_minutes} min)."
                    ),
                )
            } else {
                (
                    false,
                    format!(
                        "The current revision was rolled out {} before the incident, outside the {window_minutes} min correlation window.",
                        human_duration(before)
                    ),
                )
            }
        }
    };
    Correlation {
        rolled_out_at,
        rollout_started_at: None,
        request_time: ctx.request_time,
        window_minutes,
        inside_window,
        summary,
    }
}

fn human_duration(d: Duration) -> String {
    let minutes = d.num_minutes();
    if minutes < 120 {
        format!("{minutes} min")
    } else if minutes < 48 * 60 {
        format!("{} h", minutes / 60)
    } else {
        format!("{} days", minutes / (24 * 60))
    }
}

/// Containers whose image differs, in target order, then containers only the current has.
pub fn image_changes(current: &[ContainerImage], target: &[ContainerImage]) -> Vec<ImageChange> {
    let key = |i: &ContainerImage| (i.init, i.container.clone());
    let now: BTreeMap<_, _> = current.iter().map(|i| (key(i), i.image.clone())).collect();
    let then: BTreeMap<_, _> = target.iter().map(|i| (key(i), i.image.clone())).collect();
    let mut changes = Vec::new();
    for i in target {
        let from = now.get(&key(i)).cloned();
        if from.as_deref() != Some(i.image.as_str()) {
            changes.push(ImageChange {
                container: i.container.clone(),
                from,
                to: Some(i.image.clone()),
            });
        }
    }
    for i in current {
        if !then.contains_key(&key(i)) {
            changes.push(ImageChange {
                container: i.container.clone(),
                from: Some(i.image.clone()),
                to: None,
            });
        }
    }
    changes
}

/// Summarises how `target` differs from `current` apart from images: per container (env by
/// variable name, resources by quantity, everything else by field) and at pod level.
pub fn template_differences(
    current: &PodTemplateSpec,
    target: &PodTemplateSpec,
) -> Vec<TemplateDifference> {
    let a = normalized_template(current);
    let b = normalized_template(target);
    let mut out = Vec::new();
    for field in ["labels", "annotations"] {
        let (x, y) = (&a["metadata"][field], &b["metadata"][field]);
        if x != y {
            out.push(diff(
                "pod",
                field,
                keyed_summary(&as_string_map(x), &as_string_map(y)),
            ));
        }
    }
    let (sa, sb) = (&a["spec"], &b["spec"]);
    for (list, scope) in [
        ("initContainers", "init container"),
        ("containers", "container"),
    ] {
        let ca = containers_by_name(&sa[list]);
        let cb = containers_by_name(&sb[list]);
        for name in ca.keys().chain(cb.keys()).collect::<BTreeSet<_>>() {
            let scope = format!("{scope} {name}");
            match (ca.get(name), cb.get(name)) {
                (Some(_), None) => out.push(diff(
                    &scope,
                    "container",
                    "removed by the rollback".to_owned(),
                )),
                (None, Some(_)) => out.push(diff(
                    &scope,
                    "container",
                    "added by the rollback".to_owned(),
                )),
                (Some(x), Some(y)) => {
                    out.extend(object_differences(&scope, x, y, &["name", "image"]))
                }
                (None, None) => {}
            }
        }
    }
    out.extend(object_differences(
        "pod",
        sa,
        sb,
        &["containers", "initContainers"],
    ));
    out
}

fn diff(scope: &str, field: &str, summary: String) -> TemplateDifference {
    TemplateDifference {
        scope: scope.to_owned(),
        field: field.to_owned(),
        summary,
    }
}

fn object_differences(scope: &str, a: &Value, b: &Value, skip: &[&str]) -> Vec<TemplateDifference> {
    let empty = serde_json::Map::new();
    let (ma, mb) = (
        a.as_object().unwrap_or(&empty),
        b.as_object().unwrap_or(&empty),
    );
    let keys: BTreeSet<&String> = ma
        .keys()
        .chain(mb.keys())
        .filter(|k| !skip.contains(&k.as_str()))
        .collect();
    let mut out = Vec::new();
    for key in keys {
        let (x, y) = (
            ma.get(key.as_str()).unwrap_or(&Value::Null),
            mb.get(key.as_str()).unwrap_or(&Value::Null),
        );
        if x == y {
            continue;
        }
        let summary = match key.as_str() {
            "env" => keyed_summary(&env_map(x), &env_map(y)),
            "command" | "args" => args_summary(x, y),
            _ => value_summary(x, y),
        };
        out.push(diff(scope, key, summary));
    }
    out
}

/// `command` / `args` changes with secret-looking values redacted; a change hidden entirely
/// by redaction is still reported, without the values.
fn args_summary(a: &Value, b: &Value) -> String {
    let redacted = |v: &Value| -> Value {
        let list: Vec<String> = serde_json::from_value(v.clone()).unwrap_or_default();
        if v.is_null() {
            Value::Null
        } else {
            serde_json::to_value(redact::args(&list)).unwrap_or(Value::Null)
        }
    };
    let (ra, rb) = (redacted(a), redacted(b));
    if ra == rb {
        "changed (the values that differ are redacted)".to_owned()
    } else {
        value_summary(&ra, &rb)
    }
}

fn containers_by_name(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["name"].as_str().unwrap_or_default().to_owned(), c.clone()))
        .collect()
}

fn env_map(v: &Value) -> BTreeMap<String, String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let mut rest = e.clone();
            if let Some(m) = rest.as_object_mut() {
                m.remove("name");
            }
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                rest.to_string(),
            )
        })
        .collect()
}

fn as_string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect()
}

/// `+ADDED, -REMOVED, ~CHANGED` over two keyed maps (current → target).
fn keyed_summary(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> String {
    let mut parts = Vec::new();
    for (k, v) in b {
        match a.get(k) {
            None => parts.push(format!("+{k}")),
            Some(old) if old != v => parts.push(format!("~{k}")),
            _ => {}
        }
    }
    parts.extend(
        a.keys()
            .filter(|k| !b.contains_key(*k))
            .map(|k| format!("-{k}")),
    );
    parts.join(", ")
}

/// Short values verbatim (`a → b`); long ones as the list of changed leaf paths.
fn value_summary(a: &Value, b: &Value) -> String {
    let show = |v: &Value| {
        if v.is_null() {
            "(none)".to_owned()
        } else {
            v.to_string()
        }
    };
    let (sa, sb) = (show(a), show(b));
    if sa.len() + sb.len() <= 120 {
        return format!("{sa} → {sb}");
    }
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flatten("", a, &mut fa);
    flatten("", b, &mut fb);
    let changed: Vec<String> = fa
        .keys()
        .chain(fb.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| match (fa.get(k), fb.get(k)) {
            (Some(x), Some(y)) if x.len() + y.len() <= 60 => format!("{k}: {x} → {y}"),
            _ => k.clone(),
        })
        .collect();
    format!("changed: {}", changed.join(", "))
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| flatten(&join(k), v, out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| flatten(&join(&i.to_string()), v, out)),
        _ => {
            out.insert(prefix.to_owned(), v.to_string());
        }
    }
}

/// The image changes as mrkdwn lines: "`container`: `from` → `to`".
pub fn image_lines(changes: &[ImageChange]) -> String {
    if changes.is_empty() {
        return "no image changes".into();
    }
    changes
        .iter()
        .map(|c| {
            format!(
                "`{}`: `{}` → `{}`",
                c.container,
                c.from.as_deref().unwrap_or("(none)"),
                c.to.as_deref().unwrap_or("(removed)")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clients::k8s::revision::tests::{template, three_revisions};
    use crate::clients::k8s::revision::{REVISION_ANNOTATION, owned_replica_sets};
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
    use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn target() -> Target {
        Target {
            cluster: "local".into(),
            namespace: "production".into(),
            deployment: "web".into(),
        }
    }

    fn done(mut d: Deployment) -> Deployment {
        d.status = Some(DeploymentStatus {
            observed_generation: d.metadata.generation,
            replicas: Some(3),
            updated_replicas: Some(3),
            available_replicas: Some(3),
            ..Default::default()
        });
        d
    }

    /// Request made 10 minutes after revision 3's ReplicaSet was created.
    fn ctx() -> PlanContext {
        PlanContext::new(DateTime::from_timestamp(1_700_000_030 + 600, 0).unwrap())
    }

    pub(crate) fn plan_for_tests() -> RollbackPlan {
        let (dep, rss) = three_revisions();
        build_plan(&target(), &done(dep), &rss, None, &ctx()).unwrap()
    }

    #[test]
    fn previous_revision_plan_pins_replica_sets_and_images() {
        let plan = plan_for_tests();
        let current = plan.current.as_ref().unwrap();
        assert_eq!(current.name, "web-ccc");
        assert_eq!(current.pod_template_hash, "ccc");
        assert_eq!(plan.current_images, current.images);
        assert_eq!(plan.current_template_hash.len(), 64);
        assert_eq!(plan.rollback_to.name, "web-bbb");
        assert_eq!(plan.rollback_to.revision, 2);
        assert_eq!(
            plan.image_changes,
            [ImageChange {
                container: "app".into(),
                from: Some("web:3".into()),
                to: Some("web:2".into())
            }]
        );
        assert!(plan.template_differences.is_empty());
        assert!(plan.correlation.inside_window);
        assert_eq!(
            plan.correlation.summary,
            "The current revision was rolled out 10 min before the incident (window 60 min)."
        );
        assert!(!plan.requires_override() && !plan.requires_dba_sign_off());
        assert_eq!(plan.requested_revision, None);
    }

    #[test]
    fn fingerprint_binds_replica_sets_and_images_only() {
        let plan = plan_for_tests();
        let fp = plan.fingerprint();
        assert_eq!(fp.len(), 64);
        let mut cosmetic = plan.clone();
        cosmetic.warnings.clear();
        cosmetic.planned_at = DateTime::UNIX_EPOCH;
        assert_eq!(cosmetic.fingerprint(), fp);
        let mut other = plan.clone();
        other.rollback_to.pod_template_hash = "zzz".into();
        assert_ne!(other.fingerprint(), fp);
        let mut other = plan.clone();
        other.rollback_to.images[0].image = "web:evil".into();
        assert_ne!(other.fingerprint(), fp);
        // An edited target template (same name and hash label) is a different plan.
        let mut other = plan.clone();
        other.rollback_to.template_hash = "edited".into();
        assert_ne!(other.fingerprint(), fp);
        let mut other = plan;
        other.current_template_hash = "edited".into();
        assert_ne!(other.fingerprint(), fp);
    }

    #[test]
    fn the_gitops_fingerprint_also_binds_the_application_history() {
        let native = plan_for_tests();
        let argocd: crate::clients::k8s::argocd::ArgoCdPlan =
            serde_json::from_value(serde_json::json!({
                "namespace": "argocd", "application": "web", "uid": "u-1", "project": "default",
                "detected_by": "tracking id", "sync_status": "Synced", "sync_revision": "c",
                "health": "Healthy", "auto_sync": true,
                "current": {"id": 2, "revision": "c"}, "target": {"id": 1, "revision": "b"},
            }))
            .unwrap();
        let mut gitops = native.clone();
        gitops.argocd = Some(argocd.clone());
        gitops.path = Some("Argo CD: tracking id".into());
        assert_ne!(gitops.fingerprint(), native.fingerprint());
        // The path's wording is cosmetic; a new sync (another current entry) is not.
        let mut reworded = gitops.clone();
        reworded.path = None;
        assert_eq!(reworded.fingerprint(), gitops.fingerprint());
        let mut synced = gitops.clone();
        synced.argocd.as_mut().unwrap().current.id = 3;
        assert_ne!(synced.fingerprint(), gitops.fingerprint());
        let mut retargeted = gitops.clone();
        retargeted.argocd.as_mut().unwrap().target.revision = "a".into();
        assert_ne!(retargeted.fingerprint(), gitops.fingerprint());
        // Stored and read back (the approval's check), the plan is the same plan.
        let back: RollbackPlan =
            serde_json::from_value(serde_json::to_value(&gitops).unwrap()).unwrap();
        assert_eq!(back.fingerprint(), gitops.fingerprint());
    }

    #[test]
    fn forced_plan_over_a_template_that_never_got_a_replica_set() {
        let (mut dep, rss) = three_revisions();
        // A new template the controller could not create a ReplicaSet for (quota denial).
        dep.spec.as_mut().unwrap().template = template("web:4", None);
        let dep = done(dep);
        let err = build_plan(&target(), &dep, &rss, None, &ctx()).unwrap_err();
        assert!(matches!(err, Error::RolloutInProgress { .. }), "{err}");
        assert!(err.to_string().contains("quota or an admission policy"));
        let forced = PlanContext {
            force: true,
            ..ctx()
        };
        // Like `kubectl rollout undo`, "previous" is the second-newest revision, which is
        // not what runs: the card says so.
        let plan = build_plan(&target(), &dep, &rss, None, &forced).unwrap();
        assert_eq!(plan.rollback_to.name, "web-bbb");
        assert!(
            plan.warnings.iter().any(|w| w
                .message
                .contains("the pods still run revision 3 (app=web:3)")),
            "{:#?}",
            plan.warnings
        );
        let plan = build_plan(&target(), &dep, &rss, Some(3), &forced).unwrap();
        assert!(plan.current.is_none());
        assert_eq!(plan.current_images[0].image, "web:4");
        assert_eq!(plan.rollback_to.name, "web-ccc");
        assert_eq!(
            plan.image_changes,
            [ImageChange {
                container: "app".into(),
                from: Some("web:4".into()),
                to: Some("web:3".into())
            }]
        );
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.kind == WarningKind::RolloutInProgress)
        );
    }

    #[test]
    fn stored_template_and_differences_hide_secrets() {
        let (mut dep, mut rss) = three_revisions();
        let with_args = |t: &mut PodTemplateSpec, args: &[&str], env: &str| {
            let c = &mut t.spec.as_mut().unwrap().containers[0];
            c.args = Some(args.iter().map(|a| (*a).to_owned()).collect());
            c.env = Some(vec![EnvVar {
                name: "DB_PASSWORD".into(),
                value: Some(env.into()),
                ..Default::default()
            }]);
        };
        let target_rs = rss.iter_mut().find(|r| name_of(r) == "web-bbb").unwrap();
        let rs_template = target_rs.spec.as_mut().unwrap().template.as_mut().unwrap();
        with_args(rs_template, &["--token", "old-secret-1"], "pw-old");
        let hash = revision::template_hash(&revision::rollback_template(target_rs));
        // The running revision (ReplicaSet and Deployment alike) has other secrets.
        with_args(
            &mut dep.spec.as_mut().unwrap().template,
            &["--token", "new-secret-2"],
            "pw-new",
        );
        let current_rs = rss.iter_mut().find(|r| name_of(r) == "web-ccc").unwrap();
        with_args(
            current_rs.spec.as_mut().unwrap().template.as_mut().unwrap(),
            &["--token", "new-secret-2"],
            "pw-new",
        );
        let plan = build_plan(&target(), &done(dep), &rss, Some(2), &ctx()).unwrap();
        let json = serde_json::to_string(&plan).unwrap();
        for secret in ["old-secret-1", "new-secret-2", "pw-old", "pw-new"] {
            assert!(
                !json.contains(secret),
                "{secret} leaked into the plan: {json}"
            );
        }
        assert_eq!(plan.rollback_to.template_hash, hash);
        let args = plan
            .template_differences
            .iter()
            .find(|d| d.field == "args")
            .unwrap();
        assert_eq!(
            args.summary,
            "changed (the values that differ are redacted)"
        );
        assert!(
            plan.template_differences
                .iter()
                .any(|d| d.field == "env" && d.summary == "~DB_PASSWORD")
        );
    }

    #[test]
    fn refusals_in_kubectl_order() {
        let (dep, rss) = three_revisions();
        let dep = done(dep);
        let mut paused = dep.clone();
        paused.spec.as_mut().unwrap().paused = Some(true);
        // Revision lookup comes before the paused check, like kubectl.
        assert!(matches!(
            build_plan(&target(), &paused, &rss, Some(9), &ctx()),
            Err(Error::UnknownRevision { .. })
        ));
        assert!(matches!(
            build_plan(&target(), &paused, &rss, Some(1), &ctx()),
            Err(Error::Paused { .. })
        ));
        assert_eq!(
            build_plan(&target(), &dep, &rss, Some(3), &ctx())
                .unwrap_err()
                .to_string(),
            "nothing to roll back: the current template already matches revision 3 (ReplicaSet web-ccc)"
        );
        // A rollout still in progress (its pods crash-looping before the deadline) is
        // planned without force; the card says it replaces that rollout.
        let mut moving = dep.clone();
        moving.status.as_mut().unwrap().available_replicas = Some(1);
        let plan = build_plan(&target(), &moving, &rss, Some(1), &ctx()).unwrap();
        let warning = plan
            .warnings
            .iter()
            .find(|w| w.kind == WarningKind::RolloutInProgress)
            .expect("the plan says the rollout has not completed");
        assert!(
            warning.message.starts_with(
                "the current rollout (revision 3, app=web:3) has not completed: Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available..."
            ) && warning.message.ends_with("rolling back replaces that rollout"),
            "{}",
            warning.message
        );
        assert_eq!(warning.requires, Requirement::None);
    }

    #[test]
    fn metadata_edit_is_not_a_rollout_in_progress() {
        let (dep, rss) = three_revisions();
        let mut annotated = done(dep);
        // Annotation edits bump a Deployment's generation before the controller observes it.
        annotated.metadata.generation = Some(8);
        annotated.status.as_mut().unwrap().observed_generation = Some(7);
        assert!(build_plan(&target(), &annotated, &rss, None, &ctx()).is_ok());
    }

    #[test]
    fn correlation_window_inside_outside_and_after() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut c = PlanContext::new(at + Duration::minutes(59));
        assert!(correlate(Some(at), &c).inside_window);
        c.request_time = at + Duration::minutes(61);
        let out = correlate(Some(at), &c);
        assert!(!out.inside_window);
        assert_eq!(
            out.summary,
            "The current revision was rolled out 61 min before the incident, outside the 60 min correlation window."
        );
        c.request_time = at - Duration::minutes(5);
        assert!(!correlate(Some(at), &c).inside_window);
        assert!(!correlate(None, &c).inside_window);

        let (dep, rss) = three_revisions();
        let late = PlanContext::new(
            DateTime::from_timestamp(1_700_000_030, 0).unwrap() + Duration::hours(5),
        );
        let plan = build_plan(&target(), &done(dep), &rss, None, &late).unwrap();
        assert!(plan.requires_override());
        let w = plan
            .warnings
            .iter()
            .find(|w| w.kind == WarningKind::OutsideCorrelationWindow)
            .unwrap();
        assert_eq!(w.requires, Requirement::ApproverOverride);
        assert!(
            w.message.contains("outside the 60 min correlation window"),
            "{}",
            w.message
        );
    }

    #[test]
    fn reactivated_replica_set_uses_the_progress_condition_time() {
        let (mut dep, mut rss) = three_revisions();
        let current = rss.iter_mut().find(|r| name_of(r) == "web-ccc").unwrap();
        current
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION_HISTORY_ANNOTATION.into(), "1".into());
        let later = k8s_openapi::jiff::Timestamp::from_second(1_700_005_000).unwrap();
        dep.status = Some(DeploymentStatus {
            conditions: Some(vec![DeploymentCondition {
                type_: "Progressing".into(),
                status: "True".into(),
                reason: Some("NewReplicaSetAvailable".into()),
                message: Some("ReplicaSet \"web-ccc\" has successfully progressed.".into()),
                last_update_time: Some(Time(later)),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let current = rss.iter().find(|r| name_of(r) == "web-ccc").unwrap();
        assert_eq!(
            rolled_out_at(&dep, current),
            DateTime::from_timestamp(1_700_005_000, 0)
        );
        // That is the rollout's end; its start is not on the ReplicaSet.
        assert_eq!(rollout_started_at(current), None);
        let plan = build_plan(&target(), &dep, &rss, Some(2), &ctx()).unwrap();
        assert_eq!(plan.correlation.rollout_started_at, None);
    }

    #[test]
    fn a_fresh_replica_set_started_its_rollout_when_it_was_created() {
        let (dep, rss) = three_revisions();
        let current = rss.iter().find(|r| name_of(r) == "web-ccc").unwrap();
        let created = current.metadata.creation_timestamp.as_ref().unwrap();
        assert_eq!(rollout_started_at(current), to_chrono(&created.0));
        let plan = build_plan(&target(), &done(dep), &rss, None, &ctx()).unwrap();
        assert_eq!(plan.correlation.rollout_started_at, to_chrono(&created.0));
    }

    #[test]
    fn the_latest_scale_up_from_zero_is_the_rollout_start() {
        let at = |s: i64| Some(Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap()));
        let event = |message: &str, last: i64| Event {
            message: Some(message.into()),
            last_timestamp: at(last),
            ..Event::default()
        };
        let events = [
            event("Scaled up replica set web-ccc from 0 to 1", 100),
            event("Scaled down replica set web-ccc from 3 to 0", 200),
            event("Scaled up replica set web-ccc from 0 to 1", 300),
            event("Scaled up replica set web-ccc from 1 to 3", 310),
            event("Scaled up replica set web-cccd from 0 to 1", 400),
            event(
                "(combined from similar events): Scaled up replica set web-ccc from 0 to 1",
                350,
            ),
        ];
        assert_eq!(
            scaled_up_from_zero_at(&events, "web-ccc"),
            DateTime::from_timestamp(350, 0)
        );
        assert_eq!(scaled_up_from_zero_at(&events, "web-bbb"), None);
        // Controllers before 1.29 do not say "from": the earliest scale-up is no later than
        // the start.
        let old = [
            event("Scaled up replica set web-ccc to 3", 320),
            event("Scaled up replica set web-ccc to 1", 300),
        ];
        assert_eq!(
            scaled_up_from_zero_at(&old, "web-ccc"),
            DateTime::from_timestamp(300, 0)
        );
    }

    #[test]
    fn database_coupling_from_config_or_annotation() {
        let (dep, rss) = three_revisions();
        let coupled_ctx = PlanContext {
            database_coupled: true,
            ..ctx()
        };
        let plan = build_plan(&target(), &done(dep.clone()), &rss, None, &coupled_ctx).unwrap();
        assert!(
            plan.database.coupled && plan.database.from_config && !plan.database.from_annotation
        );
        assert!(plan.requires_dba_sign_off());
        let w = plan
            .warnings
            .iter()
            .find(|w| w.kind == WarningKind::DatabaseCoupled)
            .unwrap();
        assert!(
            w.message.contains("DBA group") && w.message.contains("database-migration procedure")
        );

        let mut annotated = dep.clone();
        annotated
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(DATABASE_COUPLED_ANNOTATION.into(), "true".into());
        let plan = build_plan(&target(), &done(annotated), &rss, None, &ctx()).unwrap();
        assert!(
            plan.database.coupled && plan.database.from_annotation && !plan.database.from_config
        );
        // kubectl's annotation merge drops the marker unless the old ReplicaSet carries it.
        assert!(
            plan.warnings
                .iter()
                .any(|w| w.kind == WarningKind::AnnotationsDropped
                    && w.message.contains(DATABASE_COUPLED_ANNOTATION))
        );

        let plan = build_plan(&target(), &done(dep), &rss, None, &ctx()).unwrap();
        assert!(!plan.database.coupled && !plan.requires_dba_sign_off());
    }

    #[test]
    fn template_differences_are_summarised() {
        let mut a = template("web:2", None);
        let mut b = template("web:1", None);
        let ca = &mut a.spec.as_mut().unwrap().containers[0];
        ca.env = Some(vec![
            EnvVar {
                name: "LOG_LEVEL".into(),
                value: Some("debug".into()),
                ..Default::default()
            },
            EnvVar {
                name: "FEATURE_X".into(),
                value: Some("on".into()),
                ..Default::default()
            },
        ]);
        ca.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "cpu".to_owned(),
                Quantity("500m".into()),
            )])),
            ..Default::default()
        });
        ca.args = Some(vec!["--fast".into()]);
        let cb = &mut b.spec.as_mut().unwrap().containers[0];
        cb.env = Some(vec![
            EnvVar {
                name: "LOG_LEVEL".into(),
                value: Some("info".into()),
                ..Default::default()
            },
            EnvVar {
                name: "LEGACY".into(),
                value: Some("1".into()),
                ..Default::default()
            },
        ]);
        cb.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("cpu".to_owned(), Quantity("1".into()))])),
            ..Default::default()
        });
        b.spec.as_mut().unwrap().service_account_name = Some("legacy".into());
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "gold".into());
        let diffs = template_differences(&a, &b);
        let got: Vec<(String, String, String)> = diffs
            .into_iter()
            .map(|d| (d.scope, d.field, d.summary))
            .collect();
        assert_eq!(
            got,
            [
                ("pod".into(), "labels".into(), "+tier".into()),
                (
                    "container app".into(),
                    "args".into(),
                    "[\"--fast\"] → (none)".into()
                ),
                (
                    "container app".into(),
                    "env".into(),
                    "+LEGACY, ~LOG_LEVEL, -FEATURE_X".into()
                ),
                (
                    "container app".into(),
                    "resources".into(),
                    "{\"limits\":{\"cpu\":\"500m\"}} → {\"limits\":{\"cpu\":\"1\"}}".into()
                ),
                (
                    "pod".into(),
                    "serviceAccountName".into(),
                    "(none) → \"legacy\"".into()
                ),
            ]
        );
    }

    #[test]
    fn plan_round_trips_through_json() {
        let plan = plan_for_tests();
        let json = serde_json::to_string(&plan).unwrap();
        let back: RollbackPlan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
        assert_eq!(back.fingerprint(), plan.fingerprint());
    }

    #[test]
    fn unknown_revision_lists_available_after_renumbering() {
        let (dep, mut rss) = three_revisions();
        let first = rss.iter_mut().find(|r| name_of(r) == "web-aaa").unwrap();
        first
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(REVISION_ANNOTATION.into(), "4".into());
        let rss = owned_replica_sets(&dep, rss);
        match build_plan(&target(), &done(dep), &rss, Some(1), &ctx()) {
            Err(Error::UnknownRevision { available, .. }) => assert_eq!(available, [2, 3, 4]),
            other => panic!("unexpected {other:?}"),
        }
    }
}
