//! A local stand-in for the Slack Web API: an axum server on 127.0.0.1:0 that records every
//! call and enforces the documented contract the bot relies on — bearer token, required
//! fields, `thread_ts` naming a posted message, `chat.update` of a message the bot posted,
//! Block Kit limits (50 blocks, text lengths, unique `block_id`s, button limits, confirm
//! dialogs), message `metadata` (`event_type` + `event_payload` object). A breach is answered
//! like Slack (`ok: false`) and recorded as a violation. `conversations.history` and
//! `conversations.replies` page through what was posted (newest / oldest first, `oldest`,
//! `limit`, `cursor`), returning metadata only with `include_all_metadata`. It can answer 429
//! with `Retry-After` (the next calls, or every call for one channel), be slow or down (503),
//! and serves `response_url`s. Message `ts`s follow the wall clock, as Slack's do.
//! Optionally it enforces Slack's per-method rate limits itself ([`super::limits`]), and it
//! serves Socket Mode: `apps.connections.open` with the app token hands out a WebSocket
//! ([`super::socket_mode`]). Every change is announced on [`SlackStandIn::changes`].
//! File uploads (`files.getUploadURLExternal`, the upload URL, `files.completeUploadExternal`)
//! are in [`super::files`].
//!
//! Tests use it as `use slack_sandbox::web_api as slack_standin;`; the sandbox
//! (`slack_sandbox`) serves it to a person's browser.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};

use super::Changes;
pub use super::requests;
pub mod files;
use super::limits::RateLimits;
use super::socket_mode::Hub;
use files as slack_files;
pub mod users;

/// One recorded Web API call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    /// HTTP status answered.
    pub status: u16,
    /// Slack's `error` when `ok` was false.
    pub error: Option<String>,
}

/// A message as the stand-in holds it (the latest version after updates).
#[derive(Debug, Clone)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Vec<Value>,
    pub updates: usize,
    /// The message metadata (`event_type`, `event_payload`), if any.
    pub metadata: Option<Value>,
    /// Files the message shares (`files.completeUploadExternal`).
    pub files: Vec<Value>,
}

#[derive(Default)]
pub(super) struct Inner {
    token: String,
    pub(super) calls: Mutex<Vec<Call>>,
    pub(super) violations: Mutex<Vec<String>>,
    pub(super) messages: Mutex<Vec<Posted>>,
    responses: Mutex<Vec<Value>>,
    usergroups: Mutex<HashMap<String, Vec<String>>>,
    pub(super) next_ts: AtomicU64,
    rate_limited: AtomicU32,
    retry_after_secs: AtomicU64,
    /// Channels whose every call is answered 429 with this `Retry-After`.
    limited_channels: Mutex<HashMap<String, u64>>,
    /// Methods answered only after this delay.
    slow_methods: Mutex<HashMap<String, Duration>>,
    down: AtomicBool,
    /// Slack's own rate limits, when enforced.
    limits: Mutex<Option<RateLimits>>,
    /// Socket Mode: the app token, tickets and open sockets.
    socket: Arc<Hub>,
    changes: Changes,
    pub(super) files: slack_files::Files,
    pub(super) directory: Mutex<users::Directory>,
}

/// The running stand-in.
#[derive(Clone)]
pub struct SlackStandIn {
    addr: SocketAddr,
    pub(super) inner: Arc<Inner>,
}

impl SlackStandIn {
    /// Starts a stand-in that accepts `token` as the bot token.
    pub async fn start(token: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let standin = SlackStandIn::new(token, listener.local_addr().unwrap());
        let app = standin.routes();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        standin
    }

    /// A stand-in reachable at `addr` once [`SlackStandIn::routes`] are served there.
    pub fn new(token: &str, addr: SocketAddr) -> Self {
        let changes = Changes::default();
        let inner = Arc::new(Inner {
            token: token.to_owned(),
            next_ts: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_micros() as u64,
            ),
            socket: Arc::new(Hub::new(addr, changes.clone())),
            changes,
            ..Default::default()
        });
        SlackStandIn { addr, inner }
    }

    /// The Web API, the `response_url`s and the Socket Mode WebSocket.
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/api/{method}", any(api_and_announce))
            .route("/response/{id}", post(response_url))
            .route("/upload/{file_id}", post(slack_files::upload))
            .route("/files/{file_id}", get(slack_files::shared_file))
            .with_state(self.inner.clone())
            .merge(super::socket_mode::routes(self.inner.socket.clone()))
    }

    /// Bumped after every Web API call and `response_url` answer.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Announces a change made elsewhere (the sandbox page's own state).
    pub fn announce(&self) {
        self.inner.changes.bump();
    }

    /// Socket Mode: the app-level token `apps.connections.open` accepts, and the sockets.
    pub fn socket_mode(&self, app_token: &str) -> Arc<Hub> {
        self.inner.socket.accept_app_token(app_token);
        self.inner.socket.clone()
    }

    /// From now on, calls beyond Slack's documented rate limits get a 429 with
    /// `Retry-After`, as Slack answers them ([`RateLimits::slack`]).
    pub fn enforce_rate_limits(&self) {
        *self.inner.limits.lock().unwrap() = Some(RateLimits::slack());
    }

    /// Every message posted, in order (the latest version of each).
    pub fn messages(&self) -> Vec<Posted> {
        self.inner.messages.lock().unwrap().clone()
    }

    /// The Web API base URL (for `server.slack_api_url`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    /// A `response_url` served by the stand-in.
    pub fn response_url(&self, n: u32) -> String {
        format!("http://{}/response/{n}", self.addr)
    }

    pub fn set_usergroup(&self, id: &str, members: &[&str]) {
        self.inner.usergroups.lock().unwrap().insert(
            id.to_owned(),
            members.iter().map(|m| (*m).to_owned()).collect(),
        );
    }

    /// Answers the next `n` Web API calls with 429 and `Retry-After: secs`.
    pub fn rate_limit_next(&self, n: u32, secs: u64) {
        self.inner.retry_after_secs.store(secs, Ordering::SeqCst);
        self.inner.rate_limited.store(n, Ordering::SeqCst);
    }

    /// Until cleared, every Web API call about `channel` gets a 429 with `Retry-After: secs`
    /// (as Slack limits `chat.postMessage` per channel).
    pub fn rate_limit_channel(&self, channel: &str, secs: u64) {
        self.inner
            .limited_channels
            .lock()
            .unwrap()
            .insert(channel.to_owned(), secs);
    }

    pub fn clear_rate_limit_channel(&self, channel: &str) {
        self.inner.limited_channels.lock().unwrap().remove(channel);
    }

    /// Answers calls to `method` only after `delay` (the call is handled after the delay).
    pub fn slow_down(&self, method: &str, delay: Duration) {
        self.inner
            .slow_methods
            .lock()
            .unwrap()
            .insert(method.to_owned(), delay);
    }

    /// While down, every Web API call gets a 503.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().unwrap().clone()
    }

    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// File uploads: what was shared, and ways to make Slack refuse.
    pub fn files(&self) -> &slack_files::Files {
        &self.inner.files
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner.violations.lock().unwrap().clone()
    }

    /// Top-level messages posted to `channel`, in order.
    pub fn cards(&self, channel: &str) -> Vec<Posted> {
        let messages = self.inner.messages.lock().unwrap();
        messages
            .iter()
            .filter(|m| m.channel == channel && m.thread_ts.is_none())
            .cloned()
            .collect()
    }

    /// Replies in the thread of `ts`, in order.
    pub fn thread(&self, ts: &str) -> Vec<Posted> {
        let messages = self.inner.messages.lock().unwrap();
        messages
            .iter()
            .filter(|m| m.thread_ts.as_deref() == Some(ts))
            .cloned()
            .collect()
    }

    /// The answer posted to `response_url(n)`, once it is there.
    pub async fn answer_at(&self, n: u32) -> String {
        let id = n.to_string();
        self.wait_for(
            &format!("the answer at response_url {n}"),
            Duration::from_secs(30),
            |s| {
                s.responses()
                    .iter()
                    .find(|r| r["_response_url_id"] == id.as_str())
                    .and_then(|r| r["text"].as_str().map(str::to_owned))
            },
        )
        .await
    }

    /// Bodies posted to `response_url`s, in order.
    pub fn responses(&self) -> Vec<Value> {
        self.inner.responses.lock().unwrap().clone()
    }

    /// Polls `check` until it returns `Some`, for up to `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(t) = check(self) {
                return t;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "stand-in: timed out waiting for {what}; calls: {:#?}",
                    self.calls()
                        .iter()
                        .map(|c| format!("{} {} {:?}", c.method, c.status, c.error))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// [`api`], then announces the change (the sandbox page re-renders).
async fn api_and_announce(
    State(inner): State<Arc<Inner>>,
    method: Path<String>,
    query: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = api(State(inner.clone()), method, query, headers, body).await;
    inner.changes.bump();
    response
}

fn too_many_requests(inner: &Inner, method: String, args: Value, secs: u64) -> Response {
    inner.calls.lock().unwrap().push(Call {
        method,
        body: args,
        status: 429,
        error: Some("ratelimited".into()),
    });
    (
        StatusCode::TOO_MANY_REQUESTS,
        [("retry-after", secs.to_string())],
        axum::Json(json!({ "ok": false, "error": "ratelimited" })),
    )
        .into_response()
}

pub(super) fn slack_error(inner: &Inner, method: &str, body: Value, error: &str) -> Response {
    inner.calls.lock().unwrap().push(Call {
        method: method.to_owned(),
        body,
        status: 200,
        error: Some(error.to_owned()),
    });
    axum::Json(json!({ "ok": false, "error": error })).into_response()
}

pub(super) fn violation(inner: &Inner, method: &str, body: Value, what: String) -> Response {
    inner
        .violations
        .lock()
        .unwrap()
        .push(format!("{method}: {what}"));
    slack_error(inner, method, body, "invalid_blocks")
}

async fn api(
    State(inner): State<Arc<Inner>>,
    Path(method): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut args: Value = if body.is_empty() {
        json!({})
    } else if headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
    {
        serde_json::from_slice(&body).unwrap_or(json!({ "_unparseable": true }))
    } else {
        let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        json!(form)
    };
    for (k, v) in query {
        args[k] = json!(v);
    }
    let delay = inner.slow_methods.lock().unwrap().get(&method).copied();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if inner.down.load(Ordering::SeqCst) {
        inner.calls.lock().unwrap().push(Call {
            method,
            body: args,
            status: 503,
            error: None,
        });
        return (StatusCode::SERVICE_UNAVAILABLE, "<html>down</html>").into_response();
    }
    if inner
        .rate_limited
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        let secs = inner.retry_after_secs.load(Ordering::SeqCst);
        return too_many_requests(&inner, method, args, secs);
    }
    let limited = args["channel"]
        .as_str()
        .and_then(|c| inner.limited_channels.lock().unwrap().get(c).copied());
    if let Some(secs) = limited {
        return too_many_requests(&inner, method, args, secs);
    }
    let channel = args["channel"].as_str().unwrap_or("");
    let over_limit = inner.limits.lock().unwrap().as_mut().and_then(|limits| {
        limits
            .check(&method, channel, std::time::Instant::now())
            .err()
    });
    if let Some(wait) = over_limit {
        return too_many_requests(&inner, method, args, wait.as_secs().max(1));
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if method == "apps.connections.open" && inner.socket.enabled() {
        return match inner.socket.open(bearer) {
            Ok(url) => {
                inner.calls.lock().unwrap().push(Call {
                    method,
                    body: args,
                    status: 200,
                    error: None,
                });
                axum::Json(json!({ "ok": true, "url": url })).into_response()
            }
            Err(error) => slack_error(&inner, &method, args, error),
        };
    }
    if bearer != Some(inner.token.as_str()) {
        return slack_error(&inner, &method, args, "not_authed");
    }
    match method.as_str() {
        "chat.postMessage" | "chat.update" => chat(&inner, &method, args),
        "files.getUploadURLExternal" => slack_files::get_upload_url(&inner, args, &headers),
        "files.completeUploadExternal" => slack_files::complete(&inner, args),
        "conversations.history" | "conversations.replies" => conversations(&inner, &method, args),
        "users.lookupByEmail" => users::lookup_by_email(&inner, &method, args),
        "conversations.open" => users::conversations_open(&inner, &method, args),
        "chat.getPermalink" => {
            let (Some(channel), Some(ts)) = (
                args["channel"].as_str().map(str::to_owned),
                args["message_ts"].as_str().map(str::to_owned),
            ) else {
                return violation(
                    &inner,
                    &method,
                    args,
                    "channel and message_ts are required".into(),
                );
            };
            let known = inner
                .messages
                .lock()
                .unwrap()
                .iter()
                .any(|m| m.ts == ts && m.channel == channel);
            if !known {
                return slack_error(&inner, &method, args, "message_not_found");
            }
            inner.calls.lock().unwrap().push(Call {
                method,
                body: args,
                status: 200,
                error: None,
            });
            let link = format!(
                "https://example.slack.com/archives/{channel}/p{}",
                ts.replace('.', "")
            );
            axum::Json(json!({ "ok": true, "channel": channel, "permalink": link })).into_response()
        }
        "usergroups.users.list" => {
            let Some(group) = args["usergroup"].as_str().map(str::to_owned) else {
                return violation(&inner, &method, args, "usergroup is required".into());
            };
            let users = inner.usergroups.lock().unwrap().get(&group).cloned();
            match users {
                Some(users) => {
                    inner.calls.lock().unwrap().push(Call {
                        method,
                        body: args,
                        status: 200,
                        error: None,
                    });
                    axum::Json(json!({ "ok": true, "users": users })).into_response()
                }
                None => slack_error(&inner, &method, args, "no_such_subteam"),
            }
        }
        _ => slack_error(&inner, &method, args, "unknown_method"),
    }
}

fn chat(inner: &Inner, method: &str, args: Value) -> Response {
    let Some(channel) = args["channel"].as_str().map(str::to_owned) else {
        return violation(inner, method, args, "channel is required".into());
    };
    let text = args["text"].as_str().unwrap_or("").to_owned();
    let blocks = args["blocks"].as_array().cloned().unwrap_or_default();
    if text.is_empty() && blocks.is_empty() {
        return violation(inner, method, args, "text or blocks is required".into());
    }
    if text.chars().count() > 40_000 {
        return violation(inner, method, args, "text longer than 40000".into());
    }
    if let Err(what) = check_blocks(&blocks) {
        return violation(inner, method, args, what);
    }
    let metadata = args.get("metadata").cloned();
    if let Some(m) = &metadata
        && let Err(what) = check_metadata(m)
    {
        inner
            .violations
            .lock()
            .unwrap()
            .push(format!("{method}: {what}"));
        return slack_error(inner, method, args, "invalid_metadata_format");
    }
    let mut messages = inner.messages.lock().unwrap();
    let ts = if method == "chat.postMessage" {
        let thread_ts = args["thread_ts"].as_str().map(str::to_owned);
        if let Some(parent) = &thread_ts
            && !messages
                .iter()
                .any(|m| &m.ts == parent && m.channel == channel && m.thread_ts.is_none())
        {
            drop(messages);
            return violation(
                inner,
                method,
                args,
                format!("thread_ts {parent} is not a message in {channel}"),
            );
        }
        let n = inner.next_ts.fetch_add(1, Ordering::SeqCst);
        let ts = format!("{}.{:06}", n / 1_000_000, n % 1_000_000);
        messages.push(Posted {
            channel: channel.clone(),
            ts: ts.clone(),
            thread_ts,
            text,
            blocks,
            updates: 0,
            metadata,
            files: vec![],
        });
        ts
    } else {
        let Some(ts) = args["ts"].as_str().map(str::to_owned) else {
            drop(messages);
            return violation(inner, method, args, "ts is required".into());
        };
        let Some(m) = messages
            .iter_mut()
            .find(|m| m.ts == ts && m.channel == channel)
        else {
            drop(messages);
            return slack_error(inner, method, args, "message_not_found");
        };
        m.text = text;
        m.blocks = blocks;
        m.updates += 1;
        if metadata.is_some() {
            m.metadata = metadata;
        }
        ts
    };
    drop(messages);
    inner.calls.lock().unwrap().push(Call {
        method: method.to_owned(),
        body: args,
        status: 200,
        error: None,
    });
    axum::Json(json!({ "ok": true, "channel": channel, "ts": ts })).into_response()
}

/// Slack's message metadata: an `event_type` (letters, digits, `_`) and an object payload.
fn check_metadata(m: &Value) -> Result<(), String> {
    let event_type = m["event_type"].as_str().unwrap_or("");
    if event_type.is_empty()
        || event_type.len() > 255
        || !event_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!("bad metadata event_type {:?}", m["event_type"]));
    }
    if !m["event_payload"].is_object() {
        return Err("metadata event_payload must be an object".into());
    }
    Ok(())
}

/// Slack `ts`s order as numbers (seconds.micros).
fn ts_value(ts: &str) -> f64 {
    ts.parse().unwrap_or(0.0)
}

/// `conversations.history` (top-level messages, newest first) and `conversations.replies`
/// (the parent then its replies, oldest first), paged with `limit` and `cursor`.
fn conversations(inner: &Inner, method: &str, args: Value) -> Response {
    let Some(channel) = args["channel"].as_str().map(str::to_owned) else {
        return violation(inner, method, args, "channel is required".into());
    };
    let limit = match args["limit"].as_str().map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=999).contains(&n) => n,
        Some(_) => return violation(inner, method, args, "limit must be 1..=999".into()),
    };
    let offset = match args["cursor"].as_str() {
        None | Some("") => 0,
        Some(c) => match c.strip_prefix("next:").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return slack_error(inner, method, args, "invalid_cursor"),
        },
    };
    let oldest = args["oldest"].as_str().map_or(0.0, ts_value);
    let with_metadata =
        args["include_all_metadata"] == "true" || args["include_all_metadata"] == true;
    let messages = inner.messages.lock().unwrap().clone();
    let in_channel = messages.into_iter().filter(|m| m.channel == channel);
    let selected: Vec<Posted> = if method == "conversations.history" {
        let mut top: Vec<Posted> = in_channel
            .filter(|m| m.thread_ts.is_none() && ts_value(&m.ts) > oldest)
            .collect();
        top.reverse();
        top
    } else {
        let Some(parent) = args["ts"].as_str().map(str::to_owned) else {
            return violation(inner, method, args, "ts is required".into());
        };
        let thread: Vec<Posted> = in_channel
            .filter(|m| {
                (m.ts == parent && m.thread_ts.is_none())
                    || (m.thread_ts.as_deref() == Some(parent.as_str()) && ts_value(&m.ts) > oldest)
            })
            .collect();
        if !thread.iter().any(|m| m.ts == parent) {
            return slack_error(inner, method, args, "thread_not_found");
        }
        thread
    };
    let page: Vec<Value> = selected
        .iter()
        .skip(offset)
        .take(limit)
        .map(|m| {
            let mut out = json!({ "type": "message", "ts": m.ts, "text": m.text });
            if let Some(t) = &m.thread_ts {
                out["thread_ts"] = json!(t);
            }
            if with_metadata && let Some(meta) = &m.metadata {
                out["metadata"] = meta.clone();
            }
            if !m.files.is_empty() {
                out["files"] = json!(m.files);
            }
            out
        })
        .collect();
    let more = selected.len() > offset + limit;
    inner.calls.lock().unwrap().push(Call {
        method: method.to_owned(),
        body: args,
        status: 200,
        error: None,
    });
    axum::Json(json!({
        "ok": true,
        "messages": page,
        "has_more": more,
        "response_metadata": { "next_cursor": if more { format!("next:{}", offset + limit) } else { String::new() } },
    }))
    .into_response()
}

fn plain_len(v: &Value, max: usize, what: &str) -> Result<(), String> {
    let n = v["text"].as_str().map_or(0, |t| t.chars().count());
    if n == 0 || n > max {
        return Err(format!("{what} text must be 1..={max} chars, is {n}"));
    }
    Ok(())
}

/// Block Kit limits for messages.
fn check_blocks(blocks: &[Value]) -> Result<(), String> {
    if blocks.len() > 50 {
        return Err(format!("{} blocks (max 50)", blocks.len()));
    }
    let mut block_ids = HashSet::new();
    for b in blocks {
        if let Some(id) = b["block_id"].as_str() {
            if id.len() > 255 {
                return Err("block_id longer than 255".into());
            }
            if !block_ids.insert(id.to_owned()) {
                return Err(format!("duplicate block_id {id}"));
            }
        }
        match b["type"].as_str() {
            Some("section") => {
                if b.get("text").is_none() && b.get("fields").is_none() {
                    return Err("section without text or fields".into());
                }
                if b.get("text").is_some() {
                    plain_len(&b["text"], 3000, "section")?;
                }
                if let Some(fields) = b["fields"].as_array() {
                    if fields.len() > 10 {
                        return Err("more than 10 fields".into());
                    }
                    for f in fields {
                        plain_len(f, 2000, "field")?;
                    }
                }
            }
            Some("header") => {
                if b["text"]["type"] != "plain_text" {
                    return Err("header text must be plain_text".into());
                }
                plain_len(&b["text"], 150, "header")?;
            }
            Some("context") => {
                let n = b["elements"].as_array().map_or(0, Vec::len);
                if n == 0 || n > 10 {
                    return Err(format!("context with {n} elements"));
                }
            }
            Some("actions") => {
                let elements = b["elements"].as_array().cloned().unwrap_or_default();
                if elements.is_empty() || elements.len() > 25 {
                    return Err(format!("actions with {} elements", elements.len()));
                }
                let mut action_ids = HashSet::new();
                for e in &elements {
                    let id = e["action_id"].as_str().unwrap_or("");
                    if id.is_empty() || id.len() > 255 || !action_ids.insert(id.to_owned()) {
                        return Err(format!("bad or duplicate action_id {id:?}"));
                    }
                    if e["type"] == "button" {
                        if e["text"]["type"] != "plain_text" {
                            return Err("button text must be plain_text".into());
                        }
                        plain_len(&e["text"], 75, "button")?;
                        if e["value"].as_str().is_some_and(|v| v.len() > 2000) {
                            return Err("button value longer than 2000".into());
                        }
                        if let Some(style) = e.get("style")
                            && style != "primary"
                            && style != "danger"
                        {
                            return Err(format!("bad button style {style}"));
                        }
                        if let Some(c) = e.get("confirm") {
                            plain_len(&c["title"], 100, "confirm title")?;
                            plain_len(&c["text"], 300, "confirm text")?;
                            plain_len(&c["confirm"], 30, "confirm button")?;
                            plain_len(&c["deny"], 30, "deny button")?;
                        }
                    }
                }
            }
            Some("divider") => {}
            other => return Err(format!("unexpected block type {other:?}")),
        }
    }
    Ok(())
}

async fn response_url(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let mut body: Value = serde_json::from_slice(&body).unwrap_or(json!({ "_unparseable": true }));
    if body["text"].as_str().is_none_or(str::is_empty) && body.get("blocks").is_none() {
        inner
            .violations
            .lock()
            .unwrap()
            .push("response_url: text or blocks is required".into());
    }
    body["_response_url_id"] = json!(id);
    inner.responses.lock().unwrap().push(body);
    inner.changes.bump();
    axum::Json(json!({ "ok": true })).into_response()
}
