//! Keeps every rollback's Slack card in step with its database row.
//!
//! The card is a projection: on every change the notifier re-reads the row, re-renders the
//! whole card and `chat.update`s it; each new audit row (a step's start, result and evidence)
//! becomes a reply in the card's thread. What Slack has been shown is persisted in
//! `slack_card` (the rendered version and a cursor over the audit trail), so after a Slack
//! outage or a restart a sweep posts exactly what is missing. Changes arrive as engine
//! [`Observer`] calls, Postgres notifications (`rollback_changed`, also for clicks handled by
//! other replicas) and the periodic sweep; a single loop processes them, coalescing bursts,
//! and live verification progress re-renders the card at most once per `progress_every`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::client::{SlackApi, SlackError};
use super::{render, store};
use crate::rollback::engine::{Observer, ProgressSink};
use crate::rollback::repo::{self, RepoError, Rollback};
use crate::rollback::{State, Step};

/// The Postgres channel the `slack_rollback_changed` trigger notifies.
pub const CHANGED_CHANNEL: &str = "rollback_changed";

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Slack(#[from] SlackError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Default)]
struct Live {
    message: Option<String>,
    rendered: Option<String>,
    rendered_at: Option<Instant>,
}

pub struct Notifier {
    pool: PgPool,
    api: Arc<SlackApi>,
    tx: mpsc::UnboundedSender<i64>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<i64>>>,
    live: Mutex<HashMap<i64, Live>>,
    sweep_every: Duration,
    progress_every: Duration,
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
        }
    }

    /// How often the sweep looks for cards behind their rollback (default 5 s).
    pub fn with_sweep_every(mut self, every: Duration) -> Self {
        self.sweep_every = every;
        self
    }

    pub fn api(&self) -> &Arc<SlackApi> {
        &self.api
    }

    /// Asks the loop to bring rollback `id`'s card up to date.
    pub fn nudge(&self, id: i64) {
        let _ = self.tx.send(id);
    }

    /// Runs the loop until `shutdown`. Call once.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(mut rx) = self.rx.lock().expect("notifier lock").take() else {
            warn!("Notifier::run called twice; ignoring");
            return;
        };
        let listener = tokio::spawn(self.clone().listen(shutdown.clone()));
        let mut sweep = tokio::time::interval(self.sweep_every);
        loop {
            let mut due = BTreeSet::new();
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(id) = rx.recv() => { due.insert(id); }
                _ = sweep.tick() => match store::behind(&self.pool).await {
                    Ok(ids) => due.extend(ids),
                    Err(e) => warn!(error = %e, "Slack sweep: cannot list cards behind"),
                },
            }
            // Coalesce whatever else arrived meanwhile.
            while let Ok(id) = rx.try_recv() {
                due.insert(id);
            }
            for id in due {
                if let Err(e) = self.sync(id).await {
                    warn!(rollback_id = id, error = %e, "Slack card not updated; the sweep will retry");
                }
            }
        }
        listener.abort();
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
        if r.state != State::Verifying {
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

    /// Brings one rollback's card and thread up to date with the database.
    ///
    /// # Errors
    /// Slack or database failures; nothing is marked as shown unless Slack took it.
    pub async fn sync(&self, id: i64) -> Result<(), NotifyError> {
        let r = repo::get(&self.pool, id).await?;
        if r.state == State::Requested {
            return Ok(()); // the card shows a plan; it is posted once there is one
        }
        let (progress, progress_changed) = self.progress_for(&r);
        let card = store::get(&self.pool, id).await?;
        let (channel, ts, mut rendered, cursor, mut permalink) = match card {
            Some(store::Card {
                ts: Some(ts),
                channel_id,
                rendered_version,
                thread_cursor,
                permalink,
                ..
            }) => (channel_id, ts, rendered_version, thread_cursor, permalink),
            other => {
                if !store::claim_post(&self.pool, id, &r.channel_id).await? {
                    debug!(rollback_id = id, "card being posted elsewhere");
                    return Ok(());
                }
                let message = render::card(&r, progress.as_deref(), None, Utc::now());
                match self.api.post_message(&r.channel_id, &message, None).await {
                    Ok(ts) => {
                        store::set_posted(&self.pool, id, &ts, r.version).await?;
                        self.rendered_progress(id, progress.clone());
                        let cursor = other.map_or(0, |c| c.thread_cursor);
                        (r.channel_id.clone(), ts, r.version, cursor, None)
                    }
                    Err(e) => {
                        store::release_post(&self.pool, id).await?;
                        return Err(e.into());
                    }
                }
            }
        };
        if r.incident.is_none() && permalink.is_none() {
            // Without an incident the card itself is the incident record: show its link.
            match self.api.permalink(&channel, &ts).await {
                Ok(link) => {
                    store::set_permalink(&self.pool, id, &link).await?;
                    permalink = Some(link);
                    rendered = -1;
                }
                Err(e) => warn!(rollback_id = id, error = %e, "no permalink for the card"),
            }
        }
        if rendered < r.version || progress_changed {
            let message = render::card(&r, progress.as_deref(), permalink.as_deref(), Utc::now());
            self.api.update_message(&channel, &ts, &message).await?;
            store::set_rendered(&self.pool, id, r.version).await?;
            self.rendered_progress(id, progress);
        }
        let trail = repo::audit_trail(&self.pool, id).await?;
        let new: Vec<_> = trail.into_iter().filter(|a| a.id > cursor).collect();
        if let Some(last) = new.last() {
            if let Some(reply) = render::thread_reply(&r, &new) {
                self.api.post_message(&channel, &reply, Some(&ts)).await?;
            }
            store::set_thread_cursor(&self.pool, id, last.id).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Observer for Notifier {
    async fn changed(&self, rollback: &Rollback) {
        self.nudge(rollback.id);
    }
}

#[async_trait]
impl ProgressSink for Notifier {
    async fn progress(&self, rollback: &Rollback, _step: Step, message: &str) {
        self.live
            .lock()
            .expect("notifier lock")
            .entry(rollback.id)
            .or_default()
            .message = Some(message.to_owned());
        self.nudge(rollback.id);
    }
}
