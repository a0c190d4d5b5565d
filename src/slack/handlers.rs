//! The Slack request handlers, shared by both transports: HTTP (`routes()`, mounted by
//! `http::slack`) and Socket Mode (`socket_mode`). Each one verifies (HTTP only), checks the
//! workspace and app ([`origin`]), parses, and does its work — at most one short database
//! transaction, plus for clicks the user-group lookup that decides whether the click is
//! authorised — in a task it waits for at most [`ACK_BUDGET`]. Kubernetes and the Slack Web
//! API are only used in spawned tasks, so Slack's 3-second ack deadline holds however slow
//! they, the database or a user-group lookup are.

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
use super::{authz, origin, recent, render, signature};
use crate::db::cards as store;
use crate::db::seen_requests as replay;
use crate::support::failpoint;
use crate::support::text::{escape, truncate};

/// How long a signature is remembered: a signed request is accepted up to
/// [`signature::MAX_AGE_SECS`] before or after its timestamp, so twice that covers every
/// moment it could be replayed.
const REMEMBER_SECS: f64 = (2 * signature::MAX_AGE_SECS) as f64;
use crate::clients::k8s::Target;
use crate::db::rollbacks::{self as repo, Change, NewRollback, Outcome, RepoError};
use crate::domain::machine::{Event, SignOff};
use crate::slack::state::AppState;

/// How long `/rollback history` may take before the user is told it failed.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a command or click waits for its work before acknowledging. Normally a command's
/// transaction takes a few milliseconds and its result is the ack; under a burst (or a slow
/// user-group lookup for a click) the ack goes out first — for a command saying the answer
/// follows — and the result is sent through `response_url` when the (still running) work is
/// done. Either way Slack gets its ack far inside 3 seconds.
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
    pub team_id: String,
    /// The app the command is for; `None` only where the transport vouches for the app
    /// (Socket Mode, see [`origin::check`]).
    #[serde(default)]
    pub api_app_id: Option<String>,
    /// The request's Slack signature (HTTP only): a command that changes something is acted
    /// on once per signature ([`replay`]).
    #[serde(skip)]
    pub signature: Option<String>,
    #[serde(default)]
    pub response_url: Option<String>,
    #[serde(default)]
    pub trigger_id: Option<String>,
}

#[derive(Deserialize)]
struct InteractionForm {
    payload: String,
}

/// Verifies Slack's signature over the raw body; on failure logs and answers 401. On success
/// returns the signature.
fn verify<'h>(
    state: &AppState,
    headers: &'h HeaderMap,
    body: &[u8],
    path: &str,
) -> Result<&'h str, StatusCode> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let given = header(signature::SIGNATURE_HEADER);
    signature::verify(
        state.secrets.slack_signing_secret.as_deref(),
        header(signature::TIMESTAMP_HEADER),
        given,
        body,
        chrono::Utc::now().timestamp(),
    )
    .map_err(|e| {
        warn!(path, error = %e, "refused a request not signed by Slack");
        StatusCode::UNAUTHORIZED
    })?;
    Ok(given.unwrap_or_default())
}

async fn commands(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let signature = match verify(&state, &headers, &body, "/slack/commands") {
        Ok(signature) => signature.to_owned(),
        Err(refused) => return (refused, "invalid request signature\n").into_response(),
    };
    let Ok(mut cmd) = serde_urlencoded::from_bytes::<SlashCommand>(&body) else {
        return (StatusCode::BAD_REQUEST, "not a slash command\n").into_response();
    };
    // Over HTTP only the payload names the app: a missing id must not pass a pinned app.
    cmd.api_app_id.get_or_insert_default();
    cmd.signature = Some(signature);
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
    json!({ "response_type": "ephemeral", "text": truncate(&text.into(), 3000) })
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

/// Answers through `response_url` when `answer` has text (a click that was applied says
/// nothing: the card shows it).
fn answer_later(state: &AppState, response_url: Option<String>, answer: &Value) {
    if let Some(text) = answer["text"].as_str().filter(|t| !t.is_empty()) {
        respond_later(state, response_url, text.to_owned());
    }
}

/// The incident channels as Slack links (configured by id, shown with their current name).
fn channel_list(state: &AppState) -> String {
    state
        .config
        .slack
        .incident_channels
        .iter()
        .map(|c| format!("<#{c}>"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Refuses (logged, nothing recorded) a request from another workspace or app.
fn refuse_foreign(
    state: &AppState,
    team_id: &str,
    app_id: Option<&str>,
    user: &str,
) -> Option<Value> {
    let foreign = origin::check(&state.config.slack, team_id, app_id).err()?;
    warn!(user, team_id, app_id, reason = %foreign, "refused a request from another workspace or app");
    // The ids come from the request: shown escaped, like any text not our own.
    Some(ephemeral(format!(
        "❌ Not done: {}. Nothing was recorded.",
        escape(&foreign.to_string())
    )))
}

/// `None` when the command is seen for the first time (or has no signature: Socket Mode);
/// otherwise the answer refusing it.
async fn refuse_replay(state: &AppState, cmd: &SlashCommand) -> Option<Value> {
    let signature = cmd.signature.as_deref()?;
    match replay::first_delivery(&state.pool, signature, REMEMBER_SECS).await {
        Ok(true) => None,
        Ok(false) => {
            warn!(user = %cmd.user_id, channel = %cmd.channel_id, "refused a replayed slash command");
            Some(ephemeral(
                "❌ This exact request was already received (a replay); it was not done again.",
            ))
        }
        Err(e) => {
            error!(error = %e, "checking a slash command for replay failed");
            Some(ephemeral(
                "⚠️ Could not record the request (database error); nothing was recorded. Please try again.",
            ))
        }
    }
}

/// Handles one slash command; the return value is the immediate (ephemeral) answer.
pub async fn handle_command(state: &AppState, cmd: SlashCommand) -> Value {
    if let Some(refused) =
        refuse_foreign(state, &cmd.team_id, cmd.api_app_id.as_deref(), &cmd.user_id)
    {
        return refused;
    }
    let parsed = command::parse(&cmd.text);
    if parsed != Ok(Command::Help) && !state.config.is_incident_channel(&cmd.channel_id) {
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
        }) => within_budget(state, url, async move {
            match refuse_replay(&s, &cmd).await {
                Some(refused) => refused,
                None => request(&s, &cmd, &service, revision, incident, force).await,
            }
        })
        .await
        .unwrap_or_else(|| ephemeral(PENDING_ACK)),
        Ok(Command::History { service }) => history(state, &cmd, &service),
        Ok(Command::Recent) => recent_rollouts(state, &cmd),
        Ok(Command::Status { id }) => {
            within_budget(state, url, async move { status(&s, id).await })
                .await
                .unwrap_or_else(|| ephemeral(PENDING_ACK))
        }
        Ok(Command::Unlock {
            service,
            fix_reference,
        }) => within_budget(state, url, async move {
            match refuse_replay(&s, &cmd).await {
                Some(refused) => refused,
                None => request_unlock(&s, &cmd, &service, &fix_reference).await,
            }
        })
        .await
        .unwrap_or_else(|| ephemeral(PENDING_ACK)),
        Ok(Command::Accept { id, reason }) => within_budget(state, url, async move {
            match refuse_replay(&s, &cmd).await {
                Some(refused) => refused,
                None => accept(&s, &cmd, id, reason).await,
            }
        })
        .await
        .unwrap_or_else(|| ephemeral(PENDING_ACK)),
        Ok(Command::Cancel { id }) => within_budget(state, url, async move {
            match refuse_replay(&s, &cmd).await {
                Some(refused) => refused,
                None => cancel(&s, &cmd, id).await,
            }
        })
        .await
        .unwrap_or_else(|| ephemeral(PENDING_ACK)),
    }
}

/// Runs `work` (which must finish even if the ack goes out first) and returns its answer if
/// it is ready within [`ACK_BUDGET`]. Otherwise returns `None` — the caller acks at once —
/// and sends the answer through `response_url` when it is ready.
async fn within_budget(
    state: &AppState,
    response_url: Option<String>,
    work: impl std::future::Future<Output = Value> + Send + 'static,
) -> Option<Value> {
    let mut running = tokio::spawn(work);
    match tokio::time::timeout(ACK_BUDGET, &mut running).await {
        Ok(Ok(answer)) => Some(answer),
        Ok(Err(e)) => {
            error!(error = %e, "request task failed");
            Some(ephemeral("⚠️ Internal error; please try again."))
        }
        Err(_) => {
            let state = state.clone();
            tokio::spawn(async move {
                match running.await {
                    Ok(answer) => answer_later(&state, response_url, &answer),
                    Err(e) => error!(error = %e, "request task failed"),
                }
            });
            None
        }
    }
}

async fn request(
    state: &AppState,
    cmd: &SlashCommand,
    service: &str,
    revision: Option<i64>,
    incident: Option<String>,
    force: bool,
) -> Value {
    let resolved = match state.catalog.service(service) {
        Ok(resolved) => resolved,
        Err(unknown) => return ephemeral(format!("❌ {unknown}")),
    };
    let new = NewRollback {
        requested_revision: revision,
        incident,
        force,
        ..new_request(state, cmd, &resolved)
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
        Err(e) => not_recorded(e),
    }
}

/// A request for `resolved`'s Deployment by the command's user, with no revision, incident
/// or force.
fn new_request(
    state: &AppState,
    cmd: &SlashCommand,
    resolved: &crate::engine::catalog::KnownService,
) -> NewRollback {
    NewRollback {
        service: resolved.name.clone(),
        cluster: resolved.cluster.clone(),
        namespace: resolved.namespace.clone(),
        deployment: resolved.deployment.clone(),
        requested_revision: None,
        incident: None,
        requested_by: cmd.user_id.clone(),
        channel_id: cmd.channel_id.clone(),
        response_url: cmd.response_url.clone(),
        force: false,
        approval_ttl: state.config.timeouts.approval_expiry,
    }
}

/// The answer when a request could not be recorded.
fn not_recorded(e: RepoError) -> Value {
    match e {
        RepoError::AlreadyActive {
            id,
            state,
            requested_by,
        } => ephemeral(format!(
            "❌ Not recorded: rollback #{id} for this deployment is already {state} \
             (requested by <@{requested_by}>); finish or cancel it first."
        )),
        RepoError::Contended(_) => {
            ephemeral("⚠️ Another request for this deployment just finished; please try again.")
        }
        e => {
            error!(error = %e, "recording a request failed");
            ephemeral(
                "⚠️ Could not record the request (database error); nothing was recorded. Please try again.",
            )
        }
    }
}

/// `/rollback unlock <service> <fix reference>`: records the unlock request; its card asks an
/// on-call lead other than the requester to approve.
async fn request_unlock(
    state: &AppState,
    cmd: &SlashCommand,
    service: &str,
    fix_reference: &str,
) -> Value {
    let resolved = match state.catalog.service(service) {
        Ok(resolved) => resolved,
        Err(unknown) => return ephemeral(format!("❌ {unknown}")),
    };
    let new = new_request(state, cmd, &resolved);
    match repo::insert_unlock(&state.pool, &new, fix_reference).await {
        Ok(r) => {
            info!(rollback_id = r.id, service, user = %cmd.user_id, "unlock requested");
            ephemeral(format!(
                "✅ Unlock #{} of `{service}` requested for fix {}. I am reading the lock; the approval card will appear in this channel.",
                r.id,
                render::echo(fix_reference)
            ))
        }
        Err(e) => not_recorded(e),
    }
}

fn history(state: &AppState, cmd: &SlashCommand, service: &str) -> Value {
    let resolved = match state.catalog.service(service) {
        Ok(resolved) => resolved,
        Err(unknown) => return ephemeral(format!("❌ {unknown}")),
    };
    let target = crate::clients::k8s::Target::new(
        &resolved.cluster,
        &resolved.namespace,
        &resolved.deployment,
    );
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

/// `/rollback` alone: reads every known service's history in the background (bounded by
/// [`HISTORY_TIMEOUT`]) and answers through `response_url` with the recent rollouts first.
fn recent_rollouts(state: &AppState, cmd: &SlashCommand) -> Value {
    let window = state.config.timeouts.correlation_window;
    let (state2, url) = (state.clone(), cmd.response_url.clone());
    tokio::spawn(async move {
        let known = state2.catalog.names();
        let reads = known.iter().map(|name| {
            let (state, name) = (&state2, name.clone());
            async move {
                let service = state.catalog.service(&name).ok()?;
                let target = crate::clients::k8s::Target::new(
                    &service.cluster,
                    &service.namespace,
                    &service.deployment,
                );
                match tokio::time::timeout(HISTORY_TIMEOUT, state.executor.history(&target)).await {
                    Ok(Ok(revisions)) => recent::latest_rollout(&name, &revisions),
                    Ok(Err(e)) => {
                        warn!(service = %name, error = %e, "cannot read the rollout history");
                        None
                    }
                    Err(_) => None,
                }
            }
        });
        let rollouts: Vec<recent::Rollout> = futures::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect();
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let message = recent::message(&rollouts, &known, window, chrono::Utc::now());
        let (Some(url), Some(api)) = (url, state2.slack.clone()) else {
            return;
        };
        if let Err(e) = api.respond_message(&url, &message).await {
            warn!(error = %e, "cannot answer through response_url");
        }
    });
    ephemeral(format!(
        "⏳ Looking at what rolled out in the last {} min…",
        window.as_secs() / 60
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
            let mut lines = vec![];
            if ids.is_empty() {
                lines.push("No rollbacks yet.".to_owned());
            } else {
                lines.push("*Active and recent rollbacks*".to_owned());
            }
            for id in ids {
                if let Ok(r) = repo::get(&state.pool, id).await {
                    lines.push(render::status_line(&r));
                }
            }
            lines.extend(active_locks(state).await);
            ephemeral(lines.join("\n"))
        }
    }
}

/// The deploy locks of the configured services, read from their Deployments, as status lines.
async fn active_locks(state: &AppState) -> Vec<String> {
    let mut lines = vec![];
    for name in state.config.services.keys() {
        let Some(resolved) = state.config.service(name) else {
            continue;
        };
        let target = Target::new(resolved.cluster, resolved.namespace, resolved.deployment);
        match crate::clients::k8s::lock::read(&state.executor, &target).await {
            Ok(Some(lock)) => lines.push(render::lock_line(name, &lock)),
            Ok(None) => {}
            Err(e) => lines.push(format!("⚠️ `{name}`: could not read its lock ({e})")),
        }
    }
    if !lines.is_empty() {
        lines.insert(0, "*Active deploy locks*".to_owned());
    }
    lines
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

/// `/rollback accept <id> <reason>`: a lead other than the requester accepts a recovery that
/// validation has not proven (night traffic too low to judge, a metric known to be wrong);
/// the reason goes into the audit trail and onto the card.
async fn accept(state: &AppState, cmd: &SlashCommand, id: i64, reason: String) -> Value {
    let api = state.slack.clone();
    let is_lead =
        authz::is_member(&state.config, api.as_deref(), SignOff::Lead, &cmd.user_id).await;
    let event = Event::AcceptRecovery {
        by: cmd.user_id.clone(),
        is_lead,
        reason: reason.clone(),
    };
    let change = Change {
        detail: json!({
            "via": "slack",
            "command": "accept",
            "accepted": { "by": cmd.user_id, "reason": reason },
            "summary": format!("recovery accepted without a full validation: {reason}"),
        }),
        ..Change::by(&cmd.user_id, &event)
    };
    match repo::apply(&state.pool, id, &change).await {
        Ok(applied) => match applied.outcome {
            Outcome::Applied { .. } => ephemeral(format!(
                "✅ Rollback #{id}: recovery accepted as it stands; the reason is in the audit trail."
            )),
            Outcome::Duplicate => ephemeral(format!(
                "Rollback #{id} is already {}.",
                applied.rollback.state
            )),
            Outcome::Refused(refusal) => {
                ephemeral(format!("❌ Cannot accept #{id}'s recovery: {refusal}."))
            }
        },
        Err(RepoError::NotFound(_)) => ephemeral(format!("❌ There is no rollback #{id}.")),
        Err(e) => {
            error!(error = %e, "accept failed");
            ephemeral("⚠️ Could not accept (database error); please try again.")
        }
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Handles a `block_actions` payload: applies the click within [`ACK_BUDGET`] (or finishes it
/// after the ack), answers refusals privately through `response_url`.
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
    let team_id = str_at(payload, &["team", "id"])
        .or(str_at(payload, &["user", "team_id"]))
        .unwrap_or_default();
    let app_id = str_at(payload, &["api_app_id"]).unwrap_or_default();
    if let Some(refused) = refuse_foreign(state, team_id, Some(app_id), user) {
        answer_later(state, response_url, &refused);
        return;
    }
    if action["action_id"] == recent::REQUEST_ROLLBACK {
        // The value is one service name, nothing more (no revision, incident or --force).
        let service = action["value"].as_str().unwrap_or_default();
        if service.is_empty()
            || !service
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            respond_later(
                state,
                response_url,
                "❌ This button is malformed; use `/rollback <service>`.".into(),
            );
            return;
        }
        // Exactly `/rollback <service>` by the clicker, in the channel of the clicked message
        // (same incident-channel and service checks; a second active request is refused).
        let cmd = SlashCommand {
            command: "/rollback".into(),
            text: service.to_owned(),
            user_id: user.to_owned(),
            channel_id: str_at(payload, &["channel", "id"])
                .or(str_at(payload, &["container", "channel_id"]))
                .unwrap_or_default()
                .to_owned(),
            team_id: team_id.to_owned(),
            api_app_id: Some(app_id.to_owned()),
            response_url: response_url.clone(),
            ..SlashCommand::default()
        };
        let answer = Box::pin(handle_command(state, cmd)).await;
        // A click has had its ack; a late answer follows through response_url by itself.
        if answer["text"] != PENDING_ACK {
            answer_later(state, response_url, &answer);
        }
        return;
    }
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
    let click = Click {
        user: user.to_owned(),
        kind,
        rollback_id: id,
        fingerprint: fingerprint.to_owned(),
        detail: json!({
            "via": "slack",
            "action_id": action["action_id"],
            "action_ts": action["action_ts"],
            "message_ts": str_at(payload, &["container", "message_ts"])
                .or(str_at(payload, &["message", "ts"])),
        }),
    };
    let s = state.clone();
    let answer = within_budget(state, response_url.clone(), async move {
        apply_click(&s, click).await
    })
    .await;
    if let Some(answer) = answer {
        answer_later(state, response_url, &answer);
    }
}

/// A click, parsed.
struct Click {
    user: String,
    kind: Action,
    rollback_id: i64,
    fingerprint: String,
    /// What the audit trail records about the click.
    detail: Value,
}

/// Resolves who clicked and applies the click; the answer is empty when it was applied (the
/// card shows it).
async fn apply_click(state: &AppState, click: Click) -> Value {
    let Click {
        user,
        kind,
        rollback_id: id,
        fingerprint,
        detail,
    } = click;
    let user = user.as_str();
    let api = state.slack.clone();
    let member =
        authz::membership(&state.config, api.as_deref(), kind.deciding_groups(), user).await;
    let event = kind.event(user, member, &fingerprint);
    let mut detail = detail;
    match &event {
        Event::EscalateNow { reason, .. } => detail["reason"] = reason.as_str().into(),
        // When the extended validation ends; the validate step reads it from the row.
        Event::ExtendValidation { .. } => {
            let until = chrono::Utc::now()
                + chrono::Duration::from_std(actions::VALIDATION_EXTENSION)
                    .unwrap_or(chrono::Duration::MAX);
            detail["by"] = user.into();
            detail["until"] = json!(until);
        }
        _ => {}
    }
    let change = Change {
        detail,
        ..Change::by(user, &event)
    };
    let answer = match repo::apply(&state.pool, id, &change).await {
        Ok(applied) => match applied.outcome {
            Outcome::Applied { from, to } => {
                failpoint::hit(&format!("click.{}.after_record", event.action()));
                info!(rollback_id = id, user, action = event.action(), %from, %to, "click applied");
                return Value::Null;
            }
            Outcome::Duplicate => format!(
                "Already handled: rollback #{id} is {}.",
                applied.rollback.state.as_str().replace('_', " ")
            ),
            Outcome::Refused(refusal) => {
                info!(rollback_id = id, user, %refusal, "click refused");
                format!("❌ Not done: {refusal}.")
            }
        },
        Err(RepoError::NotFound(_)) => format!("❌ There is no rollback #{id}."),
        Err(e) => {
            error!(error = %e, "applying a click failed");
            "⚠️ Could not record your click (database error); please try again.".into()
        }
    };
    ephemeral(answer)
}
