//! The Slack stand-in's file uploads, as Slack documents them: `files.getUploadURLExternal`
//! (`filename` and a positive `length` required; answers a `file_id` and an `upload_url`
//! served by the stand-in), the upload URL (a POST of exactly `length` raw bytes for a known
//! file id; re-sending before completion replaces them) and `files.completeUploadExternal`
//! (`files` required, each id known, its bytes uploaded, completed at most once; `thread_ts`
//! naming a top-level message of `channel_id`; `not_in_channel` for a channel the bot was
//! removed from). A completed file is shared as a thread message carrying `files: [{id, …}]`,
//! as `conversations.replies` shows it, and recorded with its bytes so tests can decode them.
//! Breaches of the contract by the caller are recorded as violations.
//!
//! Registered by [`super::web_api`] (its `Inner` holds a [`Files`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Call, Inner, Posted, slack_error};

/// A file shared by `files.completeUploadExternal`.
#[derive(Debug, Clone)]
pub struct SharedFile {
    pub file_id: String,
    pub filename: String,
    pub title: Option<String>,
    pub channel: Option<String>,
    pub thread_ts: Option<String>,
    pub comment: Option<String>,
    pub bytes: Vec<u8>,
}

impl SharedFile {
    /// Decodes the bytes as a PNG (panics when they are not one): width and height.
    pub fn png_dimensions(&self) -> (u32, u32) {
        assert_eq!(&self.bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
        let mut reader = png::Decoder::new(self.bytes.as_slice())
            .read_info()
            .expect("a PNG header");
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).expect("PNG image data");
        (info.width, info.height)
    }
}

struct Upload {
    filename: String,
    length: usize,
    bytes: Option<Vec<u8>>,
    completed: bool,
}

/// The uploads the stand-in knows, and how it is told to misbehave.
#[derive(Default)]
pub struct Files {
    next: AtomicU64,
    uploads: Mutex<HashMap<String, Upload>>,
    shared: Mutex<Vec<SharedFile>>,
    refusal: Mutex<Option<String>>,
    left_channels: Mutex<HashSet<String>>,
}

impl Files {
    /// Files shared so far, in order.
    pub fn shared(&self) -> Vec<SharedFile> {
        self.shared.lock().unwrap().clone()
    }

    /// Files shared in the thread of `ts`.
    pub fn in_thread(&self, ts: &str) -> Vec<SharedFile> {
        self.shared()
            .into_iter()
            .filter(|f| f.thread_ts.as_deref() == Some(ts))
            .collect()
    }

    /// Until cleared (`None`), `files.getUploadURLExternal` answers `error` (e.g.
    /// `missing_scope`, as for an app without `files:write`).
    pub fn refuse_uploads(&self, error: Option<&str>) {
        *self.refusal.lock().unwrap() = error.map(str::to_owned);
    }

    /// `files.completeUploadExternal` into `channel` answers `not_in_channel`.
    pub fn leave_channel(&self, channel: &str) {
        self.left_channels
            .lock()
            .unwrap()
            .insert(channel.to_owned());
    }

    /// File ids got but never completed.
    pub fn incomplete(&self) -> Vec<String> {
        let uploads = self.uploads.lock().unwrap();
        let mut ids: Vec<String> = uploads
            .iter()
            .filter(|(_, u)| !u.completed)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }
}

fn record(inner: &Inner, method: &str, body: Value, status: u16) {
    inner.calls.lock().unwrap().push(Call {
        method: method.to_owned(),
        body,
        status,
        error: None,
    });
}

fn breach(inner: &Inner, method: &str, body: Value, what: String, error: &str) -> Response {
    inner
        .violations
        .lock()
        .unwrap()
        .push(format!("{method}: {what}"));
    slack_error(inner, method, body, error)
}

/// `files.getUploadURLExternal`.
pub(super) fn get_upload_url(inner: &Inner, args: Value, headers: &HeaderMap) -> Response {
    let method = "files.getUploadURLExternal";
    let refusal = inner.files.refusal.lock().unwrap().clone();
    if let Some(error) = refusal {
        return slack_error(inner, method, args, &error);
    }
    let filename = args["filename"].as_str().unwrap_or("").to_owned();
    let length = match &args["length"] {
        Value::String(s) => s.parse::<usize>().ok(),
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        _ => None,
    };
    let Some(length) = length.filter(|n| *n > 0) else {
        return breach(
            inner,
            method,
            args,
            "length (a positive integer) is required".into(),
            "invalid_arguments",
        );
    };
    if filename.is_empty() {
        return breach(
            inner,
            method,
            args,
            "filename is required".into(),
            "invalid_arguments",
        );
    }
    let n = inner.files.next.fetch_add(1, Ordering::SeqCst) + 1;
    let file_id = format!("F0CHART{n:04}");
    inner.files.uploads.lock().unwrap().insert(
        file_id.clone(),
        Upload {
            filename,
            length,
            bytes: None,
            completed: false,
        },
    );
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    record(inner, method, args, 200);
    axum::Json(json!({
        "ok": true,
        "file_id": file_id,
        "upload_url": format!("http://{host}/upload/{file_id}"),
    }))
    .into_response()
}

/// The upload URL: `POST /upload/{file_id}` with the raw bytes.
pub(super) async fn upload(
    State(inner): State<Arc<Inner>>,
    Path(file_id): Path<String>,
    body: Bytes,
) -> Response {
    let method = "upload";
    let summary = json!({ "file_id": file_id, "bytes": body.len() });
    let mut uploads = inner.files.uploads.lock().unwrap();
    let Some(upload) = uploads.get_mut(&file_id) else {
        drop(uploads);
        record(&inner, method, summary, 404);
        return (StatusCode::NOT_FOUND, "unknown upload").into_response();
    };
    if upload.completed {
        drop(uploads);
        inner
            .violations
            .lock()
            .unwrap()
            .push(format!("upload: {file_id} sent after its completion"));
        record(&inner, method, summary, 400);
        return (StatusCode::BAD_REQUEST, "upload already completed").into_response();
    }
    if body.len() != upload.length {
        let what = format!(
            "upload: {file_id} got {} bytes, files.getUploadURLExternal was told {}",
            body.len(),
            upload.length
        );
        drop(uploads);
        inner.violations.lock().unwrap().push(what);
        record(&inner, method, summary, 400);
        return (StatusCode::BAD_REQUEST, "length mismatch").into_response();
    }
    upload.bytes = Some(body.to_vec());
    drop(uploads);
    record(&inner, method, summary, 200);
    (StatusCode::OK, format!("OK - {}", body.len())).into_response()
}

/// `files.completeUploadExternal`.
pub(super) fn complete(inner: &Inner, args: Value) -> Response {
    let method = "files.completeUploadExternal";
    // JSON bodies carry an array; form bodies a JSON string.
    let files = match &args["files"] {
        Value::Array(a) => a.clone(),
        Value::String(s) => serde_json::from_str::<Vec<Value>>(s).unwrap_or_default(),
        _ => vec![],
    };
    if files.is_empty() || files.iter().any(|f| !f["id"].is_string()) {
        return breach(
            inner,
            method,
            args,
            "files (a non-empty array of {id, title}) is required".into(),
            "invalid_arguments",
        );
    }
    let channel = args["channel_id"].as_str().map(str::to_owned);
    let thread_ts = args["thread_ts"].as_str().map(str::to_owned);
    if let Some(channel) = &channel
        && inner.files.left_channels.lock().unwrap().contains(channel)
    {
        return slack_error(inner, method, args, "not_in_channel");
    }
    if let Some(parent) = &thread_ts {
        let Some(channel) = &channel else {
            return breach(
                inner,
                method,
                args,
                "thread_ts needs channel_id".into(),
                "invalid_arguments",
            );
        };
        let known = inner
            .messages
            .lock()
            .unwrap()
            .iter()
            .any(|m| &m.ts == parent && &m.channel == channel && m.thread_ts.is_none());
        if !known {
            return breach(
                inner,
                method,
                args,
                format!("thread_ts {parent} is not a message in {channel}"),
                "invalid_arguments",
            );
        }
    }
    let mut uploads = inner.files.uploads.lock().unwrap();
    for f in &files {
        let id = f["id"].as_str().unwrap_or_default();
        let problem = match uploads.get(id) {
            None => Some(format!("unknown file id {id}")),
            Some(u) if u.bytes.is_none() => Some(format!("{id} completed before its upload")),
            Some(u) if u.completed => Some(format!("{id} completed twice")),
            Some(_) => None,
        };
        if let Some(what) = problem {
            drop(uploads);
            return breach(inner, method, args, what, "file_not_found");
        }
    }
    let mut shared = Vec::new();
    for f in &files {
        let id = f["id"].as_str().unwrap_or_default();
        let u = uploads.get_mut(id).expect("checked above");
        u.completed = true;
        shared.push(SharedFile {
            file_id: id.to_owned(),
            filename: u.filename.clone(),
            title: f["title"].as_str().map(str::to_owned),
            channel: channel.clone(),
            thread_ts: thread_ts.clone(),
            comment: args["initial_comment"].as_str().map(str::to_owned),
            bytes: u.bytes.clone().unwrap_or_default(),
        });
    }
    drop(uploads);
    let listed: Vec<Value> = shared
        .iter()
        .map(|f| {
            json!({
                "id": f.file_id,
                "name": f.filename,
                "title": f.title,
                "mimetype": "image/png",
                // Served by `shared_file` for the sandbox page (Slack's is an absolute URL).
                "url_private": format!("/files/{}", f.file_id),
            })
        })
        .collect();
    if let Some(channel) = &channel {
        let n = inner.next_ts.fetch_add(1, Ordering::SeqCst);
        inner.messages.lock().unwrap().push(Posted {
            channel: channel.clone(),
            ts: format!("{}.{:06}", n / 1_000_000, n % 1_000_000),
            thread_ts: thread_ts.clone(),
            text: args["initial_comment"].as_str().unwrap_or("").to_owned(),
            blocks: vec![],
            updates: 0,
            metadata: None,
            files: listed.clone(),
        });
    }
    inner.files.shared.lock().unwrap().extend(shared);
    record(inner, method, args, 200);
    axum::Json(json!({ "ok": true, "files": listed })).into_response()
}

/// `GET /files/{file_id}`: a shared file's bytes, for the sandbox page to show the image.
pub(super) async fn shared_file(
    State(inner): State<Arc<Inner>>,
    Path(file_id): Path<String>,
) -> Response {
    let shared = inner.files.shared.lock().unwrap();
    match shared.iter().find(|f| f.file_id == file_id) {
        Some(f) => ([("content-type", "image/png")], f.bytes.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such shared file").into_response(),
    }
}
