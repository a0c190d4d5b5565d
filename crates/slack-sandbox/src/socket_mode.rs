//! Slack's side of Socket Mode: `apps.connections.open` with the app-level token hands out a
//! single-use WebSocket URL; on connect Slack sends `hello`; commands and clicks travel as
//! envelopes (`envelope_id`, `type`, `accepts_response_payload`, `payload`) that the app must
//! acknowledge with `{"envelope_id": …}` (a command's ack may carry the answer in `payload`)
//! within 3 seconds. Sockets can be dropped ([`Hub::drop_sockets`], as a network failure
//! does) or recycled with Slack's `disconnect` message ([`Hub::refresh_sockets`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::Changes;
use super::requests::APP_ID;

/// How long Slack waits for an envelope's acknowledgement.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an envelope did not get through.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SocketModeError {
    #[error(
        "no Socket Mode connection is open (is the bot running with transport = \"socket_mode\"?)"
    )]
    NotConnected,
    #[error("the bot did not acknowledge envelope {0} within 3 s (Slack shows the user a timeout)")]
    NoAck(String),
}

enum Control {
    Send(String),
    /// Close the TCP connection without a WebSocket close frame.
    Drop,
}

/// Socket Mode state: the accepted app token, unused tickets, open sockets and envelopes
/// waiting for their acknowledgement.
#[derive(Default)]
pub struct Hub {
    addr: Option<SocketAddr>,
    changes: Changes,
    app_token: Mutex<Option<String>>,
    tickets: Mutex<HashSet<String>>,
    sockets: Mutex<HashMap<u64, mpsc::UnboundedSender<Control>>>,
    next_socket: AtomicU64,
    /// How many sockets have said `hello` so far (reconnects included).
    hellos: AtomicU64,
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
}

impl Hub {
    /// Sockets served at `ws://{addr}/socket-mode`.
    pub fn new(addr: SocketAddr, changes: Changes) -> Self {
        Hub {
            addr: Some(addr),
            changes,
            ..Default::default()
        }
    }

    pub(super) fn accept_app_token(&self, token: &str) {
        *self.app_token.lock().unwrap() = Some(token.to_owned());
    }

    /// Whether Socket Mode is served (an app token is accepted).
    pub(super) fn enabled(&self) -> bool {
        self.addr.is_some() && self.app_token.lock().unwrap().is_some()
    }

    /// `apps.connections.open` with bearer `token`: a fresh single-use URL, or Slack's error.
    pub(super) fn open(&self, token: Option<&str>) -> Result<String, &'static str> {
        let accepted = self.app_token.lock().unwrap().clone();
        let (Some(addr), Some(accepted)) = (self.addr, accepted) else {
            return Err("not_allowed_token_type");
        };
        match token {
            None => return Err("not_authed"),
            // A bot token is the wrong kind; any other app token is unknown.
            Some(t) if t != accepted && t.starts_with("xoxb-") => {
                return Err("not_allowed_token_type");
            }
            Some(t) if t != accepted => return Err("invalid_auth"),
            Some(_) => {}
        }
        let ticket = uuid::Uuid::new_v4().to_string();
        self.tickets.lock().unwrap().insert(ticket.clone());
        Ok(format!(
            "ws://{addr}/socket-mode?ticket={ticket}&app_id={APP_ID}"
        ))
    }

    /// Open sockets.
    pub fn connections(&self) -> usize {
        self.sockets.lock().unwrap().len()
    }

    /// Sockets that have been greeted with `hello` since the start.
    pub fn hellos(&self) -> u64 {
        self.hellos.load(Ordering::SeqCst)
    }

    /// Drops every socket without a close frame, as a network failure would.
    pub fn drop_sockets(&self) {
        for socket in self.sockets.lock().unwrap().values() {
            let _ = socket.send(Control::Drop);
        }
    }

    /// Sends Slack's `disconnect` (`refresh_requested`) on every socket: the app should
    /// reconnect.
    pub fn refresh_sockets(&self) {
        let message = json!({
            "type": "disconnect",
            "reason": "refresh_requested",
            "debug_info": { "host": "slack-sandbox" },
        });
        for socket in self.sockets.lock().unwrap().values() {
            let _ = socket.send(Control::Send(message.to_string()));
        }
    }

    /// Sends an envelope of `kind` (`slash_commands`, `interactive`) on one open socket and
    /// waits for its acknowledgement; returns the ack's `payload`, if any.
    ///
    /// # Errors
    /// No socket is open, or no ack came within [`ACK_TIMEOUT`].
    pub async fn deliver(
        &self,
        kind: &str,
        payload: Value,
        accepts_response_payload: bool,
    ) -> Result<Option<Value>, SocketModeError> {
        let envelope_id = uuid::Uuid::new_v4().to_string();
        let envelope = json!({
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
            "payload": payload,
        });
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(envelope_id.clone(), tx);
        let sent = {
            let sockets = self.sockets.lock().unwrap();
            // Slack sends each envelope on one of the app's sockets.
            sockets
                .values()
                .any(|socket| socket.send(Control::Send(envelope.to_string())).is_ok())
        };
        if !sent {
            self.pending.lock().unwrap().remove(&envelope_id);
            return Err(SocketModeError::NotConnected);
        }
        match tokio::time::timeout(ACK_TIMEOUT, rx).await {
            Ok(Ok(ack)) => Ok(ack.get("payload").cloned()),
            _ => {
                self.pending.lock().unwrap().remove(&envelope_id);
                Err(SocketModeError::NoAck(envelope_id))
            }
        }
    }

    /// A text frame from the app: an acknowledgement, or something Slack would ignore.
    fn received(&self, text: &str) {
        let Ok(ack) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let Some(id) = ack["envelope_id"].as_str() else {
            return;
        };
        if let Some(waiting) = self.pending.lock().unwrap().remove(id) {
            let _ = waiting.send(ack);
        }
    }

    async fn serve(self: Arc<Self>, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = self.next_socket.fetch_add(1, Ordering::SeqCst);
        let hello = json!({
            "type": "hello",
            "num_connections": self.connections() + 1,
            "debug_info": { "host": "slack-sandbox", "approximate_connection_time": 3600 },
            "connection_info": { "app_id": APP_ID },
        });
        if sink
            .send(Message::Text(hello.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
        self.sockets.lock().unwrap().insert(id, tx);
        self.hellos.fetch_add(1, Ordering::SeqCst);
        self.changes.bump();
        loop {
            tokio::select! {
                control = rx.recv() => match control {
                    Some(Control::Send(text)) => {
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    Some(Control::Drop) | None => break,
                },
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.received(text.as_str()),
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    // Pings are answered by the WebSocket layer itself.
                    Some(Ok(_)) => {}
                },
            }
        }
        self.sockets.lock().unwrap().remove(&id);
        self.changes.bump();
        // Dropping both halves closes the TCP connection without a close frame.
    }
}

/// `GET /socket-mode?ticket=…`: the WebSocket of one `apps.connections.open`.
pub fn routes(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/socket-mode", get(upgrade))
        .with_state(hub)
}

async fn upgrade(
    State(hub): State<Arc<Hub>>,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let ticket = query.get("ticket").cloned().unwrap_or_default();
    if !hub.tickets.lock().unwrap().remove(&ticket) {
        return (StatusCode::UNAUTHORIZED, "invalid or used ticket").into_response();
    }
    ws.on_upgrade(move |socket| hub.serve(socket))
}
