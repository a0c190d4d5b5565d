//! The deploy lock on the real control plane: `config/kubernetes/base/deploy-lock.yaml` makes the
//! API server refuse pod-template changes and lock removals on a Deployment that carries the
//! lock annotations (`src/clients/k8s/lock.rs`), for everybody but the bot's ServiceAccount, while scaling
//! passes.

mod support;
use support::cluster;

use std::time::Duration;

use chrono::{DateTime, Utc};
use cluster::{TestCluster, image};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use rollback_bot::clients::k8s::lock::{self, Lock};
use rollback_bot::clients::k8s::{Executor, Target};

/// A person with the namespace's `edit` role, as a CI pipeline or a developer would have.
const PERSON: &str = "jane@example.com";

fn policy_file() -> String {
    format!(
        "{}/config/kubernetes/base/deploy-lock.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn the_lock() -> Lock {
    Lock {
        reason: "rollback #42 of web-svc for incident INC-7 (approved by <@U0LEAD>)".into(),
        rollback_id: Some(42),
        service: Some("web-svc".into()),
        incident: Some("https://incidents.example/INC-7".into()),
        since: Some(
            DateTime::parse_from_rfc3339("2026-11-22T17:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        ),
        ..Lock::default()
    }
}

async fn running_image(cluster: &TestCluster, ns: &str, name: &str) -> String {
    let d = cluster.deployments(ns).get(name).await.unwrap();
    d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

/// `kubectl set image` as [`PERSON`]; `dry_run` asks the server to run admission only.
async fn set_image_as_person(
    cluster: &TestCluster,
    ns: &str,
    tag: &str,
    dry_run: bool,
) -> cluster::KubectlOutput {
    cluster.set_image_as(PERSON, ns, "web", tag, dry_run).await
}

/// A namespace with the lock policy installed, a Deployment `web` rolled out through
/// `images`, and a person who may edit it (the `edit` role, as a developer would have).
async fn policed_namespace(prefix: &str, images: &[&str]) -> (TestCluster, String) {
    let cluster = TestCluster::connect().await;
    cluster.kubectl_apply(&["-f", &policy_file()]).await;
    let ns = cluster.namespace(prefix).await;
    cluster.fixture(&ns, "web", images).await;
    cluster.grant_edit(&ns, PERSON).await;
    (cluster, ns)
}

#[tokio::test]
async fn a_locked_deployment_refuses_people_but_scales_and_the_bot_unlocks_it() {
    let (cluster, ns) = policed_namespace("deploy-lock", &["1.0.0", "1.1.0"]).await;

    // The bot locks it with its own ServiceAccount's token.
    let bot: Api<Deployment> = Api::namespaced(cluster.executor(), &ns);
    let lock = the_lock();
    bot.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(lock.lock_patch()),
    )
    .await
    .expect("the bot may set the lock");
    let executor = Executor::new(cluster.executor_clusters());
    let target = Target::new(cluster::CLUSTER, &ns, "web");
    assert_eq!(lock::read(&executor, &target).await.unwrap(), Some(lock));

    // The policy's informer picks it up asynchronously: wait until a dry run is refused.
    let enforced = async {
        loop {
            let out = set_image_as_person(&cluster, &ns, "2.0.0", true).await;
            if !out.success {
                return out.stderr;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let dry_run = tokio::time::timeout(Duration::from_secs(30), enforced)
        .await
        .expect("the lock policy was never enforced");
    assert!(dry_run.contains("rollback-bot-deploy-lock"), "{dry_run}");

    let denied = set_image_as_person(&cluster, &ns, "2.0.0", false).await;
    assert!(!denied.success, "set image on a locked Deployment passed");
    for part in [
        &format!("deployment {ns}/web is locked by rollback-bot since 2026-11-22T17:00:00"),
        "rollback #42 of web-svc for incident INC-7 (approved by <@U0LEAD>)",
        "/rollback unlock web-svc <fix reference>",
    ] {
        assert!(
            denied.stderr.contains(part),
            "{part:?} missing from {}",
            denied.stderr
        );
    }
    assert_eq!(
        running_image(&cluster, &ns, "web").await,
        image("web", "1.1.0")
    );

    // Scaling (the scale subresource, as the HPA uses it) passes.
    cluster
        .kubectl_ok(&[
            "-n",
            &ns,
            "--as",
            PERSON,
            "scale",
            "deployment/web",
            "--replicas=4",
        ])
        .await;
    let scaled = cluster.deployments(&ns).get("web").await.unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(4));

    // Only the bot may remove the lock.
    let unlock = cluster
        .kubectl(&[
            "-n",
            &ns,
            "--as",
            PERSON,
            "annotate",
            "deployment/web",
            &format!("{}-", lock::LOCKED),
        ])
        .await;
    assert!(!unlock.success, "a person removed the lock");
    assert!(
        unlock
            .stderr
            .contains("only rollback-bot may set, change or remove"),
        "{}",
        unlock.stderr
    );
    assert!(lock::read(&executor, &target).await.unwrap().is_some());

    bot.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(lock::unlock_patch()),
    )
    .await
    .expect("the bot may remove the lock");
    assert_eq!(lock::read(&executor, &target).await.unwrap(), None);
    let annotations = cluster
        .deployments(&ns)
        .get("web")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default();
    for key in lock::KEYS {
        assert!(!annotations.contains_key(key), "{key} left behind");
    }

    let deployed = set_image_as_person(&cluster, &ns, "2.0.0", false).await;
    assert!(deployed.success, "{}", deployed.stderr);
    assert_eq!(
        running_image(&cluster, &ns, "web").await,
        image("web", "2.0.0")
    );
}

/// A person may not lock a Deployment either: a forged lock would block deploys that only
/// the bot could release.
#[tokio::test]
async fn people_cannot_set_a_lock() {
    let (cluster, ns) = policed_namespace("deploy-lock-forge", &["1.0.0"]).await;
    let bot: Api<Deployment> = Api::namespaced(cluster.executor(), &ns);
    let forge = [
        "-n",
        &ns,
        "--as",
        PERSON,
        "annotate",
        "deployment/web",
        "rollback-bot.io/locked=forged",
    ];
    let refused = async {
        loop {
            let out = cluster.kubectl(&forge).await;
            if !out.success {
                return out.stderr;
            }
            // Applied before the policy was in force: the bot undoes it; try again.
            bot.patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(lock::unlock_patch()),
            )
            .await
            .expect("the bot may remove a lock");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let stderr = tokio::time::timeout(Duration::from_secs(30), refused)
        .await
        .expect("the lock policy was never enforced");
    assert!(
        stderr.contains("only rollback-bot may set, change or remove"),
        "{stderr}"
    );
}

/// A restarted API server answers 403 until its RBAC caches are warm (docs/reliability.md):
/// the lock step retries a refusal like an outage instead of failing a rollback that already
/// happened; a real lack of permission still fails it once the engine's retries are spent.
/// Here the bot has no rights in the namespace at all, as right after such a restart.
#[sqlx::test]
async fn the_lock_step_retries_a_refusal(pool: sqlx::PgPool) {
    use rollback_bot::db::rollbacks::{self as repo, NewRollback};
    use rollback_bot::domain::Step;
    use rollback_bot::engine::{StepOutcome, StepRunner};
    use rollback_bot::steps::KubernetesSteps;
    use std::sync::Arc;

    let cluster = TestCluster::connect().await;
    let ns = cluster.unauthorised_namespace("lock-refused").await;
    let rollback = repo::insert(
        &pool,
        &NewRollback {
            service: "web".into(),
            cluster: cluster::CLUSTER.into(),
            namespace: ns,
            deployment: "web".into(),
            requested_revision: None,
            incident: Some("INC-7".into()),
            requested_by: "U0REQUESTER".into(),
            channel_id: "C0INCIDENT1".into(),
            response_url: None,
            force: false,
            approval_ttl: Duration::from_secs(900),
        },
    )
    .await
    .unwrap();
    let steps = KubernetesSteps::new(
        Arc::new(Executor::new(cluster.executor_clusters())),
        Arc::new(rollback_bot::config::Config::default()),
    );
    match steps.run(Step::Lock, &rollback).await {
        StepOutcome::Retry(error) => assert!(error.contains("not authorised"), "{error}"),
        other => panic!("a refusal must be retried, got {other:?}"),
    }
}

/// Nor may a person create a Deployment that carries a lock (a forged lock, or the copied
/// manifest of a locked Deployment): the policy covers CREATE too, while a Deployment
/// without lock annotations is created as usual.
#[tokio::test]
async fn people_cannot_create_a_locked_deployment() {
    let (cluster, ns) = policed_namespace("deploy-lock-create", &["1.0.0"]).await;
    let manifest = |name: &str, annotations: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\n\
             spec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n\
             \x20   spec: {{containers: [{{name: app, image: {}}}]}}\n",
            image(name, "1.0.0")
        )
    };
    let dir = std::env::temp_dir().join(format!("deploy-lock-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let forged = dir.join("forged.yaml");
    std::fs::write(
        &forged,
        manifest(
            "copy",
            "rollback-bot.io/locked: 'rollback #42', rollback-bot.io/lock-rollback: '42'",
        ),
    )
    .unwrap();
    let create = |file: std::path::PathBuf| {
        let cluster = cluster.clone();
        let ns = ns.clone();
        async move {
            let file = file.display().to_string();
            cluster
                .kubectl(&[
                    "-n",
                    &ns,
                    "--as",
                    PERSON,
                    "create",
                    "--dry-run=server",
                    "-f",
                    &file,
                ])
                .await
        }
    };
    let refused = async {
        loop {
            let out = create(forged.clone()).await;
            if !out.success {
                return out.stderr;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let stderr = tokio::time::timeout(Duration::from_secs(30), refused)
        .await
        .expect("the lock policy never refused the CREATE");
    assert!(
        stderr.contains("only rollback-bot may set, change or remove")
            && stderr.contains(&format!("{ns}/copy")),
        "{stderr}"
    );
    let plain = dir.join("plain.yaml");
    std::fs::write(&plain, manifest("plain", "team: payments")).unwrap();
    let out = create(plain).await;
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.success, "{}", out.stderr);
}

/// Deleting a locked Deployment is denied too: otherwise `kubectl delete` (or `replace
/// --force`, or a prune) followed by a create without the annotations would bring the faulty
/// build back while the lock stands. Deleting its namespace still deletes it.
#[tokio::test]
async fn a_locked_deployment_cannot_be_deleted_but_its_namespace_can() {
    let (cluster, ns) = policed_namespace("deploy-lock-delete", &["1.0.0", "1.1.0"]).await;
    let bot: Api<Deployment> = Api::namespaced(cluster.executor(), &ns);
    bot.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(the_lock().lock_patch()),
    )
    .await
    .expect("the bot may set the lock");

    let delete = ["-n", &ns, "--as", PERSON, "delete", "deployment/web"];
    let dry_run: Vec<&str> = delete.iter().copied().chain(["--dry-run=server"]).collect();
    let refused = async {
        loop {
            let out = cluster.kubectl(&dry_run).await;
            if !out.success {
                return out.stderr;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let stderr = tokio::time::timeout(Duration::from_secs(30), refused)
        .await
        .expect("the lock policy never refused the DELETE");
    assert!(stderr.contains("cannot be deleted"), "{stderr}");

    let denied = cluster.kubectl(&delete).await;
    assert!(!denied.success, "a person deleted a locked Deployment");
    for part in [
        &format!("deployment {ns}/web is locked by rollback-bot since 2026-11-22T17:00:00"),
        "It cannot be deleted (nor created again without the lock) until a fix is approved",
        "/rollback unlock web-svc <fix reference>",
    ] {
        assert!(
            denied.stderr.contains(part),
            "{part:?} missing from {}",
            denied.stderr
        );
    }
    assert!(
        cluster
            .deployments(&ns)
            .get_opt("web")
            .await
            .unwrap()
            .is_some()
    );

    // Deleting the namespace is not a redeploy: the namespace controller removes the locked
    // Deployment with it (were that denied, the namespace would hang in Terminating).
    cluster
        .kubectl_ok(&["delete", "namespace", &ns, "--wait=false"])
        .await;
    let gone = async {
        while cluster
            .deployments(&ns)
            .get_opt("web")
            .await
            .unwrap()
            .is_some()
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(90), gone)
        .await
        .expect("the namespace controller could not delete the locked Deployment");
}
