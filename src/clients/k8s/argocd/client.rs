//! Argo CD's side of the I/O: the `argoproj.io/v1alpha1` Applications and AppProjects in
//! Argo CD's namespace, read and merge-patched through kube-rs `DynamicObject`s (the bot
//! talks to the CRs, not to argocd-server, so Argo CD's own RBAC is not involved; the
//! Kubernetes RBAC is `config/kubernetes/argocd/rbac.yaml`). Every decision is one of the
//! pure functions of [`super`].
//!
//! API calls made: applications get and patch; appprojects get and patch.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

use super::{
    Application, ArgoCdPlan, Detection, Error, OperationProgress, detect, disable_auto_sync_patch,
    lock_window, operation_patch, operation_progress, refusal, replica_set_for,
    restore_auto_sync_patch, select_history, unchanged_since_plan, with_lock_window,
    without_lock_window,
};
use crate::clients::k8s::{
    self, Executor, PlanContext, RollbackPlan, Target, WarningKind, build_plan, created_at,
    revision_of,
};

/// How often the operation is polled while Argo CD runs it.
const POLL: Duration = Duration::from_millis(200);
/// Conflicting writes tolerated before giving up (as a transient failure).
const MAX_CONFLICTS: u32 = 10;

/// Where to look for the Application of one service.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// Argo CD's namespace in the service's cluster.
    pub namespace: &'a str,
    /// `services.<name>.argocd_application`, if set.
    pub configured_application: Option<&'a str>,
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind))
}

fn applications(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &resource("Application"))
}

fn projects(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &resource("AppProject"))
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The Application and its `resourceVersion`, or None when it does not exist (or the
/// Application CRD is not installed).
async fn get_application(
    api: &Api<DynamicObject>,
    name: &str,
) -> Result<Option<(Application, String)>, Error> {
    let object = match api.get_opt(name).await {
        Ok(object) => object,
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e.into()),
    };
    let Some(object) = object else {
        return Ok(None);
    };
    let rv = object.metadata.resource_version.clone().unwrap_or_default();
    let json = serde_json::to_value(&object).unwrap_or(Value::Null);
    let app = serde_json::from_value(json).map_err(|e| Error::Malformed {
        application: name.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Some((app, rv)))
}

/// Merge-patches `name` with `body` (which carries the `resourceVersion` it was computed
/// from): true when applied, false when the object changed since (409: re-read and retry).
async fn patch_unless_changed(
    api: &Api<DynamicObject>,
    name: &str,
    body: &Value,
) -> Result<bool, Error> {
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(body))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `object` kept changing under every one of the [`MAX_CONFLICTS`] guarded patches.
fn contended(object: String) -> Error {
    k8s::Error::Contended {
        deployment: object,
        conflicts: MAX_CONFLICTS,
    }
    .into()
}

/// The Application managing `target`, if a marker names one that exists, with how it was
/// found; `Err(Refused)` when a strong marker (setting, tracking annotation) names one that
/// does not exist, since a native undo Argo CD does not know about would be reverted.
async fn managing_application(
    client: &kube::Client,
    target: &Target,
    detection: &Detection,
    settings: Settings<'_>,
) -> Result<Option<(String, Application)>, Error> {
    if let Detection::ForeignTrackingId { .. } = detection {
        return Err(Error::Refused(format!(
            "deployment {}: {}; refusing: a copied or forged annotation would point the bot at any \
             Application. Remove the annotation, or name the Application in the service's argocd_application setting",
            target.deployment,
            detection.describe()
        )));
    }
    let Some((namespace, name)) = detection.application(settings.namespace) else {
        return Ok(None);
    };
    let api = applications(client.clone(), namespace);
    let found = match get_application(&api, name).await {
        // The instance label is only a hint (Helm sets it too): unreadable means not Argo's.
        Err(Error::Kube(k8s::Error::Forbidden { .. }))
            if matches!(detection, Detection::InstanceLabel { .. }) =>
        {
            None
        }
        found => found?,
    };
    match (found, detection) {
        (Some((app, _)), Detection::InstanceLabel { .. })
            if app.spec.destination.namespace.as_deref() != Some(target.namespace.as_str()) =>
        {
            Ok(None)
        }
        (Some((app, _)), _) => match super::destination_mismatch(&app, &target.namespace) {
            None => Ok(Some((namespace.to_owned(), app))),
            Some(why) => Err(Error::Refused(format!(
                "deployment {} names Argo CD application {namespace}/{name} ({}), but {why}: it does not \
                 deploy this deployment; refusing to sync it",
                target.deployment,
                detection.describe()
            ))),
        },
        (None, Detection::InstanceLabel { .. }) => Ok(None),
        (None, _) => Err(Error::Refused(format!(
            "deployment {} is managed by Argo CD ({}), but application {name} does not exist in namespace \
             {namespace} (or the bot may not read it); refusing a native rollback that Argo CD would revert",
            target.deployment,
            detection.describe()
        ))),
    }
}

/// Plans a rollback of `target`: through its Argo CD Application when one manages it,
/// else the native `rollout undo` plan. Either way `path` says which and why. On the
/// GitOps path `requested` is an Argo CD history ID.
///
/// # Errors
/// The refusals of [`super::refusal`] and [`select_history`], the native plan's refusals,
/// API failures.
pub async fn plan(
    executor: &Executor,
    target: &Target,
    requested: Option<i64>,
    ctx: &PlanContext,
    settings: Settings<'_>,
) -> Result<RollbackPlan, Error> {
    let (deployment, owned) = executor.deployment_with_replica_sets(target).await?;
    let client = executor.clusters().client(&target.cluster)?.clone();
    let detection = detect(settings.configured_application, &deployment);
    let Some((namespace, app)) =
        managing_application(&client, target, &detection, settings).await?
    else {
        let mut plan = build_plan(target, &deployment, &owned, requested, ctx)?;
        executor.find_rollout_start(&mut plan).await;
        plan.path = Some(match detection {
            Detection::None => format!("native rollout undo: {}", detection.describe()),
            _ => format!(
                "native rollout undo: {}, but no Argo CD application of that name deploys to namespace {}",
                detection.describe(),
                target.namespace
            ),
        });
        return Ok(plan);
    };
    if let Some(reason) = refusal(&app) {
        return Err(Error::Refused(reason));
    }
    let (current, to) = select_history(&app, requested).map_err(Error::Refused)?;
    let next = app.status.history.iter().find(|h| h.id > to.id);
    let replica_sets: Vec<(i64, Option<DateTime<Utc>>)> = owned
        .iter()
        .map(|rs| (revision_of(rs).unwrap_or(0), created_at(rs)))
        .collect();
    let revision = replica_set_for(&to, next, &replica_sets).ok_or_else(|| {
        Error::Refused(format!(
            "no ReplicaSet of deployment {} ran Argo CD history entry {}: the images it renders are unknown \
             (the ReplicaSet history may be shorter than Argo CD's)",
            target.deployment,
            to.short()
        ))
    })?;
    let mut plan = build_plan(target, &deployment, &owned, Some(revision), ctx)?;
    executor.find_rollout_start(&mut plan).await;
    // Those two are about `kubectl apply` and `rollout undo`; Argo CD applies the manifests.
    plan.warnings.retain(|w| {
        !matches!(
            w.kind,
            WarningKind::ManagedByKubectlApply | WarningKind::AnnotationsDropped
        )
    });
    plan.path = Some(format!("Argo CD: {}", detection.describe()));
    plan.argocd = Some(ArgoCdPlan::new(&app, &namespace, &detection, current, to));
    Ok(plan)
}

/// What [`execute`] did.
#[derive(Debug, Clone)]
pub struct Executed {
    /// The operation was already requested (a retried step): nothing was sent.
    pub already_applied: bool,
    /// Auto-sync was turned off by this execution.
    pub auto_sync_disabled: bool,
    /// When the operation was requested, and when Argo CD reported it finished.
    pub requested_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Argo CD's final message.
    pub message: String,
}

/// Who and why, for `operation.initiatedBy` and `operation.info`.
#[derive(Debug, Clone, Copy)]
pub struct Initiator<'a> {
    pub rollback_id: i64,
    pub approver: &'a str,
    pub reason: &'a str,
}

/// Rolls back the way `argocd app rollback --prune` does inside Argo CD: refuses while an
/// operation runs or the Application is being deleted, or when it synced since the plan;
/// turns auto-sync off (recording the previous policy); sets `operation.sync` to the target
/// entry's revision and source, guarded by `resourceVersion`; then waits up to `timeout` for
/// `status.operationState` to end. No write is sent after `deadline`. Idempotent: an
/// operation of this rollback already on the Application is only waited for.
///
/// # Errors
/// [`Error::Refused`], [`Error::Stale`], [`Error::OperationFailed`], [`Error::Timeout`],
/// API failures.
pub async fn execute(
    executor: &Executor,
    cluster: &str,
    plan: &ArgoCdPlan,
    who: Initiator<'_>,
    deadline: Option<DateTime<Utc>>,
    timeout: Duration,
) -> Result<Executed, Error> {
    let client = executor.clusters().client(cluster)?.clone();
    let api = applications(client.clone(), &plan.namespace);
    let mut auto_sync_disabled = false;
    let requested = request_operation(&api, plan, who, deadline, &mut auto_sync_disabled).await;
    let (already_applied, requested_at) = match requested {
        Ok(requested) => requested,
        Err(e) => {
            // Not rolled back, so no lock follows: give auto-sync back when this execution
            // turned it off, or when a run before a crash did (its recorded policy is still
            // on the Application) and the execution is refused now — unless an earlier
            // rollback's lock is what keeps it off.
            if auto_sync_disabled
                || (e.is_refusal() && !locked_by_earlier_rollback(&client, plan).await)
            {
                restore_auto_sync(&api, &plan.application).await;
            }
            return Err(e);
        }
    };
    let message = wait_for_operation(&api, &plan.application, who.rollback_id, timeout).await?;
    Ok(Executed {
        already_applied,
        auto_sync_disabled,
        requested_at,
        finished_at: Utc::now(),
        message,
    })
}

/// Whether the Application's project holds a lock window of the bot for it (an earlier
/// rollback's lock); an unreadable project counts as locked, so auto-sync is never turned on
/// under a lock.
async fn locked_by_earlier_rollback(client: &kube::Client, plan: &ArgoCdPlan) -> bool {
    match projects(client.clone(), &plan.namespace)
        .get(&plan.project)
        .await
    {
        Ok(project) => {
            let windows = project.data["spec"]["syncWindows"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            super::has_lock_window(&windows, &plan.application)
        }
        Err(e) => {
            tracing::warn!(application = %plan.application, error = %e,
                "cannot read the project's sync windows; leaving auto-sync as it is");
            true
        }
    }
}

/// Best effort: the recorded auto-sync policy back (a refusal is being reported anyway).
async fn restore_auto_sync(api: &Api<DynamicObject>, name: &str) {
    if let Err(e) = patch_guarded(api, name, restore_auto_sync_patch).await {
        tracing::warn!(application = name, error = %e, "could not restore auto-sync after a refusal");
    }
}

/// Applies `change` of the Application (None: nothing to do) as a merge patch guarded by the
/// `resourceVersion` it was computed from; a conflict re-reads and computes again. Returns
/// the patch that was applied, if any (none also when the Application is gone).
async fn patch_guarded(
    api: &Api<DynamicObject>,
    name: &str,
    change: impl Fn(&Application) -> Option<Value>,
) -> Result<Option<Value>, Error> {
    for _ in 0..MAX_CONFLICTS {
        let Some((app, rv)) = get_application(api, name).await? else {
            return Ok(None);
        };
        let Some(mut body) = change(&app) else {
            return Ok(None);
        };
        body["metadata"]["resourceVersion"] = json!(rv);
        if patch_unless_changed(api, name, &body).await? {
            return Ok(Some(body));
        }
    }
    Err(contended(format!("application {name}")))
}

/// Steps 1–3 of [`execute`]: returns whether the operation was there already, and when it
/// was requested.
async fn request_operation(
    api: &Api<DynamicObject>,
    plan: &ArgoCdPlan,
    who: Initiator<'_>,
    deadline: Option<DateTime<Utc>>,
    auto_sync_disabled: &mut bool,
) -> Result<(bool, DateTime<Utc>), Error> {
    let name = plan.application.as_str();
    let mut requested_at = Utc::now();
    for _ in 0..MAX_CONFLICTS {
        let Some((app, rv)) = get_application(api, name).await? else {
            return Err(Error::Stale(format!("application {name} no longer exists")));
        };
        if operation_progress(&app, who.rollback_id) != OperationProgress::NotStarted {
            return Ok((true, requested_at));
        }
        // A new sync first: then the plan is stale whether or not another one runs now.
        unchanged_since_plan(plan, &app).map_err(Error::Stale)?;
        if let Some(reason) = refusal(&app) {
            return Err(Error::Refused(format!("not executed: {reason}")));
        }
        if let Some(deadline) = deadline
            && Utc::now() > deadline
        {
            return Err(k8s::Error::ApprovalStale { deadline }.into());
        }
        // Auto-sync first: with it on, Argo CD runs the rollback and syncs straight back.
        if let Some(mut body) = disable_auto_sync_patch(&app) {
            body["metadata"]["resourceVersion"] = json!(rv);
            if patch_unless_changed(api, name, &body).await? {
                *auto_sync_disabled = true;
            }
            continue;
        }
        requested_at = Utc::now();
        let body = operation_patch(plan, &rv, who.rollback_id, who.approver, who.reason);
        if patch_unless_changed(api, name, &body).await? {
            return Ok((false, requested_at));
        }
    }
    Err(contended(format!("application {name}")))
}

/// Polls the Application until rollback `rollback_id`'s operation ends.
async fn wait_for_operation(
    api: &Api<DynamicObject>,
    name: &str,
    rollback_id: i64,
    timeout: Duration,
) -> Result<String, Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("not started");
    loop {
        if let Some((app, _)) = get_application(api, name).await? {
            match operation_progress(&app, rollback_id) {
                OperationProgress::Succeeded(message) => return Ok(message),
                OperationProgress::Failed { phase, message } => {
                    return Err(Error::OperationFailed { phase, message });
                }
                OperationProgress::Running(message) => last = message,
                OperationProgress::NotStarted => {}
            }
        } else {
            return Err(Error::OperationFailed {
                phase: "Deleted".into(),
                message: format!("application {name} was deleted during the sync"),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                seconds: timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The GitOps part of the lock: auto-sync stays off and the Application's AppProject gets a
/// deny sync window for it. Returns whether the window was there already (a retried step).
///
/// # Errors
/// API failures; the project gone.
pub async fn lock(
    executor: &Executor,
    cluster: &str,
    plan: &ArgoCdPlan,
    rollback_id: i64,
    reason: &str,
) -> Result<bool, Error> {
    let client = executor.clusters().client(cluster)?.clone();
    let apps = applications(client.clone(), &plan.namespace);
    // Someone turned auto-sync on again in between: off, as the lock promises.
    patch_guarded(&apps, &plan.application, disable_auto_sync_patch).await?;
    let window = lock_window(&plan.application, rollback_id, reason);
    update_windows(&client, &plan.namespace, &plan.project, |windows| {
        with_lock_window(windows, &plan.application, window.clone())
    })
    .await
    .map(|changed| !changed)
}

/// Rewrites the project's `spec.syncWindows` with `change` (None: nothing to do), guarded by
/// `resourceVersion`. Returns whether it wrote.
async fn update_windows(
    client: &kube::Client,
    namespace: &str,
    project: &str,
    change: impl Fn(&[Value]) -> Option<Vec<Value>>,
) -> Result<bool, Error> {
    let api = projects(client.clone(), namespace);
    for _ in 0..MAX_CONFLICTS {
        let object = api.get(project).await?;
        let rv = object.metadata.resource_version.clone().unwrap_or_default();
        let windows: Vec<Value> = object.data["spec"]["syncWindows"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(windows) = change(&windows) else {
            return Ok(false);
        };
        let body = json!({"metadata": {"resourceVersion": rv}, "spec": {"syncWindows": windows}});
        if patch_unless_changed(&api, project, &body).await? {
            return Ok(true);
        }
    }
    Err(contended(format!("appproject {project}")))
}

/// The Application an unlock of `target` concerns, if Argo CD manages it: its namespace,
/// name and the auto-sync policy the unlock will restore (None: it stays as it is).
///
/// # Errors
/// API failures; a strong marker naming a missing Application.
pub async fn unlock_plan(
    executor: &Executor,
    target: &Target,
    settings: Settings<'_>,
) -> Result<Option<Value>, Error> {
    let (deployment, _) = executor.deployment_with_replica_sets(target).await?;
    let client = executor.clusters().client(&target.cluster)?.clone();
    let detection = detect(settings.configured_application, &deployment);
    let Some((namespace, app)) =
        managing_application(&client, target, &detection, settings).await?
    else {
        return Ok(None);
    };
    Ok(Some(json!({
        "namespace": namespace,
        "application": app.metadata.name,
        "project": app.spec.project,
        "restores_automated_sync": super::recorded_policy(&app),
    })))
}

/// The GitOps part of an approved unlock: removes the bot's deny window for the
/// Application and restores the auto-sync policy recorded when auto-sync was turned off.
/// Idempotent. Returns what it did, for the step's detail.
///
/// # Errors
/// API failures.
pub async fn unlock(
    executor: &Executor,
    cluster: &str,
    namespace: &str,
    application: &str,
) -> Result<Value, Error> {
    let client = executor.clusters().client(cluster)?.clone();
    let apps = applications(client.clone(), namespace);
    let Some((app, _)) = get_application(&apps, application).await? else {
        return Ok(json!({"application": application, "gone": true}));
    };
    let window_removed = update_windows(&client, namespace, &app.spec.project, |windows| {
        without_lock_window(windows, application)
    })
    .await?;
    let restored = patch_guarded(&apps, application, restore_auto_sync_patch)
        .await?
        .map(|body| body["spec"]["syncPolicy"]["automated"].clone());
    Ok(json!({
        "application": application,
        "window_removed": window_removed,
        "restored_automated_sync": restored,
    }))
}
