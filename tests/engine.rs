//! The rollback engine against a real PostgreSQL: concurrency, idempotency, leases,
//! crash recovery, expiry, retries and shutdown. Each test gets its own database
//! (`#[sqlx::test]`), created on the server named by `DATABASE_URL` (`make test` starts one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rollback_bot::db::rollbacks::{
    self as repo, Change, Claimable, NewRollback, Outcome, RepoError, Rollback,
};
use rollback_bot::domain::machine::{Event, Refusal, SignOff};
use rollback_bot::domain::{State, Step};
use rollback_bot::engine::{Engine, EngineConfig, StepOutcome, StepRunner};
use rollback_bot::support::readiness::Readiness;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const REQUESTER: &str = "U_REQUESTER";
const LEAD: &str = "U_LEAD";
const FINGERPRINT: &str = "fp-checkout-api-1";

fn request(deployment: &str) -> NewRollback {
    NewRollback {
        service: deployment.into(),
        cluster: "local".into(),
        namespace: "production".into(),
        deployment: deployment.into(),
        requested_revision: None,
        incident: Some("INC-1".into()),
        requested_by: REQUESTER.into(),
        channel_id: "C_INCIDENTS".into(),
        response_url: None,
        force: false,
        approval_ttl: Duration::from_secs(900),
    }
}

fn fast_config(worker: &str) -> EngineConfig {
    EngineConfig {
        worker_id: worker.into(),
        workers: 2,
        lease: Duration::from_millis(900),
        poll_interval: Duration::from_millis(50),
        max_retries: 3,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        shutdown_grace: Duration::from_millis(200),
        expiry_sweep: Duration::from_millis(100),
    }
}

fn approve_event(by: &str, fingerprint: &str) -> Event {
    Event::Approve {
        by: by.into(),
        sign_off: SignOff::Lead,
        authorized: true,
        fingerprint: fingerprint.into(),
        overrides_correlation: false,
    }
}

/// Takes a new request to `awaiting_approval` as the plan step would.
async fn plan_ready(pool: &PgPool, id: i64) {
    let event = Event::PlanReady {
        fingerprint: FINGERPRINT.into(),
        needs_dba: false,
        needs_override: false,
    };
    let plan = json!({ "target_revision": 2 });
    let change = Change {
        plan: Some(&plan),
        ..Change::by("worker:test", &event)
    };
    let applied = repo::apply(pool, id, &change).await.unwrap();
    assert_eq!(
        applied.outcome,
        Outcome::Applied {
            from: State::Requested,
            to: State::AwaitingApproval
        }
    );
}

async fn approved_rollback(pool: &PgPool, deployment: &str) -> i64 {
    let id = repo::insert(pool, &request(deployment)).await.unwrap().id;
    plan_ready(pool, id).await;
    let event = approve_event(LEAD, FINGERPRINT);
    let applied = repo::apply(pool, id, &Change::by(LEAD, &event))
        .await
        .unwrap();
    assert_eq!(applied.rollback.state, State::Approved);
    id
}

async fn wait_for_state(pool: &PgPool, id: i64, want: State) -> Rollback {
    for _ in 0..400 {
        let r = repo::get(pool, id).await.unwrap();
        if r.state == want {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "rollback #{id} never reached {want}; it is {}",
        repo::get(pool, id).await.unwrap().state
    );
}

fn actions(trail: &[repo::AuditRow]) -> Vec<(String, State, State)> {
    trail
        .iter()
        .map(|a| (a.action.clone(), a.from_state, a.to_state))
        .collect()
}

/// A stand-in for the Kubernetes executor with the same idempotency contract: `Execute`
/// patches a simulated Deployment only if it is not at the target yet. Records every call.
#[derive(Default)]
struct FakeCluster {
    calls: Mutex<Vec<(i64, Step)>>,
    patched: Mutex<HashMap<i64, u32>>,
    /// When set, `Execute` hangs after patching, like a worker that dies before recording.
    hang_after_patch: Mutex<bool>,
    patch_applied: Notify,
    step_delay: Duration,
    always_fail: bool,
}

impl FakeCluster {
    fn calls_for(&self, id: i64) -> Vec<Step> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(r, _)| *r == id)
            .map(|(_, s)| *s)
            .collect()
    }
    fn patches(&self, id: i64) -> u32 {
        self.patched.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
}

#[async_trait]
impl StepRunner for FakeCluster {
    async fn run(&self, step: Step, rollback: &Rollback) -> StepOutcome {
        self.calls.lock().unwrap().push((rollback.id, step));
        tokio::time::sleep(self.step_delay).await;
        if self.always_fail {
            return StepOutcome::Retry("apiserver unreachable".into());
        }
        match step {
            Step::Escalate => unreachable!("the engine's escalator runs Escalate"),
            Step::Execute => {
                let already = self.patches(rollback.id) > 0;
                if !already {
                    *self.patched.lock().unwrap().entry(rollback.id).or_default() += 1;
                    self.patch_applied.notify_waiters();
                    if *self.hang_after_patch.lock().unwrap() {
                        std::future::pending::<()>().await;
                    }
                }
                StepOutcome::finished(Event::StepSucceeded, json!({ "already_applied": already }))
            }
            Step::Verify => StepOutcome::finished(Event::StepSucceeded, json!({ "checks": [] })),
            Step::Validate => {
                StepOutcome::finished(Event::StepSucceeded, json!({ "skipped": "no Prometheus" }))
            }
            Step::Plan => StepOutcome::Finished {
                event: Event::PlanReady {
                    fingerprint: FINGERPRINT.into(),
                    needs_dba: false,
                    needs_override: false,
                },
                plan: Some(json!({ "target_revision": 1 })),
                detail: json!({}),
            },
            Step::Lock => StepOutcome::finished(
                Event::StepSucceeded,
                json!({ "lock": { "reason": "test" }, "already_set": false }),
            ),
            Step::Notify => {
                StepOutcome::finished(Event::StepSucceeded, json!({ "status": "sent" }))
            }
            Step::Ticket => {
                StepOutcome::finished(Event::StepSucceeded, json!({ "status": "opened" }))
            }
            Step::Begin => unreachable!("the engine runs Begin itself"),
        }
    }
}

#[sqlx::test]
async fn only_one_active_rollback_per_target_under_concurrent_requests(pool: PgPool) {
    let attempts = (0..24).map(|_| {
        let pool = pool.clone();
        tokio::spawn(async move { repo::insert(&pool, &request("checkout-api")).await })
    });
    let results = futures::future::join_all(attempts).await;
    let (ok, refused): (Vec<_>, Vec<_>) = results
        .into_iter()
        .map(|r| r.unwrap())
        .partition(|r| r.is_ok());
    assert_eq!(ok.len(), 1, "exactly one request is recorded");
    let winner = ok.into_iter().next().unwrap().unwrap();
    for r in refused {
        match r.unwrap_err() {
            RepoError::AlreadyActive {
                id,
                state,
                requested_by,
            } => {
                assert_eq!(id, winner.id);
                assert_eq!(state, State::Requested);
                assert_eq!(requested_by, REQUESTER);
            }
            other => panic!("expected AlreadyActive, got {other:?}"),
        }
    }
    let count: i64 = sqlx::query_scalar("select count(*) from rollback")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);

    // Another deployment is independent, and the target is free again once this one ends.
    repo::insert(&pool, &request("payments-api")).await.unwrap();
    let cancel = Event::Cancel {
        by: REQUESTER.into(),
        is_lead: false,
    };
    repo::apply(&pool, winner.id, &Change::by(REQUESTER, &cancel))
        .await
        .unwrap();
    repo::insert(&pool, &request("checkout-api")).await.unwrap();
}

#[sqlx::test]
async fn double_approve_yields_one_approval_and_one_audit_row(pool: PgPool) {
    let id = repo::insert(&pool, &request("checkout-api"))
        .await
        .unwrap()
        .id;
    plan_ready(&pool, id).await;

    // Same lead double-clicking, and a second lead clicking at the same moment.
    let clicks = [LEAD, LEAD, "U_OTHER_LEAD", LEAD].map(|by| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let event = approve_event(by, FINGERPRINT);
            repo::apply(&pool, id, &Change::by(by, &event)).await
        })
    });
    let outcomes: Vec<Outcome> = futures::future::join_all(clicks)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap().outcome)
        .collect();
    let applied = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Applied { .. }))
        .count();
    assert_eq!(applied, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Applied { .. } | Outcome::Duplicate))
    );

    let rollback = repo::get(&pool, id).await.unwrap();
    assert_eq!(rollback.state, State::Approved);
    let approvals: Vec<_> = repo::audit_trail(&pool, id)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "approve")
        .collect();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].outcome, "applied");
    assert_eq!(Some(approvals[0].actor.clone()), rollback.lead_approved_by);
}

#[sqlx::test]
async fn stale_plan_approval_is_refused_and_audited(pool: PgPool) {
    let id = repo::insert(&pool, &request("checkout-api"))
        .await
        .unwrap()
        .id;
    plan_ready(&pool, id).await;
    let event = approve_event(LEAD, "fp-of-an-older-card");
    let applied = repo::apply(&pool, id, &Change::by(LEAD, &event))
        .await
        .unwrap();
    assert_eq!(applied.outcome, Outcome::Refused(Refusal::StalePlan));
    assert_eq!(applied.rollback.state, State::AwaitingApproval);
    let trail = repo::audit_trail(&pool, id).await.unwrap();
    let last = trail.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str()),
        ("approve", "refused")
    );
    assert_eq!(last.actor, LEAD);
    assert!(
        last.detail["refusal"]
            .as_str()
            .unwrap()
            .contains("plan changed")
    );
}

#[sqlx::test]
async fn self_approval_and_strangers_are_refused_and_audited(pool: PgPool) {
    let id = repo::insert(&pool, &request("checkout-api"))
        .await
        .unwrap()
        .id;
    plan_ready(&pool, id).await;
    let own = approve_event(REQUESTER, FINGERPRINT);
    let applied = repo::apply(&pool, id, &Change::by(REQUESTER, &own))
        .await
        .unwrap();
    assert_eq!(applied.outcome, Outcome::Refused(Refusal::SelfApproval));
    let stranger = Event::Approve {
        by: "U_STRANGER".into(),
        sign_off: SignOff::Lead,
        authorized: false,
        fingerprint: FINGERPRINT.into(),
        overrides_correlation: false,
    };
    let applied = repo::apply(&pool, id, &Change::by("U_STRANGER", &stranger))
        .await
        .unwrap();
    assert!(matches!(
        applied.outcome,
        Outcome::Refused(Refusal::NotAuthorized(_))
    ));
    let refused: Vec<_> = repo::audit_trail(&pool, id)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.outcome == "refused")
        .map(|a| a.actor)
        .collect();
    assert_eq!(refused, vec![REQUESTER.to_string(), "U_STRANGER".into()]);
    assert_eq!(
        repo::get(&pool, id).await.unwrap().state,
        State::AwaitingApproval
    );
}

#[sqlx::test]
async fn approval_requests_expire(pool: PgPool) {
    let mut short = request("checkout-api");
    short.approval_ttl = Duration::from_millis(300);
    let clicked = repo::insert(&pool, &short).await.unwrap().id;
    plan_ready(&pool, clicked).await;
    short.deployment = "payments-api".into();
    let swept = repo::insert(&pool, &short).await.unwrap().id;
    plan_ready(&pool, swept).await;
    let fresh = repo::insert(&pool, &request("search-api"))
        .await
        .unwrap()
        .id;
    plan_ready(&pool, fresh).await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    // A click after the deadline expires the request instead of approving it.
    let event = approve_event(LEAD, FINGERPRINT);
    let applied = repo::apply(&pool, clicked, &Change::by(LEAD, &event))
        .await
        .unwrap();
    assert_eq!(
        applied.outcome,
        Outcome::Applied {
            from: State::AwaitingApproval,
            to: State::Expired
        }
    );
    assert_eq!(applied.rollback.lead_approved_by, None);

    // The sweeper expires the rest; the fresh one is untouched.
    let engine = Engine::new(
        pool.clone(),
        Arc::new(FakeCluster::default()),
        fast_config("sweeper"),
    );
    assert_eq!(engine.expire_due().await.unwrap(), 1);
    assert_eq!(repo::get(&pool, swept).await.unwrap().state, State::Expired);
    assert_eq!(
        repo::get(&pool, fresh).await.unwrap().state,
        State::AwaitingApproval
    );
    let trail = repo::audit_trail(&pool, swept).await.unwrap();
    let last = trail.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.action.as_str()),
        ("system", "expire")
    );
    assert_eq!(
        engine.expire_due().await.unwrap(),
        0,
        "expiry is idempotent"
    );
}

/// At half of the approval window the approvers are reminded, once per request however many
/// replicas sweep at the same time; fresh requests and decided ones are not.
#[sqlx::test]
async fn approvers_are_reminded_once_at_half_the_approval_window(pool: PgPool) {
    let mut short = request("checkout-api");
    short.approval_ttl = Duration::from_secs(2);
    let waiting = repo::insert(&pool, &short).await.unwrap().id;
    plan_ready(&pool, waiting).await;
    short.deployment = "payments-api".into();
    let decided = repo::insert(&pool, &short).await.unwrap().id;
    plan_ready(&pool, decided).await;
    let event = Event::Reject {
        by: LEAD.into(),
        is_lead: true,
        is_dba: false,
    };
    repo::apply(&pool, decided, &Change::by(LEAD, &event))
        .await
        .unwrap();
    let fresh = repo::insert(&pool, &request("search-api"))
        .await
        .unwrap()
        .id;
    plan_ready(&pool, fresh).await;

    let engines: Vec<Engine> = (0..4)
        .map(|i| {
            Engine::new(
                pool.clone(),
                Arc::new(FakeCluster::default()),
                fast_config(&format!("sweeper-{i}")),
            )
        })
        .collect();
    assert_eq!(engines[0].remind_due().await.unwrap(), 0, "not yet half");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let swept = futures::future::join_all(engines.iter().map(|e| e.remind_due())).await;
    let reminded: usize = swept.into_iter().map(Result::unwrap).sum();
    assert_eq!(reminded, 1, "one reminder across four racing sweeps");
    assert_eq!(engines[1].remind_due().await.unwrap(), 0, "and never again");

    let reminders = |trail: Vec<repo::AuditRow>| {
        trail
            .into_iter()
            .filter(|a| a.action == "remind")
            .collect::<Vec<_>>()
    };
    let rows = reminders(repo::audit_trail(&pool, waiting).await.unwrap());
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].actor.as_str(), rows[0].from_state, rows[0].to_state),
        ("system", State::AwaitingApproval, State::AwaitingApproval)
    );
    assert!(
        rows[0].detail["expires_at"].is_string(),
        "{}",
        rows[0].detail
    );
    for other in [decided, fresh] {
        assert!(reminders(repo::audit_trail(&pool, other).await.unwrap()).is_empty());
    }
    // A reminder changes nothing else: still awaiting the same decision.
    let r = repo::get(&pool, waiting).await.unwrap();
    assert_eq!(r.state, State::AwaitingApproval);
}

#[sqlx::test]
async fn a_rollback_runs_from_request_to_success_with_a_full_audit_trail(pool: PgPool) {
    let cluster = Arc::new(FakeCluster::default());
    let engine = Engine::new(pool.clone(), cluster.clone(), fast_config("w"));
    let id = repo::insert(&pool, &request("checkout-api"))
        .await
        .unwrap()
        .id;
    assert!(engine.run_once("w").await.unwrap());
    let planned = repo::get(&pool, id).await.unwrap();
    assert_eq!(planned.state, State::AwaitingApproval);
    assert_eq!(planned.plan, Some(json!({ "target_revision": 1 })));
    assert_eq!(
        planned.next_attempt_at, None,
        "nothing to do until approved"
    );
    assert!(!engine.run_once("w").await.unwrap());

    let event = approve_event(LEAD, FINGERPRINT);
    repo::apply(&pool, id, &Change::by(LEAD, &event))
        .await
        .unwrap();
    assert!(engine.run_once("w").await.unwrap());
    let done = repo::get(&pool, id).await.unwrap();
    assert_eq!(done.state, State::Succeeded);
    assert_eq!(done.lease_owner, None);
    assert_eq!(done.steps["execute"]["already_applied"], json!(false));
    assert_eq!(
        cluster.calls_for(id),
        vec![
            Step::Plan,
            Step::Execute,
            Step::Verify,
            Step::Validate,
            Step::Lock,
            Step::Notify,
            Step::Ticket
        ]
    );
    use State::*;
    assert_eq!(
        actions(&repo::audit_trail(&pool, id).await.unwrap()),
        vec![
            ("request".into(), Requested, Requested),
            ("plan_ready".into(), Requested, AwaitingApproval),
            ("approve".into(), AwaitingApproval, Approved),
            ("start_execution".into(), Approved, Executing),
            ("step_succeeded".into(), Executing, Verifying),
            ("step_succeeded".into(), Verifying, Validating),
            ("step_succeeded".into(), Validating, Locking),
            ("step_succeeded".into(), Locking, Notifying),
            ("step_succeeded".into(), Notifying, Ticketing),
            ("step_succeeded".into(), Ticketing, Succeeded),
        ]
    );
}

#[sqlx::test]
async fn two_racing_workers_never_both_run_a_step(pool: PgPool) {
    let cluster = Arc::new(FakeCluster {
        step_delay: Duration::from_millis(5),
        ..FakeCluster::default()
    });
    let mut ids = vec![];
    for n in 0..12 {
        ids.push(approved_rollback(&pool, &format!("svc-{n}")).await);
    }
    let shutdown = CancellationToken::new();
    let engines: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|w| {
            let engine = Arc::new(Engine::new(pool.clone(), cluster.clone(), fast_config(w)));
            tokio::spawn(engine.run(shutdown.clone()))
        })
        .collect();
    for id in &ids {
        wait_for_state(&pool, *id, State::Succeeded).await;
    }
    shutdown.cancel();
    for e in engines {
        e.await.unwrap().unwrap();
    }
    for id in ids {
        assert_eq!(
            cluster.calls_for(id),
            vec![
                Step::Execute,
                Step::Verify,
                Step::Validate,
                Step::Lock,
                Step::Notify,
                Step::Ticket
            ]
        );
        assert_eq!(cluster.patches(id), 1);
        let started = repo::audit_trail(&pool, id)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.action == "start_execution")
            .count();
        assert_eq!(started, 1);
    }
}

#[sqlx::test]
async fn a_killed_worker_is_resumed_after_its_lease_expires_and_acts_once(pool: PgPool) {
    let cluster = Arc::new(FakeCluster::default());
    *cluster.hang_after_patch.lock().unwrap() = true;
    let id = approved_rollback(&pool, "checkout-api").await;

    // Worker A patches, then "dies" before it can record the result: its task is dropped
    // with no cleanup, leaving its lease behind.
    let patched = cluster.patch_applied.notified();
    let doomed = Engine::new(pool.clone(), cluster.clone(), fast_config("doomed"));
    let task = tokio::spawn(async move { doomed.run_once("doomed").await });
    patched.await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let orphan = repo::get(&pool, id).await.unwrap();
    assert_eq!(orphan.state, State::Executing);
    assert_eq!(orphan.lease_owner.as_deref(), Some("doomed"));
    *cluster.hang_after_patch.lock().unwrap() = false;

    // Worker B cannot take the live lease, then resumes once it has expired.
    let survivor = Arc::new(Engine::new(
        pool.clone(),
        cluster.clone(),
        fast_config("survivor"),
    ));
    assert!(!survivor.run_once("survivor").await.unwrap());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(survivor.clone().run(shutdown.clone()));
    let done = wait_for_state(&pool, id, State::Succeeded).await;
    shutdown.cancel();
    running.await.unwrap().unwrap();

    assert_eq!(
        cluster.patches(id),
        1,
        "the rollback patch was applied once"
    );
    assert_eq!(done.steps["execute"]["already_applied"], json!(true));
    let trail = repo::audit_trail(&pool, id).await.unwrap();
    use State::*;
    assert_eq!(
        actions(&trail)[3..],
        [
            ("start_execution".into(), Approved, Executing),
            ("step_succeeded".into(), Executing, Verifying),
            ("step_succeeded".into(), Verifying, Validating),
            ("step_succeeded".into(), Validating, Locking),
            ("step_succeeded".into(), Locking, Notifying),
            ("step_succeeded".into(), Notifying, Ticketing),
            ("step_succeeded".into(), Ticketing, Succeeded),
        ]
    );
    assert!(trail[4].actor.starts_with("worker:survivor/"));
}

#[sqlx::test]
async fn a_worker_whose_lease_was_taken_over_cannot_write(pool: PgPool) {
    let id = approved_rollback(&pool, "checkout-api").await;
    let lease = Duration::from_millis(200);
    let first = repo::claim(&pool, "slow", lease, Claimable::Any)
        .await
        .unwrap()
        .unwrap();
    assert!(
        repo::claim(&pool, "other", lease, Claimable::Any)
            .await
            .unwrap()
            .is_none()
    );
    tokio::time::sleep(lease + Duration::from_millis(50)).await;
    let second = repo::claim(&pool, "other", lease, Claimable::Any)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.took_over_from.as_deref(), Some("slow"));
    assert!(second.rollback.attempt > first.rollback.attempt);

    let event = Event::StartExecution;
    let stale = Change {
        fence: Some(first.rollback.attempt),
        ..Change::by("worker:slow", &event)
    };
    assert!(matches!(
        repo::apply(&pool, id, &stale).await,
        Err(RepoError::LostLease(_))
    ));
    assert!(
        !repo::heartbeat(&pool, id, first.rollback.attempt, lease)
            .await
            .unwrap()
    );
    let current = Change {
        fence: Some(second.rollback.attempt),
        ..Change::by("worker:other", &event)
    };
    let applied = repo::apply(&pool, id, &current).await.unwrap();
    assert_eq!(applied.rollback.state, State::Executing);
}

#[sqlx::test]
async fn transient_failures_are_retried_then_the_rollback_fails_and_is_escalated(pool: PgPool) {
    let cluster = Arc::new(FakeCluster {
        always_fail: true,
        ..FakeCluster::default()
    });
    let id = approved_rollback(&pool, "checkout-api").await;
    let config = fast_config("w");
    let max_retries = config.max_retries;
    let engine = Arc::new(Engine::new(pool.clone(), cluster.clone(), config));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(engine.run(shutdown.clone()));
    let failed = wait_for_state(&pool, id, State::Escalated).await;
    shutdown.cancel();
    running.await.unwrap().unwrap();

    assert_eq!(
        cluster.calls_for(id).len(),
        max_retries as usize + 1,
        "one try plus {max_retries} retries"
    );
    let error = failed.last_error.unwrap();
    assert!(error.contains("execute failed 4 times"), "{error}");
    assert!(error.contains("apiserver unreachable"), "{error}");
    let trail = repo::audit_trail(&pool, id).await.unwrap();
    let last_two: Vec<_> = trail[trail.len() - 2..]
        .iter()
        .map(|a| (a.action.as_str(), a.from_state, a.to_state))
        .collect();
    assert_eq!(
        last_two,
        [
            ("step_failed", State::Executing, State::Failed),
            // No escalator configured: escalated with the reason, nobody paged.
            ("escalate", State::Failed, State::Escalated),
        ]
    );
    assert_eq!(
        failed.steps["escalate"]["pagerduty"]["status"],
        "not_configured"
    );
    assert_eq!(failed.lease_owner, None, "nothing left to do");
    assert_eq!(failed.next_attempt_at, None);
}

#[sqlx::test]
async fn shutdown_releases_a_long_step_for_another_worker(pool: PgPool) {
    let slow = Arc::new(FakeCluster {
        step_delay: Duration::from_secs(3600),
        ..FakeCluster::default()
    });
    let id = approved_rollback(&pool, "checkout-api").await;
    let engine = Arc::new(Engine::new(pool.clone(), slow.clone(), fast_config("old")));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(engine.run(shutdown.clone()));
    wait_for_state(&pool, id, State::Executing).await;
    while slow.calls_for(id).is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("engine stops within the shutdown grace")
        .unwrap()
        .unwrap();
    let released = repo::get(&pool, id).await.unwrap();
    assert_eq!(released.lease_owner, None, "the lease was handed back");
    assert_eq!(released.state, State::Executing);

    // A new worker picks it up at once, without waiting for a lease to expire.
    let fresh = Engine::new(
        pool.clone(),
        Arc::new(FakeCluster::default()),
        fast_config("new"),
    );
    assert!(fresh.run_once("new").await.unwrap());
    assert_eq!(repo::get(&pool, id).await.unwrap().state, State::Succeeded);
}

#[sqlx::test]
async fn cancel_before_execution_stops_the_worker(pool: PgPool) {
    let id = approved_rollback(&pool, "checkout-api").await;
    let claim = repo::claim(&pool, "w", Duration::from_secs(30), Claimable::Any)
        .await
        .unwrap()
        .unwrap();
    let cancel = Event::Cancel {
        by: REQUESTER.into(),
        is_lead: false,
    };
    let cancelled = repo::apply(&pool, id, &Change::by(REQUESTER, &cancel))
        .await
        .unwrap();
    assert_eq!(cancelled.rollback.state, State::Cancelled);
    assert_eq!(cancelled.rollback.next_attempt_at, None);

    let start = Event::StartExecution;
    let late = Change {
        fence: Some(claim.rollback.attempt),
        ..Change::by("worker:w", &start)
    };
    // The cancel cleared the lease: the worker's write is fenced off.
    assert!(matches!(
        repo::apply(&pool, id, &late).await,
        Err(RepoError::LostLease(_))
    ));
    assert_eq!(repo::get(&pool, id).await.unwrap().state, State::Cancelled);
}

/// A lead's Escalate now (like Abort, Extend or Accept) takes the lease from the worker
/// running the step, and fences it off: the verdict that worker brings back later (here a
/// verification failure, which on a failed rollback would otherwise pass for the
/// escalation) is refused, so the escalation step still runs and pages.
#[sqlx::test]
async fn a_leads_click_fences_off_the_worker_running_the_step(pool: PgPool) {
    let id = approved_rollback(&pool, "checkout-api").await;
    // A worker claims it and takes it to verifying, keeping its lease as it goes.
    let claimed = repo::claim(&pool, "w", Duration::from_secs(30), Claimable::Any)
        .await
        .unwrap()
        .expect("claimable")
        .rollback;
    for event in [Event::StartExecution, Event::StepSucceeded] {
        let change = Change {
            fence: Some(claimed.attempt),
            ..Change::by("worker:w", &event)
        };
        repo::apply(&pool, id, &change).await.unwrap();
    }
    let verifying = repo::get(&pool, id).await.unwrap();
    assert_eq!(verifying.state, State::Verifying);
    assert_eq!(verifying.lease_owner.as_deref(), Some("w"));

    let escalate = Event::EscalateNow {
        by: LEAD.into(),
        is_lead: true,
        reason: "an on-call lead asked to escalate at once: a data-integrity concern".into(),
    };
    let applied = repo::apply(&pool, id, &Change::by(LEAD, &escalate))
        .await
        .unwrap();
    assert_eq!(applied.rollback.state, State::Failed);
    assert_eq!(applied.rollback.lease_owner, None, "the lease is taken");
    assert!(
        applied.rollback.next_attempt_at.is_some(),
        "escalation is due"
    );

    let stale = Event::StepFailed {
        reason: "verification timed out".into(),
    };
    let late = Change {
        fence: Some(verifying.attempt),
        ..Change::by("worker:w", &stale)
    };
    assert!(matches!(
        repo::apply(&pool, id, &late).await,
        Err(RepoError::LostLease(_))
    ));
    let after = repo::get(&pool, id).await.unwrap();
    assert_eq!(after.state, State::Failed, "the escalation step still runs");
    assert!(
        !repo::audit_trail(&pool, id)
            .await
            .unwrap()
            .iter()
            .any(|a| a.action == "step_failed"),
        "the stale verdict left no trace"
    );
}

#[sqlx::test]
async fn the_audit_trail_is_append_only(pool: PgPool) {
    let id = repo::insert(&pool, &request("checkout-api"))
        .await
        .unwrap()
        .id;
    let update = sqlx::query("update rollback_audit set actor = 'mallory' where rollback_id = $1")
        .bind(id)
        .execute(&pool)
        .await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("delete from rollback_audit where rollback_id = $1")
        .bind(id)
        .execute(&pool)
        .await;
    assert!(delete.unwrap_err().to_string().contains("append-only"));
    assert_eq!(repo::audit_trail(&pool, id).await.unwrap().len(), 1);
}

/// A step that panics is its rollback's problem only: it is retried like a transient
/// failure, fails with the panic message in the audit trail once the retries are spent, and
/// the same single worker goes on to carry another rollback through; `/readyz` stays ready.
#[sqlx::test]
async fn a_panicking_step_fails_its_rollback_and_the_worker_goes_on(pool: PgPool) {
    struct Panicky(FakeCluster);
    #[async_trait]
    impl StepRunner for Panicky {
        async fn run(&self, step: Step, rollback: &Rollback) -> StepOutcome {
            if step == Step::Verify && rollback.deployment == "panicky" {
                self.0.calls.lock().unwrap().push((rollback.id, step));
                panic!("index out of bounds: the len is 0 but the index is 0");
            }
            self.0.run(step, rollback).await
        }
    }
    let runner = Arc::new(Panicky(FakeCluster::default()));
    let bad = approved_rollback(&pool, "panicky").await;
    let good = approved_rollback(&pool, "checkout-api").await;
    let config = EngineConfig {
        workers: 1,
        ..fast_config("w")
    };
    let max_retries = config.max_retries;
    let readiness = Arc::new(Readiness::default());
    let engine = Arc::new(
        Engine::new(pool.clone(), runner.clone(), config).with_readiness(readiness.clone()),
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(engine.run(shutdown.clone()));
    let failed = wait_for_state(&pool, bad, State::Escalated).await;
    let done = wait_for_state(&pool, good, State::Succeeded).await;
    shutdown.cancel();
    running.await.unwrap().unwrap();

    let verifies = runner
        .0
        .calls_for(bad)
        .into_iter()
        .filter(|s| *s == Step::Verify)
        .count();
    assert_eq!(
        verifies,
        max_retries as usize + 1,
        "one try plus the retries"
    );
    let error = failed.last_error.unwrap();
    assert!(
        error.contains("verify failed 4 times")
            && error.contains("the verify step panicked: index out of bounds"),
        "{error}"
    );
    let trail = repo::audit_trail(&pool, bad).await.unwrap();
    assert!(
        trail.iter().any(|a| a.action == "step_failed"
            && a.detail.to_string().contains("the verify step panicked")),
        "{trail:?}"
    );
    assert_eq!(done.state, State::Succeeded);
    assert_eq!(readiness.problem(), None, "no worker died");
}

/// Steps that finish at once, except validation: three rounds two seconds apart, each run of
/// the step one round that hands its round number on through the row.
#[derive(Default)]
struct SlowValidation {
    /// (rollback, the round number the step found in the row) for every validation round.
    rounds: Mutex<Vec<(i64, u64)>>,
    /// For every Execute: how many rollbacks were validating at that moment.
    executed_while_validating: Mutex<HashMap<i64, usize>>,
    validating: Mutex<std::collections::HashSet<i64>>,
}

#[async_trait]
impl StepRunner for SlowValidation {
    async fn run(&self, step: Step, rollback: &Rollback) -> StepOutcome {
        match step {
            Step::Validate => {
                let round = rollback.steps["validate_progress"]["round"]
                    .as_u64()
                    .unwrap_or(0);
                self.rounds.lock().unwrap().push((rollback.id, round));
                if round < 2 {
                    self.validating.lock().unwrap().insert(rollback.id);
                    StepOutcome::Wait {
                        after: Duration::from_secs(2),
                        progress: json!({ "round": round + 1 }),
                    }
                } else {
                    self.validating.lock().unwrap().remove(&rollback.id);
                    StepOutcome::finished(Event::StepSucceeded, json!({ "rounds": round + 1 }))
                }
            }
            Step::Execute => {
                let validating = self.validating.lock().unwrap().len();
                self.executed_while_validating
                    .lock()
                    .unwrap()
                    .insert(rollback.id, validating);
                StepOutcome::finished(Event::StepSucceeded, json!({}))
            }
            _ => StepOutcome::finished(Event::StepSucceeded, json!({})),
        }
    }
}

/// A validation waiting for its next round holds no worker: with ONE worker, ten rollbacks
/// validating at once (each for 4 s) do not delay an eleventh approved rollback, whose patch
/// runs while all ten still wait. Each round finds the previous round's progress in the
/// row, the waiting rollbacks hold no lease, and every validation ends after its three
/// rounds, once.
#[sqlx::test]
async fn validations_waiting_for_their_next_round_hold_no_worker(pool: PgPool) {
    let runner = Arc::new(SlowValidation::default());
    let config = EngineConfig {
        workers: 1,
        ..fast_config("solo")
    };
    let engine = Arc::new(Engine::new(pool.clone(), runner.clone(), config));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(engine.run(shutdown.clone()));

    let mut waiting = vec![];
    for n in 0..10 {
        waiting.push(approved_rollback(&pool, &format!("wide-{n}")).await);
    }
    for &id in &waiting {
        wait_for_state(&pool, id, State::Validating).await;
    }
    while runner.validating.lock().unwrap().len() < waiting.len() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for &id in &waiting {
        let r = repo::get(&pool, id).await.unwrap();
        assert_eq!(r.lease_owner, None, "#{id} waits without a lease");
        assert!(r.next_attempt_at.is_some(), "#{id} is due again later");
    }

    let urgent = approved_rollback(&pool, "urgent").await;
    wait_for_state(&pool, urgent, State::Validating).await;
    assert_eq!(
        runner.executed_while_validating.lock().unwrap()[&urgent],
        waiting.len(),
        "the eleventh rollback was patched while all ten were still validating"
    );

    for &id in waiting.iter().chain([&urgent]) {
        let done = wait_for_state(&pool, id, State::Succeeded).await;
        assert_eq!(done.steps["validate"]["rounds"], 3);
        let rounds: Vec<u64> = runner
            .rounds
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| *r == id)
            .map(|(_, round)| *round)
            .collect();
        assert_eq!(
            rounds,
            [0, 1, 2],
            "#{id}: each round saw the last one's progress"
        );
        let validated = repo::audit_trail(&pool, id)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.from_state == State::Validating && a.to_state == State::Locking)
            .count();
        assert_eq!(validated, 1, "#{id}: one verdict");
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// Moves an approved rollback into `validating` (due now, no lease) by its transitions.
async fn validating_rollback(pool: &PgPool, deployment: &str) -> i64 {
    let id = approved_rollback(pool, deployment).await;
    for event in [
        Event::StartExecution,
        Event::StepSucceeded,
        Event::StepSucceeded,
    ] {
        repo::apply(pool, id, &Change::by("worker:test", &event))
            .await
            .unwrap();
    }
    assert_eq!(repo::get(pool, id).await.unwrap().state, State::Validating);
    id
}

/// A step that acts is claimed before validation rounds that have been due for longer, and
/// the worker a replica keeps for acting steps never takes a round: an approval is acted on
/// at once however many rollbacks validate.
#[sqlx::test]
async fn acting_steps_are_claimed_before_validation_rounds(pool: PgPool) {
    let lease = Duration::from_secs(30);
    let mut rounds = vec![];
    for n in 0..3 {
        rounds.push(validating_rollback(&pool, &format!("wide-{n}")).await);
    }
    let urgent = approved_rollback(&pool, "urgent").await;

    let reserved = repo::claim(&pool, "reserved", lease, Claimable::NotValidating)
        .await
        .unwrap()
        .expect("the approved rollback");
    assert_eq!(reserved.rollback.id, urgent);
    assert!(
        repo::claim(&pool, "reserved", lease, Claimable::NotValidating)
            .await
            .unwrap()
            .is_none(),
        "the reserved worker takes no validation round"
    );
    let mut claimed = vec![];
    while let Some(c) = repo::claim(&pool, "any", lease, Claimable::Any)
        .await
        .unwrap()
    {
        claimed.push(c.rollback.id);
    }
    assert_eq!(claimed, rounds, "every round, the longest due first");

    // With nothing to act on, an approval that arrives later still comes first.
    let later_rounds = [
        validating_rollback(&pool, "wide-3").await,
        validating_rollback(&pool, "wide-4").await,
    ];
    let second = approved_rollback(&pool, "second").await;
    let first_claim = repo::claim(&pool, "any", lease, Claimable::Any)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first_claim.rollback.id, second);
    assert!(!later_rounds.contains(&first_claim.rollback.id));
}
