//! The HTTP core the JSON stand-ins share (PagerDuty, Jira, GitHub): an axum server on
//! 127.0.0.1:0 that hands every request to the stand-in's [`Api`], records each call with the
//! status it got and each contract breach as a violation, and injects faults before the API
//! sees the request: `down` (503) or the next `n` calls answered 429 with `Retry-After`; and
//! one-off [`Fault`]s: a 5xx before the work, or "created, then 5xx" / "created, then slow".
//!
//! Used as `support::http_standin` before the
//! stand-ins that use it.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A request as the stand-in's API sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    /// The JSON body; `Null` when empty or not JSON.
    pub body: Value,
}

impl Incoming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the body was sent as JSON.
    pub fn is_json(&self) -> bool {
        self.header("content-type")
            .is_some_and(|v| v.starts_with("application/json"))
    }
}

/// The API's answer; a `violation` is recorded as a breach of the contract by the caller.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub violation: Option<String>,
}

impl Reply {
    pub fn ok(status: u16, body: Value) -> Self {
        Reply {
            status,
            body,
            violation: None,
        }
    }

    /// An error answer that also records `what` the caller got wrong.
    pub fn breach(status: u16, body: Value, what: impl Into<String>) -> Self {
        Reply {
            status,
            body,
            violation: Some(what.into()),
        }
    }
}

/// What a stand-in implements: its answer to each request.
pub trait Api: Send + Sync + 'static {
    fn handle(&self, request: &Incoming) -> Reply;

    /// The body of an injected 429.
    fn throttled(&self) -> Value {
        json!({ "message": "rate limited" })
    }
}

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Value,
    /// HTTP status answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

struct Core<A> {
    api: A,
    calls: Mutex<Vec<Call>>,
    violations: Mutex<Vec<String>>,
    rate_limit_next: AtomicU32,
    retry_after_secs: AtomicU32,
    down: AtomicBool,
    /// Faults for the next calls (that are not rate-limited), one each.
    faults: Mutex<VecDeque<Fault>>,
}

/// How one call goes wrong.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answered with this 5xx without being carried out.
    Refused(u16),
    /// Carried out (the issue is created), then answered with this 5xx: the caller cannot
    /// tell it happened.
    DoneThenStatus(u16),
    /// Carried out, then answered only after this long (past the client's timeout).
    DoneThenSlow(Duration),
}

/// A running stand-in serving `A`.
pub struct StandIn<A: Api> {
    addr: SocketAddr,
    core: Arc<Core<A>>,
}

impl<A: Api> StandIn<A> {
    pub async fn start(api: A) -> Self {
        let core = Arc::new(Core {
            api,
            calls: Mutex::default(),
            violations: Mutex::default(),
            rate_limit_next: AtomicU32::new(0),
            retry_after_secs: AtomicU32::new(0),
            down: AtomicBool::new(false),
            faults: Mutex::default(),
        });
        let app = Router::new().fallback(serve::<A>).with_state(core.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn { addr, core }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn api(&self) -> &A {
        &self.core.api
    }

    /// Answers the next `n` calls 429 with `Retry-After: secs`.
    pub fn rate_limit_next(&self, n: u32, secs: u32) {
        self.core.retry_after_secs.store(secs, Ordering::SeqCst);
        self.core.rate_limit_next.store(n, Ordering::SeqCst);
    }

    /// The next `faults.len()` calls (that are not rate-limited) go wrong as these say.
    pub fn fault_next(&self, faults: &[Fault]) {
        self.core
            .faults
            .lock()
            .unwrap()
            .extend(faults.iter().copied());
    }

    /// Answers every call 503 while `down`.
    pub fn set_down(&self, down: bool) {
        self.core.down.store(down, Ordering::SeqCst);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.core.calls.lock().unwrap().clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.core.violations.lock().unwrap().clone()
    }
}

/// Polls `check` until it returns `Some`, for up to `timeout`; the panic shows `context()`.
pub async fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(t) = check() {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; {}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn serve<A: Api>(
    State(core): State<Arc<Core<A>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
        .unwrap_or_default();
    let incoming = Incoming {
        method,
        path: uri.path().to_owned(),
        query,
        headers,
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
    };
    let limited = core
        .rate_limit_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let fault = if core.down.load(Ordering::SeqCst) || limited {
        None
    } else {
        core.faults.lock().unwrap().pop_front()
    };
    let (reply, retry_after) = if core.down.load(Ordering::SeqCst) {
        (Reply::ok(503, json!({ "message": "down" })), None)
    } else if limited {
        let secs = core.retry_after_secs.load(Ordering::SeqCst);
        (Reply::ok(429, core.api.throttled()), Some(secs))
    } else {
        match fault {
            Some(Fault::Refused(status)) => {
                (Reply::ok(status, json!({ "message": "unavailable" })), None)
            }
            Some(Fault::DoneThenStatus(status)) => {
                let _done = core.api.handle(&incoming);
                (Reply::ok(status, json!({ "message": "bad gateway" })), None)
            }
            // Slept below, once the call is recorded.
            Some(Fault::DoneThenSlow(_)) => (core.api.handle(&incoming), None),
            None => (core.api.handle(&incoming), None),
        }
    };
    if let Some(what) = &reply.violation {
        core.violations
            .lock()
            .unwrap()
            .push(format!("{} {}: {what}", incoming.method, incoming.path));
    }
    core.calls.lock().unwrap().push(Call {
        method: incoming.method.to_string(),
        path: incoming.path,
        query: incoming.query,
        headers: incoming.headers,
        body: incoming.body,
        status: reply.status,
        at: Instant::now(),
    });
    if let Some(Fault::DoneThenSlow(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(reply.body)).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}
