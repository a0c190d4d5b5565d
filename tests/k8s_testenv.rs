//! End-to-end proof that the test control plane is real: the deployment controller turns
//! Deployments into ReplicaSets with revisions, kwok runs their pods, and a `crashloop`
//! image never becomes available.

mod support;
use support::cluster;

use std::time::Duration;

use cluster::{PROGRESS_DEADLINE_SECONDS, REPLICAS, TestCluster, image};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use rollback_bot::clients::k8s::{CHANGE_CAUSE_ANNOTATION, RolloutStatus};

const REVISION: &str = "deployment.kubernetes.io/revision";

#[tokio::test]
async fn controller_manager_creates_replica_sets_with_revisions() {
    let cluster = TestCluster::connect().await;
    let ns = cluster.namespace("testenv-revisions").await;
    let deployment = cluster
        .fixture(&ns, "web", &["1.0.0", "1.1.0", "1.2.0"])
        .await;
    let uid = deployment.metadata.uid.clone().unwrap();

    let replica_sets: Api<ReplicaSet> = Api::namespaced(cluster.executor(), &ns);
    let mut owned: Vec<ReplicaSet> = replica_sets
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .collect();
    owned.sort_by_key(|rs| {
        rs.metadata.annotations.as_ref().unwrap()[REVISION]
            .parse::<i64>()
            .unwrap()
    });

    let seen: Vec<(String, String, Option<String>, i32)> = owned
        .iter()
        .map(|rs| {
            let annotations = rs.metadata.annotations.clone().unwrap_or_default();
            let template = rs.spec.as_ref().unwrap().template.as_ref().unwrap();
            (
                annotations[REVISION].clone(),
                template.spec.as_ref().unwrap().containers[0]
                    .image
                    .clone()
                    .unwrap(),
                annotations.get(CHANGE_CAUSE_ANNOTATION).cloned(),
                rs.spec.as_ref().unwrap().replicas.unwrap_or(0),
            )
        })
        .collect();
    let want: Vec<(String, String, Option<String>, i32)> = [
        ("1", "1.0.0", 0),
        ("2", "1.1.0", 0),
        ("3", "1.2.0", REPLICAS),
    ]
    .into_iter()
    .map(|(rev, tag, replicas)| {
        (
            rev.to_owned(),
            image("web", tag),
            Some(format!("deploy {}", image("web", tag))),
            replicas,
        )
    })
    .collect();
    assert_eq!(seen, want);

    // kwok ran the current ReplicaSet's pods: Running, Ready, no restarts.
    let current = owned.last().unwrap();
    assert_eq!(
        current.status.as_ref().unwrap().ready_replicas,
        Some(REPLICAS)
    );
    let pods: Api<Pod> = Api::namespaced(cluster.executor(), &ns);
    let hash = &current.metadata.labels.as_ref().unwrap()["pod-template-hash"];
    let running = pods
        .list(&ListParams::default().labels(&format!("app=web,pod-template-hash={hash}")))
        .await
        .unwrap();
    assert_eq!(running.items.len(), REPLICAS as usize);
    for pod in &running.items {
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let c = &status.container_statuses.as_ref().unwrap()[0];
        assert!(c.ready && c.restart_count == 0, "{c:?}");
    }
}

#[tokio::test]
async fn crashloop_image_never_becomes_available() {
    let cluster = TestCluster::connect().await;
    let ns = cluster.namespace("testenv-crashloop").await;
    let started = std::time::Instant::now();
    cluster.create_deployment(&ns, "broken", "crashloop").await;

    // The rollout stalls and the controller reports ProgressDeadlineExceeded.
    let status = cluster.wait_rollout(&ns, "broken").await;
    assert_eq!(
        status,
        RolloutStatus::Failed("deployment \"broken\" exceeded its progress deadline".into())
    );
    assert!(started.elapsed() >= Duration::from_secs(PROGRESS_DEADLINE_SECONDS as u64));
    let deployment = cluster.deployments(&ns).get("broken").await.unwrap();
    let status = deployment.status.unwrap();
    assert_eq!(status.available_replicas.unwrap_or(0), 0);
    let available = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Available")
        .unwrap();
    assert_eq!(available.status, "False");

    // kubectl agrees.
    let out = cluster
        .kubectl(&[
            "-n",
            &ns,
            "rollout",
            "status",
            "deployment/broken",
            "--timeout=30s",
        ])
        .await;
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("deployment \"broken\" exceeded its progress deadline"),
        "{out:?}"
    );

    // Every pod runs but is not Ready, reports CrashLoopBackOff, and its restarts grow.
    let pods: Api<Pod> = Api::namespaced(cluster.executor(), &ns);
    let crashing = |p: &Pod, min_restarts: i32| {
        let status = p.status.as_ref();
        let c = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first());
        status.and_then(|s| s.phase.as_deref()) == Some("Running")
            && c.is_some_and(|c| {
                !c.ready
                    && c.restart_count >= min_restarts
                    && c.state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some("CrashLoopBackOff")
            })
    };
    let listed = pods
        .list(&ListParams::default().labels("app=broken"))
        .await
        .unwrap()
        .items;
    assert!(!listed.is_empty());
    for pod in &listed {
        assert!(crashing(pod, 1), "{:?}", pod.status);
    }
    let first = listed[0].clone();
    let before = first
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .restart_count;
    let name = first.metadata.name.clone().unwrap();
    let grew = watcher(
        pods,
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .applied_objects()
    .filter(|p| std::future::ready(p.as_ref().is_ok_and(|p| crashing(p, before + 1))));
    tokio::time::timeout(Duration::from_secs(60), std::pin::pin!(grew).next())
        .await
        .expect("restart count of a crash-looping pod never grew");
}
