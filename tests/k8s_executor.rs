//! End-to-end tests of the Kubernetes executor against the local control plane.
//!
//! The executor always runs with the `rollback-bot` ServiceAccount's token (config/kubernetes/base/rbac.yaml
//! bound per namespace), never as admin, so a permission the role lacks fails a test.
//! kubectl (as admin) is the reference: history output and `rollout undo` results must match.

mod support;
use support::cluster;

use std::time::Duration;

use chrono::Utc;
use cluster::{CLUSTER, REPLICAS, TestCluster, image};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use rollback_bot::clients::k8s::{
    CheckName, DATABASE_COUPLED_ANNOTATION, Error, Executor, PlanContext, Progress, Requirement,
    RollbackPlan, RolloutStatus, Target, UndoOptions, WarningKind, format_history,
};
use tokio::sync::mpsc;

const VERIFY_TIMEOUT: Duration = Duration::from_secs(60);

struct Setup {
    cluster: TestCluster,
    ns: String,
    executor: Executor,
}

impl Setup {
    async fn new(prefix: &str) -> Self {
        let cluster = TestCluster::connect().await;
        let ns = cluster.namespace(prefix).await;
        let executor = Executor::new(cluster.executor_clusters());
        Self {
            cluster,
            ns,
            executor,
        }
    }

    fn target(&self, deployment: &str) -> Target {
        Target::new(CLUSTER, &self.ns, deployment)
    }

    /// The plan for the latest-but-one revision, as `/rollback <service>` makes it.
    async fn plan(&self, deployment: &str) -> Result<RollbackPlan, Error> {
        self.plan_revision(deployment, None).await
    }

    /// The plan for `/rollback <service> <revision>`.
    async fn plan_revision(
        &self,
        deployment: &str,
        revision: Option<i64>,
    ) -> Result<RollbackPlan, Error> {
        self.executor
            .plan(&self.target(deployment), revision, &PlanContext::default())
            .await
    }

    /// Applies `plan` with kubectl's patch and verifies it; asserts that verification passed.
    async fn execute_and_verify(&self, plan: &RollbackPlan) {
        self.executor
            .execute(plan, None, &UndoOptions::default())
            .await
            .unwrap();
        let verification = self
            .executor
            .verify(plan, VERIFY_TIMEOUT, None)
            .await
            .unwrap();
        assert!(verification.passed, "{verification:#?}");
    }

    async fn deployment(&self, name: &str) -> Deployment {
        self.cluster.deployments(&self.ns).get(name).await.unwrap()
    }

    async fn kubectl_history(&self, ns: &str, name: &str) -> String {
        self.cluster
            .kubectl_ok(&[
                "-n",
                ns,
                "rollout",
                "history",
                &format!("deployment/{name}"),
            ])
            .await
    }
}

/// kubectl prints `deployment.apps/<name> ` before the table and an empty line after it.
fn as_kubectl_prints(name: &str, table: &str) -> String {
    format!("deployment.apps/{name} \n{table}\n")
}

fn normalized(template: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(template).unwrap()
}

/// Pods of the selector that are not being deleted.
async fn live_pods(cluster: &TestCluster, ns: &str, app: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(cluster.admin(), ns);
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn owner(pod: &Pod) -> String {
    pod.metadata.owner_references.clone().unwrap_or_default()[0]
        .name
        .clone()
}

#[tokio::test]
async fn history_matches_kubectl_rollout_history_including_renumbering() {
    let s = Setup::new("exec-history").await;
    s.cluster
        .fixture(&s.ns, "web", &["1.0.0", "1.1.0", "1.2.0"])
        .await;

    let revisions = s.executor.history(&s.target("web")).await.unwrap();
    assert_eq!(
        as_kubectl_prints("web", &format_history(&revisions)),
        s.kubectl_history(&s.ns, "web").await
    );
    let summary: Vec<(i64, String, bool, i32)> = revisions
        .iter()
        .map(|r| (r.number, r.images[0].image.clone(), r.current, r.replicas))
        .collect();
    assert_eq!(
        summary,
        [
            (1, image("web", "1.0.0"), false, 0),
            (2, image("web", "1.1.0"), false, 0),
            (3, image("web", "1.2.0"), true, REPLICAS),
        ]
    );
    assert_eq!(revisions[2].ready_replicas, REPLICAS);
    assert_eq!(
        revisions[0].change_cause.as_deref(),
        Some(format!("deploy {}", image("web", "1.0.0")).as_str())
    );

    // After an undo, revision 1 is renumbered to 4 and remembers its old number.
    s.cluster
        .kubectl_ok(&[
            "-n",
            &s.ns,
            "rollout",
            "undo",
            "deployment/web",
            "--to-revision=1",
        ])
        .await;
    s.cluster.wait_rollout(&s.ns, "web").await;
    let revisions = s.executor.history(&s.target("web")).await.unwrap();
    assert_eq!(
        as_kubectl_prints("web", &format_history(&revisions)),
        s.kubectl_history(&s.ns, "web").await
    );
    assert_eq!(
        revisions.iter().map(|r| r.number).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert!(revisions[2].current);
    assert_eq!(revisions[2].previous_numbers, [1]);
    assert_eq!(revisions[2].images[0].image, image("web", "1.0.0"));
}

/// Rolls `web` back with the executor in one namespace and with `kubectl rollout undo` in
/// another holding an identical Deployment, then compares the results.
async fn rollback_matches_kubectl_undo(prefix: &str, revision: Option<i64>, expected_tag: &str) {
    let s = Setup::new(prefix).await;
    let twin_ns = s.cluster.namespace(&format!("{prefix}-kubectl")).await;
    let tags = ["1.0.0", "1.1.0", "1.2.0"];
    s.cluster.fixture(&s.ns, "web", &tags).await;
    s.cluster.fixture(&twin_ns, "web", &tags).await;

    let plan = s.plan_revision("web", revision).await.unwrap();
    assert_eq!(plan.current_images[0].image, image("web", "1.2.0"));
    assert_eq!(plan.rollback_to.images[0].image, image("web", expected_tag));
    assert_eq!(plan.image_changes.len(), 1);
    assert_eq!(
        plan.image_changes[0].to.as_deref(),
        Some(image("web", expected_tag).as_str())
    );
    assert!(plan.template_differences.is_empty(), "{plan:#?}");

    let (tx, mut rx) = mpsc::channel::<Progress>(64);
    let executed = s
        .executor
        .execute(&plan, None, &UndoOptions::default())
        .await
        .unwrap();
    assert!(!executed.already_applied);
    assert!(executed.generation > plan.deployment_generation);
    let verification = s
        .executor
        .verify(&plan, VERIFY_TIMEOUT, Some(tx))
        .await
        .unwrap();
    assert!(verification.passed, "{verification:#?}");
    assert!(!verification.timed_out);
    assert_eq!(verification.checks.len(), 5);
    let rollout = &verification.checks[0];
    assert_eq!(rollout.name, CheckName::RolloutStatus);
    assert_eq!(
        rollout.evidence,
        "deployment \"web\" successfully rolled out"
    );
    let mut progress = Vec::new();
    while let Ok(p) = rx.try_recv() {
        progress.push(p.message);
    }
    assert!(!progress.is_empty());
    assert_eq!(
        progress.last().unwrap(),
        "deployment \"web\" successfully rolled out"
    );

    let mut undo = vec!["-n", &twin_ns, "rollout", "undo", "deployment/web"];
    let to_revision = revision.map(|r| format!("--to-revision={r}"));
    undo.extend(to_revision.as_deref());
    let out = s.cluster.kubectl_ok(&undo).await;
    assert_eq!(out, "deployment.apps/web rolled back\n");
    assert!(matches!(
        s.cluster.wait_rollout(&twin_ns, "web").await,
        RolloutStatus::Done(_)
    ));

    let ours = s.deployment("web").await;
    let theirs: Deployment = s.cluster.deployments(&twin_ns).get("web").await.unwrap();
    assert_eq!(
        normalized(&ours.spec.as_ref().unwrap().template),
        normalized(&theirs.spec.as_ref().unwrap().template)
    );
    assert_eq!(ours.metadata.annotations, theirs.metadata.annotations);
    assert_eq!(
        as_kubectl_prints(
            "web",
            &format_history(&s.executor.history(&s.target("web")).await.unwrap())
        ),
        s.kubectl_history(&twin_ns, "web").await
    );

    // The template is the target ReplicaSet's, without pod-template-hash.
    let replica_sets: Api<ReplicaSet> = Api::namespaced(s.cluster.admin(), &s.ns);
    let target_rs = replica_sets.get(&plan.rollback_to.name).await.unwrap();
    let mut rs_template = target_rs.spec.unwrap().template.unwrap();
    rs_template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .remove("pod-template-hash");
    assert_eq!(
        normalized(&rs_template),
        normalized(&ours.spec.unwrap().template)
    );

    let pods = live_pods(&s.cluster, &s.ns, "web").await;
    assert_eq!(pods.len(), REPLICAS as usize);
    for pod in &pods {
        assert_eq!(owner(pod), plan.rollback_to.name);
        assert_eq!(
            pod.spec.as_ref().unwrap().containers[0].image.as_deref(),
            Some(image("web", expected_tag).as_str())
        );
    }
}

#[tokio::test]
async fn rollback_to_named_revision_matches_kubectl_undo() {
    rollback_matches_kubectl_undo("exec-named", Some(1), "1.0.0").await;
}

#[tokio::test]
async fn rollback_to_previous_revision_matches_kubectl_undo() {
    rollback_matches_kubectl_undo("exec-previous", None, "1.1.0").await;
}

/// `web` with revisions 1.0.0, 1.1.0, crashloop (stuck, then replaced) and 1.2.0.
async fn with_crashloop_revision(s: &Setup) {
    s.cluster.fixture(&s.ns, "web", &["1.0.0", "1.1.0"]).await;
    s.cluster.set_image(&s.ns, "web", "crashloop").await;
    assert!(matches!(
        s.cluster.wait_rollout(&s.ns, "web").await,
        RolloutStatus::Failed(_)
    ));
    s.cluster.set_image(&s.ns, "web", "1.2.0").await;
    assert!(matches!(
        s.cluster.wait_rollout(&s.ns, "web").await,
        RolloutStatus::Done(_)
    ));
}

#[tokio::test]
async fn rollback_to_crashloop_revision_fails_verification_with_evidence() {
    let s = Setup::new("exec-crashloop").await;
    with_crashloop_revision(&s).await;
    let plan = s.plan_revision("web", Some(3)).await.unwrap();
    assert_eq!(plan.rollback_to.images[0].image, image("web", "crashloop"));

    s.executor
        .execute(&plan, None, &UndoOptions::default())
        .await
        .unwrap();
    let verification = s
        .executor
        .verify(&plan, VERIFY_TIMEOUT, None)
        .await
        .unwrap();
    assert!(!verification.passed, "{verification:#?}");
    assert!(
        !verification.timed_out,
        "the progress deadline should end verification early"
    );
    assert!(verification.elapsed_ms < VERIFY_TIMEOUT.as_millis() as u64);

    let check = |name: CheckName| {
        verification
            .checks
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .clone()
    };
    let rollout = check(CheckName::RolloutStatus);
    assert!(!rollout.passed);
    assert_eq!(
        rollout.evidence,
        "deployment \"web\" exceeded its progress deadline"
    );
    assert!(check(CheckName::Images).passed);

    let crashing: Vec<String> = live_pods(&s.cluster, &s.ns, "web")
        .await
        .into_iter()
        .filter(|p| owner(p) == plan.rollback_to.name)
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert!(!crashing.is_empty());
    let ready = check(CheckName::PodsRunningReady);
    assert!(!ready.passed);
    for pod in &crashing {
        assert!(
            ready
                .evidence
                .contains(&format!("{pod}: Running, not Ready (app: CrashLoopBackOff")),
            "{}",
            ready.evidence
        );
    }
    let restarts = check(CheckName::PodsNoRestarts);
    assert!(!restarts.passed);
    assert!(
        restarts.evidence.contains(&crashing[0]),
        "{}",
        restarts.evidence
    );
    assert!(verification.summary.contains("failed verification"));
}

#[tokio::test]
async fn verification_that_times_out_says_so_with_evidence() {
    let s = Setup::new("exec-timeout").await;
    with_crashloop_revision(&s).await;
    let plan = s.plan_revision("web", Some(3)).await.unwrap();
    s.executor
        .execute(&plan, None, &UndoOptions::default())
        .await
        .unwrap();
    // Shorter than the Deployment's 10 s progress deadline.
    let timeout = Duration::from_secs(4);
    let verification = s.executor.verify(&plan, timeout, None).await.unwrap();
    assert!(
        !verification.passed && verification.timed_out,
        "{verification:#?}"
    );
    assert!(verification.elapsed_ms >= 4000 && verification.elapsed_ms < 8000);
    assert!(
        verification.checks[0]
            .evidence
            .starts_with("timed out after 4s: Waiting for deployment \"web\" rollout to finish"),
        "{}",
        verification.checks[0].evidence
    );
    assert!(verification.summary.contains("(timed out)"));
}

#[tokio::test]
async fn refuses_unknown_deployment_with_suggestions() {
    let s = Setup::new("exec-unknown").await;
    s.cluster.fixture(&s.ns, "checkout", &["1.0.0"]).await;
    let err = s.plan("chekout").await.unwrap_err();
    assert!(err.is_refusal() && !err.is_transient());
    match &err {
        Error::UnknownDeployment { suggestions, .. } => assert_eq!(suggestions, &["checkout"]),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().ends_with("did you mean checkout?"));

    let err = s.executor.history(&s.target("payments")).await.unwrap_err();
    assert!(
        matches!(err, Error::UnknownDeployment { ref suggestions, .. } if suggestions.is_empty())
    );

    let elsewhere = Target::new("nowhere", &s.ns, "checkout");
    let err = s.executor.history(&elsewhere).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown cluster \"nowhere\"; configured clusters: local"
    );
}

#[tokio::test]
async fn refuses_unknown_revision_listing_available() {
    let s = Setup::new("exec-unknown-rev").await;
    s.cluster
        .fixture(&s.ns, "web", &["1.0.0", "1.1.0", "1.2.0"])
        .await;
    let err = s.plan_revision("web", Some(7)).await.unwrap_err();
    match &err {
        Error::UnknownRevision {
            revision: 7,
            available,
        } => assert_eq!(available, &[1, 2, 3]),
        other => panic!("unexpected {other:?}"),
    }
    let kubectl = s
        .cluster
        .kubectl(&[
            "-n",
            &s.ns,
            "rollout",
            "undo",
            "deployment/web",
            "--to-revision=7",
        ])
        .await;
    assert!(!kubectl.success);
    assert!(
        kubectl
            .stderr
            .contains("unable to find specified revision 7 in history")
    );
    assert!(
        err.to_string()
            .starts_with("unable to find specified revision 7 in history")
    );
}

#[tokio::test]
async fn refuses_rollback_to_the_running_template() {
    let s = Setup::new("exec-same").await;
    s.cluster.fixture(&s.ns, "web", &["1.0.0", "1.1.0"]).await;
    let err = s.plan_revision("web", Some(2)).await.unwrap_err();
    assert!(
        matches!(err, Error::NothingToRollBack { revision: 2, .. }),
        "{err:?}"
    );
    let out = s
        .cluster
        .kubectl_ok(&[
            "-n",
            &s.ns,
            "rollout",
            "undo",
            "deployment/web",
            "--to-revision=2",
        ])
        .await;
    assert_eq!(
        out,
        "deployment.apps/web skipped rollback (current template already matches revision 2)\n"
    );
}

#[tokio::test]
async fn refuses_paused_deployment() {
    let s = Setup::new("exec-paused").await;
    s.cluster.fixture(&s.ns, "web", &["1.0.0", "1.1.0"]).await;
    let plan = s.plan("web").await.unwrap();
    s.cluster
        .kubectl_ok(&["-n", &s.ns, "rollout", "pause", "deployment/web"])
        .await;

    let err = s.plan("web").await.unwrap_err();
    assert!(matches!(err, Error::Paused { .. }), "{err:?}");
    let kubectl = s
        .cluster
        .kubectl(&["-n", &s.ns, "rollout", "undo", "deployment/web"])
        .await;
    assert!(
        kubectl
            .stderr
            .contains("you cannot rollback a paused deployment; resume it first")
    );
    assert!(
        err.to_string()
            .starts_with("you cannot rollback a paused deployment; resume it first")
    );

    // A plan approved before the pause is not executed either.
    let before = s.deployment("web").await.metadata.generation;
    assert!(matches!(
        s.executor
            .execute(&plan, None, &UndoOptions::default())
            .await,
        Err(Error::Paused { .. })
    ));
    assert_eq!(s.deployment("web").await.metadata.generation, before);
}

#[tokio::test]
async fn refuses_plan_when_deployment_changed_before_execution() {
    let s = Setup::new("exec-changed").await;
    s.cluster
        .fixture(&s.ns, "web", &["1.0.0", "1.1.0", "1.2.0"])
        .await;
    let plan = s.plan("web").await.unwrap();
    // Someone deploys between approval and execution.
    s.cluster.set_image(&s.ns, "web", "1.3.0").await;
    s.cluster.wait_rollout(&s.ns, "web").await;
    let before = s.deployment("web").await;

    let err = s
        .executor
        .execute(&plan, None, &UndoOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_refusal() && !err.is_transient());
    match &err {
        Error::PlanChanged { reason } => {
            assert!(
                reason.contains("pod template changed since the plan was made")
                    && reason.contains(&image("web", "1.3.0")),
                "{reason}"
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    let after = s.deployment("web").await;
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(
        normalized(&after.spec.unwrap().template),
        normalized(&before.spec.unwrap().template)
    );
}

#[tokio::test]
async fn refuses_plan_for_a_recreated_deployment() {
    let s = Setup::new("exec-recreated").await;
    s.cluster.fixture(&s.ns, "web", &["1.0.0", "1.1.0"]).await;
    let plan = s.plan("web").await.unwrap();
    s.cluster
        .kubectl_ok(&["-n", &s.ns, "delete", "deployment/web", "--wait=true"])
        .await;
    let err = s
        .executor
        .execute(&plan, None, &UndoOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PlanChanged { reason } if reason.contains("no longer exists")),
        "{err:?}"
    );
    s.cluster.fixture(&s.ns, "web", &["1.0.0", "1.1.0"]).await;
    let err = s
        .executor
        .execute(&plan, None, &UndoOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PlanChanged { reason } if reason.contains("re-created")),
        "{err:?}"
    );
}

/// The most common bad deploy: new pods crash-loop while the rollout is still in progress
/// (before its progress deadline). `kubectl rollout undo` rolls it back without complaint,
/// and so does the bot, without `--force`: the plan says the rollout has not completed and
/// what its pods are doing, and the old pods' restarts do not fail the verification.
#[tokio::test]
async fn a_crash_looping_rollout_in_progress_is_planned_without_force() {
    let s = Setup::new("exec-in-progress").await;
    s.cluster.fixture(&s.ns, "web", &["1.0.0", "1.1.0"]).await;
    // A long deadline keeps the bad rollout "in progress" however slow this machine is.
    s.cluster
        .deployments(&s.ns)
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"progressDeadlineSeconds": 600}})),
        )
        .await
        .unwrap();
    s.cluster.set_image(&s.ns, "web", "crashloop").await;
    // Wait until the controller has picked up the bad template (its ReplicaSet exists).
    let observed = |d: Option<&Deployment>| {
        d.is_some_and(|d| {
            d.status.as_ref().and_then(|s| s.observed_generation) >= d.metadata.generation
        })
    };
    kube::runtime::wait::await_condition(s.cluster.deployments(&s.ns), "web", observed)
        .await
        .unwrap();
    assert!(
        matches!(
            rollback_bot::clients::k8s::rollout_status(&s.deployment("web").await),
            RolloutStatus::Waiting(_)
        ),
        "the bad rollout is still in progress"
    );

    let plan = s.plan("web").await.unwrap();
    assert_eq!(plan.current_images[0].image, image("web", "crashloop"));
    assert_eq!(plan.rollback_to.images[0].image, image("web", "1.1.0"));
    let warning = plan
        .warnings
        .iter()
        .find(|w| w.kind == WarningKind::RolloutInProgress)
        .expect("the plan says the rollout has not completed");
    assert!(
        warning
            .message
            .contains("has not completed: Waiting for deployment \"web\" rollout to finish")
            && warning.message.contains("pods ready")
            && warning
                .message
                .contains("rolling back replaces that rollout"),
        "{}",
        warning.message
    );
    s.execute_and_verify(&plan).await;
}

#[tokio::test]
async fn correlation_window_inside_and_outside() {
    let s = Setup::new("exec-correlation").await;
    s.cluster.fixture(&s.ns, "web", &["1.0.0", "1.1.0"]).await;
    let target = s.target("web");

    let inside = s
        .executor
        .plan(&target, None, &PlanContext::new(Utc::now()))
        .await
        .unwrap();
    assert!(inside.correlation.inside_window, "{:?}", inside.correlation);
    assert!(!inside.requires_override());
    let rolled_out = inside.correlation.rolled_out_at.unwrap();
    assert!(Utc::now() - rolled_out < chrono::Duration::minutes(5));

    let later = PlanContext::new(rolled_out + chrono::Duration::minutes(90));
    let outside = s.executor.plan(&target, None, &later).await.unwrap();
    assert!(!outside.correlation.inside_window);
    assert!(outside.requires_override());
    let warning = outside
        .warnings
        .iter()
        .find(|w| w.kind == WarningKind::OutsideCorrelationWindow)
        .unwrap();
    assert_eq!(warning.requires, Requirement::ApproverOverride);
    assert!(
        warning
            .message
            .contains("90 min before the incident, outside the 60 min correlation window")
    );

    let wider = PlanContext {
        correlation_window: chrono::Duration::minutes(120),
        ..later
    };
    assert!(
        s.executor
            .plan(&target, None, &wider)
            .await
            .unwrap()
            .correlation
            .inside_window
    );

    // The approval binds to the same fingerprint either way: only cluster state counts.
    assert_eq!(inside.fingerprint(), outside.fingerprint());
}

#[tokio::test]
async fn database_coupling_from_config_and_from_annotation() {
    let s = Setup::new("exec-database").await;
    s.cluster.fixture(&s.ns, "web", &["1.0.0", "1.1.0"]).await;
    let target = s.target("web");

    let plain = s
        .executor
        .plan(&target, None, &PlanContext::default())
        .await
        .unwrap();
    assert!(!plain.database.coupled && !plain.requires_dba_sign_off());

    let configured = PlanContext {
        database_coupled: true,
        ..PlanContext::default()
    };
    let plan = s.executor.plan(&target, None, &configured).await.unwrap();
    assert!(plan.database.coupled && plan.database.from_config && !plan.database.from_annotation);
    assert!(plan.requires_dba_sign_off());

    s.cluster
        .kubectl_ok(&[
            "-n",
            &s.ns,
            "annotate",
            "deployment/web",
            &format!("{DATABASE_COUPLED_ANNOTATION}=true"),
        ])
        .await;
    let plan = s
        .executor
        .plan(&target, None, &PlanContext::default())
        .await
        .unwrap();
    assert!(plan.database.coupled && plan.database.from_annotation && !plan.database.from_config);
    let warning = plan
        .warnings
        .iter()
        .find(|w| w.kind == WarningKind::DatabaseCoupled)
        .unwrap();
    assert_eq!(warning.requires, Requirement::DbaSignOff);
    assert!(warning.message.contains("sign-off from the DBA group"));
    assert!(warning.message.contains("database-migration procedure"));
}

#[tokio::test]
async fn executing_twice_patches_once() {
    let s = Setup::new("exec-idempotent").await;
    s.cluster
        .fixture(&s.ns, "web", &["1.0.0", "1.1.0", "1.2.0"])
        .await;
    let plan: RollbackPlan = s.plan_revision("web", Some(1)).await.unwrap();
    let first = s
        .executor
        .execute(&plan, None, &UndoOptions::default())
        .await
        .unwrap();
    assert!(!first.already_applied);
    // A retry after a crash right after the patch: same plan, nothing sent.
    let second = s
        .executor
        .execute(&plan, None, &UndoOptions::default())
        .await
        .unwrap();
    assert!(second.already_applied);
    assert_eq!(second.generation, first.generation);
    let verification = s
        .executor
        .verify(&plan, VERIFY_TIMEOUT, None)
        .await
        .unwrap();
    assert!(verification.passed, "{verification:#?}");
    let third = s
        .executor
        .execute(&plan, None, &UndoOptions::default())
        .await
        .unwrap();
    assert!(third.already_applied);
    assert_eq!(
        s.deployment("web").await.metadata.generation,
        Some(first.generation)
    );
}

#[tokio::test]
async fn executor_cannot_touch_unauthorised_namespaces() {
    let cluster = TestCluster::connect().await;
    let ns = cluster.unauthorised_namespace("exec-forbidden").await;
    cluster.fixture(&ns, "web", &["1.0.0", "1.1.0"]).await;
    let executor = Executor::new(cluster.executor_clusters());
    let err = executor
        .plan(
            &Target::new(CLUSTER, &ns, "web"),
            None,
            &PlanContext::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");
    assert!(!err.is_transient() && !err.is_refusal());
}

/// On a meshed cluster every pod gets containers its template does not have, injected at
/// admission (here by a MutatingAdmissionPolicy, tests/fixtures/mesh-injector.yaml: a proxy
/// and a native-sidecar agent). Verification and the soak judge the template's containers;
/// the injected ones are shown as such, never failing a good rollback.
#[tokio::test]
async fn containers_injected_at_admission_are_shown_not_judged() {
    use rollback_bot::domain::recovery::{
        Alerts, CheckName as RecoveryCheck, Health, Limits, Observation, Reading, Status, judge,
    };
    let s = Setup::new("mesh").await;
    let injector = format!(
        "{}/tests/fixtures/mesh-injector.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    s.cluster.kubectl_apply(&["-f", &injector]).await;
    s.cluster
        .kubectl_ok(&[
            "label",
            "namespace",
            &s.ns,
            "rollback-bot-test/mesh=enabled",
        ])
        .await;
    // The policy's informer picks it up asynchronously: wait until a dry-run pod is mutated.
    let probe = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: probe}}\nspec: {{containers: [{{name: app, image: {}}}]}}\n",
        image("web", "1.0.0")
    );
    let probe_file = std::env::temp_dir().join(format!("mesh-probe-{}.yaml", s.ns));
    std::fs::write(&probe_file, probe).unwrap();
    let probe_file = probe_file.display().to_string();
    let injected = async {
        loop {
            let out = s
                .cluster
                .kubectl(&[
                    "-n",
                    &s.ns,
                    "create",
                    "--dry-run=server",
                    "-o",
                    "yaml",
                    "-f",
                    &probe_file,
                ])
                .await;
            if out.stdout.contains("istio-proxy") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), injected)
        .await
        .expect("the mesh injector never mutated a pod");
    std::fs::remove_file(&probe_file).unwrap();

    s.cluster.fixture(&s.ns, "web", &["1.0.0", "1.1.0"]).await;
    let pods = live_pods(&s.cluster, &s.ns, "web").await;
    assert!(!pods.is_empty());
    for pod in &pods {
        let spec = pod.spec.as_ref().unwrap();
        assert!(
            spec.containers.iter().any(|c| c.name == "istio-proxy"),
            "{spec:?}"
        );
        let init = spec.init_containers.as_deref().unwrap_or_default();
        assert!(init.iter().any(|c| c.name == "vault-agent"), "{spec:?}");
    }

    let plan = s.plan("web").await.unwrap();
    assert_eq!(
        plan.rollback_to.images.len(),
        1,
        "{:?}",
        plan.rollback_to.images
    );
    s.execute_and_verify(&plan).await;

    let soaked = s.executor.soak(&plan).await.unwrap();
    assert!(soaked.wrong_images.is_empty(), "{soaked:?}");
    assert!(soaked.restarted.is_empty(), "{soaked:?}");
    assert_eq!(soaked.ready, soaked.total, "{soaked:?}");
    assert_eq!(soaked.injected.len(), 2 * soaked.total, "{soaked:?}");
    for container in ["istio-proxy", "vault-agent"] {
        assert!(
            soaked
                .injected
                .iter()
                .any(|line| line
                    .ends_with(&format!("/{container}: injected, not judged (0 restarts)"))),
            "{container} not shown as injected: {soaked:?}"
        );
    }
    let judged = judge(
        &Observation {
            p99_baseline: Reading::Value(0.1),
            p99_now: Reading::Value(0.1),
            error_rate: Reading::Value(0.0),
            request_rate: Reading::Value(10.0),
            health: Health::Status(200),
            pods: soaked.clone(),
            alerts: Alerts::default(),
        },
        &Limits::default(),
    );
    let soak = judged
        .checks
        .iter()
        .find(|c| c.name == RecoveryCheck::Soak)
        .unwrap();
    assert_eq!(soak.status, Status::Pass, "{soak:?}");
    assert!(
        soak.evidence.contains("istio-proxy: injected, not judged"),
        "{soak:?}"
    );
}
