//! The Slack Web API, through slack-morphism's hyper client: post and update messages, find a
//! message again by its metadata, upload a file into a thread (files.getUploadURLExternal, the
//! bytes to the upload URL, files.completeUploadExternal) and find it again, read a user group,
//! answer through a `response_url`. The base URL is configurable
//! (`server.slack_api_url` / `SLACK_API_URL`) and plain `http://` is accepted so tests can
//! use a local stand-in. A 429 is retried after its `Retry-After`; other failures are
//! returned (the notifier catches up later from the database).

use std::time::Duration;

use serde_json::{Value, json};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tracing::{debug, warn};

/// A message: notification fallback `text` plus `blocks`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    pub blocks: Vec<Value>,
}

/// Errors of Slack Web API calls.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error("Slack answered {method} with error {error}")]
    Api { method: String, error: String },
    #[error("Slack kept rate-limiting {method} after {retries} retries")]
    RateLimited { method: String, retries: u32 },
    #[error("Slack {method} failed: {message}")]
    Transport { method: String, message: String },
    #[error("cannot build the Slack client: {0}")]
    Setup(String),
}

/// Pages of 200 messages [`SlackApi::find_message`] reads at most.
pub const LOOKUP_PAGES: usize = 20;

/// Whether a message (as `conversations.history` returns it) carries `metadata`'s
/// `event_type` and every field of its `event_payload`.
pub fn has_metadata(message: &Value, metadata: &Value) -> bool {
    let have = &message["metadata"];
    have["event_type"] == metadata["event_type"]
        && metadata["event_payload"]
            .as_object()
            .is_some_and(|want| want.iter().all(|(k, v)| &have["event_payload"][k] == v))
}

/// slack-morphism's hyper connector for `api_url`, accepting `http://` as well as `https://`
/// (slack-morphism's default connector is https-only, which rules out a local stand-in).
///
/// # Errors
/// When no TLS root certificates can be loaded.
pub fn connector(api_url: &str) -> Result<SlackClientHyperHttpsConnector, SlackError> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| SlackError::Setup(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(SlackClientHyperConnector::with_connector(https)
        .with_slack_api_url(api_url.trim_end_matches('/')))
}

/// How long the bytes of a file upload may take.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A Slack Web API client bound to the bot token.
pub struct SlackApi {
    client: SlackClient<SlackClientHyperHttpsConnector>,
    /// For the upload URL (files.slack.com), which is no Web API method.
    http: crate::clients::prometheus::HttpClient,
    token: SlackApiToken,
    max_retries: u32,
    max_retry_wait: Duration,
}

impl SlackApi {
    /// A client for `api_url` (e.g. `https://slack.com/api/`) with the bot token.
    ///
    /// # Errors
    /// When no TLS root certificates can be loaded.
    pub fn new(api_url: &str, bot_token: &str) -> Result<Self, SlackError> {
        Ok(SlackApi {
            client: SlackClient::new(connector(api_url)?),
            http: crate::clients::prometheus::HttpClient::new()
                .map_err(|e| SlackError::Setup(e.to_string()))?,
            token: SlackApiToken::new(SlackApiTokenValue::new(bot_token.to_owned())),
            max_retries: 5,
            max_retry_wait: Duration::from_secs(60),
        })
    }

    /// Calls `method` with a JSON body, retrying 429s after `Retry-After`.
    ///
    /// # Errors
    /// [`SlackError`]: Slack's `error`, persistent rate limiting, transport failures.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let session = self.client.open_session(&self.token);
        self.with_retries(method, || {
            session.http_session_api.http_post(method, body, None)
        })
        .await
    }

    /// Calls a read method with query parameters (GET), retrying 429s like [`SlackApi::call`].
    ///
    /// # Errors
    /// See [`SlackApi::call`].
    pub async fn get(&self, method: &str, params: &[(&str, &str)]) -> Result<Value, SlackError> {
        let session = self.client.open_session(&self.token);
        let params: Vec<(&str, Option<&str>)> =
            params.iter().map(|(k, v)| (*k, Some(*v))).collect();
        self.with_retries(method, || {
            session.http_session_api.http_get(method, &params, None)
        })
        .await
    }

    async fn with_retries<F, Fut>(&self, method: &str, send: F) -> Result<Value, SlackError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Value, SlackClientError>>,
    {
        let mut retries = 0;
        loop {
            match send().await {
                Ok(v) => return Ok(v),
                Err(SlackClientError::RateLimitError(e)) if retries < self.max_retries => {
                    retries += 1;
                    let wait = e
                        .retry_after
                        .unwrap_or(Duration::from_secs(1))
                        .min(self.max_retry_wait);
                    warn!(
                        method,
                        retry_after_ms = wait.as_millis() as u64,
                        retries,
                        "Slack rate limit; retrying after Retry-After"
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(SlackClientError::RateLimitError(_)) => {
                    return Err(SlackError::RateLimited {
                        method: method.into(),
                        retries,
                    });
                }
                Err(SlackClientError::ApiError(e)) => {
                    return Err(SlackError::Api {
                        method: method.into(),
                        error: e.code,
                    });
                }
                Err(e) => {
                    return Err(SlackError::Transport {
                        method: method.into(),
                        message: e.to_string(),
                    });
                }
            }
        }
    }

    /// `chat.postMessage` with message `metadata` (`{event_type, event_payload}`, which lets
    /// [`SlackApi::find_message`] find the message again); returns the message's `ts`.
    ///
    /// # Errors
    /// See [`SlackApi::call`].
    pub async fn post_message(
        &self,
        channel: &str,
        message: &Message,
        thread_ts: Option<&str>,
        metadata: &Value,
    ) -> Result<String, SlackError> {
        let mut body = json!({
            "channel": channel,
            "text": message.text,
            "blocks": message.blocks,
            "unfurl_links": false,
            "metadata": metadata,
        });
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
        }
        let answer = self.call("chat.postMessage", &body).await?;
        answer["ts"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SlackError::Api {
                method: "chat.postMessage".into(),
                error: "no ts in the answer".into(),
            })
    }

    /// `chat.update` of a message the bot posted, keeping its `metadata`.
    ///
    /// # Errors
    /// See [`SlackApi::call`].
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        message: &Message,
        metadata: &Value,
    ) -> Result<(), SlackError> {
        let body = json!({
            "channel": channel,
            "ts": ts,
            "text": message.text,
            "blocks": message.blocks,
            "metadata": metadata,
        });
        self.call("chat.update", &body).await.map(|_| ())
    }

    /// The `ts` of the message in `channel` (or in the thread of `thread_ts`) posted at or
    /// after `oldest` whose metadata carries `metadata`'s `event_type` and every field of its
    /// `event_payload`: `conversations.history` / `conversations.replies` with
    /// `include_all_metadata`, newest pages first, at most [`LOOKUP_PAGES`] pages.
    ///
    /// # Errors
    /// See [`SlackApi::call`]; also when the messages since `oldest` fill more than
    /// [`LOOKUP_PAGES`] pages (the caller must not assume the message is missing).
    pub async fn find_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        metadata: &Value,
        oldest: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<String>, SlackError> {
        self.find(channel, thread_ts, oldest, |m| has_metadata(m, metadata))
            .await
    }

    /// The `ts` of the message in the thread of `thread_ts` posted at or after `oldest` that
    /// shares file `file_id` (a completed upload); like [`SlackApi::find_message`].
    ///
    /// # Errors
    /// See [`SlackApi::find_message`].
    pub async fn find_file(
        &self,
        channel: &str,
        thread_ts: &str,
        file_id: &str,
        oldest: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<String>, SlackError> {
        self.find(channel, Some(thread_ts), oldest, |m| {
            m["files"]
                .as_array()
                .is_some_and(|files| files.iter().any(|f| f["id"] == file_id))
        })
        .await
    }

    async fn find(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        oldest: chrono::DateTime<chrono::Utc>,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Option<String>, SlackError> {
        let method = match thread_ts {
            Some(_) => "conversations.replies",
            None => "conversations.history",
        };
        let oldest = format!("{}.000000", oldest.timestamp());
        let mut cursor = String::new();
        for _ in 0..LOOKUP_PAGES {
            let mut params = vec![
                ("channel", channel),
                ("include_all_metadata", "true"),
                ("limit", "200"),
                ("oldest", oldest.as_str()),
            ];
            if let Some(ts) = thread_ts {
                params.push(("ts", ts));
            }
            if !cursor.is_empty() {
                params.push(("cursor", cursor.as_str()));
            }
            let answer = self.get(method, &params).await?;
            let messages = answer["messages"].as_array().map(Vec::as_slice);
            if let Some(found) = messages.unwrap_or_default().iter().find(|m| matches(m)) {
                return Ok(found["ts"].as_str().map(str::to_owned));
            }
            cursor = answer["response_metadata"]["next_cursor"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if cursor.is_empty() {
                return Ok(None);
            }
        }
        Err(SlackError::Api {
            method: method.into(),
            error: format!("more than {LOOKUP_PAGES} pages of messages to look through"),
        })
    }

    /// `files.getUploadURLExternal`: a file id and the URL to send its `length` bytes to.
    ///
    /// # Errors
    /// See [`SlackApi::call`].
    pub async fn get_upload_url(
        &self,
        filename: &str,
        length: usize,
    ) -> Result<(String, String), SlackError> {
        let method = "files.getUploadURLExternal";
        let length = length.to_string();
        let answer = self
            .get(method, &[("filename", filename), ("length", &length)])
            .await?;
        match (answer["file_id"].as_str(), answer["upload_url"].as_str()) {
            (Some(id), Some(url)) => Ok((id.to_owned(), url.to_owned())),
            _ => Err(SlackError::Api {
                method: method.into(),
                error: "no file_id or upload_url in the answer".into(),
            }),
        }
    }

    /// Sends a file's bytes to the URL [`SlackApi::get_upload_url`] gave (raw bytes; no
    /// token: the URL is the credential). Slack answers 200 when it took them.
    ///
    /// # Errors
    /// [`SlackError::Api`] for any other status, [`SlackError::Transport`] when unreachable.
    pub async fn upload(&self, upload_url: &str, bytes: &[u8]) -> Result<(), SlackError> {
        let method = "the file upload URL";
        let answer = self
            .http
            .post(
                upload_url,
                "application/octet-stream",
                bytes::Bytes::copy_from_slice(bytes),
                UPLOAD_TIMEOUT,
            )
            .await;
        match answer {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(SlackError::Api {
                method: method.into(),
                error: format!(
                    "HTTP {status} {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            }),
            Err(e) => Err(SlackError::Transport {
                method: method.into(),
                message: e.to_string(),
            }),
        }
    }

    /// `files.completeUploadExternal`: shares uploaded file `file_id` as a reply in the thread
    /// of `thread_ts`, introduced by `comment`.
    ///
    /// # Errors
    /// See [`SlackApi::call`].
    pub async fn complete_upload(
        &self,
        file_id: &str,
        title: &str,
        channel: &str,
        thread_ts: &str,
        comment: &str,
    ) -> Result<(), SlackError> {
        let body = json!({
            "files": [{ "id": file_id, "title": title }],
            "channel_id": channel,
            "thread_ts": thread_ts,
            "initial_comment": comment,
        });
        self.call("files.completeUploadExternal", &body)
            .await
            .map(|_| ())
    }

    /// `chat.getPermalink` of a message.
    ///
    /// # Errors
    /// See [`SlackApi::call`].
    pub async fn permalink(&self, channel: &str, ts: &str) -> Result<String, SlackError> {
        let answer = self
            .get(
                "chat.getPermalink",
                &[("channel", channel), ("message_ts", ts)],
            )
            .await?;
        answer["permalink"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SlackError::Api {
                method: "chat.getPermalink".into(),
                error: "no permalink in the answer".into(),
            })
    }

    /// `conversations.open` of a DM with `user`: the DM channel's id (the same one every
    /// time, so opening again after a crash is harmless).
    ///
    /// # Errors
    /// See [`SlackApi::call`].
    pub async fn open_dm(&self, user: &str) -> Result<String, SlackError> {
        let answer = self
            .call("conversations.open", &json!({ "users": user }))
            .await?;
        answer["channel"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SlackError::Api {
                method: "conversations.open".into(),
                error: "no channel id in the answer".into(),
            })
    }

    /// `users.lookupByEmail`: the id of the active user with `email`, `None` when Slack knows
    /// no such user (`users_not_found`) or the account is deactivated.
    ///
    /// # Errors
    /// See [`SlackApi::call`] (e.g. `missing_scope` without `users:read.email`).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<String>, SlackError> {
        let answer = match self.get("users.lookupByEmail", &[("email", email)]).await {
            Ok(answer) => answer,
            Err(SlackError::Api { error, .. }) if error == "users_not_found" => return Ok(None),
            Err(e) => return Err(e),
        };
        let user = &answer["user"];
        if user["deleted"].as_bool() == Some(true) {
            return Ok(None);
        }
        Ok(user["id"].as_str().map(str::to_owned))
    }

    /// `usergroups.users.list`: the user ids of a user group.
    ///
    /// # Errors
    /// See [`SlackApi::call`].
    pub async fn usergroup_members(&self, usergroup: &str) -> Result<Vec<String>, SlackError> {
        let answer = self
            .get("usergroups.users.list", &[("usergroup", usergroup)])
            .await?;
        Ok(answer["users"]
            .as_array()
            .map(|users| {
                users
                    .iter()
                    .filter_map(|u| u.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Posts an ephemeral message to the user through a `response_url` (no token is sent).
    ///
    /// # Errors
    /// Transport failures and Slack's errors.
    pub async fn respond(&self, response_url: &str, text: &str) -> Result<(), SlackError> {
        let message = Message {
            text: text.to_owned(),
            blocks: vec![],
        };
        self.respond_message(response_url, &message).await
    }

    /// Like [`SlackApi::respond`], with the message's blocks (buttons included).
    ///
    /// # Errors
    /// Transport failures and Slack's errors; blocks slack-morphism cannot represent.
    pub async fn respond_message(
        &self,
        response_url: &str,
        message: &Message,
    ) -> Result<(), SlackError> {
        let url: url::Url =
            response_url
                .parse()
                .map_err(|e: url::ParseError| SlackError::Transport {
                    method: "response_url".into(),
                    message: e.to_string(),
                })?;
        let mut content = SlackMessageContent::new()
            .with_text(crate::support::text::truncate(&message.text, 3000));
        if !message.blocks.is_empty() {
            let blocks: Vec<SlackBlock> =
                serde_json::from_value(json!(message.blocks)).map_err(|e| {
                    SlackError::Transport {
                        method: "response_url".into(),
                        message: format!("unrepresentable blocks: {e}"),
                    }
                })?;
            content = content.with_blocks(blocks);
        }
        let request = SlackApiPostWebhookMessageRequest::new(content);
        debug!("answering through response_url");
        self.client
            .post_webhook_message(&url, &request)
            .await
            .map(|_| ())
            .map_err(|e| SlackError::Transport {
                method: "response_url".into(),
                message: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_matches_on_event_type_and_every_payload_field() {
        let want = json!({"event_type": "rollback_thread_line",
                          "event_payload": {"rollback_id": 7, "through_audit_id": 42}});
        let message = |metadata: Value| json!({"ts": "1.2", "metadata": metadata});
        assert!(has_metadata(
            &message(json!({"event_type": "rollback_thread_line",
                            "event_payload": {"rollback_id": 7, "through_audit_id": 42, "x": 1}})),
            &want
        ));
        for other in [
            json!({"event_type": "rollback_card", "event_payload": {"rollback_id": 7, "through_audit_id": 42}}),
            json!({"event_type": "rollback_thread_line", "event_payload": {"rollback_id": 8, "through_audit_id": 42}}),
            json!({"event_type": "rollback_thread_line", "event_payload": {"rollback_id": 7}}),
            Value::Null,
        ] {
            assert!(!has_metadata(&message(other.clone()), &want), "{other}");
        }
        assert!(!has_metadata(
            &message(want.clone()),
            &json!({"event_type": "rollback_thread_line"})
        ));
    }
}
