//! Shares a rollback's recovery chart ([`crate::slack::recovery_chart`]) in its card's thread after
//! the verdict, exactly once across crashes and replicas, as part of the card's sync (under
//! its claim, so only one notifier works on it).
//!
//! Slack's upload is three calls, and only the last one shows anything: get a file id and an
//! upload URL (`files.getUploadURLExternal`), send the bytes there, then share the file in the
//! thread (`files.completeUploadExternal`, callable once per file). Each step's result is
//! recorded (`slack_chart`) before the next starts, so a resumed sync carries on with the
//! *same* file: a file id got but not recorded is never completed (Slack discards it); bytes
//! sent but not recorded are sent again to the same URL; a completion recorded as in flight is
//! first looked up in the thread (a message sharing that file id) and only sent again when it
//! is not there. The PNG itself is recorded before any upload, so the bytes always match the
//! length Slack was told.
//!
//! A refusal (Slack's `ok: false`, an upload URL answering other than 200) never touches the
//! verdict: the thread gets one line saying the chart could not be uploaded and why (recorded
//! as in flight and looked up like any other post). Transport failures and rate limits leave
//! the record where it is for the next sync (the sweep lists charts not done).

use std::sync::Arc;

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use tracing::{debug, warn};

use super::sync_error::{LOOKUP_MARGIN, NotifyError};
use crate::clients::slack::Message;
use crate::clients::slack::{SlackApi, SlackError};
use crate::db::cards::{self as store, Claim, NewChart};
use crate::db::rollbacks::Rollback;
use crate::slack::recovery_chart::ChartMaker;
use crate::support::failpoint;

/// The metadata of the thread line saying the chart could not be uploaded.
pub fn note_metadata(rollback_id: i64) -> Value {
    json!({
        "event_type": "rollback_chart_note",
        "event_payload": { "rollback_id": rollback_id },
    })
}

/// The thread line for a chart Slack refused: the reason, with the scope to add when the app
/// lacks it.
pub fn refusal_note(failure: &str) -> String {
    let hint = if failure.contains("missing_scope") {
        " The Slack app needs the `files:write` scope to upload it."
    } else {
        ""
    };
    format!(
        "⚠️ The recovery chart could not be uploaded: {failure}.{hint} The verdict above stands."
    )
}

/// Whether a failure is Slack refusing (final), not a call that may work later (a transient
/// error on Slack's side, the upload URL answering 5xx, a transport failure, rate limiting).
fn refused(e: &SlackError) -> bool {
    const TRANSIENT: [&str; 5] = [
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "HTTP 5",
    ];
    match e {
        SlackError::Api { error, .. } => !TRANSIENT.iter().any(|t| error.starts_with(t)),
        _ => false,
    }
}

/// Shares recovery charts for the notifier.
pub struct ChartUploader {
    pool: PgPool,
    api: Arc<SlackApi>,
    maker: ChartMaker,
}

impl ChartUploader {
    pub fn new(pool: PgPool, api: Arc<SlackApi>, maker: ChartMaker) -> Self {
        ChartUploader { pool, api, maker }
    }

    /// Brings `r`'s chart one sync further, up to shared (or noted as refused), in the thread
    /// of the card `thread_ts`. Nothing to do without validation evidence.
    ///
    /// # Errors
    /// Slack unreachable or rate limiting, the database, the claim lost: the next sync resumes.
    pub async fn sync(
        &self,
        claim: Claim,
        channel: &str,
        thread_ts: &str,
        r: &Rollback,
    ) -> Result<(), NotifyError> {
        let mut chart = match store::chart(&self.pool, r.id).await? {
            Some(chart) => chart,
            None => {
                let Some(made) = self.maker.make(r).await else {
                    return Ok(());
                };
                match made {
                    Ok(c) => {
                        let new = NewChart {
                            png: &c.png,
                            filename: &c.filename,
                            title: &c.title,
                            comment: &c.comment,
                        };
                        store::chart_rendered(&self.pool, claim, new).await?;
                    }
                    Err(e) => {
                        let failure = format!("the chart could not be drawn ({e})");
                        let filename = format!("rollback-{}-recovery.png", r.id);
                        store::chart_unmade(&self.pool, claim, &filename, &failure).await?;
                    }
                }
                self.reread(r.id).await?
            }
        };
        loop {
            match chart.state.as_str() {
                "rendered" => {
                    let got = self
                        .api
                        .get_upload_url(&chart.filename, chart.length as usize)
                        .await;
                    match got {
                        Ok((file_id, url)) => {
                            failpoint::hit("chart.after_get_url");
                            store::chart_state(&self.pool, claim, "url", Some((&file_id, &url)))
                                .await?;
                        }
                        Err(e) => self.refuse_or_retry(claim, e).await?,
                    }
                }
                "url" => {
                    let (Some(url), Some(png)) = (&chart.upload_url, &chart.png) else {
                        return Ok(()); // excluded by the table's constraints
                    };
                    match self.api.upload(url, png).await {
                        Ok(()) => {
                            failpoint::hit("chart.after_upload");
                            store::chart_state(&self.pool, claim, "uploaded", None).await?;
                        }
                        Err(e) => self.refuse_or_retry(claim, e).await?,
                    }
                }
                "uploaded" => {
                    store::chart_state(&self.pool, claim, "completing", None).await?;
                    failpoint::hit("chart.before_complete");
                    self.complete(claim, channel, thread_ts, &chart).await?;
                }
                "completing" => {
                    let file_id = chart.file_id.clone().unwrap_or_default();
                    let since = chart.started_at.unwrap_or_else(Utc::now) - LOOKUP_MARGIN;
                    let found = self
                        .api
                        .find_file(channel, thread_ts, &file_id, since)
                        .await?;
                    if found.is_some() {
                        debug!(
                            rollback_id = r.id,
                            file_id, "the chart a crashed sync completed is in the thread"
                        );
                        store::chart_state(&self.pool, claim, "shared", None).await?;
                    } else {
                        self.complete(claim, channel, thread_ts, &chart).await?;
                    }
                }
                "failed" => {
                    self.note(claim, channel, thread_ts, r.id, &chart).await?;
                }
                _ => return Ok(()), // shared or noted: done
            }
            chart = self.reread(r.id).await?;
        }
    }

    async fn reread(&self, rollback_id: i64) -> Result<store::Chart, NotifyError> {
        store::chart(&self.pool, rollback_id)
            .await?
            .ok_or_else(|| NotifyError::Database(sqlx::Error::RowNotFound))
    }

    /// `files.completeUploadExternal`, its intent already recorded (`completing`).
    async fn complete(
        &self,
        claim: Claim,
        channel: &str,
        thread_ts: &str,
        chart: &store::Chart,
    ) -> Result<(), NotifyError> {
        let file_id = chart.file_id.as_deref().unwrap_or_default();
        let done = self
            .api
            .complete_upload(file_id, &chart.title, channel, thread_ts, &chart.comment)
            .await;
        match done {
            Ok(()) => {
                failpoint::hit("chart.after_complete");
                store::chart_state(&self.pool, claim, "shared", None).await?;
                Ok(())
            }
            Err(e) => self.refuse_or_retry(claim, e).await,
        }
    }

    /// A refusal is recorded (the thread will say so); anything else is retried later.
    async fn refuse_or_retry(&self, claim: Claim, e: SlackError) -> Result<(), NotifyError> {
        if !refused(&e) {
            return Err(e.into());
        }
        warn!(rollback_id = claim.rollback_id, error = %e, "Slack refused the recovery chart");
        store::chart_failed(&self.pool, claim, &e.to_string()).await?;
        Ok(())
    }

    /// Posts the thread line saying the chart could not be uploaded, unless a crashed sync
    /// already did.
    async fn note(
        &self,
        claim: Claim,
        channel: &str,
        thread_ts: &str,
        rollback_id: i64,
        chart: &store::Chart,
    ) -> Result<(), NotifyError> {
        let metadata = note_metadata(rollback_id);
        let since = chart.started_at.unwrap_or_else(Utc::now) - LOOKUP_MARGIN;
        let posted = self
            .api
            .find_message(channel, Some(thread_ts), &metadata, since)
            .await?;
        if posted.is_none() {
            let text = refusal_note(chart.failure.as_deref().unwrap_or("Slack refused it"));
            let message = Message {
                text,
                blocks: vec![],
            };
            self.api
                .post_message(channel, &message, Some(thread_ts), &metadata)
                .await?;
        }
        store::chart_state(&self.pool, claim, "noted", None).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_note_names_the_reason_and_the_missing_scope() {
        let e = SlackError::Api {
            method: "files.getUploadURLExternal".into(),
            error: "missing_scope".into(),
        };
        assert!(refused(&e));
        let note = refusal_note(&e.to_string());
        assert!(note.contains(
            "could not be uploaded: Slack answered files.getUploadURLExternal with error missing_scope."
        ));
        assert!(note.contains("`files:write`"), "{note}");
        assert!(note.contains("The verdict above stands"));
        let other =
            refusal_note("Slack answered files.completeUploadExternal with error not_in_channel");
        assert!(!other.contains("files:write"));
        assert!(!refused(&SlackError::Transport {
            method: "files.getUploadURLExternal".into(),
            message: "connection refused".into(),
        }));
        for transient in ["internal_error", "HTTP 503 <html>"] {
            assert!(!refused(&SlackError::Api {
                method: "the file upload URL".into(),
                error: transient.into(),
            }));
        }
        assert!(refused(&SlackError::Api {
            method: "the file upload URL".into(),
            error: "HTTP 404 unknown upload".into(),
        }));
        assert!(!refused(&SlackError::RateLimited {
            method: "files.completeUploadExternal".into(),
            retries: 5,
        }));
    }
}
