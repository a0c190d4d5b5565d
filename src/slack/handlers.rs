//! The Slack request handlers, shared by both transports: HTTP (`routes()`, mounted by
//! `http::slack`) and Socket Mode (`socket_mode`). Each one verifies (HTTP only), parses,
//! does at most one short database transaction and answers; Kubernetes and the Slack Web API
//! are only used in spawned tasks, so Slack's 3-second ack deadline holds however slow they
//! are. The exception is the user-group lookup that decides whether a click is authorised,
//! bounded by [`authz::GROUP_LOOKUP_TIMEOUT`].

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{error, info, warn};

use super::actions::{self, Action};
use super::command::{self, Command};
use super::{authz, render, signature, store};
use crate::app::AppState;
use crate::rollback::machine::{Event, SignOff};
use crate::rollback::repo::{self, Change, NewRollback, Outcome, RepoError};

/// How long `/rollback history` may take before the user is told it failed.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a command waits for the database before acknowledging. Normally a command's
/// transaction takes a few milliseconds and its result is the ack; under a burst the ack
/// says the answer follows, and the result is sent through `response_url` when the (still
/// running) transaction is done. Either way Slack gets its ack far inside 3 seconds.
pub const ACK_BUDGET: Duration = Duration::from_millis(20);

/// The ack text when the result follows through `response_url`.
pub const PENDING_ACK: &str = "⏳ Working on it: the answer follows in a moment.";

/// `POST /slack/commands` and `POST /slack/interactions`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
}

/// The fields of a slash command Slack sends (form-encoded).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SlashCommand {
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub text: String,
    pub user_id: String,
    pub channel_id: String,
    #[serde(default)]
    pub channel_name: String,
    #[serde(default)]
    pub response_url: Option<String>,
    #[serde(default)]
    pub trigger_id: Option<String>,
}

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

/// Verifies Slack's signature over the raw body; on failure logs and answers 401.
fn verify(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    path: &str,
) -> Result<(), StatusCode> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    signature::verify(
        state.secrets.slack_signing_secret.as_deref(),
        header(signature::TIMESTAMP_HEADER),
        header(signature::SIGNATURE_HEADER),
        body,
        chrono::Utc::now().timestamp(),
    )
    .map_err(|e| {
        warn!(path, error = %e, "refused a request not signed by Slack");
        StatusCode::UNAUTHORIZED
    })
}

async fn commands(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = verify(&state, &headers, &body, "/slack/commands") {
        return (refused, "invalid request signature\n").into_response();
    }
    let Ok(cmd) = serde_urlencoded::from_bytes::<SlashCommand>(&body) else {
        return (StatusCode::BAD_REQUEST, "not a slash command\n").into_response();
    };
    axum::Json(handle_command(&state, cmd).await).into_response()
}

async fn interactions(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = verify(&state, &headers, &body, "/slack/interactions") {
        return (refused, "invalid request signature\n").into_response();
    }
    let payload = serde_urlencoded::from_bytes::<InteractionForm>(&body)
        .ok()
        .and_then(|f| serde_json::from_str::<Value>(&f.payload).ok());
    let Some(payload) = payload else {
        return (StatusCode::BAD_REQUEST, "no interaction payload\n").into_response();
    };
    handle_interaction(&state, &payload).await;
    StatusCode::OK.into_response()
}

fn ephemeral(text: impl Into<String>) -> Value {
    json!({ "response_type": "ephemeral", "text": render::truncate(&text.into(), 3000) })
}

/// Answers the user privately through `response_url`, in the background.
fn respond_later(state: &AppState, response_url: Option<String>, text: String) {
    let (Some(url), Some(api)) = (response_url, state.slack.clone()) else {
        return;
    };
    tokio::spawn(async move {
        if let Err(e) = api.respond(&url, &text).await {
            warn!(error = %e, "cannot answer through response_url");
        }
    });
}

fn channel_list(state: &AppState) -> String {
    state
        .config
        .slack
        .incident_channels
        .iter()
        .map(|c| {
            let c = c.trim_start_matches('#');
            let is_id = c.len() >= 9
                && c.chars()
                    .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit());
            if is_id {
                format!("<#{c}>")
            } else {
                format!("#{c}")
            }
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Handles one slash command; the return value is the immediate (ephemeral) answer.
pub async fn handle_command(state: &AppState, cmd: SlashCommand) -> Value {
    let parsed = command::parse(&cmd.text);
    if parsed != Ok(Command::Help)
        && !state
            .config
            .is_incident_channel(&cmd.channel_id, &cmd.channel_name)
    {
        info!(channel = %cmd.channel_id, user = %cmd.user_id, "command outside the incident channels");
        return ephemeral(format!(
            "❌ `/rollback` only works in the incident channel: use it in {}.",
            channel_list(state)
        ));
    }
    let (s, url) = (state.clone(), cmd.response_url.clone());
    match parsed {
        Err(e) => ephemeral(format!("❌ {e}\n\n{}", command::USAGE)),
        Ok(Command::Help) => ephemeral(command::USAGE),
        Ok(Command::Rollback {
            service,
            revision,
            incident,
            force,
        }) => {
            within_budget(state, url, async move {
                request(&s, &cmd, &service, revision, incident, force).await
            })
            .await
        }
        Ok(Command::History { service }) => history(state, &cmd, &service),
        Ok(Command::Status { id }) => {
            within_budget(state, url, async move { status(&s, id).await }).await
        }
        Ok(Command::Cancel { id }) => {
            within_budget(state, url, async move { cancel(&s, &cmd, id).await }).await
        }
    }
}

/// Runs `work` (which must finish even if the ack goes out first) and answers with its
/// result if it is ready within [`ACK_BUDGET`]; otherwise acks with [`PENDING_ACK`] and sends
/// the result through `response_url` when it is ready.
async fn within_budget(
    state: &AppState,
    response_url: Option<String>,
    work: impl std::future::Future<Output = Value> + Send + 'static,
) -> Value {
    let mut running = tokio::spawn(work);
    match tokio::time::timeout(ACK_BUDGET, &mut running).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            error!(error = %e, "command task failed");
            ephemeral("⚠️ Internal error; please try again.")
        }
        Err(_) => {
            let state = state.clone();
            tokio::spawn(async move {
                match running.await {
                    Ok(answer) => {
                        let text = answer["text"].as_str().unwrap_or_default().to_owned();
                        respond_later(&state, response_url, text);
                    }
                    Err(e) => error!(error = %e, "command task failed"),
                }
            });
            ephemeral(PENDING_ACK)
        }
    }
}

fn unknown_service(state: &AppState, service: &str) -> Value {
    let names = command::closest(service, state.config.services.keys().map(String::as_str));
    let names = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    ephemeral(format!(
        "❌ Unknown service `{service}`. Closest configured services: {names}."
    ))
}

async fn request(
    state: &AppState,
    cmd: &SlashCommand,
    service: &str,
    revision: Option<i64>,
    incident: Option<String>,
    force: bool,
) -> Value {
    let Some(resolved) = state.config.service(service) else {
        return unknown_service(state, service);
    };
    let new = NewRollback {
        service: resolved.name.to_owned(),
        cluster: resolved.cluster.to_owned(),
        namespace: resolved.namespace.to_owned(),
        deployment: resolved.deployment.to_owned(),
        requested_revision: revision,
        incident,
        requested_by: cmd.user_id.clone(),
        channel_id: cmd.channel_id.clone(),
        response_url: cmd.response_url.clone(),
        force,
        approval_ttl: state.config.timeouts.approval_expiry,
    };
    match repo::insert(&state.pool, &new).await {
        Ok(r) => {
            info!(rollback_id = r.id, service, user = %cmd.user_id, "rollback requested");
            let target = revision.map_or_else(
                || "the previous revision".to_owned(),
                |n| format!("revision {n}"),
            );
            ephemeral(format!(
                "✅ Rollback #{} of `{service}` to {target} requested. I am reading the deployment's history; the approval card will appear in this channel.",
                r.id
            ))
        }
        Err(e @ RepoError::AlreadyActive { .. }) => ephemeral(format!("❌ Not recorded: {e}.")),
        Err(RepoError::Contended(_)) => {
            ephemeral("⚠️ Another request for this deployment just finished; please try again.")
        }
        Err(e) => {
            error!(error = %e, "recording a rollback request failed");
            ephemeral(
                "⚠️ Could not record the request (database error); nothing was recorded. Please try again.",
            )
        }
    }
}

fn history(state: &AppState, cmd: &SlashCommand, service: &str) -> Value {
    let Some(resolved) = state.config.service(service) else {
        return unknown_service(state, service);
    };
    let target = crate::k8s::Target::new(resolved.cluster, resolved.namespace, resolved.deployment);
    let (executor, service) = (state.executor.clone(), service.to_owned());
    let (state2, url) = (state.clone(), cmd.response_url.clone());
    tokio::spawn(async move {
        let text = match tokio::time::timeout(HISTORY_TIMEOUT, executor.history(&target)).await {
            Ok(Ok(revisions)) => render::history(&service, &revisions, chrono::Utc::now()),
            Ok(Err(e)) => format!("❌ Cannot read the history of `{service}`: {e}"),
            Err(_) => format!(
                "❌ Reading the history of `{service}` took longer than {}s.",
                HISTORY_TIMEOUT.as_secs()
            ),
        };
        respond_later(&state2, url, text);
    });
    ephemeral(format!(
        "⏳ Reading the rollout history of `{}`…",
        resolved.name
    ))
}

async fn status(state: &AppState, id: Option<i64>) -> Value {
    match id {
        Some(id) => match repo::get(&state.pool, id).await {
            Ok(r) => ephemeral(render::status_detail(&r)),
            Err(RepoError::NotFound(_)) => ephemeral(format!("❌ There is no rollback #{id}.")),
            Err(e) => {
                error!(error = %e, "status query failed");
                ephemeral("⚠️ Could not read the rollbacks (database error).")
            }
        },
        None => {
            let ids = match store::recent(&state.pool, 10).await {
                Ok(ids) => ids,
                Err(e) => {
                    error!(error = %e, "status query failed");
                    return ephemeral("⚠️ Could not read the rollbacks (database error).");
                }
            };
            if ids.is_empty() {
                return ephemeral("No rollbacks yet.");
            }
            let mut lines = vec!["*Active and recent rollbacks*".to_owned()];
            for id in ids {
                if let Ok(r) = repo::get(&state.pool, id).await {
                    lines.push(render::status_line(&r));
                }
            }
            ephemeral(lines.join("\n"))
        }
    }
}

async fn cancel(state: &AppState, cmd: &SlashCommand, id: i64) -> Value {
    let api = state.slack.clone();
    let is_lead =
        authz::is_member(&state.config, api.as_deref(), SignOff::Lead, &cmd.user_id).await;
    let event = Event::Cancel {
        by: cmd.user_id.clone(),
        is_lead,
    };
    let change = Change {
        detail: json!({ "via": "slack", "command": "cancel" }),
        ..Change::by(&cmd.user_id, &event)
    };
    match repo::apply(&state.pool, id, &change).await {
        Ok(applied) => match applied.outcome {
            Outcome::Applied { .. } => ephemeral(format!("🚫 Rollback #{id} cancelled.")),
            Outcome::Duplicate => ephemeral(format!(
                "Rollback #{id} is already {}.",
                applied.rollback.state
            )),
            Outcome::Refused(refusal) => ephemeral(format!("❌ Cannot cancel #{id}: {refusal}.")),
        },
        Err(RepoError::NotFound(_)) => ephemeral(format!("❌ There is no rollback #{id}.")),
        Err(e) => {
            error!(error = %e, "cancel failed");
            ephemeral("⚠️ Could not cancel (database error); please try again.")
        }
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Handles a `block_actions` payload: applies the click, answers refusals privately.
pub async fn handle_interaction(state: &AppState, payload: &Value) {
    if payload["type"] != "block_actions" {
        return;
    }
    let (Some(user), Some(action)) = (
        str_at(payload, &["user", "id"]),
        payload["actions"].as_array().and_then(|a| a.first()),
    ) else {
        warn!("block_actions without user or action");
        return;
    };
    let response_url = str_at(payload, &["response_url"]).map(str::to_owned);
    let Some(kind) = action["action_id"].as_str().and_then(Action::from_id) else {
        return; // not one of ours
    };
    let Some((id, fingerprint)) = action["value"].as_str().and_then(actions::parse_value) else {
        respond_later(
            state,
            response_url,
            "❌ This button is malformed; use `/rollback status`.".into(),
        );
        return;
    };
    let api = state.slack.clone();
    let authorized = authz::is_member(&state.config, api.as_deref(), kind.sign_off(), user).await;
    let event = kind.event(user, authorized, fingerprint);
    let change = Change {
        detail: json!({
            "via": "slack",
            "action_id": action["action_id"],
            "action_ts": action["action_ts"],
            "message_ts": str_at(payload, &["container", "message_ts"])
                .or(str_at(payload, &["message", "ts"])),
        }),
        ..Change::by(user, &event)
    };
    let answer = match repo::apply(&state.pool, id, &change).await {
        Ok(applied) => match applied.outcome {
            Outcome::Applied { from, to } => {
                info!(rollback_id = id, user, action = event.action(), %from, %to, "click applied");
                None
            }
            Outcome::Duplicate => Some(format!(
                "Already handled: rollback #{id} is {}.",
                applied.rollback.state.as_str().replace('_', " ")
            )),
            Outcome::Refused(refusal) => {
                info!(rollback_id = id, user, %refusal, "click refused");
                Some(format!("❌ Not done: {refusal}."))
            }
        },
        Err(RepoError::NotFound(_)) => Some(format!("❌ There is no rollback #{id}.")),
        Err(e) => {
            error!(error = %e, "applying a click failed");
            Some("⚠️ Could not record your click (database error); please try again.".into())
        }
    };
    if let Some(text) = answer {
        respond_later(state, response_url, text);
    }
}
