//! Keeps every rollback's Slack card in step with its database row.
//!
//! The card is a projection: on every change the notifier re-reads the row, re-renders the
//! whole card and `chat.update`s it; each new audit row (a step's start, result and evidence)
//! becomes a reply in the card's thread. What Slack has been shown is persisted in
//! `slack_card` (the rendered version and a cursor over the audit trail), so after a Slack
//! outage or a restart a sweep posts exactly what is missing. Changes arrive as engine
//! [`Observer`] calls, Postgres notifications (`rollback_changed`, also for clicks handled by
//! other replicas) and the periodic sweep.
//!
//! Each card is synced by a task of its own (at most one per card, a bounded number at once),
//! so a card that Slack rate-limits delays nobody else. Posts happen exactly once across
//! crashes and replicas: a sync holds a fenced, renewed claim on the card; a post is recorded
//! as in flight before it is sent and carries message metadata naming the rollback (and for a
//! reply, the audit rows it covers); a post found in flight with no result recorded is looked
//! up in Slack and adopted instead of being sent again (docs/slack.md, "Exactly once"). After
//! the verdict, the recovery chart is shared in the thread the same way
//! ([`super::chart_upload`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::chart_upload::ChartUploader;
use super::render;
pub(crate) use super::sync_error::LOOKUP_MARGIN;
pub use super::sync_error::NotifyError;
use crate::clients::slack::SlackApi;
use crate::db::cards::{self as store, Claim, Post, StoreError};
use crate::db::rollbacks::{self as repo, AuditRow, Rollback};
use crate::domain::{State, Step};
use crate::engine::{Observer, ProgressSink, default_worker_id};
use crate::slack::recovery_chart::ChartMaker;
use crate::support::failpoint;

/// The Postgres channel the `slack_rollback_changed` trigger notifies.
pub const CHANGED_CHANNEL: &str = "rollback_changed";

/// The metadata of a rollback's card: finds the card again when its `ts` was not recorded.
pub fn card_metadata(rollback_id: i64) -> Value {
    json!({ "event_type": "rollback_card", "event_payload": { "rollback_id": rollback_id } })
}

/// The metadata of the thread reply that shows a rollback's audit rows up to `through`.
pub fn reply_metadata(rollback_id: i64, through: i64) -> Value {
    json!({
        "event_type": "rollback_thread_line",
        "event_payload": { "rollback_id": rollback_id, "through_audit_id": through },
    })
}

#[derive(Default)]
struct Live {
    /// The step the message is about: a card shows it only while that step runs, so the last
    /// verification message is not shown as validation's.
    step: Option<Step>,
    message: Option<String>,
    rendered: Option<String>,
    rendered_at: Option<Instant>,
}

/// Which cards have a sync running and which changed meanwhile: at most one sync per card,
/// and changes that arrive during a sync get exactly one more sync after it.
#[derive(Debug, Default)]
struct Scheduler {
    running: HashSet<i64>,
    again: HashSet<i64>,
}

impl Scheduler {
    /// Whether to start a sync of `id` now; if one is running, another follows it.
    fn want(&mut self, id: i64) -> bool {
        if self.running.insert(id) {
            return true;
        }
        self.again.insert(id);
        false
    }

    /// A sync of `id` ended: whether to start the next one now (`id` then stays running).
    fn finished(&mut self, id: i64) -> bool {
        if self.again.remove(&id) {
            return true;
        }
        self.running.remove(&id);
        false
    }
}

/// Reports a sync's end to the loop, even when the sync panicked.
struct Finished {
    id: i64,
    done: mpsc::UnboundedSender<i64>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let _ = self.done.send(self.id);
    }
}

pub struct Notifier {
    pool: PgPool,
    api: Arc<SlackApi>,
    tx: mpsc::UnboundedSender<i64>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<i64>>>,
    live: Mutex<HashMap<i64, Live>>,
    sweep_every: Duration,
    progress_every: Duration,
    owner: String,
    lease: Duration,
    concurrency: usize,
    /// Shares recovery charts after the verdict; none: no charts.
    charts: Option<ChartUploader>,
}

impl Notifier {
    pub fn new(pool: PgPool, api: Arc<SlackApi>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Notifier {
            pool,
            api,
            tx,
            rx: Mutex::new(Some(rx)),
            live: Mutex::new(HashMap::new()),
            sweep_every: Duration::from_secs(5),
            progress_every: Duration::from_secs(1),
            owner: format!("{}/slack", default_worker_id()),
            lease: Duration::from_secs(30),
            concurrency: 8,
            charts: None,
        }
    }

    /// Shares each validated (or not) rollback's recovery chart in its thread after the
    /// verdict (src/slack/chart_upload.rs).
    pub fn with_charts(mut self, maker: ChartMaker) -> Self {
        self.charts = Some(ChartUploader::new(
            self.pool.clone(),
            self.api.clone(),
            maker,
        ));
        self
    }

    /// How often the sweep looks for cards behind their rollback (default 5 s).
    pub fn with_sweep_every(mut self, every: Duration) -> Self {
        self.sweep_every = every;
        self
    }

    /// The claim on a card while syncing it (default 30 s, `slack.notifier_lease`).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Cards synced at the same time (default 8, `slack.notifier_concurrency`).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    pub fn api(&self) -> &Arc<SlackApi> {
        &self.api
    }

    /// Asks the loop to bring rollback `id`'s card up to date.
    pub fn nudge(&self, id: i64) {
        let _ = self.tx.send(id);
    }

    /// Runs the loop until `shutdown`: starts one sync task per card that changed, at most
    /// one per card and `concurrency` at once. Call once.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(mut rx) = self.rx.lock().expect("notifier lock").take() else {
            warn!("Notifier::run called twice; ignoring");
            return;
        };
        let listener = tokio::spawn(self.clone().listen(shutdown.clone()));
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let mut scheduler = Scheduler::default();
        let mut sweep = tokio::time::interval(self.sweep_every);
        loop {
            let mut due = Vec::new();
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(id) = rx.recv() => due.push(id),
                Some(id) = done_rx.recv() => {
                    if scheduler.finished(id) {
                        self.spawn_sync(id, &permits, &done_tx);
                    }
                }
                _ = sweep.tick() => match store::behind(&self.pool).await {
                    Ok(ids) => due.extend(ids),
                    Err(e) => warn!(error = %e, "Slack sweep: cannot list cards behind"),
                },
            }
            while let Ok(id) = rx.try_recv() {
                due.push(id);
            }
            for id in due {
                if scheduler.want(id) {
                    self.spawn_sync(id, &permits, &done_tx);
                }
            }
        }
        listener.abort();
    }

    fn spawn_sync(
        self: &Arc<Self>,
        id: i64,
        permits: &Arc<Semaphore>,
        done: &mpsc::UnboundedSender<i64>,
    ) {
        let this = self.clone();
        let permits = permits.clone();
        let finished = Finished {
            id,
            done: done.clone(),
        };
        tokio::spawn(async move {
            let _finished = finished;
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            if let Err(e) = this.sync(id).await {
                warn!(rollback_id = id, error = %e, "Slack card not updated; the sweep will retry");
            }
        });
    }

    async fn listen(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(l) => l,
                Err(e) => {
                    warn!(error = %e, "Slack notifier cannot LISTEN; sweeping only");
                    tokio::time::sleep(self.sweep_every).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANGED_CHANNEL).await {
                warn!(error = %e, "LISTEN rollback_changed failed");
                tokio::time::sleep(self.sweep_every).await;
                continue;
            }
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        if let Ok(id) = n.payload().parse() {
                            self.nudge(id);
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "rollback_changed notifications broke");
                        break;
                    }
                }
            }
        }
    }

    fn progress_for(&self, r: &Rollback) -> (Option<String>, bool) {
        let mut live = self.live.lock().expect("notifier lock");
        if r.state.is_terminal() {
            live.remove(&r.id);
            return (None, false);
        }
        let Some(l) = live.get_mut(&r.id) else {
            return (None, false);
        };
        if !matches!(r.state, State::Verifying | State::Validating) || l.step != r.state.step() {
            return (None, false);
        }
        let changed = l.message != l.rendered
            && l.rendered_at
                .is_none_or(|at| at.elapsed() >= self.progress_every);
        (l.message.clone(), changed)
    }

    fn rendered_progress(&self, id: i64, message: Option<String>) {
        if let Some(l) = self.live.lock().expect("notifier lock").get_mut(&id) {
            l.rendered = message;
            l.rendered_at = Some(Instant::now());
        }
    }

    /// Brings one rollback's card and thread up to date with the database, under a claim
    /// on the card (nothing happens while another notifier holds it).
    ///
    /// # Errors
    /// Slack or database failures, a claim lost or not renewable; nothing is marked as
    /// shown unless Slack took it.
    pub async fn sync(&self, id: i64) -> Result<(), NotifyError> {
        let r = repo::get(&self.pool, id).await?;
        if r.state == State::Requested {
            return Ok(()); // the card shows a plan; it is posted once there is one
        }
        let Some((claim, card)) =
            store::claim(&self.pool, id, &r.channel_id, &self.owner, self.lease).await?
        else {
            debug!(rollback_id = id, "card claimed by another notifier");
            return Ok(());
        };
        // Losing the claim drops the sync wherever it is (even mid-call): whoever takes the
        // card over finds any post in flight recorded and looks it up.
        let result = tokio::select! {
            result = self.sync_claimed(claim, &card) => result,
            stopped = self.keep(claim) => Err(stopped),
        };
        if let Err(e) = store::release(&self.pool, claim).await {
            warn!(rollback_id = id, error = %e, "cannot release the card claim; it lapses");
        }
        result
    }

    /// Renews `claim` every third of the lease; returns when it cannot be kept: taken over,
    /// or not renewed for two thirds of the lease (stopping before another replica could
    /// take the card over while this one still posts).
    async fn keep(&self, claim: Claim) -> NotifyError {
        let mut renewed_at = tokio::time::Instant::now();
        loop {
            let renewal = async {
                tokio::time::sleep(self.lease / 3).await;
                let sent = tokio::time::Instant::now();
                (sent, store::renew(&self.pool, claim, self.lease).await)
            };
            tokio::select! {
                () = tokio::time::sleep_until(renewed_at + self.lease * 2 / 3) => {
                    return NotifyError::ClaimNotRenewed(claim.rollback_id);
                }
                (sent, renewed) = renewal => match renewed {
                    Ok(true) => renewed_at = sent,
                    Ok(false) => {
                        return StoreError::ClaimLost { rollback_id: claim.rollback_id }.into();
                    }
                    Err(e) => warn!(rollback_id = claim.rollback_id, error = %e,
                                    "cannot renew the card claim"),
                },
            }
        }
    }

    async fn sync_claimed(&self, claim: Claim, card: &store::Card) -> Result<(), NotifyError> {
        let id = claim.rollback_id;
        let r = repo::get(&self.pool, id).await?;
        let (progress, progress_changed) = self.progress_for(&r);
        let channel = card.channel_id.as_str();
        let (ts, mut rendered) = match &card.ts {
            Some(ts) => (ts.clone(), card.rendered_version),
            None => self.post_card(claim, card, &r, progress.clone()).await?,
        };
        let mut permalink = card.permalink.clone();
        if r.incident.is_none() && permalink.is_none() {
            // Without an incident the card itself is the incident record: show its link.
            match self.api.permalink(channel, &ts).await {
                Ok(link) => {
                    store::set_permalink(&self.pool, claim, &link).await?;
                    permalink = Some(link);
                    rendered = -1;
                }
                Err(e) => warn!(rollback_id = id, error = %e, "no permalink for the card"),
            }
        }
        if rendered < r.version || progress_changed {
            let message = render::card(&r, progress.as_deref(), permalink.as_deref(), Utc::now());
            failpoint::hit("notifier.update.before");
            self.api
                .update_message(channel, &ts, &message, &card_metadata(id))
                .await?;
            failpoint::hit("notifier.update.after");
            store::set_rendered(&self.pool, claim, r.version).await?;
            failpoint::hit("notifier.update.after_record");
            self.rendered_progress(id, progress);
        }
        self.catch_up_thread(claim, card, &r, &ts).await?;
        // After the thread shows the verdict (it shows every audit row read above).
        if let Some(charts) = &self.charts {
            charts.sync(claim, channel, &ts, &r).await?;
        }
        Ok(())
    }

    /// Posts the card, or adopts the one a crashed sync posted; returns its `ts` and the
    /// rollback version it shows (-1 for an adopted card: it is re-rendered at once).
    async fn post_card(
        &self,
        claim: Claim,
        card: &store::Card,
        r: &Rollback,
        progress: Option<String>,
    ) -> Result<(String, i64), NotifyError> {
        let metadata = card_metadata(r.id);
        if card.post_in_flight.as_deref() == Some("card") {
            let since = card.post_started_at.unwrap_or_else(Utc::now) - LOOKUP_MARGIN;
            if let Some(ts) = self
                .api
                .find_message(&card.channel_id, None, &metadata, since)
                .await?
            {
                debug!(
                    rollback_id = r.id,
                    ts, "adopting the card a crashed sync posted"
                );
                store::card_posted(&self.pool, claim, &ts, -1).await?;
                return Ok((ts, -1));
            }
        } else {
            store::begin_post(&self.pool, claim, Post::Card).await?;
        }
        let message = render::card(r, progress.as_deref(), None, Utc::now());
        failpoint::hit("notifier.card.before_post");
        let ts = self
            .api
            .post_message(&card.channel_id, &message, None, &metadata)
            .await?;
        failpoint::hit("notifier.card.after_post");
        store::card_posted(&self.pool, claim, &ts, r.version).await?;
        failpoint::hit("notifier.card.after_record");
        self.rendered_progress(r.id, progress);
        Ok((ts, r.version))
    }

    /// Replies in the thread with the audit rows it has not shown yet: first a reply a
    /// crashed sync left in flight (adopted if Slack has it, else sent), then the new rows.
    async fn catch_up_thread(
        &self,
        claim: Claim,
        card: &store::Card,
        r: &Rollback,
        ts: &str,
    ) -> Result<(), NotifyError> {
        let trail = repo::audit_trail(&self.pool, r.id).await?;
        let mut cursor = card.thread_cursor;
        if let (Some("reply"), Some(through)) = (card.post_in_flight.as_deref(), card.reply_through)
        {
            let since = card.post_started_at.unwrap_or_else(Utc::now) - LOOKUP_MARGIN;
            let metadata = reply_metadata(r.id, through);
            let found = self
                .api
                .find_message(&card.channel_id, Some(ts), &metadata, since)
                .await?;
            if found.is_some() {
                debug!(
                    rollback_id = r.id,
                    through, "adopting the reply a crashed sync posted"
                );
                store::reply_posted(&self.pool, claim, through).await?;
            } else {
                let rows = rows_between(&trail, cursor, through);
                self.reply(claim, r, &card.channel_id, ts, &rows, through, true)
                    .await?;
            }
            cursor = through;
        }
        let new = rows_between(&trail, cursor, i64::MAX);
        if let Some(last) = new.last() {
            self.reply(claim, r, &card.channel_id, ts, &new, last.id, false)
                .await?;
        }
        Ok(())
    }

    /// Posts one thread reply showing `rows` (up to audit row `through`), recording its
    /// intent first unless it is already recorded; rows with nothing to show only move the
    /// cursor.
    #[allow(clippy::too_many_arguments)]
    async fn reply(
        &self,
        claim: Claim,
        r: &Rollback,
        channel: &str,
        ts: &str,
        rows: &[AuditRow],
        through: i64,
        intent_recorded: bool,
    ) -> Result<(), NotifyError> {
        let Some(reply) = render::thread_reply(r, rows) else {
            store::reply_posted(&self.pool, claim, through).await?;
            return Ok(());
        };
        if !intent_recorded {
            store::begin_post(&self.pool, claim, Post::Reply { through }).await?;
        }
        failpoint::hit("notifier.reply.before_post");
        self.api
            .post_message(channel, &reply, Some(ts), &reply_metadata(r.id, through))
            .await?;
        failpoint::hit("notifier.reply.after_post");
        store::reply_posted(&self.pool, claim, through).await?;
        failpoint::hit("notifier.reply.after_record");
        Ok(())
    }
}

/// The audit rows after `after` up to and including `through`.
fn rows_between(trail: &[AuditRow], after: i64, through: i64) -> Vec<AuditRow> {
    trail
        .iter()
        .filter(|a| a.id > after && a.id <= through)
        .cloned()
        .collect()
}

#[async_trait]
impl Observer for Notifier {
    async fn changed(&self, rollback: &Rollback) {
        self.nudge(rollback.id);
    }
}

#[async_trait]
impl ProgressSink for Notifier {
    async fn progress(&self, rollback: &Rollback, step: Step, message: &str) {
        let mut live = self.live.lock().expect("notifier lock");
        let l = live.entry(rollback.id).or_default();
        l.step = Some(step);
        l.message = Some(message.to_owned());
        drop(live);
        self.nudge(rollback.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sync_per_card_and_one_more_for_changes_during_it() {
        let mut s = Scheduler::default();
        assert!(s.want(1), "an idle card starts at once");
        assert!(s.want(2), "another card does not wait for the first");
        assert!(!s.want(1), "a running card does not start twice");
        assert!(!s.want(1), "changes during a sync coalesce");
        assert!(s.finished(1), "changes during the sync get one more sync");
        assert!(!s.want(1), "that one is running too");
        assert!(s.finished(1), "and a change during it gets another");
        assert!(!s.finished(1), "no change since: the card goes idle");
        assert!(s.want(1), "an idle card starts again");
        assert!(!s.finished(2));
    }
}
