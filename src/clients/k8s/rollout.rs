//! Pure post-rollback checks (the status itself is in `status.rs`).
//!
//! The verifier
//! in `executor.rs` feeds watched Deployment and Pod objects into [`evaluate`], which turns
//! them into structured [`Check`]s and an [`Outcome`]. No I/O here.

use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde::{Deserialize, Serialize};

use super::plan::RollbackPlan;
use super::revision::fmt_images;
use super::revision::{template_hash, template_images};
use super::status::{RolloutStatus, progress_deadline_exceeded, rollout_status, status_inner};

/// Names of the verification checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckName {
    /// kubectl's rollout status.
    RolloutStatus,
    /// The Deployment's images equal the target revision's.
    Images,
    /// Every pod of the selector belongs to the target ReplicaSet.
    PodsOwnedByTarget,
    /// Every pod is Running and Ready.
    PodsRunningReady,
    /// No container of any pod has restarted.
    PodsNoRestarts,
}

impl CheckName {
    /// Stable identifier, e.g. `pods-running-ready`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RolloutStatus => "rollout-status",
            Self::Images => "images",
            Self::PodsOwnedByTarget => "pods-owned-by-target",
            Self::PodsRunningReady => "pods-running-ready",
            Self::PodsNoRestarts => "pods-no-restarts",
        }
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One verification check, ready to be shown to humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Which check.
    pub name: CheckName,
    /// Whether it passed.
    pub passed: bool,
    /// What was observed (kubectl's message, failing pod names and reasons…).
    pub evidence: String,
}

impl Check {
    fn new(name: CheckName, passed: bool, evidence: impl Into<String>) -> Self {
        Self {
            name,
            passed,
            evidence: evidence.into(),
        }
    }
}

/// Where verification stands after one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not settled yet; keep watching.
    Pending,
    /// Every check passed.
    Passed,
    /// A check failed in a way that waiting will not fix.
    Failed,
}

/// One evaluation of the watched state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Verdict.
    pub outcome: Outcome,
    /// All checks, in a fixed order.
    pub checks: Vec<Check>,
    /// kubectl's rollout message (what a progress update shows).
    pub rollout_message: String,
    /// Non-terminating pods of the selector that are Running+Ready and the target's.
    pub ready_pods: usize,
    /// Non-terminating pods of the selector.
    pub pods: usize,
}

/// Evaluates the checks of step 3 of the runbook for the observed Deployment (`None` =
/// deleted) and pods (`pods_listed` = the pod list is complete, not just partially
/// received).
///
/// Terminating pods are left out: they no longer receive traffic and the deployment
/// controller stops counting them, as `kubectl rollout status` does.
pub fn evaluate(
    plan: &RollbackPlan,
    deployment: Option<&Deployment>,
    pods: &[Pod],
    pods_listed: bool,
) -> Evaluation {
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let Some(deployment) = deployment else {
        let message = format!("deployment \"{}\" was deleted", plan.target.deployment);
        return Evaluation {
            outcome: Outcome::Failed,
            checks: vec![Check::new(CheckName::RolloutStatus, false, message.clone())],
            rollout_message: message,
            ready_pods: 0,
            pods: live.len(),
        };
    };
    let template = deployment.spec.as_ref().map(|s| &s.template);
    let patched = template.is_some_and(|t| template_hash(t) == plan.rollback_to.template_hash);

    let status = if !patched {
        RolloutStatus::Waiting(format!(
            "Waiting for the rollback to be observed: the template of deployment \"{}\" does not match revision {} ({})...",
            plan.target.deployment, plan.rollback_to.revision, plan.rollback_to.name
        ))
    } else {
        match progress_deadline_exceeded(deployment) {
            // Right after a rollback the controller may report observedGeneration before it
            // replaces the previous rollout's deadline condition, which names the old
            // ReplicaSet; kubectl would report that stale failure, we keep waiting.
            Some(msg)
                if !msg.contains(&format!("\"{}\"", plan.rollback_to.name)) && !msg.is_empty() =>
            {
                status_inner(deployment, false, true)
            }
            _ => rollout_status(deployment),
        }
    };
    let rollout_check = Check::new(
        CheckName::RolloutStatus,
        matches!(status, RolloutStatus::Done(_)),
        status.message(),
    );

    let running = template.map(template_images).unwrap_or_default();
    let images_check = Check::new(
        CheckName::Images,
        running == plan.rollback_to.images,
        if running == plan.rollback_to.images {
            format!(
                "running {} (revision {})",
                fmt_images(&running),
                plan.rollback_to.revision
            )
        } else {
            format!(
                "deployment runs {}, revision {} has {}",
                fmt_images(&running),
                plan.rollback_to.revision,
                fmt_images(&plan.rollback_to.images)
            )
        },
    );

    let pod_checks = pod_checks(plan, &live, pods.len() - live.len(), pods_listed);
    let ready_pods = live
        .iter()
        .filter(|p| is_target_pod(plan, p) && is_running_ready(p))
        .count();
    let mut checks = vec![rollout_check, images_check];
    checks.extend(pod_checks);

    let failed = |name: CheckName| checks.iter().any(|c| c.name == name && !c.passed);
    let outcome = match status {
        RolloutStatus::Failed(_) => Outcome::Failed,
        RolloutStatus::Done(_) if checks.iter().all(|c| c.passed) => Outcome::Passed,
        // Restart counts never go down: once the rollout is done and the target's pods are all
        // there and Ready, a restart is final evidence.
        RolloutStatus::Done(_)
            if pods_listed
                && !failed(CheckName::PodsOwnedByTarget)
                && !failed(CheckName::PodsRunningReady)
                && failed(CheckName::PodsNoRestarts) =>
        {
            Outcome::Failed
        }
        _ => Outcome::Pending,
    };
    Evaluation {
        outcome,
        checks,
        rollout_message: status.message().to_owned(),
        ready_pods,
        pods: live.len(),
    }
}

fn pod_checks(plan: &RollbackPlan, live: &[&Pod], terminating: usize, listed: bool) -> Vec<Check> {
    if !listed {
        return [
            CheckName::PodsOwnedByTarget,
            CheckName::PodsRunningReady,
            CheckName::PodsNoRestarts,
        ]
        .into_iter()
        .map(|n| Check::new(n, false, "pods not listed yet"))
        .collect();
    }
    let note = if terminating > 0 {
        format!(" ({terminating} terminating pods ignored)")
    } else {
        String::new()
    };

    let strangers: Vec<String> = live
        .iter()
        .filter(|p| !is_target_pod(plan, p))
        .map(|p| {
            format!(
                "{} belongs to {}",
                pod_name(p),
                owner_replica_set(p).unwrap_or("no ReplicaSet")
            )
        })
        .collect();
    let owned = if strangers.is_empty() {
        Check::new(
            CheckName::PodsOwnedByTarget,
            true,
            format!(
                "all {} pods belong to ReplicaSet {}{note}",
                live.len(),
                plan.rollback_to.name
            ),
        )
    } else {
        Check::new(
            CheckName::PodsOwnedByTarget,
            false,
            format!(
                "expected ReplicaSet {}: {}{note}",
                plan.rollback_to.name,
                strangers.join("; ")
            ),
        )
    };

    let not_ready: Vec<String> = live
        .iter()
        .filter(|p| !is_running_ready(p))
        .map(|p| describe_pod(p))
        .collect();
    let ready = if not_ready.is_empty() {
        Check::new(
            CheckName::PodsRunningReady,
            true,
            format!("{} of {} pods Running and Ready", live.len(), live.len()),
        )
    } else {
        Check::new(
            CheckName::PodsRunningReady,
            false,
            format!(
                "{} of {} pods not Running and Ready: {}",
                not_ready.len(),
                live.len(),
                not_ready.join("; ")
            ),
        )
    };

    // Only the target's pods: a crash-looping pod of the rollout being replaced restarts by
    // the nature of the incident, and is judged by the ownership check until it is gone.
    let restarted: Vec<String> = live
        .iter()
        .filter(|p| is_target_pod(plan, p) && restarts(plan, p) > 0)
        .map(|p| format!("{}: {} restarts", pod_name(p), restarts(plan, p)))
        .collect();
    let no_restarts = if restarted.is_empty() {
        Check::new(CheckName::PodsNoRestarts, true, "no container restarts")
    } else {
        Check::new(CheckName::PodsNoRestarts, false, restarted.join("; "))
    };
    vec![owned, ready, no_restarts]
}

fn is_target_pod(plan: &RollbackPlan, pod: &Pod) -> bool {
    pod.metadata.owner_references.iter().flatten().any(|o| {
        o.controller == Some(true)
            && o.kind == "ReplicaSet"
            && o.name == plan.rollback_to.name
            && (plan.rollback_to.uid.is_empty() || o.uid == plan.rollback_to.uid)
    })
}

fn owner_replica_set(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "ReplicaSet")
        .map(|o| o.name.as_str())
}

fn is_running_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Whether `container` (`init` or regular) is one of the target template's: containers a
/// mutating webhook or policy injected (istio-proxy, linkerd-proxy, vault-agent, native
/// sidecars as init containers) are not the rollback's to judge.
fn in_template(plan: &RollbackPlan, container: &str, init: bool) -> bool {
    plan.rollback_to
        .images
        .iter()
        .any(|i| i.container == container && i.init == init)
}

/// Restarts of the pod's template containers (injected ones are shown, never judged).
fn restarts(plan: &RollbackPlan, pod: &Pod) -> i32 {
    container_statuses(pod)
        .filter(|(c, init)| in_template(plan, &c.name, *init))
        .map(|(c, _)| c.restart_count)
        .sum()
}

/// Every container status of a pod, with whether it is an init container's.
fn container_statuses(pod: &Pod) -> impl Iterator<Item = (&ContainerStatus, bool)> {
    let status = pod.status.as_ref();
    let regular = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| (c, false));
    let init = status
        .and_then(|s| s.init_container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| (c, true));
    regular.chain(init)
}

/// `pod/container: injected, not judged (N restarts)` for the containers that are not the
/// template's.
fn injected(plan: &RollbackPlan, pods: &[&Pod]) -> Vec<String> {
    pods.iter()
        .flat_map(|pod| {
            container_statuses(pod)
                .filter(|(c, init)| !in_template(plan, &c.name, *init))
                .map(|(c, _)| {
                    format!(
                        "{}/{}: injected, not judged ({} restarts)",
                        pod_name(pod),
                        c.name,
                        c.restart_count
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("<unnamed>")
}

/// "web-7d9f-abcde: Running, not Ready (app: CrashLoopBackOff: back-off restarting failed container)".
fn describe_pod(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_else(|| "Unknown".to_owned());
    let mut reasons = Vec::new();
    for c in status.container_statuses.iter().flatten() {
        if c.ready {
            continue;
        }
        let state = c.state.as_ref();
        let why = if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
            join_reason(w.reason.as_deref(), w.message.as_deref())
        } else if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            join_reason(
                t.reason.as_deref().or(Some("Terminated")),
                t.message.as_deref(),
            )
        } else {
            "not ready".to_owned()
        };
        reasons.push(format!("{}: {why}", c.name));
    }
    if reasons.is_empty() {
        if let Some(c) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready" && c.status != "True")
        {
            reasons.push(join_reason(c.reason.as_deref(), c.message.as_deref()));
        } else if phase == "Pending" {
            reasons.push("not scheduled or not started".to_owned());
        }
    }
    format!(
        "{}: {phase}, not Ready ({})",
        pod_name(pod),
        if reasons.is_empty() {
            "no reason reported".to_owned()
        } else {
            reasons.join(", ")
        }
    )
}

fn join_reason(reason: Option<&str>, message: Option<&str>) -> String {
    match (reason, message) {
        (Some(r), Some(m)) if !m.is_empty() => format!("{r}: {m}"),
        (Some(r), _) => r.to_owned(),
        (None, Some(m)) => m.to_owned(),
        (None, None) => "not ready".to_owned(),
    }
}

/// The soak part of recovery validation, from the pods of the Deployment's selector: how
/// many are Ready, which restarted (verification passed with no restarts, so any restart
/// happened since), and which containers run something else than the target's images, as the
/// pods' status reports them (what actually runs, not only what the template asks for).
pub fn soak(plan: &RollbackPlan, pods: &[Pod]) -> crate::domain::recovery::Pods {
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let mut wrong_images = Vec::new();
    for pod in &live {
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        for status in statuses.into_iter().flatten() {
            let target = plan
                .rollback_to
                .images
                .iter()
                .find(|i| !i.init && i.container == status.name);
            // Not the template's: injected, listed apart and not judged.
            if let Some(t) = target
                && !same_image(&status.image, &t.image)
            {
                wrong_images.push(format!(
                    "{}/{} runs {}, target is {}",
                    pod_name(pod),
                    status.name,
                    status.image,
                    t.image
                ));
            }
        }
    }
    crate::domain::recovery::Pods {
        total: live.len(),
        ready: live.iter().filter(|p| is_running_ready(p)).count(),
        restarted: live
            .iter()
            .filter(|p| restarts(plan, p) > 0)
            .map(|p| format!("{}: {} restarts", pod_name(p), restarts(plan, p)))
            .collect(),
        wrong_images,
        injected: injected(plan, &live),
        unavailable: None,
    }
}

/// Whether the image a container status reports is the template's image: the runtime may
/// report it with the default registry spelled out (`docker.io/library/nginx:1` for `nginx:1`).
fn same_image(reported: &str, wanted: &str) -> bool {
    let normal = |i: &str| {
        i.strip_prefix("docker.io/library/")
            .or_else(|| i.strip_prefix("docker.io/"))
            .unwrap_or(i)
            .to_owned()
    };
    normal(reported) == normal(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::k8s::plan::tests::plan_for_tests;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

    fn dep(
        generation: i64,
        observed: i64,
        spec: i32,
        replicas: i32,
        updated: i32,
        available: i32,
    ) -> Deployment {
        let mut d = crate::clients::k8s::revision::tests::deployment("web:1", &[]);
        d.metadata.generation = Some(generation);
        d.spec.as_mut().unwrap().replicas = Some(spec);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(observed),
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            available_replicas: Some(available),
            ..Default::default()
        });
        d
    }

    fn with_condition(mut d: Deployment, reason: &str, message: &str) -> Deployment {
        d.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..Default::default()
        }]);
        d
    }

    #[test]
    fn rollout_status_messages_are_kubectls() {
        let cases = [
            (
                dep(3, 2, 3, 3, 3, 3),
                "Waiting for deployment spec update to be observed...",
            ),
            (
                dep(3, 3, 3, 3, 1, 1),
                "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...",
            ),
            (
                dep(3, 3, 3, 5, 3, 3),
                "Waiting for deployment \"web\" rollout to finish: 2 old replicas are pending termination...",
            ),
            (
                dep(3, 3, 3, 3, 3, 2),
                "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(rollout_status(&d), RolloutStatus::Waiting(want.to_owned()));
        }
        assert_eq!(
            rollout_status(&dep(3, 3, 3, 3, 3, 3)),
            RolloutStatus::Done("deployment \"web\" successfully rolled out".into())
        );
        let stuck = with_condition(
            dep(3, 3, 3, 4, 1, 3),
            "ProgressDeadlineExceeded",
            "ReplicaSet \"web-x\" has timed out progressing.",
        );
        assert_eq!(
            rollout_status(&stuck),
            RolloutStatus::Failed("deployment \"web\" exceeded its progress deadline".into())
        );
        // Older generation than observed counts as observed (kubectl compares with <=).
        assert!(matches!(
            rollout_status(&dep(2, 3, 3, 3, 3, 3)),
            RolloutStatus::Done(_)
        ));
    }

    fn pod(name: &str, rs: &str, ready: bool, restarts: i32) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                owner_references: Some(vec![OwnerReference {
                    kind: "ReplicaSet".into(),
                    name: rs.into(),
                    uid: String::new(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    reason: (!ready).then(|| "ContainersNotReady".into()),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![ContainerStatus {
                    name: "app".into(),
                    ready,
                    restart_count: restarts,
                    state: (!ready).then(|| ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("CrashLoopBackOff".into()),
                            message: Some("back-off restarting failed container".into()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn rolled_back(available: i32) -> Deployment {
        let plan = plan_for_tests();
        let mut d = dep(8, 8, 3, 3, 3, available);
        d.spec.as_mut().unwrap().template = plan.rollback_to_template.clone();
        d
    }

    #[test]
    fn healthy_rollback_passes_every_check() {
        let plan = plan_for_tests();
        let rs = plan.rollback_to.name.clone();
        let pods = [
            pod("a", &rs, true, 0),
            pod("b", &rs, true, 0),
            pod("c", &rs, true, 0),
        ];
        let e = evaluate(&plan, Some(&rolled_back(3)), &pods, true);
        assert_eq!(e.outcome, Outcome::Passed, "{:#?}", e.checks);
        assert_eq!(e.ready_pods, 3);
        assert_eq!(e.checks.len(), 5);
    }

    #[test]
    fn crashlooping_pods_are_named_with_their_reason() {
        let plan = plan_for_tests();
        let rs = plan.rollback_to.name.clone();
        let pods = [
            pod("web-1", &rs, false, 3),
            pod("web-2", &rs, true, 0),
            pod("old", "web-old", true, 0),
        ];
        let stuck = with_condition(
            rolled_back(1),
            "ProgressDeadlineExceeded",
            &format!("ReplicaSet \"{rs}\" has timed out progressing."),
        );
        let e = evaluate(&plan, Some(&stuck), &pods, true);
        assert_eq!(e.outcome, Outcome::Failed);
        let by = |n: CheckName| e.checks.iter().find(|c| c.name == n).unwrap();
        assert_eq!(
            by(CheckName::RolloutStatus).evidence,
            "deployment \"web\" exceeded its progress deadline"
        );
        assert_eq!(
            by(CheckName::PodsRunningReady).evidence,
            "1 of 3 pods not Running and Ready: web-1: Running, not Ready (app: CrashLoopBackOff: back-off restarting failed container)"
        );
        assert_eq!(by(CheckName::PodsNoRestarts).evidence, "web-1: 3 restarts");
        assert!(
            by(CheckName::PodsOwnedByTarget)
                .evidence
                .contains("old belongs to web-old")
        );
    }

    #[test]
    fn stale_deadline_of_the_previous_replica_set_is_not_a_failure() {
        let plan = plan_for_tests();
        let stuck = with_condition(
            rolled_back(2),
            "ProgressDeadlineExceeded",
            "ReplicaSet \"web-bad\" has timed out progressing.",
        );
        let e = evaluate(&plan, Some(&stuck), &[], true);
        assert_eq!(e.outcome, Outcome::Pending);
        assert_eq!(
            e.rollout_message,
            "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available..."
        );
    }

    #[test]
    fn unpatched_or_deleted_deployment() {
        let plan = plan_for_tests();
        let before = dep(7, 7, 3, 3, 3, 3);
        let e = evaluate(&plan, Some(&before), &[], true);
        assert_eq!(e.outcome, Outcome::Pending);
        assert!(
            e.rollout_message
                .starts_with("Waiting for the rollback to be observed")
        );
        assert_eq!(evaluate(&plan, None, &[], true).outcome, Outcome::Failed);
    }

    /// A mesh's sidecar and an agent's init container, injected at admission: shown, their
    /// restarts not counted, never "not a container of revision N".
    #[test]
    fn injected_containers_are_shown_not_judged() {
        let plan = plan_for_tests();
        let rs = plan.rollback_to.name.clone();
        let mut meshed = pod("web-1", &rs, true, 0);
        let status = meshed.status.as_mut().unwrap();
        let app = plan.rollback_to.images.iter().find(|i| !i.init).unwrap();
        let statuses = status.container_statuses.as_mut().unwrap();
        statuses[0].name = app.container.clone();
        statuses[0].image = app.image.clone();
        statuses.push(ContainerStatus {
            name: "istio-proxy".into(),
            image: "docker.io/istio/proxyv2:1.24.0".into(),
            ready: true,
            restart_count: 2,
            ..Default::default()
        });
        status.init_container_statuses = Some(vec![ContainerStatus {
            name: "vault-agent".into(),
            restart_count: 1,
            ..Default::default()
        }]);
        let e = evaluate(&plan, Some(&rolled_back(3)), &[meshed.clone()], true);
        let no_restarts = e
            .checks
            .iter()
            .find(|c| c.name == CheckName::PodsNoRestarts);
        assert!(no_restarts.unwrap().passed, "{:?}", e.checks);
        let soaked = soak(&plan, &[meshed]);
        assert!(soaked.restarted.is_empty(), "{soaked:?}");
        assert!(soaked.wrong_images.is_empty(), "{soaked:?}");
        assert_eq!(
            soaked.injected,
            [
                "web-1/istio-proxy: injected, not judged (2 restarts)",
                "web-1/vault-agent: injected, not judged (1 restarts)"
            ]
        );
    }

    /// Rolling back over a crash-looping rollout: its pods' restarts are not the target's.
    #[test]
    fn restarts_of_the_replaced_rollouts_pods_are_not_the_targets() {
        let plan = plan_for_tests();
        let rs = plan.rollback_to.name.clone();
        let pods = [
            pod("new-1", &rs, true, 0),
            pod("bad-1", "web-bad", false, 7),
        ];
        let e = evaluate(&plan, Some(&rolled_back(3)), &pods, true);
        let by = |n: CheckName| e.checks.iter().find(|c| c.name == n).unwrap();
        assert!(by(CheckName::PodsNoRestarts).passed);
        assert!(
            !by(CheckName::PodsOwnedByTarget).passed,
            "still there: pending"
        );
        assert_eq!(e.outcome, Outcome::Pending);
    }

    #[test]
    fn terminating_pods_are_ignored_and_restarts_after_done_fail() {
        let plan = plan_for_tests();
        let rs = plan.rollback_to.name.clone();
        let mut leaving = pod("old", "web-old", true, 0);
        leaving.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let pods = [
            pod("a", &rs, true, 0),
            pod("b", &rs, true, 0),
            pod("c", &rs, true, 1),
            leaving,
        ];
        let e = evaluate(&plan, Some(&rolled_back(3)), &pods, true);
        assert_eq!(e.outcome, Outcome::Failed);
        assert!(
            e.checks
                .iter()
                .find(|c| c.name == CheckName::PodsOwnedByTarget)
                .unwrap()
                .evidence
                .contains("1 terminating pods ignored")
        );
    }
}
