//! The safety defects of issue 9 on the real components: the executor against the local
//! control plane (as the least-privilege ServiceAccount), the engine against real Postgres.
//! Each test fails on the code before its fix.
//!
//! Races are made deterministic with the executor's `executor.before_patch` pause point: the
//! test writes to the Deployment exactly between the executor's checks and its patch.

mod support;
use support::cluster;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use cluster::{CLUSTER, TestCluster, image};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use rollback_bot::clients::k8s::{
    Error, Executed, Executor, PlanContext, RollbackPlan, Target, UndoOptions,
};
use rollback_bot::config::Config;
use rollback_bot::db::rollbacks::{self as repo, Change, NewRollback, Rollback};
use rollback_bot::domain::machine::{Event, SignOff};
use rollback_bot::domain::{State, Step};
use rollback_bot::engine::{Engine, EngineConfig, StepOutcome, StepRunner};
use rollback_bot::steps::KubernetesSteps;
use rollback_bot::support::failpoint;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

const VERIFY_TIMEOUT: Duration = Duration::from_secs(60);
const LEAD: &str = "U0LEAD00001";

struct Setup {
    cluster: TestCluster,
    ns: String,
    executor: Executor,
}

impl Setup {
    async fn new(prefix: &str, tags: &[&str]) -> Self {
        let cluster = TestCluster::connect().await;
        let ns = cluster.namespace(prefix).await;
        cluster.fixture(&ns, "web", tags).await;
        let executor = Executor::new(cluster.executor_clusters());
        Self {
            cluster,
            ns,
            executor,
        }
    }

    fn target(&self) -> Target {
        Target::new(CLUSTER, &self.ns, "web")
    }

    async fn plan(&self, revision: Option<i64>, force: bool) -> Result<RollbackPlan, Error> {
        let ctx = PlanContext {
            force,
            ..PlanContext::default()
        };
        self.executor.plan(&self.target(), revision, &ctx).await
    }

    async fn running_image(&self) -> String {
        let d = self.cluster.deployments(&self.ns).get("web").await.unwrap();
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    }

    /// Executes `plan`, running `write` (as cluster admin) after the executor has checked the
    /// Deployment and before it patches it.
    async fn execute_with_write_before_patch(
        &self,
        plan: &RollbackPlan,
        write: impl Future<Output = ()>,
    ) -> Result<Executed, Error> {
        let (paused_tx, paused_rx) = mpsc::channel::<()>();
        let (resume_tx, resume_rx) = mpsc::channel::<()>();
        let (paused_tx, resume_rx) = (Mutex::new(paused_tx), Mutex::new(resume_rx));
        let fired = AtomicBool::new(false);
        let target = self.target().to_string();
        // Blocks the executor's task (on its own runtime thread) once, for this target only.
        let _hook = failpoint::on(
            "executor.before_patch",
            Arc::new(move |context: &str| {
                if context == target && !fired.swap(true, Ordering::SeqCst) {
                    paused_tx.lock().unwrap().send(()).unwrap();
                    resume_rx.lock().unwrap().recv().unwrap();
                }
            }),
        );
        let (executor, owned_plan) = (self.executor.clone(), plan.clone());
        let execution = tokio::spawn(async move {
            executor
                .execute(&owned_plan, None, &UndoOptions::default())
                .await
        });
        tokio::task::spawn_blocking(move || paused_rx.recv_timeout(Duration::from_secs(60)))
            .await
            .unwrap()
            .expect("the executor reached its patch");
        write.await;
        resume_tx.send(()).unwrap();
        execution.await.unwrap()
    }
}

/// Defect 1: a target ReplicaSet whose template is edited after approval (its hash label
/// unchanged) must be refused, never rolled out.
#[tokio::test]
async fn an_edited_target_replica_set_is_refused_not_rolled_out() {
    let s = Setup::new("safety-edited-rs", &["1.0.0", "1.1.0", "1.2.0"]).await;
    let plan = s.plan(None, false).await.unwrap();
    assert_eq!(plan.rollback_to.images[0].image, image("web", "1.1.0"));
    let evil = image("web", "evil");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(s.cluster.admin(), &s.ns);
    replica_sets
        .patch(
            &plan.rollback_to.name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {
                "containers": [{"name": "app", "image": evil}]}}}})),
        )
        .await
        .unwrap();

    let err = s
        .executor
        .execute(&plan, None, &UndoOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PlanChanged { reason }
            if reason.contains("edited after the plan was made") && reason.contains(&evil)),
        "{err:?}"
    );
    assert_eq!(s.running_image().await, image("web", "1.2.0"));
}

/// Defect 2: an HPA-style scale and an annotation edit between check and patch are re-read
/// and retried, not a failed plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harmless_write_between_check_and_patch_is_retried() {
    let s = Setup::new("safety-harmless", &["1.0.0", "1.1.0", "1.2.0"]).await;
    let plan = s.plan(None, false).await.unwrap();
    let deployments = s.cluster.deployments(&s.ns);
    let write = async {
        deployments
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"team": "payments"}},
                                     "spec": {"replicas": 4}})),
            )
            .await
            .unwrap();
    };
    let executed = s.execute_with_write_before_patch(&plan, write).await;
    let executed = executed.expect("a scale is not a plan change");
    assert!(!executed.already_applied);
    assert_eq!(s.running_image().await, image("web", "1.1.0"));
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(4), "the scale is kept");
    let verification = s.executor.verify(&plan, VERIFY_TIMEOUT, None).await;
    assert!(verification.unwrap().passed);
}

/// Defect 2: another replica (or a crashed earlier attempt) that applied the same rollback
/// first means "already applied", not "not executed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_race_to_the_same_rollback_counts_as_applied() {
    let s = Setup::new("safety-lost-race", &["1.0.0", "1.1.0", "1.2.0"]).await;
    let plan = s.plan(None, false).await.unwrap();
    let other = s.executor.clone();
    let other_plan = plan.clone();
    let write = async move {
        let done = other
            .execute(&other_plan, None, &UndoOptions::default())
            .await
            .unwrap();
        assert!(!done.already_applied);
    };
    let executed = s.execute_with_write_before_patch(&plan, write).await;
    assert!(executed.expect("recognised as applied").already_applied);
    assert_eq!(s.running_image().await, image("web", "1.1.0"));
    let replica_sets: Api<ReplicaSet> = Api::namespaced(s.cluster.admin(), &s.ns);
    let listed = replica_sets.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 3, "no extra revision was created");
}

/// Defect 2, the other side: a change of what matters between check and patch still fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rollout_between_check_and_patch_fails_the_plan() {
    let s = Setup::new("safety-new-rollout", &["1.0.0", "1.1.0", "1.2.0"]).await;
    let plan = s.plan(None, false).await.unwrap();
    let write = async {
        s.cluster.set_image(&s.ns, "web", "1.3.0").await;
    };
    let err = s
        .execute_with_write_before_patch(&plan, write)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::PlanChanged { reason } if reason.contains("pod template changed")),
        "{err:?}"
    );
    assert_eq!(s.running_image().await, image("web", "1.3.0"));
}

/// Defect 5: with force, a rollout whose template never got a ReplicaSet (quota denial) can
/// be rolled back, as `kubectl rollout undo --to-revision=N` can.
#[tokio::test]
async fn force_rolls_back_a_template_that_never_got_a_replica_set() {
    let s = Setup::new("safety-quota", &["1.0.0", "1.1.0"]).await;
    let quotas: Api<ResourceQuota> = Api::namespaced(s.cluster.admin(), &s.ns);
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "two-replicasets"},
        "spec": {"hard": {"count/replicasets.apps": "2"}}
    }))
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    // Wait until the quota is enforced (its status is filled in by the controller).
    for _ in 0..100 {
        let q = quotas.get("two-replicasets").await.unwrap();
        if q.status.and_then(|st| st.used).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.cluster.set_image(&s.ns, "web", "1.2.0").await;
    // The controller cannot create the ReplicaSet for 1.2.0.
    let replica_sets: Api<ReplicaSet> = Api::namespaced(s.cluster.admin(), &s.ns);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        replica_sets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    let err = s.plan(Some(2), false).await.unwrap_err();
    assert!(matches!(err, Error::RolloutInProgress { .. }), "{err:?}");
    let plan = s.plan(Some(2), true).await.expect("force plans it");
    assert!(plan.current.is_none());
    assert_eq!(plan.current_images[0].image, image("web", "1.2.0"));
    assert_eq!(plan.rollback_to.images[0].image, image("web", "1.1.0"));
    let executed = s
        .executor
        .execute(&plan, None, &UndoOptions::default())
        .await
        .unwrap();
    assert!(!executed.already_applied);
    let verification = s
        .executor
        .verify(&plan, VERIFY_TIMEOUT, None)
        .await
        .unwrap();
    assert!(verification.passed, "{verification:#?}");
    assert_eq!(s.running_image().await, image("web", "1.1.0"));
}

/// Defect 4, executor side: no patch once the approval's deadline has passed.
#[tokio::test]
async fn a_stale_approval_is_not_executed() {
    let s = Setup::new("safety-stale", &["1.0.0", "1.1.0"]).await;
    let plan = s.plan(None, false).await.unwrap();
    let deadline = Utc::now() - chrono::Duration::seconds(1);
    let err = s
        .executor
        .execute(&plan, Some(deadline), &UndoOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ApprovalStale { .. }), "{err:?}");
    assert!(err.is_refusal());
    assert_eq!(s.running_image().await, image("web", "1.1.0"));
}

// ---- the engine with the real Kubernetes steps and real Postgres ----

fn steps_config(ns: &str, max_age: &str) -> Arc<Config> {
    let text = format!(
        r#"
        [slack]
        incident_channels = ["C0INCIDENT1"]
        lead_user_ids = ["{LEAD}"]
        [timeouts]
        approval_max_age = "{max_age}"
        [clusters.local]
        [services.web]
        cluster = "local"
        namespace = "{ns}"
        "#
    );
    let config = Config::parse(&text, "safety").unwrap();
    config.validate("safety").unwrap();
    Arc::new(config)
}

fn engine(pool: &PgPool, s: &Setup, max_age: &str) -> Engine {
    let steps = KubernetesSteps::new(Arc::new(s.executor.clone()), steps_config(&s.ns, max_age));
    Engine::new(
        pool.clone(),
        Arc::new(steps),
        EngineConfig {
            worker_id: "safety".into(),
            lease: Duration::from_secs(10),
            ..EngineConfig::default()
        },
    )
}

/// A request to roll `web` in `namespace` back to its previous revision.
fn request_of_web(namespace: &str) -> NewRollback {
    NewRollback {
        service: "web".into(),
        cluster: CLUSTER.into(),
        namespace: namespace.into(),
        deployment: "web".into(),
        requested_revision: None,
        incident: Some("INC-9".into()),
        requested_by: "U0REQUEST01".into(),
        channel_id: "C0INCIDENT1".into(),
        response_url: None,
        force: false,
        approval_ttl: Duration::from_secs(900),
    }
}

/// Requests, plans (through the real plan step) and approves a rollback of `web`.
async fn approved(pool: &PgPool, engine: &Engine, s: &Setup) -> Rollback {
    let id = repo::insert(pool, &request_of_web(&s.ns)).await.unwrap().id;
    assert!(engine.run_once("planner").await.unwrap());
    let r = repo::get(pool, id).await.unwrap();
    assert_eq!(r.state, State::AwaitingApproval, "{:?}", r.last_error);
    let approve = Event::Approve {
        by: LEAD.into(),
        sign_off: SignOff::Lead,
        authorized: true,
        fingerprint: r.plan_fingerprint.clone().unwrap(),
        overrides_correlation: false,
    };
    let applied = repo::apply(pool, id, &Change::by(LEAD, &approve))
        .await
        .unwrap();
    assert_eq!(applied.rollback.state, State::Approved);
    applied.rollback
}

/// Defect 4: after an outage longer than the limit, the approval is refused at execution
/// with the reason on the rollback (and so on the card); the Deployment is untouched.
#[sqlx::test]
async fn an_approval_older_than_the_limit_is_refused_after_an_outage(pool: PgPool) {
    let s = Setup::new("safety-outage", &["1.0.0", "1.1.0"]).await;
    let engine = engine(&pool, &s, "10m");
    let r = approved(&pool, &engine, &s).await;
    // The bot was down for two hours after the approval.
    sqlx::query("update rollback set approved_at = now() - interval '2 hours' where id = $1")
        .bind(r.id)
        .execute(&pool)
        .await
        .unwrap();
    assert!(engine.run_once("after-outage").await.unwrap());
    let r = repo::get(&pool, r.id).await.unwrap();
    // Failed, then escalated by the same worker.
    assert_eq!(r.state, State::Escalated);
    let reason = r.last_error.unwrap();
    assert!(
        reason.contains("approval is too old") && reason.contains("approval_max_age"),
        "{reason}"
    );
    assert_eq!(s.running_image().await, image("web", "1.1.0"));
}

/// Defect 1 (stored plan): a plan altered in the database after approval is never acted on.
#[sqlx::test]
async fn a_stored_plan_altered_after_approval_is_refused(pool: PgPool) {
    let s = Setup::new("safety-altered-plan", &["1.0.0", "1.1.0", "1.2.0"]).await;
    let engine = engine(&pool, &s, "10m");
    let r = approved(&pool, &engine, &s).await;
    // Someone with database access points the approved plan at revision 1 instead of 2,
    // consistently (names, hashes, images): the code before the fix rolled out revision 1.
    let mut plan: RollbackPlan = serde_json::from_value(r.plan.clone().unwrap()).unwrap();
    let unapproved = s.plan(Some(1), false).await.unwrap();
    plan.rollback_to = unapproved.rollback_to;
    plan.image_changes = unapproved.image_changes;
    sqlx::query("update rollback set plan = $2 where id = $1")
        .bind(r.id)
        .bind(serde_json::to_value(&plan).unwrap())
        .execute(&pool)
        .await
        .unwrap();
    assert!(engine.run_once("executor").await.unwrap());
    let r = repo::get(&pool, r.id).await.unwrap();
    assert_eq!(r.state, State::Escalated);
    assert!(
        r.last_error
            .as_deref()
            .unwrap()
            .contains("fingerprint mismatch"),
        "{:?}",
        r.last_error
    );
    assert_eq!(s.running_image().await, image("web", "1.2.0"));
}

// ---- defect 3: a worker cut off from Postgres stops before its lease lapses ----

/// A step that runs until it is dropped, recording when it started and whether it finished.
#[derive(Default)]
struct EndlessStep {
    started: Mutex<Vec<(String, std::time::Instant)>>,
    dropped: Mutex<Vec<(String, std::time::Instant)>>,
}

struct DropMark(Arc<EndlessStep>, String);

impl Drop for DropMark {
    fn drop(&mut self) {
        let mark = (self.1.clone(), std::time::Instant::now());
        self.0.dropped.lock().unwrap().push(mark);
    }
}

struct EndlessRunner {
    log: Arc<EndlessStep>,
    name: String,
}

#[async_trait]
impl StepRunner for EndlessRunner {
    async fn run(&self, _step: Step, _rollback: &Rollback) -> StepOutcome {
        let mark = (self.name.clone(), std::time::Instant::now());
        self.log.started.lock().unwrap().push(mark);
        let _guard = DropMark(self.log.clone(), self.name.clone());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        StepOutcome::finished(Event::StepSucceeded, json!({}))
    }
}

/// A TCP proxy to Postgres that can cut every connection and refuse new ones.
struct Proxy {
    port: u16,
    cut: tokio_util::sync::CancellationToken,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = tokio_util::sync::CancellationToken::new();
        let stop = cut.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = stop.cancelled() => return,
                };
                let Ok((mut client, _)) = accepted else {
                    return;
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
        });
        Proxy { port, cut }
    }
}

#[sqlx::test]
async fn a_worker_cut_off_from_postgres_abandons_its_step_before_the_lease_lapses(
    pool_options: PgPoolOptions,
    options: sqlx::postgres::PgConnectOptions,
) {
    let pool = pool_options.connect_with(options.clone()).await.unwrap();
    let lease = Duration::from_millis(1500);
    let config = |name: &str| EngineConfig {
        worker_id: name.into(),
        workers: 1,
        lease,
        poll_interval: Duration::from_millis(50),
        ..EngineConfig::default()
    };
    let id = repo::insert(&pool, &request_of_web("production"))
        .await
        .unwrap()
        .id;

    // Worker "cut" reaches Postgres through the proxy only.
    let upstream = format!("{}:{}", options.get_host(), options.get_port());
    let upstream = tokio::net::lookup_host(upstream)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let cut_pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_with(options.clone().host("127.0.0.1").port(proxy.port))
        .await
        .unwrap();
    let log = Arc::new(EndlessStep::default());
    let runner = |name: &str| {
        Arc::new(EndlessRunner {
            log: log.clone(),
            name: name.into(),
        })
    };
    let cut_engine = Arc::new(Engine::new(cut_pool, runner("cut"), config("cut")));
    let claimer = tokio::spawn({
        let e = cut_engine.clone();
        async move { e.run_once("cut").await }
    });
    // Wait until the plan step runs under the cut worker's lease, then cut it off.
    for _ in 0..200 {
        if !log.started.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(log.started.lock().unwrap().len(), 1);
    let cut_at = std::time::Instant::now();
    proxy.cut.cancel();

    // A healthy worker takes the rollback over once the lease lapses.
    let healthy = Engine::new(pool.clone(), runner("healthy"), config("healthy"));
    let healthy_run = tokio::spawn(async move {
        for _ in 0..200 {
            if healthy.run_once("healthy").await.unwrap() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the healthy worker never got the rollback");
    });
    for _ in 0..300 {
        if log.started.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = log.started.lock().unwrap().clone();
    let dropped = log.dropped.lock().unwrap().clone();
    assert_eq!(started.len(), 2, "the healthy worker resumed: {started:?}");
    let (_, cut_dropped_at) = dropped
        .iter()
        .find(|(name, _)| name == "cut")
        .cloned()
        .expect("the cut-off worker abandoned its step");
    let (_, healthy_started_at) = started[1].clone();
    assert!(
        cut_dropped_at < healthy_started_at,
        "the cut-off worker still ran its step when the other one started"
    );
    assert!(
        cut_dropped_at.duration_since(cut_at) < lease,
        "abandoned {:?} after the cut, lease is {lease:?}",
        cut_dropped_at.duration_since(cut_at)
    );
    let r = repo::get(&pool, id).await.unwrap();
    assert_eq!(r.state, State::Requested);
    assert_eq!(r.lease_owner.as_deref(), Some("healthy"));
    healthy_run.abort();
    let _ = claimer.await;
}
