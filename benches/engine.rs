//! Benchmark of the rollback engine on a real PostgreSQL (`scripts/bench-engine.sh`).
//!
//! Reports, in one run:
//! 1. transitions per second through `repo::apply` (each one optimistic write + audit row),
//!    with many rollbacks driven concurrently;
//! 2. how many rollbacks the engine keeps in flight at once, and their throughput, when every
//!    step waits on a (simulated) slow Kubernetes;
//! 3. claim latency: from the approval's commit to a worker starting the first step (the
//!    LISTEN/NOTIFY path), and the cost of one `repo::claim` call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rollback_bot::db::rollbacks::{self as repo, Change, NewRollback, Rollback};
use rollback_bot::domain::machine::{Event, SignOff};
use rollback_bot::domain::{State, Step};
use rollback_bot::engine::{Engine, EngineConfig, StepOutcome, StepRunner};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const FINGERPRINT: &str = "fp";

fn request(n: usize) -> NewRollback {
    NewRollback {
        service: format!("svc-{n}"),
        cluster: "bench".into(),
        namespace: "production".into(),
        deployment: format!("svc-{n}"),
        requested_revision: None,
        incident: None,
        requested_by: "U_REQ".into(),
        channel_id: "C".into(),
        response_url: None,
        force: false,
        approval_ttl: Duration::from_secs(900),
    }
}

/// The plan step's result, as the engine records it.
fn plan_ready() -> Event {
    Event::PlanReady {
        fingerprint: FINGERPRINT.into(),
        needs_dba: false,
        needs_override: false,
    }
}

/// An on-call lead's approval of that plan.
fn lead_approval() -> Event {
    Event::Approve {
        by: "U_LEAD".into(),
        sign_off: SignOff::Lead,
        authorized: true,
        fingerprint: FINGERPRINT.into(),
        overrides_correlation: false,
    }
}

async fn transition(pool: &PgPool, id: i64, actor: &str, event: Event) {
    repo::apply(pool, id, &Change::by(actor, &event))
        .await
        .expect("transition");
}

/// Drives one rollback through its whole life by direct transitions, to `succeeded` (a
/// rollback left half-way would be picked up by the engine of the next benchmark).
async fn full_life(pool: &PgPool, n: usize) -> usize {
    let id = repo::insert(pool, &request(n)).await.expect("insert").id;
    let steps = State::PIPELINE.len();
    let events = [plan_ready(), lead_approval(), Event::StartExecution]
        .into_iter()
        .chain(std::iter::repeat_n(Event::StepSucceeded, steps));
    let mut count = 1;
    for event in events {
        transition(pool, id, "bench", event).await;
        count += 1;
    }
    count
}

async fn bench_transitions(pool: &PgPool, rollbacks: usize, concurrency: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (pool, next) = (pool.clone(), next.clone());
            tokio::spawn(async move {
                let mut done = 0;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= rollbacks {
                        return done;
                    }
                    done += full_life(&pool, n).await;
                }
            })
        })
        .collect();
    let mut transitions = 0;
    for t in tasks {
        transitions += t.await.expect("task");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "transitions: {transitions} (request + {} transitions per rollback, {rollbacks} rollbacks, \
         {concurrency} concurrent) in {secs:.2}s = {:.0} transitions/s",
        transitions / rollbacks - 1,
        transitions as f64 / secs
    );
}

/// Every step takes `delay`, like an executor waiting on a rollout; tracks peak concurrency.
struct SlowCluster {
    delay: Duration,
    running: AtomicUsize,
    peak: AtomicUsize,
    first_step_at: Mutex<Vec<(i64, Instant)>>,
}

#[async_trait]
impl StepRunner for SlowCluster {
    async fn run(&self, step: Step, rollback: &Rollback) -> StepOutcome {
        if step == Step::Execute {
            self.first_step_at
                .lock()
                .await
                .push((rollback.id, Instant::now()));
        }
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        StepOutcome::finished(Event::StepSucceeded, json!({}))
    }
}

fn config(workers: usize) -> EngineConfig {
    EngineConfig {
        worker_id: "bench".into(),
        workers,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_secs(1),
        ..EngineConfig::default()
    }
}

async fn approve_all(pool: &PgPool, from: usize, count: usize) -> Vec<(i64, Instant)> {
    let mut approved = vec![];
    for n in from..from + count {
        let id = repo::insert(pool, &request(n)).await.expect("insert").id;
        transition(pool, id, "bench", plan_ready()).await;
        transition(pool, id, "U_LEAD", lead_approval()).await;
        approved.push((id, Instant::now()));
    }
    approved
}

async fn wait_all_succeeded(pool: &PgPool, from_id: i64) {
    loop {
        let open: i64 = sqlx::query_scalar(
            "select count(*) from rollback where id >= $1 and state <> 'succeeded'",
        )
        .bind(from_id)
        .fetch_one(pool)
        .await
        .expect("count");
        if open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bench_concurrent_rollbacks(pool: &PgPool, rollbacks: usize, workers: usize, first: usize) {
    let cluster = Arc::new(SlowCluster {
        delay: Duration::from_millis(500),
        running: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        first_step_at: Mutex::new(vec![]),
    });
    // Everything is approved before the engine starts, so all rollbacks are due at once.
    let approved = approve_all(pool, first, rollbacks).await;
    let engine = Arc::new(Engine::new(pool.clone(), cluster.clone(), config(workers)));
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(engine.run(shutdown.clone()));
    wait_all_succeeded(pool, approved[0].0).await;
    let secs = started.elapsed().as_secs_f64();
    shutdown.cancel();
    running.await.expect("join").expect("engine");
    // The engine ran this batch and nothing else (no rollback left over by another part).
    assert_eq!(cluster.first_step_at.lock().await.len(), rollbacks);
    let steps = State::PIPELINE.len();
    let serial = rollbacks as f64 * steps as f64 * 0.5;
    println!(
        "concurrent rollbacks: {rollbacks} rollbacks, {} steps of 500 ms each, {workers} workers: \
         done in {secs:.2}s (serial would take {serial:.0}s), peak {} steps in flight, \
         {:.1} rollbacks/s",
        steps,
        cluster.peak.load(Ordering::SeqCst),
        rollbacks as f64 / secs
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn bench_claim_latency(pool: &PgPool, samples: usize) {
    let cluster = Arc::new(SlowCluster {
        delay: Duration::ZERO,
        running: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        first_step_at: Mutex::new(vec![]),
    });
    let engine = Arc::new(Engine::new(pool.clone(), cluster.clone(), config(4)));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(engine.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = vec![];
    for n in 0..samples {
        // One at a time against an idle engine: the time a new approval waits for a worker.
        let (id, approved_at) = approve_all(pool, 2_000_000 + n, 1).await[0];
        wait_all_succeeded(pool, id).await;
        let started = cluster
            .first_step_at
            .lock()
            .await
            .iter()
            .find(|(r, _)| *r == id)
            .map(|(_, at)| *at)
            .expect("step ran");
        latencies.push(started.saturating_duration_since(approved_at));
    }
    shutdown.cancel();
    running.await.expect("join").expect("engine");
    latencies.sort();
    println!(
        "approval -> first step (LISTEN/NOTIFY wake-up, claim, begin): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({samples} samples)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().expect("samples"))
    );

    // The claim query alone, with a backlog of due rows to skip through.
    approve_all(pool, 3_000_000, 200).await;
    let mut claims = vec![];
    for n in 0..200 {
        let t = Instant::now();
        let claim = repo::claim(
            pool,
            &format!("bench-{n}"),
            Duration::from_secs(60),
            repo::Claimable::Any,
        )
        .await
        .expect("claim");
        claims.push(t.elapsed());
        assert!(claim.is_some_and(|c| c.rollback.state == State::Approved));
    }
    claims.sort();
    println!(
        "repo::claim with 200 due rows: p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&claims, 0.5)),
        ms(percentile(&claims, 0.99))
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must name a scratch database; run scripts/bench-engine.sh");
    let pool = rollback_bot::db::connect(&url, 64)
        .await
        .expect("connect to DATABASE_URL");
    rollback_bot::db::migrate(&pool).await.expect("migrate");
    println!(
        "engine benchmark on {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // `scripts/bench-engine.sh --smoke` (in `make test`): a few of each, nothing measured.
    if std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1") {
        println!("smoke run: nothing here is a measurement");
        bench_transitions(&pool, 20, 4).await;
        bench_concurrent_rollbacks(&pool, 8, 4, 1_000_000).await;
        bench_claim_latency(&pool, 10).await;
        return;
    }
    bench_transitions(&pool, 2000, 32).await;
    bench_concurrent_rollbacks(&pool, 400, 64, 1_000_000).await;
    bench_concurrent_rollbacks(&pool, 1000, 250, 1_100_000).await;
    bench_claim_latency(&pool, 200).await;
}
