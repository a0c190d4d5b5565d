//! Socket Mode: the bot opens WebSockets to Slack with the app-level token (`xapp-…`,
//! `SLACK_APP_TOKEN`) instead of receiving HTTP requests, for teams without a public URL
//! (`server.transport = "socket_mode"`). Envelopes carry the same commands and clicks; they
//! go to the same handlers as the HTTP transport. There is no request signature (the socket
//! is authenticated by the token). slack-morphism acks each envelope when the callback
//! returns, so callbacks do only what the HTTP handlers do before answering.
//!
//! slack-morphism retries a connection that fails forever and silently, which would leave the
//! bot deaf with every probe green. So the app token is tried first with
//! `apps.connections.open`, and until Slack's `hello` arrives `/readyz` says not ready, with
//! the reason ([`Readiness`]).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use slack_morphism::prelude::*;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::handlers::{self, SlashCommand};
use crate::clients::slack::{self as client, SlackApi, SlackError};
use crate::slack::state::AppState;
use crate::support::readiness::Readiness;

/// The longest wait between two attempts to open the connection.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SocketModeError {
    #[error("SLACK_APP_TOKEN must be set for server.transport = \"socket_mode\"")]
    NoAppToken,
    #[error(transparent)]
    Setup(#[from] SlackError),
    #[error("cannot open the Socket Mode connection: {0}")]
    Connect(String),
}

async fn app_state(states: &SlackClientEventsUserState) -> Option<AppState> {
    states.read().await.get_user_state::<AppState>().cloned()
}

/// The slash command of a Socket Mode envelope, as the HTTP transport would parse it.
pub fn slash_command(event: &SlackCommandEvent) -> SlashCommand {
    SlashCommand {
        command: event.command.to_string(),
        text: event.text.clone().unwrap_or_default(),
        user_id: event.user_id.to_string(),
        channel_id: event.channel_id.to_string(),
        channel_name: event.channel_name.clone().unwrap_or_default(),
        team_id: event.team_id.to_string(),
        // The socket was opened with this app's own token: the app is not in question.
        api_app_id: None,
        signature: None,
        response_url: Some(event.response_url.value().to_string()),
        trigger_id: Some(event.trigger_id.to_string()),
    }
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let state = app_state(&states).await.ok_or("no application state")?;
    let answer = handlers::handle_command(&state, slash_command(&event)).await;
    let text = answer["text"].as_str().unwrap_or_default().to_owned();
    Ok(
        SlackCommandEventResponse::new(SlackMessageContent::new().with_text(text))
            .with_response_type(SlackMessageResponseType::Ephemeral),
    )
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let state = app_state(&states).await.ok_or("no application state")?;
    // The typed event serialises back to Slack's payload shape (`type: block_actions`, …).
    let payload = serde_json::to_value(&event)?;
    handlers::handle_interaction(&state, &payload).await;
    Ok(())
}

/// Slack's `hello`: the socket is up. (Generic over the event only because slack-morphism
/// does not export the hello event's type.)
async fn on_hello<Hello>(
    _event: Hello,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) {
    if let Some(readiness) = states.read().await.get_user_state::<Arc<Readiness>>() {
        readiness.slack_up();
    }
    info!("Slack Socket Mode connected (hello received)");
}

fn on_error(
    error: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackHyperClient>,
    _states: SlackClientEventsUserState,
) -> StatusCode {
    warn!(error = %error, "Socket Mode envelope failed");
    // Still ack: Slack does not redeliver commands or clicks, and the user got no answer
    // either way.
    StatusCode::OK
}

/// Tries `apps.connections.open` with the app token until it works (or `shutdown`), each
/// failure logged and reported on `/readyz`, waiting twice as long after each (at most
/// [`MAX_RETRY_WAIT`]). False when shut down first.
async fn wait_until_slack_accepts(
    state: &AppState,
    app_token: &str,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> Result<bool, SocketModeError> {
    let api = SlackApi::new(&state.config.server.slack_api_url, app_token)?;
    let mut wait = Duration::from_secs(1);
    loop {
        match api
            .call("apps.connections.open", &serde_json::json!({}))
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) => {
                let reason = format!("Socket Mode cannot connect: {e}");
                error!(retry_in_s = wait.as_secs(), "{reason}");
                readiness.slack_down(reason);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return Ok(false),
        }
        wait = (wait * 2).min(MAX_RETRY_WAIT);
    }
}

/// Connects with the app token and serves envelopes until `shutdown`; `readiness` says not
/// ready until Slack's `hello` arrives.
///
/// # Errors
/// No app token, no TLS roots, or slack-morphism refusing the token.
pub async fn serve(
    state: AppState,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) -> Result<(), SocketModeError> {
    readiness.slack_down("Socket Mode: not connected yet");
    let app_token = state
        .secrets
        .slack_app_token
        .clone()
        .ok_or(SocketModeError::NoAppToken)?;
    if !wait_until_slack_accepts(&state, &app_token, &readiness, &shutdown).await? {
        return Ok(());
    }
    readiness.slack_down("Socket Mode: connecting (no hello from Slack yet)");
    let http = client::connector(&state.config.server.slack_api_url)?;
    let environment = Arc::new(
        SlackClientEventsListenerEnvironment::new(Arc::new(SlackClient::new(http)))
            .with_error_handler(on_error)
            .with_user_state(state)
            .with_user_state(readiness),
    );
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_hello_events(on_hello)
        .with_command_events(on_command)
        .with_interaction_events(on_interaction);
    let listener = SlackClientSocketModeListener::new(
        &SlackClientSocketModeConfig::new(),
        environment,
        callbacks,
    );
    listener
        .listen_for(&SlackApiToken::new(SlackApiTokenValue::new(app_token)))
        .await
        .map_err(|e| SocketModeError::Connect(e.to_string()))?;
    listener.start().await;
    info!("Slack Socket Mode started");
    shutdown.cancelled().await;
    listener.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_socket_mode_command_becomes_the_same_slash_command() {
        let event: SlackCommandEvent = serde_json::from_value(json!({
            "team_id": "T0001", "team_domain": "example", "channel_id": "C0INCIDENT1",
            "channel_name": "incident-response", "user_id": "U0REQUEST01",
            "command": "/rollback", "text": "checkout-api 41 INC-1",
            "response_url": "https://hooks.slack.com/commands/T0001/1/abc",
            "trigger_id": "1.2.3", "api_app_id": "A1"
        }))
        .unwrap();
        let cmd = slash_command(&event);
        assert_eq!(cmd.text, "checkout-api 41 INC-1");
        assert_eq!(cmd.user_id, "U0REQUEST01");
        assert_eq!(cmd.channel_id, "C0INCIDENT1");
        assert_eq!(cmd.channel_name, "incident-response");
        assert_eq!(
            cmd.response_url.as_deref(),
            Some("https://hooks.slack.com/commands/T0001/1/abc")
        );
    }

    #[test]
    fn a_socket_mode_click_keeps_what_the_handler_reads() {
        let payload = json!({
            "type": "block_actions",
            "user": { "id": "U0LEAD00001", "team_id": "T0001", "username": "lead" },
            "api_app_id": "A1", "token": "x", "trigger_id": "1.2.3",
            "team": { "id": "T0001", "domain": "example" },
            "container": { "type": "message", "message_ts": "1700000000.000100",
                           "channel_id": "C0INCIDENT1", "is_ephemeral": false },
            "channel": { "id": "C0INCIDENT1", "name": "incident-response" },
            "response_url": "https://hooks.slack.com/actions/T0001/1/abc",
            "actions": [{ "type": "button", "action_id": "rollback.approve",
                          "block_id": "rb7.v3.actions", "value": "7:fp",
                          "text": { "type": "plain_text", "text": "Approve" },
                          "action_ts": "1700000001.000200" }]
        });
        let event: SlackInteractionEvent = serde_json::from_value(payload).unwrap();
        let back = serde_json::to_value(&event).unwrap();
        assert_eq!(back["type"], "block_actions");
        assert_eq!(back["user"]["id"], "U0LEAD00001");
        assert_eq!(back["actions"][0]["action_id"], "rollback.approve");
        assert_eq!(back["actions"][0]["value"], "7:fp");
        assert_eq!(
            back["response_url"],
            "https://hooks.slack.com/actions/T0001/1/abc"
        );
    }
}
