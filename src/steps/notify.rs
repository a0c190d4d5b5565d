//! The `notify` step: after a successful rollback (and the lock) the engineer who deployed
//! the faulty revision gets a Slack DM with the incident, the card, what was rolled back and
//! that the service is locked until a fix is approved.
//!
//! Who deployed it: the annotation `deployer.annotation` (default
//! `rollback-bot.io/deployed-by`) on the faulty revision's ReplicaSet, else on the Deployment,
//! holding a Slack user id or an email (mapped with `users.lookupByEmail`). Nobody found: the
//! card says so and which annotation to set, and the thread mentions the service's owning
//! team (`deployer.owner_user_groups`, else `deployer.fallback_user_group`) if configured.
//!
//! Exactly once: the DM's intent is recorded (src/db/intents.rs) before `chat.postMessage`, and the
//! message carries metadata naming the rollback. A run that finds the intent without a result
//! (a crash or a lost answer in between) looks the DM up in the DM channel and adopts it
//! instead of sending it again. Slack being down never fails the rollback: after the retries
//! the card shows that the DM could not be sent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tracing::{info, warn};

use crate::clients::k8s::image_lines;
use crate::clients::k8s::{Executor, RollbackPlan};
use crate::clients::slack::Message;
use crate::clients::slack::SlackApi;
use crate::clients::slack::SlackError;
use crate::config::Config;
use crate::db::cards as store;
use crate::db::intents::{self as intent, Action, Begun};
use crate::db::rollbacks::Rollback;
use crate::domain::State;
use crate::domain::results::{EscalateResult, LockResult, NotifyResult};
use crate::support::failpoint;
use crate::support::text::{escape, truncate};

/// A DM found in flight is looked up from this long before its intent was recorded (room
/// for the clocks of Postgres and Slack to disagree).
const LOOKUP_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Attempts at the DM when Slack fails (429s are retried inside each attempt, after their
/// `Retry-After`), and the backoff before the second (doubling).
const DM_ATTEMPTS: u32 = 3;
const DM_BACKOFF: Duration = Duration::from_secs(1);

/// Who an annotation names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    SlackUser(String),
    Email(String),
}

/// Reads an annotation value: a Slack user id (`U…`/`W…`, optionally as `<@U…>`) or an
/// email. Anything else is a clear error naming what was found.
pub fn parse_who(value: &str) -> Result<Who, String> {
    let v = value.trim();
    let id = v
        .strip_prefix("<@")
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(v);
    let is_user_id = id.len() >= 9
        && (id.starts_with('U') || id.starts_with('W'))
        && id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if is_user_id {
        return Ok(Who::SlackUser(id.to_owned()));
    }
    match v.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !v.contains(char::is_whitespace)
                && !domain.contains('@') =>
        {
            Ok(Who::Email(v.to_owned()))
        }
        _ => Err(format!(
            "{:?} is neither a Slack user id (U…/W…) nor an email",
            truncate(v, 100)
        )),
    }
}

/// The annotation's value on the faulty revision's ReplicaSet, else on the Deployment, with
/// where it was found.
pub fn find_annotation<'a>(
    key: &str,
    replica_set: Option<&'a BTreeMap<String, String>>,
    deployment: Option<&'a BTreeMap<String, String>>,
) -> Option<(&'a str, &'static str)> {
    let non_empty = |m: Option<&'a BTreeMap<String, String>>| {
        m.and_then(|m| m.get(key))
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    };
    non_empty(replica_set)
        .map(|v| (v, "replicaset"))
        .or_else(|| non_empty(deployment).map(|v| (v, "deployment")))
}

/// The metadata of the DM of rollback `id`: finds it again when its result was not recorded.
pub fn dm_metadata(rollback_id: i64) -> Value {
    json!({ "event_type": "rollback_deployer_dm", "event_payload": { "rollback_id": rollback_id } })
}

/// What to tell the bot's operators when nobody could be identified.
pub fn how_to_fix(annotation: &str) -> String {
    format!(
        "set the annotation `{annotation}` (a Slack user id like U012ABCDEF, or an email) on \
         the Deployment in your pipeline, so it is copied to each new ReplicaSet"
    )
}

/// The DM to the deployer. Pure.
pub fn dm(r: &Rollback, plan: Option<&RollbackPlan>, card_link: Option<&str>) -> Message {
    let incident = match r.incident.as_deref() {
        Some(i) if i.starts_with("http://") || i.starts_with("https://") => {
            format!("<{}>", escape(i))
        }
        Some(i) => escape(i),
        None => "no incident given (the card is the incident record)".to_owned(),
    };
    let card = card_link.map_or_else(
        || format!("rollback #{} in <#{}>", r.id, r.channel_id),
        |link| format!("<{link}|rollback #{}>", r.id),
    );
    let failed = r.state == State::Failed;
    let headline = if failed {
        format!(
            ":rotating_light: A rollback of *{}*, which you deployed, FAILED during an \
             incident: {}. Platform Engineering is being escalated to; the card's thread has \
             the evidence.",
            escape(&r.service),
            escape(&truncate(
                EscalateResult::from_json(&r.steps["escalate"])
                    .reason
                    .as_deref()
                    .unwrap_or("see the card"),
                500
            ))
        )
    } else {
        format!(
            ":rewind: A revision of *{}* that you deployed was rolled back during an incident.",
            escape(&r.service)
        )
    };
    let mut lines = vec![
        headline,
        format!("*Incident*: {incident}"),
        format!("*Card*: {card}"),
        format!(
            "*Deployment*: {} / {} / {}",
            escape(&r.cluster),
            escape(&r.namespace),
            escape(&r.deployment)
        ),
    ];
    if let Some(p) = plan {
        let from = p
            .current
            .as_ref()
            .map_or_else(|| "?".to_owned(), |c| c.revision.to_string());
        lines.push(format!(
            "*Revision*: {from} → {}\n*Images*:\n{}",
            p.rollback_to.revision,
            image_lines(&p.image_changes)
        ));
    }
    if let Some(lead) = &r.lead_approved_by {
        lines.push(format!(
            "*Requested by* <@{}>, *approved by* <@{lead}>",
            r.requested_by
        ));
    }
    // A failed rollback is locked only if its patch set the lock.
    if !failed || LockResult::of_steps(&r.steps).is_some() {
        lines.push(format!(
            ":lock: *{}* is locked against re-deploys until a fix is approved: once the fix \
             is ready, ask an on-call lead to approve `{}`.",
            escape(&r.service),
            escape(&crate::steps::unlock_command(&r.service))
        ));
    }
    let text = lines.join("\n");
    Message {
        text: truncate(&text, 3000),
        blocks: vec![json!({
            "type": "section",
            "block_id": format!("rb{}.dm", r.id),
            "text": { "type": "mrkdwn", "text": truncate(&text, 3000) },
        })],
    }
}

/// The `notify` step as configured.
pub struct DeployerNotifier {
    pool: PgPool,
    slack: Option<Arc<SlackApi>>,
    config: Arc<Config>,
    executor: Arc<Executor>,
}

impl DeployerNotifier {
    pub fn new(
        pool: PgPool,
        slack: Option<Arc<SlackApi>>,
        config: Arc<Config>,
        executor: Arc<Executor>,
    ) -> Self {
        DeployerNotifier {
            pool,
            slack,
            config,
            executor,
        }
    }

    /// Runs the step; returns its detail for the card (it never fails the rollback).
    pub async fn notify(&self, r: &Rollback) -> Value {
        let annotation = self.config.deployer.annotation.clone();
        let fallback = self.config.deployer.fallback_for(&r.service);
        let not_found = |reason: String| {
            NotifyResult::NotFound {
                reason: Some(reason),
                annotation: Some(annotation.clone()),
                how_to_fix: Some(how_to_fix(&annotation)),
                fallback_group: fallback.map(str::to_owned),
            }
            .to_json()
        };
        let plan: Option<RollbackPlan> =
            r.plan.clone().and_then(|p| serde_json::from_value(p).ok());
        let found = match self.read_annotation(r, plan.as_ref()).await {
            Ok(found) => found,
            Err(e) => {
                return NotifyResult::Failed {
                    error: Some(format!("reading who deployed the revision: {e}")),
                    attempts: None,
                }
                .to_json();
            }
        };
        let Some((value, on)) = found else {
            return not_found(format!(
                "no `{annotation}` annotation on the faulty revision's ReplicaSet or on the Deployment"
            ));
        };
        let who = match parse_who(&value) {
            Ok(who) => who,
            Err(e) => return not_found(format!("the `{annotation}` annotation ({on}): {e}")),
        };
        let Some(slack) = &self.slack else {
            return NotifyResult::NotConfigured {
                error: Some("no SLACK_BOT_TOKEN: nobody can be messaged".into()),
            }
            .to_json();
        };
        let mut outcome = json!({});
        for attempt in 1..=DM_ATTEMPTS {
            outcome = match self.deliver(slack, r, plan.as_ref(), &who).await {
                Ok(Delivered::Sent(detail)) => return detail,
                Ok(Delivered::NoSuchUser(email)) => {
                    return not_found(format!(
                        "the `{annotation}` annotation ({on}) names {email}, which is no \
                         active Slack user (users.lookupByEmail)"
                    ));
                }
                Err(e) => {
                    warn!(rollback_id = r.id, attempt, error = %e, "DM to the deployer failed");
                    if let Err(db) =
                        intent::failed(&self.pool, r.id, Action::DeployerDm, &e.to_string()).await
                    {
                        warn!(rollback_id = r.id, error = %db, "recording the failed DM");
                    }
                    NotifyResult::Failed {
                        error: Some(e.to_string()),
                        attempts: Some(attempt),
                    }
                    .to_json()
                }
            };
            if attempt < DM_ATTEMPTS {
                tokio::time::sleep(DM_BACKOFF.saturating_mul(1 << (attempt - 1))).await;
            }
        }
        outcome
    }

    /// The annotation's value and where it was found.
    async fn read_annotation(
        &self,
        r: &Rollback,
        plan: Option<&RollbackPlan>,
    ) -> Result<Option<(String, &'static str)>, crate::clients::k8s::Error> {
        let (replica_set, deployment) = crate::clients::k8s::deployments::annotations(
            self.executor.clusters(),
            &r.cluster,
            &r.namespace,
            plan.and_then(|p| p.current.as_ref())
                .map(|c| c.name.as_str()),
            &r.deployment,
        )
        .await?;
        Ok(find_annotation(
            &self.config.deployer.annotation,
            replica_set.as_ref(),
            deployment.as_ref(),
        )
        .map(|(v, on)| (v.to_owned(), on)))
    }

    /// One attempt: resolve the user, record the intent, find or send the DM, record it.
    async fn deliver(
        &self,
        slack: &SlackApi,
        r: &Rollback,
        plan: Option<&RollbackPlan>,
        who: &Who,
    ) -> Result<Delivered, DmError> {
        let (user, email) = match who {
            Who::SlackUser(id) => (id.clone(), None),
            Who::Email(email) => match slack.user_by_email(email).await? {
                Some(id) => (id, Some(email.clone())),
                None => return Ok(Delivered::NoSuchUser(email.clone())),
            },
        };
        let sent = |channel: &str, ts: &str, already: bool| {
            NotifyResult::Sent {
                user: Some(user.clone()),
                email: email.clone(),
                channel: Some(channel.to_owned()),
                ts: Some(ts.to_owned()),
                already_sent: already,
            }
            .to_json()
        };
        let pending = match intent::begin(&self.pool, r.id, Action::DeployerDm).await? {
            Begun::Done(result) => {
                let mut detail = result;
                detail["already_sent"] = json!(true);
                return Ok(Delivered::Sent(detail));
            }
            Begun::Fresh => None,
            Begun::Pending { recorded_at } => Some(recorded_at),
        };
        failpoint::hit("deployer.dm.after_intent");
        let channel = slack.open_dm(&user).await?;
        let metadata = dm_metadata(r.id);
        if let Some(recorded_at) = pending
            && let Some(ts) = slack
                .find_message(&channel, None, &metadata, recorded_at - LOOKUP_MARGIN)
                .await?
        {
            info!(
                rollback_id = r.id,
                "found the DM to the deployer sent before; not sending it again"
            );
            let detail = sent(&channel, &ts, true);
            intent::complete(&self.pool, r.id, Action::DeployerDm, &detail).await?;
            return Ok(Delivered::Sent(detail));
        }
        let link = card_link(&self.pool, slack, r.id).await;
        let ts = slack
            .post_message(&channel, &dm(r, plan, link.as_deref()), None, &metadata)
            .await?;
        failpoint::hit("deployer.dm.after_post");
        let detail = sent(&channel, &ts, false);
        intent::complete(&self.pool, r.id, Action::DeployerDm, &detail).await?;
        info!(rollback_id = r.id, user = %user, "DM sent to the deployer");
        Ok(Delivered::Sent(detail))
    }
}

/// The permalink of rollback `id`'s card, if the card is posted and Slack answers.
pub async fn card_link(pool: &PgPool, slack: &SlackApi, id: i64) -> Option<String> {
    let card = store::get(pool, id).await.ok().flatten()?;
    if let Some(link) = card.permalink {
        return Some(link);
    }
    let ts = card.ts?;
    match slack.permalink(&card.channel_id, &ts).await {
        Ok(link) => Some(link),
        Err(e) => {
            warn!(rollback_id = id, error = %e, "no permalink for the card");
            None
        }
    }
}

enum Delivered {
    Sent(Value),
    NoSuchUser(String),
}

#[derive(Debug, thiserror::Error)]
enum DmError {
    #[error(transparent)]
    Slack(#[from] SlackError),
    #[error("recording the DM: {0}")]
    Database(#[from] sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_annotation_names_a_user_id_or_an_email() {
        assert_eq!(
            parse_who(" U0DEPLOYER1 "),
            Ok(Who::SlackUser("U0DEPLOYER1".into()))
        );
        assert_eq!(
            parse_who("<@W0DEPLOYER1>"),
            Ok(Who::SlackUser("W0DEPLOYER1".into()))
        );
        assert_eq!(
            parse_who("dev@example.com"),
            Ok(Who::Email("dev@example.com".into()))
        );
        for bad in [
            "ci-bot",
            "u0lower",
            "a b@example.com",
            "@example.com",
            "x@y",
        ] {
            assert!(parse_who(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_replica_set_wins_over_the_deployment() {
        let key = "rollback-bot.io/deployed-by";
        let rs = BTreeMap::from([(key.to_owned(), "U0FROMRS01".to_owned())]);
        let d = BTreeMap::from([(key.to_owned(), "U0FROMDEP1".to_owned())]);
        let empty = BTreeMap::from([(key.to_owned(), " ".to_owned())]);
        assert_eq!(
            find_annotation(key, Some(&rs), Some(&d)),
            Some(("U0FROMRS01", "replicaset"))
        );
        assert_eq!(
            find_annotation(key, Some(&empty), Some(&d)),
            Some(("U0FROMDEP1", "deployment"))
        );
        assert_eq!(find_annotation(key, None, None), None);
        assert_eq!(find_annotation("other", Some(&rs), Some(&d)), None);
    }

    #[test]
    fn the_dm_links_the_incident_and_the_card_and_says_the_service_is_locked() {
        use crate::domain::State;
        let mut r = crate::slack::render::tests::rollback(State::Notifying);
        r.incident = Some("https://status.example.com/INC-9".into());
        r.lead_approved_by = Some("U0LEAD0001".into());
        let dm = dm(&r, None, Some("https://example.slack.com/archives/C1/p1"));
        for part in [
            "*Incident*: <https://status.example.com/INC-9>",
            "*Card*: <https://example.slack.com/archives/C1/p1|rollback #7>",
            "*Requested by* <@U0REQUESTER>, *approved by* <@U0LEAD0001>",
            "`/rollback unlock checkout-api &lt;fix reference&gt;`",
        ] {
            assert!(dm.text.contains(part), "{part:?} missing: {}", dm.text);
        }
        assert_eq!(dm.blocks[0]["text"]["text"], json!(dm.text));
        let no_link = super::dm(&r, None, None);
        assert!(
            no_link.text.contains("*Card*: rollback #7 in <#C1>"),
            "{}",
            no_link.text
        );
    }

    #[test]
    fn the_fix_names_the_annotation() {
        assert!(how_to_fix("x.io/who").contains("`x.io/who`"));
    }
}
