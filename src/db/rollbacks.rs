//! All SQL of the rollback engine: recording requests, applying transitions with their audit
//! rows, and the worker lease (claim, heartbeat, retry, release).
//!
//! Transitions are optimistic: read the row, let [`machine::decide`] rule, then write with
//! `where version = <read version>` in the same transaction as the audit row; a lost race
//! re-reads and decides again, so a duplicate click becomes a no-op instead of an error.
//! Worker writes also name the lease's `attempt` (the fencing token), so a worker whose lease
//! was taken over can no longer write anything.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::domain::machine::{self, Decision, Event, Facts, Refusal, Transition};
use crate::domain::{Kind, State};
use crate::support::telemetry::metrics;

/// Errors of the repository layer.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("rollback #{id} for this deployment is already {state} (requested by {requested_by})")]
    AlreadyActive {
        id: i64,
        state: State,
        requested_by: String,
    },
    #[error("there is no rollback #{0}")]
    NotFound(i64),
    #[error("rollback #{0} kept changing under us; try again")]
    Contended(i64),
    #[error("the lease on rollback #{0} was lost to another worker")]
    LostLease(i64),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A rollback as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Rollback {
    pub id: i64,
    pub service: String,
    pub cluster: String,
    pub namespace: String,
    pub deployment: String,
    pub requested_revision: Option<i64>,
    pub incident: Option<String>,
    pub requested_by: String,
    pub channel_id: String,
    pub response_url: Option<String>,
    pub force: bool,
    pub state: State,
    pub version: i64,
    pub plan: Option<Value>,
    pub plan_fingerprint: Option<String>,
    pub needs_dba: bool,
    pub needs_override: bool,
    pub lead_approved_by: Option<String>,
    pub dba_approved_by: Option<String>,
    pub decided_by: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub attempt: i64,
    pub retries: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub steps: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the last required sign-off was given.
    pub approved_at: Option<DateTime<Utc>>,
    pub kind: Kind,
    /// What fixes the fault, for an unlock request (`/rollback unlock <service> <fix>`).
    pub fix_reference: Option<String>,
}

impl Rollback {
    fn facts(&self) -> Facts {
        Facts {
            state: self.state,
            requested_by: self.requested_by.clone(),
            plan_fingerprint: self.plan_fingerprint.clone(),
            needs_dba: self.needs_dba,
            needs_override: self.needs_override,
            lead_approved_by: self.lead_approved_by.clone(),
            dba_approved_by: self.dba_approved_by.clone(),
            expires_at: self.expires_at,
            kind: self.kind,
        }
    }
}

/// A rollback request as it arrives from Slack (or the CLI).
#[derive(Debug, Clone)]
pub struct NewRollback {
    pub service: String,
    pub cluster: String,
    pub namespace: String,
    pub deployment: String,
    pub requested_revision: Option<i64>,
    pub incident: Option<String>,
    pub requested_by: String,
    pub channel_id: String,
    pub response_url: Option<String>,
    pub force: bool,
    /// How long the request may wait for its approvals.
    pub approval_ttl: Duration,
}

/// One append-only row of the audit trail.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub rollback_id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub from_state: State,
    pub to_state: State,
    pub detail: Value,
}

/// A state change to attempt.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub event: &'a Event,
    /// A Slack user id, `worker:<id>` or `system`.
    pub actor: &'a str,
    /// For worker writes: the `attempt` under which the worker holds the lease.
    pub fence: Option<i64>,
    /// The plan, stored with [`Event::PlanReady`].
    pub plan: Option<&'a Value>,
    /// Evidence for the audit row; for step results also kept in `steps` under the step name.
    pub detail: Value,
}

impl<'a> Change<'a> {
    pub fn by(actor: &'a str, event: &'a Event) -> Self {
        Change {
            event,
            actor,
            fence: None,
            plan: None,
            detail: json!({}),
        }
    }
}

/// What became of a [`Change`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Applied { from: State, to: State },
    Duplicate,
    Refused(Refusal),
}

/// A change's outcome and the rollback as it is afterwards.
#[derive(Debug, Clone)]
pub struct Applied {
    pub outcome: Outcome,
    pub rollback: Rollback,
}

/// A lease a worker holds on a rollback.
#[derive(Debug, Clone)]
pub struct Claim {
    pub rollback: Rollback,
    /// The owner of the expired lease this claim took over, if any.
    pub took_over_from: Option<String>,
}

/// Retries of an optimistic write before giving up: each retry means another writer
/// committed in between, so a handful is plenty.
const OPTIMISTIC_TRIES: usize = 8;

/// Records a new request (its audit row is written by the same statement, through a trigger).
/// A second active request for the same target is refused by the partial unique index and
/// reported as [`RepoError::AlreadyActive`] naming the active one.
pub async fn insert(pool: &PgPool, new: &NewRollback) -> Result<Rollback, RepoError> {
    insert_request(pool, new, Kind::Rollback, None).await
}

/// Records an unlock request (`/rollback unlock <service> <fix reference>`) for `new`'s
/// target: same rules as a rollback request, one active request per target included.
///
/// # Errors
/// As [`insert`].
pub async fn insert_unlock(
    pool: &PgPool,
    new: &NewRollback,
    fix_reference: &str,
) -> Result<Rollback, RepoError> {
    insert_request(pool, new, Kind::Unlock, Some(fix_reference)).await
}

async fn insert_request(
    pool: &PgPool,
    new: &NewRollback,
    kind: Kind,
    fix_reference: Option<&str>,
) -> Result<Rollback, RepoError> {
    let inserted = sqlx::query_as!(
        Rollback,
        r#"insert into rollback (service, cluster, namespace, deployment, requested_revision,
               incident, requested_by, channel_id, response_url, force, expires_at, kind,
               fix_reference)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + make_interval(secs => $11),
               $12, $13)
           returning id, service, cluster, namespace, deployment, requested_revision, incident,
               requested_by, channel_id, response_url, force, state as "state: State", version,
               plan, plan_fingerprint, needs_dba, needs_override, lead_approved_by,
               dba_approved_by, decided_by, expires_at, lease_owner, lease_expires_at, attempt,
               retries, next_attempt_at, last_error, steps, created_at, updated_at, approved_at,
               kind as "kind: Kind", fix_reference"#,
        new.service,
        new.cluster,
        new.namespace,
        new.deployment,
        new.requested_revision,
        new.incident,
        new.requested_by,
        new.channel_id,
        new.response_url,
        new.force,
        new.approval_ttl.as_secs_f64(),
        kind as Kind,
        fix_reference,
    )
    .fetch_one(pool)
    .await;
    match inserted {
        Ok(rollback) => Ok(rollback),
        Err(sqlx::Error::Database(e))
            if e.constraint() == Some("rollback_one_active_per_target") =>
        {
            let active = find_active(pool, &new.cluster, &new.namespace, &new.deployment).await?;
            match active {
                Some(a) => Err(RepoError::AlreadyActive {
                    id: a.id,
                    state: a.state,
                    requested_by: a.requested_by,
                }),
                // The active one finished in between: the caller may simply try again.
                None => Err(RepoError::Contended(0)),
            }
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn get(pool: &PgPool, id: i64) -> Result<Rollback, RepoError> {
    sqlx::query_as!(
        Rollback,
        r#"select id, service, cluster, namespace, deployment, requested_revision, incident,
               requested_by, channel_id, response_url, force, state as "state: State", version,
               plan, plan_fingerprint, needs_dba, needs_override, lead_approved_by,
               dba_approved_by, decided_by, expires_at, lease_owner, lease_expires_at, attempt,
               retries, next_attempt_at, last_error, steps, created_at, updated_at, approved_at,
               kind as "kind: Kind", fix_reference
           from rollback where id = $1"#,
        id
    )
    .fetch_optional(pool)
    .await?
    .ok_or(RepoError::NotFound(id))
}

/// The active (non-terminal) rollback of a target, if any.
pub async fn find_active(
    pool: &PgPool,
    cluster: &str,
    namespace: &str,
    deployment: &str,
) -> Result<Option<Rollback>, RepoError> {
    Ok(sqlx::query_as!(
        Rollback,
        r#"select id, service, cluster, namespace, deployment, requested_revision, incident,
               requested_by, channel_id, response_url, force, state as "state: State", version,
               plan, plan_fingerprint, needs_dba, needs_override, lead_approved_by,
               dba_approved_by, decided_by, expires_at, lease_owner, lease_expires_at, attempt,
               retries, next_attempt_at, last_error, steps, created_at, updated_at, approved_at,
               kind as "kind: Kind", fix_reference
           from rollback
           where cluster = $1 and namespace = $2 and deployment = $3
             and state not in ('succeeded', 'refused', 'rejected', 'expired', 'cancelled',
                               'failed', 'escalated')"#,
        cluster,
        namespace,
        deployment
    )
    .fetch_optional(pool)
    .await?)
}

/// The audit trail of one rollback, oldest first.
pub async fn audit_trail(pool: &PgPool, id: i64) -> Result<Vec<AuditRow>, RepoError> {
    Ok(sqlx::query_as!(
        AuditRow,
        r#"select id, rollback_id, at, actor, action, outcome,
               from_state as "from_state: State", to_state as "to_state: State", detail
           from rollback_audit where rollback_id = $1 order by id"#,
        id
    )
    .fetch_all(pool)
    .await?)
}

/// Applies `change` to rollback `id`: decides with the pure machine, then writes the new
/// state and its audit row in one transaction, guarded by the version read (and the lease's
/// fencing token for worker writes).
pub async fn apply(pool: &PgPool, id: i64, change: &Change<'_>) -> Result<Applied, RepoError> {
    for _ in 0..OPTIMISTIC_TRIES {
        let (rollback, now) = get_with_clock(pool, id).await?;
        if let Some(fence) = change.fence
            && (rollback.attempt != fence || rollback.lease_owner.is_none())
        {
            return Err(RepoError::LostLease(id));
        }
        let transition = match machine::decide(&rollback.facts(), change.event, now) {
            Decision::Apply(t) => t,
            Decision::Duplicate => {
                return Ok(Applied {
                    outcome: Outcome::Duplicate,
                    rollback,
                });
            }
            Decision::Refuse(refusal) => {
                if change.event.is_user_action() {
                    let mut tx = pool.begin().await?;
                    let mut detail = change.detail.clone();
                    detail["refusal"] = json!(refusal.to_string());
                    audit(
                        &mut tx,
                        id,
                        change.actor,
                        change.event.action(),
                        "refused",
                        (rollback.state, rollback.state),
                        &detail,
                    )
                    .await?;
                    tx.commit().await?;
                }
                return Ok(Applied {
                    outcome: Outcome::Refused(refusal),
                    rollback,
                });
            }
        };
        let mut tx = pool.begin().await?;
        let Some(updated) = write_transition(&mut tx, &rollback, &transition, change).await? else {
            // Someone else committed first; decide again on what they wrote.
            tx.rollback().await?;
            continue;
        };
        audit(
            &mut tx,
            id,
            change.actor,
            change.event.action(),
            "applied",
            (rollback.state, transition.to),
            &change.detail,
        )
        .await?;
        tx.commit().await?;
        if transition.to.is_settled() {
            metrics().rollback_finished(transition.to.as_str());
        }
        return Ok(Applied {
            outcome: Outcome::Applied {
                from: rollback.state,
                to: transition.to,
            },
            rollback: updated,
        });
    }
    Err(RepoError::Contended(id))
}

async fn get_with_clock(pool: &PgPool, id: i64) -> Result<(Rollback, DateTime<Utc>), RepoError> {
    let rollback = get(pool, id).await?;
    let now = sqlx::query_scalar!(r#"select now() as "now!""#)
        .fetch_one(pool)
        .await?;
    Ok((rollback, now))
}

async fn write_transition(
    tx: &mut sqlx::PgConnection,
    current: &Rollback,
    t: &Transition,
    change: &Change<'_>,
) -> Result<Option<Rollback>, RepoError> {
    let (fingerprint, needs_dba, needs_override) = match change.event {
        Event::PlanReady {
            fingerprint,
            needs_dba,
            needs_override,
        } => (Some(fingerprint.as_str()), *needs_dba, *needs_override),
        _ => (None, current.needs_dba, current.needs_override),
    };
    // Step results are kept per step so the card can show each one's evidence.
    let step_key = match change.event {
        Event::PlanReady { .. }
        | Event::PlanRefused { .. }
        | Event::StepSucceeded
        | Event::StepFailed { .. }
        | Event::Escalate
        // The lead's acceptance stands in for the validate step's verdict.
        | Event::AcceptRecovery { .. } => current.state.step().map(|s| s.as_str()),
        // Read by the validate step when it runs again (the click took its lease).
        Event::ExtendValidation { .. } => Some("validate_extended"),
        _ => None,
    };
    let last_error = match change.event {
        Event::PlanRefused { reason }
        | Event::StepFailed { reason }
        | Event::EscalateNow { reason, .. } => Some(reason.as_str()),
        _ => None,
    };
    let has_step = t.to.step().is_some();
    Ok(sqlx::query_as!(
        Rollback,
        r#"update rollback set
               state = $3,
               version = version + 1,
               plan = coalesce($4, plan),
               plan_fingerprint = coalesce($5, plan_fingerprint),
               needs_dba = $6,
               needs_override = $7,
               lead_approved_by = coalesce($8, lead_approved_by),
               dba_approved_by = coalesce($9, dba_approved_by),
               decided_by = coalesce($10, decided_by),
               steps = case when $11::text is null then steps
                            else steps || jsonb_build_object($11::text, $12::jsonb) end,
               last_error = coalesce($13, last_error),
               retries = 0,
               next_attempt_at = case when $14 then now() else null end,
               approved_at = case when $3 = 'approved'::rollback_state then now() else approved_at end,
               -- a worker keeps its lease to run the next step at once; nobody holds a
               -- lease on a rollback that has no step left, and a person's transition
               -- (abort, escalate now) takes it from the worker mid-step: its heartbeat
               -- fails, it drops the step, and the next step is claimable at once
               lease_owner = case when $14 and $15::bigint is not null then lease_owner else null end,
               lease_expires_at = case when $14 and $15::bigint is not null then lease_expires_at else null end,
               -- and fences it off: its later writes, under the old attempt, are refused
               attempt = case when $15::bigint is null then attempt + 1 else attempt end,
               updated_at = now()
           where id = $1 and version = $2 and ($15::bigint is null or attempt = $15)
           returning id, service, cluster, namespace, deployment, requested_revision, incident,
               requested_by, channel_id, response_url, force, state as "state: State", version,
               plan, plan_fingerprint, needs_dba, needs_override, lead_approved_by,
               dba_approved_by, decided_by, expires_at, lease_owner, lease_expires_at, attempt,
               retries, next_attempt_at, last_error, steps, created_at, updated_at, approved_at,
               kind as "kind: Kind", fix_reference"#,
        current.id,
        current.version,
        t.to as State,
        change.plan,
        fingerprint,
        needs_dba,
        needs_override,
        t.lead_approved_by,
        t.dba_approved_by,
        t.decided_by,
        step_key,
        change.detail,
        last_error,
        has_step,
        change.fence,
    )
    .fetch_optional(&mut *tx)
    .await?)
}

async fn audit(
    tx: &mut sqlx::PgConnection,
    rollback_id: i64,
    actor: &str,
    action: &str,
    outcome: &str,
    (from, to): (State, State),
    detail: &Value,
) -> Result<(), RepoError> {
    sqlx::query!(
        r#"insert into rollback_audit (rollback_id, actor, action, outcome, from_state, to_state, detail)
           values ($1, $2, $3, $4, $5, $6, $7)"#,
        rollback_id,
        actor,
        action,
        outcome,
        from as State,
        to as State,
        detail
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Which due rollbacks a worker may claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimable {
    /// Any; a step that acts (plan, execute, lock, …) before a validation round, which only
    /// observes and can as well start a moment later.
    Any,
    /// Never a validation round: the worker a replica keeps for acting steps, so that an
    /// approved rollback is patched at once however many others are validating.
    NotValidating,
}

/// Claims a due rollback that has a step to run and no live lease, for `lease`: acting steps
/// first, then validation rounds, each the most overdue first. `FOR UPDATE SKIP LOCKED` lets
/// concurrent claimers pass over each other's rows; the returned `attempt` is the fencing
/// token for every later write under this lease.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
    claimable: Claimable,
) -> Result<Option<Claim>, RepoError> {
    let row = sqlx::query!(
        r#"with due as (
               select id, lease_owner as previous_owner from rollback
               where next_attempt_at <= now()
                 and (lease_expires_at is null or lease_expires_at < now())
                 and ($3 or state <> 'validating')
               order by state = 'validating', next_attempt_at
               limit 1
               for update skip locked
           )
           update rollback r set
               lease_owner = $1,
               lease_expires_at = now() + make_interval(secs => $2),
               attempt = attempt + 1,
               updated_at = now()
           from due where r.id = due.id
           returning r.id, due.previous_owner"#,
        worker,
        lease.as_secs_f64(),
        claimable == Claimable::Any
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Claim {
        rollback: get(pool, row.id).await?,
        took_over_from: row.previous_owner,
    }))
}

/// Extends a held lease. Returns false when the lease is no longer this worker's.
pub async fn heartbeat(
    pool: &PgPool,
    id: i64,
    fence: i64,
    lease: Duration,
) -> Result<bool, RepoError> {
    let done = sqlx::query!(
        r#"update rollback set lease_expires_at = now() + make_interval(secs => $3)
           where id = $1 and attempt = $2 and lease_owner is not null"#,
        id,
        fence,
        lease.as_secs_f64()
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives a lease back so another worker can take the rollback at once (graceful shutdown).
pub async fn release(pool: &PgPool, id: i64, fence: i64) -> Result<(), RepoError> {
    sqlx::query!(
        r#"update rollback set lease_owner = null, lease_expires_at = null
           where id = $1 and attempt = $2"#,
        id,
        fence
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a transient failure of the current step and schedules the next try after
/// `backoff`, giving up the lease meanwhile. Returns the number of retries so far.
pub async fn schedule_retry(
    pool: &PgPool,
    id: i64,
    fence: i64,
    error: &str,
    backoff: Duration,
) -> Result<i32, RepoError> {
    sqlx::query_scalar!(
        r#"update rollback set
               retries = retries + 1,
               last_error = $3,
               next_attempt_at = now() + make_interval(secs => $4),
               lease_owner = null,
               lease_expires_at = null,
               updated_at = now()
           where id = $1 and attempt = $2 and lease_owner is not null
           returning retries"#,
        id,
        fence,
        error,
        backoff.as_secs_f64()
    )
    .fetch_optional(pool)
    .await?
    .ok_or(RepoError::LostLease(id))
}

/// Lets go of a rollback whose step waits (between validation rounds) until `after` from
/// now: keeps the step's `progress` under `steps.<key>`, clears the retries (the step is
/// making progress) and the lease. Fenced like every worker write.
pub async fn schedule_wait(
    pool: &PgPool,
    id: i64,
    fence: i64,
    key: &str,
    progress: &Value,
    after: Duration,
) -> Result<(), RepoError> {
    let done = sqlx::query!(
        r#"update rollback set
               steps = steps || jsonb_build_object($3::text, $4::jsonb),
               retries = 0,
               next_attempt_at = now() + make_interval(secs => $5),
               lease_owner = null,
               lease_expires_at = null,
               updated_at = now()
           where id = $1 and attempt = $2 and lease_owner is not null"#,
        id,
        fence,
        key,
        progress,
        after.as_secs_f64()
    )
    .execute(pool)
    .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(RepoError::LostLease(id))
    }
}

/// Reminds the approvers of every request that has waited half of its approval window: one
/// `remind` audit row each (the thread shows it, mentioning the approvers again), exactly once
/// per request, in the same statement that marks it reminded. Returns the ids reminded.
pub async fn remind_due(pool: &PgPool) -> Result<Vec<i64>, RepoError> {
    Ok(sqlx::query_scalar!(
        r#"with due as (
               update rollback set reminded_at = now()
               where state = 'awaiting_approval' and reminded_at is null
                 and expires_at > now() and now() >= created_at + (expires_at - created_at) / 2
               returning id, state, expires_at, steps -> 'plan' -> 'approvers' as approvers
           )
           insert into rollback_audit (rollback_id, actor, action, outcome, from_state,
                                       to_state, detail)
           select id, 'system', 'remind', 'applied', state, state,
                  jsonb_build_object('expires_at', expires_at, 'approvers', approvers)
           from due order by id
           returning rollback_id"#
    )
    .fetch_all(pool)
    .await?)
}

/// Ids of rollbacks whose approval window has closed while still awaiting a decision.
pub async fn due_for_expiry(pool: &PgPool) -> Result<Vec<i64>, RepoError> {
    Ok(sqlx::query_scalar!(
        r#"select id from rollback
           where state in ('requested', 'awaiting_approval') and expires_at <= now()
           order by expires_at"#
    )
    .fetch_all(pool)
    .await?)
}

/// Retention: replaces the full plan (pod template included) of rollbacks that finished more
/// than `keep` ago with a short summary (target, revisions, images) and audits each purge in
/// the same statement. The fingerprint stays; nothing else of the row changes, so the card
/// is not re-rendered. Returns the ids purged.
pub async fn purge_finished_plans(pool: &PgPool, keep: Duration) -> Result<Vec<i64>, RepoError> {
    Ok(sqlx::query_scalar!(
        r#"with purged as (
               update rollback set plan = jsonb_build_object(
                   'purged_at', now(),
                   'summary', jsonb_build_object(
                       'target', plan -> 'target',
                       'current', plan -> 'current',
                       'rollback_to', plan -> 'rollback_to',
                       'image_changes', plan -> 'image_changes'))
               where state in ('succeeded', 'refused', 'rejected', 'expired', 'cancelled',
                               'failed', 'escalated')
                 and updated_at < now() - make_interval(secs => $1)
                 and plan is not null and plan -> 'purged_at' is null
               returning id, state, plan_fingerprint
           )
           insert into rollback_audit (rollback_id, actor, action, outcome, from_state,
                                       to_state, detail)
           select id, 'system', 'purge_plan', 'applied', state, state,
                  jsonb_build_object('retention_secs', $1, 'fingerprint', plan_fingerprint)
           from purged order by id
           returning rollback_id"#,
        keep.as_secs_f64()
    )
    .fetch_all(pool)
    .await?)
}
