//! The sandbox's browser page: `#incident-response` as Slack shows it (messages, Block Kit
//! cards, threads, ephemeral answers, other conversations such as DMs), a picker for who the
//! person is, a message box for `/rollback …`, and a live event stream (server-sent events)
//! that carries the whole view after every change. Commands and clicks go to the bot through
//! [`Transport`], exactly as Slack sends them; what Slack would refuse (contract violations,
//! rate limits) and requests that never reached the bot are shown loudly.
//!
//! Routes: `GET /` (the page), `GET /sandbox/state` (the view as JSON), `GET /sandbox/events`
//! (the view, again after every change), `POST /sandbox/command`, `POST /sandbox/click`,
//! `POST /sandbox/socket/drop`, and the Web API and Socket Mode routes of [`SlackStandIn`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::deliver::Transport;
use super::people::Person;
use super::requests::{self, Click};
use super::web_api::SlackStandIn;

const PAGE: &str = include_str!("page.html");

/// The channel the page opens on.
#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    pub id: String,
    pub name: String,
}

/// A message only one person sees: the bot's answer to their command or click.
#[derive(Debug, Clone, Serialize)]
struct Ephemeral {
    id: u64,
    user: String,
    channel: String,
    /// When it arrived, as a Slack `ts` (it sorts among the channel's messages).
    ts: String,
    /// The command it answers, when it is the command's own answer.
    command: Option<String>,
    text: String,
    blocks: Vec<Value>,
}

/// Something that went wrong on the way to the bot.
#[derive(Debug, Clone, Serialize)]
struct Problem {
    ts: String,
    what: String,
}

#[derive(Default)]
struct PageState {
    ephemerals: Vec<Ephemeral>,
    /// `response_url` id → the user its answers are for.
    response_owners: HashMap<String, String>,
    /// `response_url` answers already turned into ephemerals.
    responses_seen: usize,
    next_id: u64,
    problems: Vec<Problem>,
}

/// The sandbox: the Slack stand-in, the bot's transport and the page's own state.
pub struct Sandbox {
    slack: SlackStandIn,
    transport: Transport,
    people: Vec<Person>,
    channel: Channel,
    state: Mutex<PageState>,
}

/// Slack-like `ts` of now.
fn now_ts() -> String {
    let micros = chrono::Utc::now().timestamp_micros();
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

#[derive(Deserialize)]
pub struct CommandRequest {
    pub user: String,
    pub text: String,
}

#[derive(Deserialize)]
pub struct ClickRequest {
    pub user: String,
    pub channel: String,
    /// The message's `ts` (or the ephemeral's id, with `ephemeral`).
    pub ts: String,
    #[serde(default)]
    pub ephemeral: bool,
    pub block_id: String,
    pub action_id: String,
}

impl Sandbox {
    pub fn new(
        slack: SlackStandIn,
        transport: Transport,
        people: Vec<Person>,
        channel: Channel,
    ) -> Arc<Self> {
        // Everyone on the page is a workspace member with an email (`users.lookupByEmail`
        // finds the deployer named by one) and can be sent a DM.
        for person in &people {
            slack.add_user(&person.id, &person.email(), false);
        }
        let sandbox = Arc::new(Sandbox {
            slack,
            transport,
            people,
            channel,
            state: Mutex::default(),
        });
        tokio::spawn(collect_responses(Arc::downgrade(&sandbox)));
        sandbox
    }

    /// The page, its API, and the stand-in's Web API and Socket Mode.
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(|| async { Html(PAGE) }))
            .route("/sandbox/state", get(state))
            .route("/sandbox/events", get(events))
            .route("/sandbox/command", post(command))
            .route("/sandbox/click", post(click))
            .route("/sandbox/socket/drop", post(drop_sockets))
            .with_state(self.clone())
            .merge(self.slack.routes())
    }

    pub fn slack(&self) -> &SlackStandIn {
        &self.slack
    }

    fn person(&self, id: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.id == id)
    }

    /// A new `response_url` whose answers go to `user`.
    fn response_url_for(&self, user: &str) -> String {
        let mut state = self.state.lock().unwrap();
        state.next_id += 1;
        // Far from the small numbers tests use for their own `response_url`s.
        let n = 1_000_000 + u32::try_from(state.next_id).unwrap_or(u32::MAX);
        state.response_owners.insert(n.to_string(), user.to_owned());
        self.slack.response_url(n)
    }

    fn add_ephemeral(&self, user: &str, command: Option<String>, answer: &Value) {
        let mut state = self.state.lock().unwrap();
        state.next_id += 1;
        let id = state.next_id;
        state.ephemerals.push(Ephemeral {
            id,
            user: user.to_owned(),
            channel: self.channel.id.clone(),
            ts: now_ts(),
            command,
            text: answer["text"].as_str().unwrap_or_default().to_owned(),
            blocks: answer["blocks"].as_array().cloned().unwrap_or_default(),
        });
    }

    fn problem(&self, what: String) {
        self.state
            .lock()
            .unwrap()
            .problems
            .push(Problem { ts: now_ts(), what });
        self.slack.announce();
    }

    /// `user` types `text` (`/rollback …`) in the channel.
    ///
    /// # Errors
    /// What the person is shown: not a slash command, or the bot did not get it.
    pub async fn run_command(&self, user: &str, text: &str) -> Result<(), String> {
        if self.person(user).is_none() {
            return Err(format!("unknown person {user}"));
        }
        let text = text.trim();
        let Some(args) = text.strip_prefix("/rollback") else {
            return Err(
                "only /rollback commands go to the bot (this sandbox has no chat of its own)"
                    .into(),
            );
        };
        let form = requests::command_body(
            user,
            &self.channel.id,
            &self.channel.name,
            args.trim(),
            &self.response_url_for(user),
        );
        match self.transport.command(&form).await {
            Ok(answer) => {
                // No body is an empty 200: Slack shows nothing.
                if let Some(answer) = answer.filter(|a| a.get("text").is_some()) {
                    self.add_ephemeral(user, Some(text.to_owned()), &answer);
                    self.slack.announce();
                }
                Ok(())
            }
            Err(e) => {
                let what = format!("{text}: {e}");
                self.problem(what.clone());
                Err(what)
            }
        }
    }

    /// `user` clicks a button; a confirm dialog, if any, was confirmed on the page.
    ///
    /// # Errors
    /// What the person is shown: no such button, or the bot did not get the click.
    pub async fn click(&self, click: &ClickRequest) -> Result<(), String> {
        if self.person(&click.user).is_none() {
            return Err(format!("unknown person {}", click.user));
        }
        let message = if click.ephemeral {
            let state = self.state.lock().unwrap();
            state
                .ephemerals
                .iter()
                .find(|e| e.id.to_string() == click.ts)
                .map(|e| json!({ "type": "message", "ts": e.ts, "text": e.text, "blocks": e.blocks }))
        } else {
            self.slack
                .messages()
                .into_iter()
                .find(|m| m.ts == click.ts && m.channel == click.channel)
                .map(|m| {
                    json!({
                        "type": "message", "ts": m.ts, "bot_id": "B0ROLLBACK", "user": "U0ROLLBACKBOT",
                        "text": m.text, "blocks": m.blocks,
                    })
                })
        };
        let Some(message) = message else {
            return Err(format!("no message {} to click on", click.ts));
        };
        let button = message["blocks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["block_id"] == click.block_id.as_str())
            .flat_map(|b| {
                let mut elements = b["elements"].as_array().cloned().unwrap_or_default();
                elements.extend(b.get("accessory").cloned());
                elements
            })
            .find(|e| e["action_id"] == click.action_id.as_str());
        let Some(button) = button else {
            return Err(format!(
                "the message has no button {} in block {}",
                click.action_id, click.block_id
            ));
        };
        let response_url = self.response_url_for(&click.user);
        let payload = Click {
            user: &click.user,
            channel_id: &click.channel,
            message: &message,
            block_id: &click.block_id,
            button: &button,
            is_ephemeral: click.ephemeral,
            response_url: &response_url,
        }
        .payload();
        self.transport.interaction(&payload).await.map_err(|e| {
            let what = format!("click on {}: {e}", click.action_id);
            self.problem(what.clone());
            what
        })
    }

    /// Everything the page shows, for every person (the page filters ephemerals).
    pub fn view(&self) -> Value {
        let state = self.state.lock().unwrap();
        let messages: Vec<Value> = self
            .slack
            .messages()
            .into_iter()
            .map(|m| {
                json!({
                    "channel": m.channel, "ts": m.ts, "thread_ts": m.thread_ts,
                    "text": m.text, "blocks": m.blocks, "updates": m.updates,
                })
            })
            .collect();
        let refused: Vec<Value> = self
            .slack
            .calls()
            .into_iter()
            .filter(|c| c.status != 200 || c.error.is_some())
            .map(|c| json!({ "method": c.method, "status": c.status, "error": c.error, "channel": c.body["channel"] }))
            .collect();
        let socket = match &self.transport {
            Transport::SocketMode(hub) => {
                json!({ "connections": hub.connections(), "hellos": hub.hellos() })
            }
            Transport::Http { .. } => Value::Null,
        };
        json!({
            "channel": self.channel,
            "transport": self.transport.name(),
            "socket": socket,
            "people": self.people,
            "messages": messages,
            "ephemerals": state.ephemerals,
            "violations": self.slack.violations(),
            "refused_calls": refused,
            "problems": state.problems,
        })
    }
}

/// Turns the bot's `response_url` answers into ephemerals for the person they are for.
async fn collect_responses(sandbox: std::sync::Weak<Sandbox>) {
    let Some(mut changes) = sandbox.upgrade().map(|s| s.slack.changes()) else {
        return;
    };
    while changes.changed().await.is_ok() {
        let Some(sandbox) = sandbox.upgrade() else {
            return;
        };
        let responses = sandbox.slack.responses();
        let fresh: Vec<(String, Value)> = {
            let mut state = sandbox.state.lock().unwrap();
            let fresh = responses
                .iter()
                .skip(state.responses_seen)
                .filter_map(|r| {
                    let id = r["_response_url_id"].as_str()?;
                    Some((state.response_owners.get(id)?.clone(), r.clone()))
                })
                .collect();
            state.responses_seen = responses.len();
            fresh
        };
        for (user, answer) in &fresh {
            sandbox.add_ephemeral(user, None, answer);
        }
        if !fresh.is_empty() {
            sandbox.slack.announce();
        }
    }
}

async fn state(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    Json(sandbox.view())
}

async fn events(
    State(sandbox): State<Arc<Sandbox>>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let changes = sandbox.slack.changes();
    let stream = futures::stream::unfold((changes, true), move |(mut changes, first)| {
        let sandbox = sandbox.clone();
        async move {
            if !first {
                changes.changed().await.ok()?;
            }
            let view = Event::default().data(sandbox.view().to_string());
            Some((Ok(view), (changes, false)))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn answer(result: Result<(), String>) -> Response {
    match result {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "ok": false, "error": error })),
        )
            .into_response(),
    }
}

async fn command(
    State(sandbox): State<Arc<Sandbox>>,
    Json(request): Json<CommandRequest>,
) -> Response {
    answer(sandbox.run_command(&request.user, &request.text).await)
}

async fn click(State(sandbox): State<Arc<Sandbox>>, Json(request): Json<ClickRequest>) -> Response {
    answer(sandbox.click(&request).await)
}

async fn drop_sockets(State(sandbox): State<Arc<Sandbox>>) -> Response {
    match &sandbox.transport {
        Transport::SocketMode(hub) => {
            hub.drop_sockets();
            answer(Ok(()))
        }
        Transport::Http { .. } => answer(Err("the bot uses the HTTP transport".into())),
    }
}
