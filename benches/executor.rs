//! Wall-time comparison on the local control plane: this executor's rollback + verification
//! versus `kubectl rollout undo` followed by `kubectl rollout status`.
//!
//! Both roll the same Deployment back to its previous revision, alternately (executor,
//! kubectl, executor, …), so every rollback does the same work: scale one ReplicaSet of
//! three pods up and the other down. Run it with `scripts/bench-executor.sh`, which starts
//! and stops the cluster; `ROUNDS` sets the number of rounds (default 10).

#[path = "../tests/support/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{CLUSTER, TestCluster};
use rollback_bot::clients::k8s::{
    DEFAULT_VERIFY_TIMEOUT, Executor, PlanContext, RolloutStatus, Target, UndoOptions,
};

struct Sample {
    plan: Duration,
    execute: Duration,
    verify: Duration,
}

impl Sample {
    fn total(&self) -> Duration {
        self.plan + self.execute + self.verify
    }
}

async fn executor_rollback(executor: &Executor, target: &Target) -> Sample {
    let t0 = Instant::now();
    let plan = executor
        .plan(target, None, &PlanContext::default())
        .await
        .expect("plan");
    let t1 = Instant::now();
    let executed = executor
        .execute(&plan, None, &UndoOptions::default())
        .await
        .expect("execute");
    assert!(!executed.already_applied);
    let t2 = Instant::now();
    let verification = executor
        .verify(&plan, DEFAULT_VERIFY_TIMEOUT, None)
        .await
        .expect("verify");
    let t3 = Instant::now();
    assert!(verification.passed, "{verification:#?}");
    Sample {
        plan: t1 - t0,
        execute: t2 - t1,
        verify: t3 - t2,
    }
}

async fn kubectl_rollback(cluster: &TestCluster, ns: &str) -> (Duration, Duration) {
    let t0 = Instant::now();
    let out = cluster
        .kubectl_ok(&["-n", ns, "rollout", "undo", "deployment/web"])
        .await;
    assert_eq!(out, "deployment.apps/web rolled back\n");
    let t1 = Instant::now();
    let out = cluster
        .kubectl_ok(&["-n", ns, "rollout", "status", "deployment/web"])
        .await;
    assert!(
        out.ends_with("deployment \"web\" successfully rolled out\n"),
        "{out}"
    );
    (t1 - t0, Instant::now() - t1)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let cluster = TestCluster::connect().await;
    let ns = cluster.namespace("bench-executor").await;
    cluster.fixture(&ns, "web", &["1.0.0", "1.1.0"]).await;
    let executor = Executor::new(cluster.executor_clusters());
    let target = Target::new(CLUSTER, &ns, "web");

    // Warm-up: connections, discovery caches, the kubectl binary in the page cache.
    executor_rollback(&executor, &target).await;
    kubectl_rollback(&cluster, &ns).await;

    println!("round  executor_ms (plan+execute+verify)   kubectl_ms (undo+status)");
    let mut ours = Vec::new();
    let mut ours_exec_verify = Vec::new();
    let mut theirs = Vec::new();
    for round in 1..=rounds {
        let s = executor_rollback(&executor, &target).await;
        let (undo, status) = kubectl_rollback(&cluster, &ns).await;
        println!(
            "{round:>5}  {:>8.1} ({:.1}+{:.1}+{:.1})   {:>8.1} ({:.1}+{:.1})",
            ms(s.total()),
            ms(s.plan),
            ms(s.execute),
            ms(s.verify),
            ms(undo + status),
            ms(undo),
            ms(status)
        );
        ours.push(ms(s.total()));
        ours_exec_verify.push(ms(s.execute + s.verify));
        theirs.push(ms(undo + status));
    }
    let final_status = cluster.wait_rollout(&ns, "web").await;
    assert!(matches!(final_status, RolloutStatus::Done(_)));

    let (mo, mt) = (median(ours.clone()), median(theirs.clone()));
    println!();
    println!("rounds: {rounds}");
    println!(
        "executor plan+execute+verify: median {mo:.1} ms, mean {:.1} ms",
        mean(&ours)
    );
    println!(
        "executor execute+verify:      median {:.1} ms, mean {:.1} ms",
        median(ours_exec_verify.clone()),
        mean(&ours_exec_verify)
    );
    println!(
        "kubectl undo+status:          median {mt:.1} ms, mean {:.1} ms",
        mean(&theirs)
    );
    println!(
        "ratio executor/kubectl (median): {:.3}  (mean: {:.3})",
        mo / mt,
        mean(&ours) / mean(&theirs)
    );
}
