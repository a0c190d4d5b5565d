//! Escalation to Platform Engineering when a rollback fails, and the all-clear when a later
//! rollback of the same target succeeds.
//!
//! - The `escalate` step ([`Escalation`] as the engine's [`Escalator`]) runs on every `failed`
//!   rollback: it pages PagerDuty (a `trigger` with the deterministic dedup key
//!   [`dedup_key`]) and moves the rollback to `escalated`. The transition's audit row carries
//!   the reason, the evidence, the user group to mention and the page's outcome, so the Slack
//!   thread (re-rendered from the audit trail) mentions the group with all of it.
//! - A failure that repeats an earlier failed rollback of the same target in the same
//!   incident says so in its reason ([`repeat_note`]): the thread, the card and the page
//!   then tell Platform Engineering that the way back itself is failing. Its trigger carries
//!   the same dedup key, so PagerDuty updates the alert that is still open (or opens a new
//!   one once the earlier alert was resolved) rather than opening a second one.
//! - Exactly once: a PagerDuty event is recorded in `pagerduty_event` before it is sent and
//!   marked sent in the same transaction that holds its row lock while the call is in flight.
//!   A crash before the call sends it on resume; a crash after PagerDuty accepted it but
//!   before the mark sends it again with the same dedup key, which PagerDuty folds into the
//!   same alert; once marked, it is never sent again.
//! - [`Escalation::run`] (every replica) delivers events left unsent (PagerDuty was down) and
//!   sends a `resolve` for each sent trigger once a later rollback (not an unlock) of its
//!   target in the same incident succeeded; both are announced in the thread with an audit
//!   row. A resolve is never sent after a newer trigger with the same dedup key (it would
//!   silence the newer failure), and after [`pages::MAX_ATTEMPTS`] failed deliveries the
//!   sweep gives up, says so on the card and in the thread, and counts it in
//!   `rollback_bot_pagerduty_gave_up_total`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clients::k8s::diagnosis::Diagnosis;
use crate::clients::k8s::{Executor, Target};
use crate::clients::pagerduty::{Action, Alert, PagerDuty, event_body};
use crate::db::pages::{self, Page};
use crate::db::rollbacks::Rollback;
use crate::domain::machine::Event;
use crate::domain::results::{EscalateResult, LockResult, NotifyResult, PageResult, TicketResult};
use crate::engine::{Escalator, StepOutcome};
use crate::steps::notify::DeployerNotifier;
use crate::steps::ticket::Tickets;
use crate::support::failpoint;
use crate::support::telemetry::metrics;
use crate::support::text::truncate;

/// How often [`Escalation::run`] looks for unsent events and triggers to resolve.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// An unsent event younger than this is left to the step that recorded it.
pub const REDELIVER_AFTER: Duration = Duration::from_secs(30);

/// Evidence lines from the steps carried into the thread and the page (the cluster's
/// diagnosis adds its own, bounded by `diagnosis::MAX_PODS` and `MAX_EVENTS`).
const MAX_EVIDENCE: usize = 6;
/// How long the escalation waits for the cluster's diagnosis before paging without it.
const DIAGNOSIS_TIMEOUT: Duration = Duration::from_secs(15);

/// One PagerDuty alert per target: every failed rollback of it updates the same alert, and a
/// successful one resolves it.
pub fn dedup_key(cluster: &str, namespace: &str, deployment: &str) -> String {
    format!("rollback-bot/{cluster}/{namespace}/{deployment}")
}

/// What the failed step left as evidence: the verification checks that failed, the recovery
/// checks that did not pass with the queries behind them, else the error or refusal of the
/// step that failed. Pure.
pub fn evidence(r: &Rollback) -> Vec<String> {
    let mut lines = vec![];
    if let Some(checks) = r.steps["verify"]["checks"].as_array() {
        for c in checks.iter().filter(|c| c["passed"] == json!(false)) {
            lines.push(format!(
                "{}: {}",
                c["name"].as_str().unwrap_or("check"),
                truncate(c["evidence"].as_str().unwrap_or(""), 300)
            ));
        }
    }
    let recovery = &r.steps["validate"]["recovery"];
    if let Some(checks) = recovery["checks"].as_array() {
        for c in checks.iter().filter(|c| c["status"] != json!("pass")) {
            lines.push(format!(
                "recovery {} ({}): {}",
                c["name"].as_str().unwrap_or("check"),
                c["status"].as_str().unwrap_or("?"),
                truncate(c["evidence"].as_str().unwrap_or(""), 300)
            ));
        }
        if let Some(queries) = recovery["queries"]
            .as_object()
            .filter(|_| !lines.is_empty())
        {
            let queries: Vec<String> = queries
                .iter()
                .map(|(name, q)| format!("{name} = `{}`", q.as_str().unwrap_or("")))
                .collect();
            lines.push(truncate(&format!("queries: {}", queries.join("; ")), 600));
        }
    }
    if lines.is_empty() {
        for step in ["validate", "lock", "verify", "execute", "begin", "plan"] {
            let d = &r.steps[step];
            if let Some(text) = d["error"].as_str().or(d["refusal"].as_str()) {
                lines.push(format!("{step}: {}", truncate(text, 300)));
            }
        }
    }
    // The rollback patch set the lock: the deployment stays locked although it failed.
    let lock = LockResult::of_steps(&r.steps).map(|lock| {
        format!(
            "deploy lock: the deployment stays {}; only an approved `{}` lifts it",
            lock.describe(),
            super::unlock_command(&r.service)
        )
    });
    lines.truncate(MAX_EVIDENCE - usize::from(lock.is_some()));
    lines.extend(lock);
    lines
}

/// What a failure that repeats earlier ones in the same incident adds to the reason, e.g.
/// "2nd failed rollback of web in incident INC-7 (after #12)": the way back itself is
/// failing, which the people paged must know. `None` for a first failure. Pure.
pub fn repeat_note(r: &Rollback, earlier: &[i64]) -> Option<String> {
    let incident = r.incident.as_deref()?;
    if earlier.is_empty() {
        return None;
    }
    let nth = earlier.len() + 1;
    let suffix = match (nth % 10, nth % 100) {
        (1, n) if n != 11 => "st",
        (2, n) if n != 12 => "nd",
        (3, n) if n != 13 => "rd",
        _ => "th",
    };
    let after = earlier
        .iter()
        .map(|id| format!("#{id}"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "{nth}{suffix} failed rollback of {} in incident {incident} (after {after})",
        r.service
    ))
}

/// The alert a failed rollback opens. Pure.
pub fn alert(
    r: &Rollback,
    reason: &str,
    evidence: &[String],
    diagnosis: Option<&Diagnosis>,
    severity: &str,
) -> Alert {
    Alert {
        summary: format!(
            "Rollback #{} of {} ({}/{}/{}) failed: {reason}",
            r.id, r.service, r.cluster, r.namespace, r.deployment
        ),
        source: format!("{}/{}/{}", r.cluster, r.namespace, r.deployment),
        severity: severity.to_owned(),
        component: r.service.clone(),
        group: format!("{}/{}", r.cluster, r.namespace),
        class: "rollback_failed".into(),
        custom_details: json!({
            "rollback": r.id,
            "incident": r.incident,
            "requested_by": r.requested_by,
            "approved_by": r.lead_approved_by,
            "reason": reason,
            "evidence": evidence,
            "diagnosis": diagnosis,
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EscalationError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// PagerDuty accepted it now.
    Sent,
    /// It had been accepted before (a re-run after a crash): not sent again.
    AlreadySent,
    /// Another replica is sending it right now.
    InFlight,
    /// Not accepted after the client's retries; the sweep tries again (up to
    /// [`pages::MAX_ATTEMPTS`]).
    Failed(String),
    /// A resolve not sent: a newer failure of the target re-opened its alert.
    Withheld,
}

impl Delivery {
    fn result(&self, dedup_key: &str) -> PageResult {
        let dedup_key = Some(dedup_key.to_owned());
        match self {
            Delivery::Sent | Delivery::AlreadySent => PageResult::Triggered { dedup_key },
            Delivery::InFlight => PageResult::Sending { dedup_key },
            Delivery::Failed(error) => PageResult::Failed {
                dedup_key,
                error: Some(error.clone()),
            },
            // Only resolves are withheld, and a resolve's outcome is not the escalation's.
            Delivery::Withheld => PageResult::Unknown,
        }
    }
}

/// Escalation as configured: who is mentioned, and the PagerDuty integration, if any.
#[derive(Clone)]
pub struct Escalation {
    pool: PgPool,
    pager: Option<Arc<PagerDuty>>,
    /// Reads the failing workload for the evidence; `None`: the steps' evidence only.
    cluster: Option<Arc<Executor>>,
    /// The deployer's DM and the post-incident ticket, for a failed rollback too.
    post_incident: Option<(Arc<DeployerNotifier>, Arc<Tickets>)>,
    user_group: Option<String>,
    severity: String,
    redeliver_after: Duration,
}

impl Escalation {
    pub fn new(
        pool: PgPool,
        pager: Option<Arc<PagerDuty>>,
        user_group: Option<String>,
        severity: &str,
    ) -> Self {
        Escalation {
            pool,
            pager,
            cluster: None,
            post_incident: None,
            user_group,
            severity: severity.to_owned(),
            redeliver_after: REDELIVER_AFTER,
        }
    }

    /// Reads the failing pods, their previous logs and the Warning events from `cluster` for
    /// every escalation's evidence.
    pub fn with_diagnosis(mut self, cluster: Arc<Executor>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Tells the deployer by DM and opens the post-incident ticket for every escalated
    /// rollback too (the runbook: document the incident; the deployer is needed most now).
    pub fn with_post_incident(
        mut self,
        deployer: Arc<DeployerNotifier>,
        tickets: Arc<Tickets>,
    ) -> Self {
        self.post_incident = Some((deployer, tickets));
        self
    }

    /// The cluster's diagnosis of `r`'s workload, or why there is none (`None` when the
    /// escalation reads no cluster).
    async fn diagnose(&self, r: &Rollback) -> Option<Result<Diagnosis, String>> {
        let cluster = self.cluster.as_ref()?;
        let target = Target {
            cluster: r.cluster.clone(),
            namespace: r.namespace.clone(),
            deployment: r.deployment.clone(),
        };
        Some(
            match tokio::time::timeout(DIAGNOSIS_TIMEOUT, cluster.diagnose(&target)).await {
                Ok(Ok(diagnosis)) => Ok(diagnosis),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "no answer within {} s",
                    DIAGNOSIS_TIMEOUT.as_secs()
                )),
            },
        )
    }

    /// How old an unsent event must be before the sweep sends it (default [`REDELIVER_AFTER`]).
    pub fn with_redeliver_after(mut self, after: Duration) -> Self {
        self.redeliver_after = after;
        self
    }

    /// Delivers unsent events and resolves triggers whose target recovered, every `every`,
    /// until `shutdown`. Does nothing without a PagerDuty integration.
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let Some(pager) = self.pager.clone() else {
            return;
        };
        loop {
            if let Err(e) = self.sweep(&pager).await {
                warn!(error = %e, "PagerDuty sweep failed");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One pass of [`Escalation::run`].
    pub async fn sweep(&self, pager: &PagerDuty) -> Result<(), EscalationError> {
        for trigger in pages::open_triggers(&self.pool).await? {
            let body = event_body(Action::Resolve, &trigger.dedup_key, None);
            let recorded = pages::record(
                &self.pool,
                trigger.succeeded_id,
                Action::Resolve,
                &trigger.dedup_key,
                &body,
                Some(trigger.trigger_id),
            )
            .await?;
            if let Some(event) = recorded {
                info!(rollback_id = trigger.succeeded_id, dedup_key = %trigger.dedup_key,
                      "resolving the PagerDuty alert of an earlier failed rollback");
                deliver(&self.pool, pager, &event, true).await?;
            }
        }
        for event in pages::unsent(&self.pool, self.redeliver_after).await? {
            deliver(&self.pool, pager, &event, true).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Escalator for Escalation {
    async fn escalate(&self, r: &Rollback) -> StepOutcome {
        let failure = r
            .last_error
            .clone()
            .unwrap_or_else(|| "the rollback failed".into());
        let earlier = match pages::earlier_failures(&self.pool, r).await {
            Ok(earlier) => earlier,
            Err(e) => return StepOutcome::Retry(format!("reading earlier failures: {e}")),
        };
        let reason = match repeat_note(r, &earlier) {
            Some(note) => format!("{note}: {failure}"),
            None => failure,
        };
        let mut evidence = evidence(r);
        let diagnosis = match self.diagnose(r).await {
            Some(Ok(diagnosis)) => {
                evidence.extend(diagnosis.lines());
                Some(diagnosis)
            }
            Some(Err(e)) => {
                warn!(rollback_id = r.id, error = %e, "cannot read the failing workload");
                evidence.push(format!("cluster state unavailable: {}", truncate(&e, 300)));
                None
            }
            None => None,
        };
        let pagerduty = match &self.pager {
            None => PageResult::NotConfigured,
            Some(pager) => {
                let key = dedup_key(&r.cluster, &r.namespace, &r.deployment);
                let alert = alert(r, &reason, &evidence, diagnosis.as_ref(), &self.severity);
                let body = event_body(Action::Trigger, &key, Some(&alert));
                let delivered = async {
                    let event =
                        match pages::record(&self.pool, r.id, Action::Trigger, &key, &body, None)
                            .await?
                        {
                            Some(event) => event,
                            None => pages::find(&self.pool, r.id, Action::Trigger).await?,
                        };
                    failpoint::hit("escalation.after_intent");
                    deliver(&self.pool, pager, &event, false).await
                };
                match delivered.await {
                    Ok(delivery) => delivery.result(&key),
                    Err(e) => {
                        return StepOutcome::Retry(format!("recording the PagerDuty page: {e}"));
                    }
                }
            }
        };
        let mut result = EscalateResult {
            reason: Some(reason),
            evidence,
            mention: self.user_group.clone(),
            earlier_failures: earlier,
            pagerduty: Some(pagerduty),
            notify: None,
            ticket: None,
        };
        if let Some((deployer, tickets)) = &self.post_incident {
            // Both are exactly once across re-runs (their intents); the ticket quotes the
            // escalation as recorded here.
            let mut escalated = r.clone();
            escalated.steps["escalate"] = result.to_json();
            result.notify = NotifyResult::from_json(&deployer.notify(&escalated).await);
            result.ticket = TicketResult::from_json(&tickets.open(&escalated).await);
        }
        StepOutcome::finished(Event::Escalate, result.to_json())
    }
}

/// Sends a recorded event unless it was sent already, holding its row lock (and the lock of
/// its dedup key) while the call is in flight so no other replica sends it, or another event
/// of the same alert, at the same time. A resolve is withheld when a newer trigger of the
/// same alert was recorded after the one it resolves. With `announce`, a delivery appends an
/// audit row `pagerduty_<action>` to the event's rollback (the thread shows it; the
/// `escalate` step announces its own delivery with its transition instead) and a late
/// trigger updates the card's page line. Giving up is always announced, and counted.
async fn deliver(
    pool: &PgPool,
    pager: &PagerDuty,
    event: &Page,
    announce: bool,
) -> Result<Delivery, sqlx::Error> {
    if event.sent_at.is_some() {
        return Ok(Delivery::AlreadySent);
    }
    let mut tx = pool.begin().await?;
    let locked = pages::lock_for_sending(&mut tx, event.id).await?;
    let sent_at = match locked {
        None => return Ok(Delivery::InFlight),
        Some(sent_at) => sent_at,
    };
    if sent_at.is_some() {
        return Ok(Delivery::AlreadySent);
    }
    pages::lock_dedup_key(&mut tx, &event.dedup_key).await?;
    let is_trigger = event.action == Action::Trigger.as_str();
    if !is_trigger && let Some(newer_failure) = pages::newer_trigger(&mut tx, event.id).await? {
        let why =
            format!("withheld: rollback #{newer_failure} failed since and re-opened the alert");
        pages::abandon(&mut tx, event.id, &why).await?;
        pages::announce(
            &mut tx,
            event.rollback_id,
            "pagerduty_resolve_withheld".into(),
            json!({ "dedup_key": event.dedup_key, "newer_failure": newer_failure }),
        )
        .await?;
        tx.commit().await?;
        info!(rollback_id = event.rollback_id, dedup_key = %event.dedup_key, newer_failure,
              "PagerDuty resolve withheld: a newer failure re-opened the alert");
        return Ok(Delivery::Withheld);
    }
    let sent = pager.send(&event.body).await;
    failpoint::hit("escalation.after_send");
    let delivery = match sent {
        Ok(_) => {
            pages::mark_sent(&mut tx, event.id).await?;
            if announce {
                pages::announce(
                    &mut tx,
                    event.rollback_id,
                    format!("pagerduty_{}", event.action),
                    json!({ "dedup_key": event.dedup_key }),
                )
                .await?;
                if is_trigger {
                    let page = Delivery::Sent.result(&event.dedup_key).to_json();
                    pages::record_page_result(&mut tx, event.rollback_id, &page).await?;
                }
            }
            info!(rollback_id = event.rollback_id, action = %event.action,
                  dedup_key = %event.dedup_key, "PagerDuty accepted the event");
            Delivery::Sent
        }
        Err(e) => {
            let error = e.to_string();
            let (attempts, gave_up) = pages::mark_failed(&mut tx, event.id, error.clone()).await?;
            if gave_up {
                warn!(rollback_id = event.rollback_id, action = %event.action, attempts,
                      error = %error, "PagerDuty never accepted the event; giving up");
                metrics().pagerduty_gave_up(&event.action);
                pages::announce(
                    &mut tx,
                    event.rollback_id,
                    "pagerduty_gave_up".into(),
                    json!({ "dedup_key": event.dedup_key, "event": event.action,
                            "attempts": attempts, "error": error }),
                )
                .await?;
                if is_trigger {
                    let page = PageResult::GaveUp {
                        dedup_key: Some(event.dedup_key.clone()),
                        error: Some(error.clone()),
                        attempts,
                    };
                    pages::record_page_result(&mut tx, event.rollback_id, &page.to_json()).await?;
                }
            } else {
                warn!(rollback_id = event.rollback_id, action = %event.action, error = %error,
                      "PagerDuty did not accept the event; the sweep retries");
            }
            Delivery::Failed(error)
        }
    };
    tx.commit().await?;
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::State;
    use chrono::Utc;
    use serde_json::Value;

    fn failed(steps: Value) -> Rollback {
        let at = Utc::now();
        Rollback {
            id: 7,
            service: "web".into(),
            cluster: "local".into(),
            namespace: "shop".into(),
            deployment: "web".into(),
            requested_revision: None,
            incident: Some("INC-7".into()),
            requested_by: "U0REQ".into(),
            channel_id: "C0INCIDENT1".into(),
            response_url: None,
            force: false,
            state: State::Failed,
            version: 6,
            plan: None,
            plan_fingerprint: None,
            needs_dba: false,
            needs_override: false,
            lead_approved_by: Some("U0LEAD".into()),
            dba_approved_by: None,
            decided_by: None,
            expires_at: at,
            lease_owner: None,
            lease_expires_at: None,
            attempt: 1,
            retries: 0,
            next_attempt_at: None,
            last_error: Some("pods do not stabilise".into()),
            steps,
            created_at: at,
            updated_at: at,
            approved_at: Some(at),
            kind: crate::domain::Kind::Rollback,
            fix_reference: None,
        }
    }

    #[test]
    fn the_dedup_key_names_the_target() {
        assert_eq!(
            dedup_key("local", "shop", "web"),
            "rollback-bot/local/shop/web"
        );
    }

    #[test]
    fn evidence_is_the_failed_checks_else_the_error() {
        let r = failed(json!({"verify": {"checks": [
            {"name": "images", "passed": true, "evidence": "all web:1.1.0"},
            {"name": "pods-no-restarts", "passed": false, "evidence": "web-1: CrashLoopBackOff, 4 restarts"},
        ]}}));
        assert_eq!(
            evidence(&r),
            vec!["pods-no-restarts: web-1: CrashLoopBackOff, 4 restarts"]
        );
        let r = failed(json!({"execute": {"refusal": "the deployment changed"}}));
        assert_eq!(evidence(&r), vec!["execute: the deployment changed"]);
        assert!(evidence(&failed(json!({}))).is_empty());
        // A rollback that failed after its patch: the lock the patch set is part of the story.
        let locked = failed(json!({
            "execute": {"generation": 2, "lock": {"reason": "r", "rollback_id": 9, "service": "web",
                        "earlier_rollbacks": [4]}, "enforcement": {"enforced": true}},
            "verify": {"checks": [{"name": "pods-no-restarts", "passed": false, "evidence": "web-1: CrashLoopBackOff"}]},
        }));
        let lines = evidence(&locked);
        assert_eq!(lines[0], "pods-no-restarts: web-1: CrashLoopBackOff");
        assert!(
            lines[1].starts_with(
                "deploy lock: the deployment stays locked by rollback #4, #9, enforced by"
            ),
            "{lines:?}"
        );
    }

    #[test]
    fn a_repeated_failure_in_the_incident_says_so() {
        let r = failed(json!({}));
        assert_eq!(repeat_note(&r, &[]), None);
        assert_eq!(
            repeat_note(&r, &[3]).as_deref(),
            Some("2nd failed rollback of web in incident INC-7 (after #3)")
        );
        assert_eq!(
            repeat_note(&r, &[3, 5]).as_deref(),
            Some("3rd failed rollback of web in incident INC-7 (after #3, #5)")
        );
        let mut no_incident = r.clone();
        no_incident.incident = None;
        assert_eq!(repeat_note(&no_incident, &[3]), None);
    }

    #[test]
    fn the_alert_names_the_rollback_and_the_target() {
        let r = failed(json!({}));
        let a = alert(
            &r,
            "pods do not stabilise",
            &["x: y".into()],
            None,
            "critical",
        );
        assert_eq!(
            a.summary,
            "Rollback #7 of web (local/shop/web) failed: pods do not stabilise"
        );
        assert_eq!(a.source, "local/shop/web");
        assert_eq!(a.custom_details["evidence"], json!(["x: y"]));
        assert_eq!(a.custom_details["approved_by"], json!("U0LEAD"));
    }
}
