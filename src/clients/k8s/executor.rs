//! The executor's Kubernetes I/O: reads Deployments and their ReplicaSets, applies
//! kubectl's rollback patch, and verifies the result by watching the Deployment and its pods.
//! Every decision is delegated to the pure modules (`revision`, `plan`, `rollout`).
//!
//! API calls made by `clients::k8s` (the only module that calls the API server), i.e. what
//! the RBAC role must allow: deployments get, list (name suggestions; the watch's initial
//! list; service discovery's watchers in `deployments.rs`), watch and patch (the rollback
//! here, the deploy lock's annotations in `lock.rs`/`deployments.rs`); replicasets list (also
//! the deployer annotation, `deployments.rs`); pods list and watch (pods list also for
//! recovery validation's soak check); pods/log get (a failing container's previous log, for
//! the escalation); events list (when a re-activated ReplicaSet's rollout started; Warning
//! events for the escalation); Argo CD `applications` and `appprojects` get and patch
//! (`argocd/client.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event as KubeEvent, Pod};
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use kube::core::Selector;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watch_object, watcher};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::diagnosis::{self, Diagnosis};
use super::error::{Error, Result, api_status_code};
use super::plan::{self, PlanContext, RollbackPlan, build_plan};
use super::revision::{self, Revision, name_of};
use super::rollout::{self, Check, CheckName, Outcome, evaluate};
use super::{Clusters, Target, suggest};
use crate::domain::lock::Lock;
use crate::support::text::truncate;

/// Default bound for [`Executor::verify`] (runbook step 3).
pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(120);

/// Result of [`Executor::execute`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executed {
    /// The Deployment's `metadata.generation` after the patch (or as found, if already applied).
    pub generation: i64,
    /// The Deployment already had the target template (a retry after the patch went
    /// through); nothing was sent.
    pub already_applied: bool,
    /// When the executor finished.
    pub at: DateTime<Utc>,
    /// The deploy lock the Deployment carries after the patch, as the API server answered
    /// it (or, already applied, as found). `None`: not locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<Lock>,
}

/// What the bot adds to `kubectl rollout undo`'s patch. The default is kubectl's patch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UndoOptions {
    /// Deployment annotations that keep their value through the revision swap (the bot's
    /// own: discovery, database coupling, who deployed).
    pub keep_annotations: Vec<String>,
    /// The lock the same patch sets, extending a lock the Deployment already carries
    /// ([`Lock::extending`]), so the rolled-back Deployment is never unlocked.
    pub lock: Option<Lock>,
}

impl UndoOptions {
    /// The annotation changes for a Deployment whose annotations are `existing`.
    fn changes(&self, existing: &BTreeMap<String, String>) -> revision::AnnotationChanges {
        let previous = Lock::from_annotations(existing);
        let lock = self
            .lock
            .clone()
            .map(|lock| lock.extending(previous.as_ref()));
        revision::AnnotationChanges {
            keep: self.keep_annotations.clone(),
            set: lock.as_ref().map(Lock::changes).unwrap_or_default(),
        }
    }
}

/// The lock a Deployment's annotations record.
fn lock_of(deployment: &Deployment) -> Option<Lock> {
    deployment
        .metadata
        .annotations
        .as_ref()
        .and_then(Lock::from_annotations)
}

/// A progress update while verifying ("… 2 of 3 updated replicas are available...").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// kubectl's rollout-status message.
    pub message: String,
    /// Pods of the target ReplicaSet that are Running and Ready.
    pub ready_pods: usize,
    /// Non-terminating pods matching the Deployment's selector.
    pub pods: usize,
    /// Time since verification started.
    pub elapsed_ms: u64,
}

/// Result of [`Executor::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Every check passed.
    pub passed: bool,
    /// The timeout ended verification before Kubernetes settled.
    pub timed_out: bool,
    /// How long verification took.
    pub elapsed_ms: u64,
    /// The checks as last evaluated.
    pub checks: Vec<Check>,
    /// One line for humans.
    pub summary: String,
}

/// Runs history, plan, execute and verify against the configured clusters.
#[derive(Debug, Clone)]
pub struct Executor {
    clusters: Clusters,
}

/// How often [`Executor::execute`] re-reads after a conflicting write before it gives up
/// (as a transient failure the engine retries later).
const MAX_PATCH_CONFLICTS: u32 = 10;

/// What [`Executor::checked_patch`] found.
enum Checked {
    AlreadyApplied(Executed),
    Patch {
        patch: json_patch::Patch,
        resource_version: String,
    },
}

struct Loaded {
    deployment: Deployment,
    owned: Vec<ReplicaSet>,
}

impl Executor {
    /// An executor over these clusters.
    pub fn new(clusters: Clusters) -> Self {
        Self { clusters }
    }

    /// The configured clusters.
    pub fn clusters(&self) -> &Clusters {
        &self.clusters
    }

    /// `kubectl rollout history`: the Deployment's revisions, ascending.
    ///
    /// # Errors
    /// Unknown cluster or Deployment (with suggestions), API failures.
    #[tracing::instrument(skip(self), fields(target = %target))]
    pub async fn history(&self, target: &Target) -> Result<Vec<Revision>> {
        let loaded = self.load(target).await?;
        Ok(revision::history(&loaded.deployment, &loaded.owned))
    }

    /// Plans `rollback <deployment> [revision]` (`None` = previous revision).
    ///
    /// # Errors
    /// The refusals of [`Error`] (see [`build_plan`]) and API failures.
    #[tracing::instrument(skip(self, ctx), fields(target = %target))]
    pub async fn plan(
        &self,
        target: &Target,
        revision: Option<i64>,
        ctx: &PlanContext,
    ) -> Result<RollbackPlan> {
        let loaded = self.load(target).await?;
        let mut plan = build_plan(target, &loaded.deployment, &loaded.owned, revision, ctx)?;
        self.find_rollout_start(&mut plan).await;
        Ok(plan)
    }

    /// Fills in when the current revision's rollout started where its ReplicaSet cannot say
    /// (a re-activated one, [`plan::rollout_started_at`]): from the Deployment's scaling
    /// events, one LIST and only then. Without them the plan has no start and recovery
    /// validation no baseline; that is said on the card, so a failure here is only logged.
    pub async fn find_rollout_start(&self, plan: &mut RollbackPlan) {
        let Some(current) = &plan.current else {
            return;
        };
        if plan.correlation.rollout_started_at.is_some() {
            return;
        }
        let found = async {
            let client = self.clusters.client(&plan.target.cluster)?.clone();
            let events: Api<KubeEvent> = Api::namespaced(client, &plan.target.namespace);
            let selector = format!(
                "involvedObject.kind=Deployment,involvedObject.name={},reason=ScalingReplicaSet",
                plan.target.deployment
            );
            let listed = events
                .list(&ListParams::default().fields(&selector))
                .await?;
            Ok::<_, Error>(plan::scaled_up_from_zero_at(&listed.items, &current.name))
        };
        match found.await {
            Ok(at) => plan.correlation.rollout_started_at = at,
            Err(e) => tracing::warn!(
                error = %e,
                deployment = %plan.target.deployment,
                "cannot read the Deployment's events: the recovery baseline's end is unknown"
            ),
        }
    }

    /// The Deployment and the ReplicaSets it owns, for planning elsewhere (the Argo CD path,
    /// `src/clients/k8s/argocd/client.rs`).
    ///
    /// # Errors
    /// Unknown cluster or Deployment (with suggestions), API failures.
    pub async fn deployment_with_replica_sets(
        &self,
        target: &Target,
    ) -> Result<(Deployment, Vec<ReplicaSet>)> {
        let loaded = self.load(target).await?;
        Ok((loaded.deployment, loaded.owned))
    }

    /// Applies an approved plan with `kubectl rollout undo`'s patch, exactly as approved:
    /// the Deployment must be the one planned for (same UID) and still carry the template the
    /// plan was made against, and the target ReplicaSet's live template must hash to the
    /// approved one (a ReplicaSet edited after approval is refused, never applied). No patch
    /// is sent after `deadline` (the approval's age limit).
    ///
    /// The patch is conditional on the `resourceVersion` that was checked. A write that lands
    /// in between (an HPA scale, an annotation edit, a status update) makes the API server
    /// answer 409; the executor then re-reads and re-checks, so only a change of what matters
    /// fails the plan. Idempotent: when the Deployment already carries the target template
    /// (a retry after the patch went through, or another replica that won the race), nothing
    /// is sent and `already_applied` is set.
    ///
    /// `options` adds the bot's part to kubectl's patch: the deploy lock and the annotations
    /// that survive the swap; [`UndoOptions::default`] sends kubectl's patch exactly.
    ///
    /// # Errors
    /// [`Error::PlanChanged`] and [`Error::ApprovalStale`] (nothing changed), [`Error::Paused`],
    /// API failures.
    #[tracing::instrument(skip(self, plan), fields(target = %plan.target, fingerprint = %plan.fingerprint()))]
    pub async fn execute(
        &self,
        plan: &RollbackPlan,
        deadline: Option<DateTime<Utc>>,
        options: &UndoOptions,
    ) -> Result<Executed> {
        let client = self.clusters.client(&plan.target.cluster)?.clone();
        let api: Api<Deployment> = Api::namespaced(client, &plan.target.namespace);
        for attempt in 1..=MAX_PATCH_CONFLICTS {
            let (patch, resource_version) =
                match self.checked_patch(plan, deadline, options).await? {
                    Checked::AlreadyApplied(executed) => return Ok(executed),
                    Checked::Patch {
                        patch,
                        resource_version,
                    } => (patch, resource_version),
                };
            crate::support::failpoint::hit_with("executor.before_patch", &plan.target.to_string());
            match api
                .patch(
                    &plan.target.deployment,
                    &PatchParams::default(),
                    &Patch::Json::<()>(patch),
                )
                .await
            {
                Ok(patched) => {
                    crate::support::failpoint::hit("executor.after_patch");
                    let generation = patched.metadata.generation.unwrap_or(0);
                    tracing::info!(generation, to = %plan.rollback_to.name, "rolled back");
                    return Ok(Executed {
                        generation,
                        already_applied: false,
                        at: Utc::now(),
                        lock: lock_of(&patched),
                    });
                }
                Err(e) if api_status_code(&e) == Some(409) => {
                    tracing::info!(attempt, %resource_version,
                        "deployment changed between check and patch; re-reading");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contended {
            deployment: plan.target.deployment.clone(),
            conflicts: MAX_PATCH_CONFLICTS,
        })
    }

    /// Reads the Deployment and its ReplicaSets and checks them against the plan: either the
    /// rollback is already applied, or here is the patch to send, conditional on the
    /// `resourceVersion` that was checked.
    async fn checked_patch(
        &self,
        plan: &RollbackPlan,
        deadline: Option<DateTime<Utc>>,
        options: &UndoOptions,
    ) -> Result<Checked> {
        let changed = |reason: String| Error::PlanChanged { reason };
        let Loaded { deployment, owned } = match self.load(&plan.target).await {
            Err(Error::UnknownDeployment { .. }) => {
                return Err(changed(format!(
                    "deployment {} no longer exists",
                    plan.target.deployment
                )));
            }
            other => other?,
        };
        let uid = deployment.metadata.uid.as_deref().unwrap_or_default();
        if uid != plan.deployment_uid {
            return Err(changed(format!(
                "deployment {} was re-created (UID {uid}, plan was made for {})",
                plan.target.deployment, plan.deployment_uid
            )));
        }
        let Some(target_rs) = owned.iter().find(|rs| name_of(rs) == plan.rollback_to.name) else {
            return Err(changed(format!(
                "the target ReplicaSet {} (revision {}) no longer exists",
                plan.rollback_to.name, plan.rollback_to.revision
            )));
        };
        let template = revision::rollback_template(target_rs);
        let target_hash = revision::template_hash(&template);
        if revision::pod_template_hash(target_rs) != plan.rollback_to.pod_template_hash
            || target_hash != plan.rollback_to.template_hash
        {
            return Err(changed(format!(
                "the target ReplicaSet {}'s pod template was edited after the plan was made (it now runs {}); \
                 the edited template was not approved",
                plan.rollback_to.name,
                revision::fmt_images(&revision::template_images(&template)),
            )));
        }
        let spec = deployment.spec.as_ref().ok_or_else(|| Error::Malformed {
            deployment: plan.target.deployment.clone(),
            reason: "no spec".to_owned(),
        })?;
        let generation = deployment.metadata.generation.unwrap_or(0);
        let live_hash = revision::template_hash(&spec.template);
        if live_hash == plan.rollback_to.template_hash {
            tracing::info!(generation, "rollback already applied; not patching again");
            return Ok(Checked::AlreadyApplied(Executed {
                generation,
                already_applied: true,
                at: Utc::now(),
                lock: lock_of(&deployment),
            }));
        }
        if spec.paused == Some(true) {
            return Err(Error::Paused {
                deployment: plan.target.deployment.clone(),
            });
        }
        if live_hash != plan.current_template_hash {
            let now_running = revision::current_replica_set(&deployment, &owned)
                .map_or_else(|| "a template without a ReplicaSet".to_owned(), name_of);
            return Err(changed(format!(
                "the deployment's pod template changed since the plan was made: it now runs {} ({}), the plan was made against {}",
                revision::fmt_images(&revision::template_images(&spec.template)),
                now_running,
                revision::fmt_images(&plan.current_images),
            )));
        }
        if let Some(deadline) = deadline
            && Utc::now() > deadline
        {
            return Err(Error::ApprovalStale { deadline });
        }
        let resource_version = deployment
            .metadata
            .resource_version
            .clone()
            .ok_or_else(|| Error::Malformed {
                deployment: plan.target.deployment.clone(),
                reason: "no metadata.resourceVersion".to_owned(),
            })?;
        let existing = deployment.metadata.annotations.clone();
        let changes = options.changes(existing.as_ref().unwrap_or(&BTreeMap::new()));
        let annotations = revision::rollback_annotations(
            &existing.clone().unwrap_or_default(),
            &target_rs.metadata.annotations.clone().unwrap_or_default(),
            &changes,
        );
        let ops = revision::rollback_patch(
            &template,
            &annotations,
            existing.is_some(),
            Some(&resource_version),
        );
        let patch = serde_json::from_value(ops).map_err(|e| Error::Malformed {
            deployment: plan.target.deployment.clone(),
            reason: format!("cannot build the rollback patch: {e}"),
        })?;
        Ok(Checked::Patch {
            patch,
            resource_version,
        })
    }

    /// Verifies a rollback (runbook step 3) by watching the Deployment and the pods of its
    /// selector until every check passes, one fails for good (e.g. progress deadline
    /// exceeded) or `timeout` elapses. Progress updates go to `progress` whenever kubectl's
    /// message or the ready-pod count changes; a full channel drops updates rather than
    /// slowing verification down.
    ///
    /// # Errors
    /// Unknown cluster, RBAC refusals and watches that fail permanently. A failed or
    /// timed-out verification is an `Ok` with `passed: false`.
    #[tracing::instrument(skip(self, plan, progress), fields(target = %plan.target))]
    pub async fn verify(
        &self,
        plan: &RollbackPlan,
        timeout: Duration,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Result<Verification> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let client = self.clusters.client(&plan.target.cluster)?.clone();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &plan.target.namespace);
        let pods_api: Api<Pod> = Api::namespaced(client, &plan.target.namespace);

        let mut deployment = deployments.get_opt(&plan.target.deployment).await?;
        let selector = match deployment.as_ref().and_then(|d| d.spec.as_ref()) {
            Some(spec) => selector_of(&plan.target.deployment, spec.selector.clone())?,
            None => Selector::default(),
        };

        enum Watched {
            Deployment(std::result::Result<Option<Deployment>, watcher::Error>),
            Pods(std::result::Result<Event<Pod>, watcher::Error>),
        }
        let deployment_events = watch_object(deployments, &plan.target.deployment)
            .default_backoff()
            .map(Watched::Deployment);
        let pod_events = watcher(pods_api, watcher::Config::default().labels_from(&selector))
            .default_backoff()
            .map(Watched::Pods);
        let mut events = pin!(stream::select(deployment_events, pod_events));

        let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
        let mut relisting: Option<BTreeMap<String, Pod>> = None;
        let mut pods_listed = false;
        let mut last_progress: Option<(String, usize)> = None;
        let mut timed_out = false;
        let mut api_error: Option<String> = None;
        loop {
            let snapshot: Vec<Pod> = pods.values().cloned().collect();
            let evaluation = evaluate(plan, deployment.as_ref(), &snapshot, pods_listed);
            let key = (evaluation.rollout_message.clone(), evaluation.ready_pods);
            if last_progress.as_ref() != Some(&key) {
                tracing::debug!(message = %evaluation.rollout_message, ready = evaluation.ready_pods, "verification progress");
                if let Some(tx) = progress.as_ref() {
                    let _ = tx.try_send(Progress {
                        message: evaluation.rollout_message.clone(),
                        ready_pods: evaluation.ready_pods,
                        pods: evaluation.pods,
                        elapsed_ms: elapsed_ms(started),
                    });
                }
                last_progress = Some(key);
            }
            if evaluation.outcome != Outcome::Pending || timed_out {
                return Ok(finish(
                    plan,
                    evaluation.outcome,
                    evaluation.checks,
                    Ending {
                        timed_out,
                        timeout,
                        api_error,
                    },
                    started,
                ));
            }
            let Ok(next) = tokio::time::timeout_at(deadline, events.next()).await else {
                timed_out = true;
                continue;
            };
            match next {
                None => timed_out = true,
                Some(Watched::Deployment(Ok(d))) => deployment = d,
                Some(Watched::Pods(Ok(event))) => match event {
                    Event::Init => relisting = Some(BTreeMap::new()),
                    Event::InitApply(p) => {
                        relisting.get_or_insert_default().insert(pod_key(&p), p);
                    }
                    Event::InitDone => {
                        pods = relisting.take().unwrap_or_default();
                        pods_listed = true;
                    }
                    Event::Apply(p) => {
                        pods.insert(pod_key(&p), p);
                    }
                    Event::Delete(p) => {
                        pods.remove(&pod_key(&p));
                    }
                },
                Some(Watched::Deployment(Err(e)) | Watched::Pods(Err(e))) => {
                    let e = Error::from(e);
                    // A restarted apiserver answers 403 until its RBAC caches are warm, so a
                    // refusal is retried like an outage; a real lack of permission ends the
                    // window with the error as evidence.
                    if !e.is_transient() && !matches!(e, Error::Forbidden { .. }) {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "watch interrupted during verification; resuming");
                    api_error = Some(e.to_string());
                }
            }
        }
    }

    /// The soak observation of recovery validation: the Deployment's pods as they run now
    /// ([`rollout::soak`]).
    ///
    /// # Errors
    /// Unknown cluster or Deployment, API failures.
    pub async fn soak(&self, plan: &RollbackPlan) -> Result<crate::domain::recovery::Pods> {
        let target = &plan.target;
        let client = self.clusters.client(&target.cluster)?.clone();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &target.namespace);
        let Some(deployment) = deployments.get_opt(&target.deployment).await? else {
            return Err(self.unknown_deployment(&deployments, target).await);
        };
        let spec = deployment.spec.ok_or_else(|| Error::Malformed {
            deployment: target.deployment.clone(),
            reason: "no spec".to_owned(),
        })?;
        let selector = selector_of(&target.deployment, spec.selector)?;
        let pods: Api<Pod> = Api::namespaced(client, &target.namespace);
        let listed = pods
            .list(&ListParams::default().labels_from(&selector))
            .await?;
        Ok(rollout::soak(plan, &listed.items))
    }

    /// What a failed rollback's escalation shows of the workload now
    /// ([`diagnosis`](super::diagnosis)): its failing pods with the previous log of each
    /// failing container (read-only `pods/log`; a log that cannot be read says why), and
    /// the recent Warning events of the Deployment, its ReplicaSets and those pods.
    ///
    /// # Errors
    /// Unknown cluster or Deployment, API failures of the lists (not of a log).
    pub async fn diagnose(&self, target: &Target) -> Result<Diagnosis> {
        let loaded = self.load(target).await?;
        let client = self.clusters.client(&target.cluster)?.clone();
        let selector = match loaded.deployment.spec.as_ref() {
            Some(spec) => selector_of(&target.deployment, spec.selector.clone())?,
            None => Selector::default(),
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
        let listed = pods
            .list(&ListParams::default().labels_from(&selector))
            .await?;
        let mut failing = diagnosis::failing_pods(&listed.items);
        for pod in failing.iter_mut().filter(|p| !p.container.is_empty()) {
            let params = LogParams {
                container: Some(pod.container.clone()),
                previous: pod.restarts > 0,
                tail_lines: Some(diagnosis::LOG_LINES),
                limit_bytes: Some(16 * 1024),
                ..LogParams::default()
            };
            match pods.logs(&pod.name, &params).await {
                Ok(log) => pod.log_tail = diagnosis::log_tail(&log),
                Err(e) => pod.log_error = Some(truncate(&Error::from(e).to_string(), 200)),
            }
        }
        let mut names: BTreeSet<String> = failing.iter().map(|p| p.name.clone()).collect();
        names.insert(target.deployment.clone());
        names.extend(
            loaded
                .owned
                .iter()
                .filter_map(|rs| rs.metadata.name.clone()),
        );
        let events: Api<KubeEvent> = Api::namespaced(client, &target.namespace);
        let warnings = events
            .list(&ListParams::default().fields("type=Warning"))
            .await?;
        Ok(Diagnosis {
            pods: failing,
            events: diagnosis::warnings(&warnings.items, &names),
        })
    }

    async fn load(&self, target: &Target) -> Result<Loaded> {
        let client = self.clusters.client(&target.cluster)?.clone();
        let api: Api<Deployment> = Api::namespaced(client.clone(), &target.namespace);
        let Some(deployment) = api.get_opt(&target.deployment).await? else {
            return Err(self.unknown_deployment(&api, target).await);
        };
        let spec = deployment.spec.as_ref().ok_or_else(|| Error::Malformed {
            deployment: target.deployment.clone(),
            reason: "no spec".to_owned(),
        })?;
        let selector = selector_of(&target.deployment, spec.selector.clone())?;
        let replica_sets: Api<ReplicaSet> = Api::namespaced(client, &target.namespace);
        let listed = replica_sets
            .list(&ListParams::default().labels_from(&selector))
            .await?;
        let owned = revision::owned_replica_sets(&deployment, listed.items);
        Ok(Loaded { deployment, owned })
    }

    async fn unknown_deployment(&self, api: &Api<Deployment>, target: &Target) -> Error {
        let suggestions = match api.list_metadata(&ListParams::default()).await {
            Ok(list) => {
                let names: Vec<String> = list
                    .items
                    .into_iter()
                    .filter_map(|d| d.metadata.name)
                    .collect();
                suggest::closest_names(&target.deployment, names.iter().map(String::as_str))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list deployments for name suggestions");
                Vec::new()
            }
        };
        Error::UnknownDeployment {
            namespace: target.namespace.clone(),
            deployment: target.deployment.clone(),
            suggestions,
        }
    }
}

fn selector_of(
    deployment: &str,
    selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Result<Selector> {
    Selector::try_from(selector).map_err(|e| Error::Malformed {
        deployment: deployment.to_owned(),
        reason: format!("invalid selector: {e}"),
    })
}

fn pod_key(pod: &Pod) -> String {
    pod.metadata
        .uid
        .clone()
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// How verification ended besides its checks.
struct Ending {
    timed_out: bool,
    timeout: Duration,
    /// The last Kubernetes API error seen while watching, if any.
    api_error: Option<String>,
}

fn finish(
    plan: &RollbackPlan,
    outcome: Outcome,
    mut checks: Vec<Check>,
    ending: Ending,
    started: Instant,
) -> Verification {
    let Ending {
        timed_out,
        timeout,
        api_error,
    } = ending;
    let passed = outcome == Outcome::Passed;
    if timed_out
        && !passed
        && let Some(c) = checks
            .iter_mut()
            .find(|c| c.name == CheckName::RolloutStatus)
    {
        c.passed = false;
        c.evidence = format!("timed out after {}s: {}", timeout.as_secs(), c.evidence);
    }
    let summary = if passed {
        format!(
            "rollback of {} to revision {} ({}) verified: {}",
            plan.target.deployment,
            plan.rollback_to.revision,
            plan.rollback_to.name,
            checks
                .iter()
                .map(|c| c.evidence.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )
    } else {
        let failing: Vec<String> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.evidence))
            .collect();
        format!(
            "rollback of {} to revision {} ({}) failed verification{}: {}{}",
            plan.target.deployment,
            plan.rollback_to.revision,
            plan.rollback_to.name,
            if timed_out { " (timed out)" } else { "" },
            failing.join("; "),
            api_error
                .map(|e| format!("; last Kubernetes API error: {e}"))
                .unwrap_or_default()
        )
    };
    Verification {
        passed,
        timed_out,
        elapsed_ms: elapsed_ms(started),
        checks,
        summary,
    }
}
