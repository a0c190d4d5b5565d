//! Workers that move rollbacks through their steps.
//!
//! A worker claims a due rollback under a lease (see [`repo::claim`]), runs the step its
//! state calls for through a [`StepRunner`] while a heartbeat keeps the lease alive, and
//! applies the result as a fenced transition. It keeps the lease across consecutive steps,
//! so an approved rollback runs to the end without waiting for another claim. No database
//! transaction is open while a step runs. A worker that dies leaves a lease that expires;
//! any worker then resumes the rollback from its persisted state, which is why every step
//! must be safe to run again.

pub mod catalog;
pub mod retention;

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::db::rollbacks::{self as repo, Change, Claim, Claimable, Outcome, RepoError, Rollback};
use crate::domain::machine::Event;
use crate::domain::{State, Step};
use crate::support::readiness::Readiness;
use crate::support::telemetry::metrics;

/// The Postgres channel the `rollback_ready` trigger notifies.
const READY_CHANNEL: &str = "rollback_ready";

/// How the engine's workers behave. Defaults suit production; tests shorten the times.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This process's worker name prefix, recorded as the lease owner and audit actor.
    pub worker_id: String,
    /// Concurrent worker loops in this process.
    pub workers: usize,
    /// How long a claim stays valid without a heartbeat.
    pub lease: Duration,
    /// Fallback polling when no notification arrives.
    pub poll_interval: Duration,
    /// Transient failures of one step tolerated before the rollback fails.
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// On shutdown, how long a running step may take to finish before its lease is released.
    pub shutdown_grace: Duration,
    /// How often overdue approval requests are expired.
    pub expiry_sweep: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            worker_id: default_worker_id(),
            workers: 4,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            max_retries: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            expiry_sweep: Duration::from_secs(5),
        }
    }
}

/// `<hostname>-<random>`: unique per process, readable in the audit trail.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "rollback-bot".into());
    format!("{host}-{:08x}", rand::random::<u32>())
}

/// What a step ended with.
#[derive(Debug, Clone)]
pub enum StepOutcome {
    /// The step has a result: apply `event`, storing `plan` (for the plan step) and `detail`
    /// (evidence shown on the card and kept in the audit trail).
    Finished {
        event: Event,
        plan: Option<Value>,
        detail: Value,
    },
    /// A transient failure (API unreachable, conflict): try again after a backoff.
    Retry(String),
    /// Not done, and nothing to do before `after` (validation between its rounds): the
    /// worker lets go of the rollback, which keeps `progress` in its row
    /// (`steps.<step>_progress`, read back by the step's next run) and is claimed again when
    /// due. A waiting rollback holds no worker, so a few workers serve any number of them.
    Wait { after: Duration, progress: Value },
}

impl StepOutcome {
    pub fn finished(event: Event, detail: Value) -> Self {
        StepOutcome::Finished {
            event,
            plan: None,
            detail,
        }
    }
}

/// Runs the steps that talk to the outside world (Kubernetes, Slack). Implementations must
/// be idempotent: a step may run again after a crash, and must then find its own earlier
/// effect and report it instead of repeating it.
#[async_trait]
pub trait StepRunner: Send + Sync + 'static {
    async fn run(&self, step: Step, rollback: &Rollback) -> StepOutcome;
}

/// Runs the `escalate` step of a failed rollback (src/steps/escalate.rs): tells the people who
/// can help and finishes with [`Event::Escalate`]. Like every step it may run again after a
/// crash and must not page twice.
#[async_trait]
pub trait Escalator: Send + Sync + 'static {
    async fn escalate(&self, rollback: &Rollback) -> StepOutcome;
}

/// Receives live progress of a running step ("2 of 3 updated replicas are available"),
/// e.g. to show it on the Slack card. Best effort: it must not fail or block the step.
#[async_trait]
pub trait ProgressSink: Send + Sync + 'static {
    async fn progress(&self, rollback: &Rollback, step: Step, message: &str);
}

/// Told about every transition the engine applies, e.g. to re-render the Slack card.
#[async_trait]
pub trait Observer: Send + Sync + 'static {
    async fn changed(&self, rollback: &Rollback);
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("worker task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub struct Engine {
    pool: PgPool,
    runner: Arc<dyn StepRunner>,
    escalator: Option<Arc<dyn Escalator>>,
    observer: Option<Arc<dyn Observer>>,
    config: EngineConfig,
    /// Wakes an idle worker of this process: a notification, or a waiting rollback due.
    wake: Arc<Notify>,
    /// Told when workers die, so `/readyz` stops saying the replica is fine.
    readiness: Option<Arc<Readiness>>,
}

impl Engine {
    pub fn new(pool: PgPool, runner: Arc<dyn StepRunner>, config: EngineConfig) -> Self {
        Engine {
            pool,
            runner,
            readiness: None,
            escalator: None,
            observer: None,
            config,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Who runs the `escalate` step. Without one (tests, tools) a failed rollback is
    /// escalated with its reason only: nobody is mentioned or paged.
    pub fn with_escalator(mut self, escalator: Arc<dyn Escalator>) -> Self {
        self.escalator = Some(escalator);
        self
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Reports dead workers to `/readyz` (`serve` wires it; tests may leave it out).
    pub fn with_readiness(mut self, readiness: Arc<Readiness>) -> Self {
        self.readiness = Some(readiness);
        self
    }

    /// Runs the workers, the notification listener and the expiry sweeper until `shutdown`
    /// is cancelled, then lets running steps finish (or releases them) and returns.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), EngineError> {
        let mut tasks = tokio::task::JoinSet::new();
        let workers = self.config.workers.max(1);
        for n in 0..workers {
            let (engine, shutdown) = (self.clone(), shutdown.clone());
            let name = format!("{}/{n}", self.config.worker_id);
            // One worker never takes a validation round (unless it is the only one): an
            // approval arriving while every other worker is busy with rounds is acted on at
            // once rather than after them.
            let claimable = if n == 0 && workers > 1 {
                Claimable::NotValidating
            } else {
                Claimable::Any
            };
            tasks.spawn(async move { engine.worker_loop(name, claimable, shutdown).await });
        }
        let (engine, stop) = (self.clone(), shutdown.clone());
        tasks.spawn(async move { engine.listen(stop).await });
        let (engine, stop) = (self.clone(), shutdown.clone());
        tasks.spawn(async move { engine.sweep_expired(stop).await });
        // A step's panic is caught per rollback (run_step); one that escapes the engine's own
        // code ends only its task: the others go on, and `/readyz` says the replica is short.
        let mut died = 0;
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(()) => {}
                Err(e) if e.is_panic() && !shutdown.is_cancelled() => {
                    died += 1;
                    let reason = format!(
                        "{died} engine task(s) of {} died: {}",
                        workers + 2,
                        panic_message(e.into_panic().as_ref())
                    );
                    error!("{reason}");
                    if let Some(readiness) = &self.readiness {
                        readiness.workers_down(reason);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        info!("engine stopped");
        Ok(())
    }

    /// Claims one due rollback, if any, and drives it as far as it goes. Returns whether a
    /// rollback was claimed. Lets tests and tools drive the engine step by step.
    pub async fn run_once(&self, worker: &str) -> Result<bool, EngineError> {
        match repo::claim(&self.pool, worker, self.config.lease, Claimable::Any).await? {
            Some(claim) => {
                self.drive(worker, claim, &CancellationToken::new()).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn worker_loop(&self, worker: String, claimable: Claimable, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            // Register interest before looking, so a notification between the claim and the
            // wait is not lost.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match repo::claim(&self.pool, &worker, self.config.lease, claimable).await {
                Ok(Some(claim)) => {
                    if let Err(e) = self.drive(&worker, claim, &shutdown).await {
                        error!(error = %e, "worker step failed");
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep(self.config.poll_interval) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(e) => {
                    error!(error = %e, "claiming a rollback failed");
                    tokio::select! {
                        () = tokio::time::sleep(self.config.poll_interval) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    async fn drive(
        &self,
        worker: &str,
        claim: Claim,
        shutdown: &CancellationToken,
    ) -> Result<(), EngineError> {
        let span = info_span!("rollback", rollback_id = claim.rollback.id, worker);
        async {
            if let Some(previous) = &claim.took_over_from {
                metrics().lease_takeover();
                warn!(previous_owner = %previous, state = %claim.rollback.state,
                      "took over an expired lease; resuming");
            }
            let mut rollback = claim.rollback;
            let fence = rollback.attempt;
            let actor = format!("worker:{worker}");
            while let Some(step) = rollback.state.step() {
                debug!(step = step.as_str(), "running step");
                let started = std::time::Instant::now();
                let Some(outcome) = self.run_step(step, &rollback, shutdown).await? else {
                    return Ok(());
                };
                if !matches!(outcome, StepOutcome::Wait { .. }) {
                    metrics().step_duration(step.as_str(), started.elapsed());
                }
                match self.record(&rollback, step, outcome, &actor).await? {
                    Some(next) => rollback = next,
                    None => return Ok(()),
                }
                if shutdown.is_cancelled() && rollback.state.step().is_some() {
                    repo::release(&self.pool, rollback.id, fence).await?;
                    return Ok(());
                }
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Runs one step while heart-beating the lease. `None` means the step was abandoned:
    /// the lease was lost, or shutdown outlasted the grace period (the lease is then released
    /// so another worker resumes at once).
    async fn run_step(
        &self,
        step: Step,
        rollback: &Rollback,
        shutdown: &CancellationToken,
    ) -> Result<Option<StepOutcome>, EngineError> {
        if step == Step::Begin {
            return Ok(Some(StepOutcome::finished(
                Event::StartExecution,
                json!({}),
            )));
        }
        // Renew first, so the step starts with a whole lease whose start this process knows.
        let Some(renewed) = self.renew(rollback.id, rollback.attempt).await else {
            warn!(
                step = step.as_str(),
                "cannot renew the lease; not starting the step"
            );
            return Ok(None);
        };
        let run = match (step, &self.escalator) {
            (Step::Escalate, Some(escalator)) => escalator.escalate(rollback),
            (Step::Escalate, None) => Box::pin(std::future::ready(StepOutcome::finished(
                Event::Escalate,
                json!({ "reason": rollback.last_error, "pagerduty": { "status": "not_configured" } }),
            ))),
            _ => self.runner.run(step, rollback),
        };
        // A panicking step is this rollback's failure, retried like a transient one and
        // failed with the panic in the audit trail once the retries are spent; it never
        // takes the worker (and every other rollback) with it.
        let run = AssertUnwindSafe(run).catch_unwind().map(|outcome| {
            outcome.unwrap_or_else(|panic| {
                let message = panic_message(panic.as_ref());
                error!(step = step.as_str(), panic = %message, "step panicked");
                StepOutcome::Retry(format!("the {} step panicked: {message}", step.as_str()))
            })
        });
        tokio::pin!(run);
        let heartbeat = self.keep_lease(rollback.id, rollback.attempt, renewed);
        tokio::pin!(heartbeat);
        let outcome = tokio::select! {
            outcome = &mut run => Some(outcome),
            () = &mut heartbeat => None,
            () = shutdown.cancelled() => tokio::select! {
                outcome = &mut run => Some(outcome),
                () = &mut heartbeat => None,
                () = tokio::time::sleep(self.config.shutdown_grace) => {
                    info!(step = step.as_str(), "shutting down mid-step; releasing the lease");
                    repo::release(&self.pool, rollback.id, rollback.attempt).await?;
                    return Ok(None);
                }
            },
        };
        if outcome.is_none() {
            metrics().lease_lost();
            warn!(
                step = step.as_str(),
                "lease lost or no longer renewable mid-step; abandoned the step"
            );
        }
        Ok(outcome)
    }

    /// Renews the lease once. Returns when the renewal was sent (the lease runs from the
    /// database's clock, which is no earlier), or `None` if the lease is not this worker's
    /// any more or the database did not answer within a third of the lease.
    async fn renew(&self, id: i64, fence: i64) -> Option<Instant> {
        let sent = Instant::now();
        let renewal = repo::heartbeat(&self.pool, id, fence, self.config.lease);
        match tokio::time::timeout(self.config.lease / 3, renewal).await {
            Ok(Ok(true)) => Some(sent),
            Ok(Ok(false)) => None,
            Ok(Err(e)) => {
                warn!(error = %e, "heartbeat failed");
                None
            }
            Err(_) => {
                warn!("heartbeat timed out");
                None
            }
        }
    }

    /// Heart-beats every lease/3 until the lease is lost or can no longer be proven: a
    /// replica cut off from Postgres must stop acting before its lease lapses and another
    /// replica takes the rollback over. It gives up once two thirds of the lease have passed
    /// since the last successful renewal, leaving a third as margin for the step to be
    /// dropped. Never returns while the lease is provably held.
    async fn keep_lease(&self, id: i64, fence: i64, mut renewed: Instant) {
        let every = self.config.lease / 3;
        let give_up_after = self.config.lease * 2 / 3;
        loop {
            let deadline = renewed + give_up_after;
            let next = (Instant::now() + every).min(deadline);
            tokio::time::sleep_until(next.into()).await;
            if Instant::now() >= deadline {
                return;
            }
            let renewal = tokio::time::timeout_at(
                deadline.into(),
                repo::heartbeat(&self.pool, id, fence, self.config.lease),
            );
            let sent = Instant::now();
            match renewal.await {
                Ok(Ok(true)) => renewed = sent,
                Ok(Ok(false)) => return,
                // Not lost yet: the next try may get through before the deadline.
                Ok(Err(e)) => warn!(error = %e, "heartbeat failed"),
                Err(_) => return,
            }
        }
    }

    /// Applies a step's outcome. Returns the rollback if this worker should go on with it.
    async fn record(
        &self,
        rollback: &Rollback,
        step: Step,
        outcome: StepOutcome,
        actor: &str,
    ) -> Result<Option<Rollback>, EngineError> {
        let (event, plan, detail) = match outcome {
            StepOutcome::Finished {
                event,
                plan,
                detail,
            } => (event, plan, detail),
            StepOutcome::Wait { after, progress } => {
                let key = format!("{}_progress", step.as_str());
                let waiting = repo::schedule_wait(
                    &self.pool,
                    rollback.id,
                    rollback.attempt,
                    &key,
                    &progress,
                    after,
                );
                return match waiting.await {
                    Ok(()) => {
                        debug!(
                            step = step.as_str(),
                            after_ms = after.as_millis() as u64,
                            "waiting; worker released"
                        );
                        self.wake_after(after);
                        Ok(None)
                    }
                    Err(RepoError::LostLease(_)) => Ok(None),
                    Err(e) => Err(e.into()),
                };
            }
            StepOutcome::Retry(error) => {
                let attempt = u32::try_from(rollback.retries).unwrap_or(0) + 1;
                if attempt <= self.config.max_retries {
                    metrics().step_retry(step.as_str());
                    let backoff = self.backoff(attempt);
                    warn!(step = step.as_str(), attempt, error = %error,
                          backoff_ms = backoff.as_millis() as u64, "step failed; will retry");
                    match repo::schedule_retry(
                        &self.pool,
                        rollback.id,
                        rollback.attempt,
                        &error,
                        backoff,
                    )
                    .await
                    {
                        Ok(_) => {
                            self.wake_after(backoff);
                            return Ok(None);
                        }
                        Err(RepoError::LostLease(_)) => return Ok(None),
                        Err(e) => return Err(e.into()),
                    }
                }
                let reason = format!(
                    "{} failed {attempt} times in a row; last error: {error}",
                    step.as_str()
                );
                (
                    Event::StepFailed { reason },
                    None,
                    json!({ "error": error }),
                )
            }
        };
        let change = Change {
            event: &event,
            actor,
            fence: Some(rollback.attempt),
            plan: plan.as_ref(),
            detail,
        };
        crate::support::failpoint::hit(&format!("engine.before_record.{}", step.as_str()));
        let recorded = repo::apply(&self.pool, rollback.id, &change).await;
        crate::support::failpoint::hit(&format!("engine.after_record.{}", step.as_str()));
        match recorded {
            Ok(applied) => match applied.outcome {
                Outcome::Applied { from, to } => {
                    info!(step = step.as_str(), %from, %to, "transition");
                    if let Some(observer) = &self.observer {
                        observer.changed(&applied.rollback).await;
                    }
                    Ok(Some(applied.rollback))
                }
                // Someone else moved the rollback on (a cancel, an expiry): stop here.
                Outcome::Duplicate | Outcome::Refused(_) => {
                    info!(step = step.as_str(), state = %applied.rollback.state,
                          "rollback changed under the worker; stopping");
                    Ok(None)
                }
            },
            Err(RepoError::LostLease(_)) => {
                warn!(
                    step = step.as_str(),
                    "lease lost before the result was recorded"
                );
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Wakes one of this process's idle workers once a rollback it let go of is due again
    /// (other replicas find it by polling). Costs a timer, nothing while it sleeps.
    fn wake_after(&self, after: Duration) {
        let wake = self.wake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            wake.notify_one();
        });
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.config
            .backoff_base
            .saturating_mul(factor)
            .min(self.config.backoff_max)
    }

    /// Wakes idle workers as soon as a rollback becomes due (new, approved, retried).
    async fn listen(&self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(l) => l,
                Err(e) => {
                    warn!(error = %e, "cannot listen for notifications; polling only");
                    tokio::select! {
                        () = tokio::time::sleep(self.config.poll_interval * 5) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            };
            if let Err(e) = listener.listen(READY_CHANNEL).await {
                warn!(error = %e, "LISTEN failed; polling only");
                continue;
            }
            loop {
                tokio::select! {
                    received = listener.recv() => match received {
                        Ok(_) => self.wake.notify_waiters(),
                        Err(e) => { warn!(error = %e, "notification stream broke"); break; }
                    },
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }

    async fn sweep_expired(&self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.config.expiry_sweep) => {}
                () = shutdown.cancelled() => return,
            }
            if let Err(e) = self.expire_due().await {
                warn!(error = %e, "expiry sweep failed");
            }
            if let Err(e) = self.remind_due().await {
                warn!(error = %e, "approval reminder sweep failed");
            }
        }
    }

    /// Reminds the approvers of every request that has waited half of its approval window
    /// (once each). Returns how many were reminded.
    pub async fn remind_due(&self) -> Result<usize, EngineError> {
        let reminded = repo::remind_due(&self.pool).await?;
        for &id in &reminded {
            info!(rollback_id = id, "approvers reminded");
            if let Some(observer) = &self.observer {
                observer.changed(&repo::get(&self.pool, id).await?).await;
            }
        }
        Ok(reminded.len())
    }

    /// Expires every request whose approval window has closed. Returns how many expired.
    pub async fn expire_due(&self) -> Result<usize, EngineError> {
        let mut expired = 0;
        for id in repo::due_for_expiry(&self.pool).await? {
            let event = Event::Expire;
            let applied = repo::apply(&self.pool, id, &Change::by("system", &event)).await?;
            if let Outcome::Applied {
                to: State::Expired, ..
            } = applied.outcome
            {
                info!(rollback_id = id, "approval request expired");
                expired += 1;
                if let Some(observer) = &self.observer {
                    observer.changed(&applied.rollback).await;
                }
            }
        }
        Ok(expired)
    }
}

/// The text a panic carried (`panic!("…")` payloads are `&str` or `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
