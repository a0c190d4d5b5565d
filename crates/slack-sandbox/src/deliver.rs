//! Sends a person's slash commands and clicks to the bot exactly as Slack does, over either
//! transport: HTTP (a form POST signed with the v0 scheme to `/slack/commands` or
//! `/slack/interactions`, 3 s to answer) or Socket Mode (an envelope on the bot's socket).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::requests;
use super::socket_mode::{Hub, SocketModeError};

/// How long Slack waits for the bot to answer a command or a click.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// How the bot receives Slack's requests.
#[derive(Clone)]
pub enum Transport {
    /// POSTs to `bot_url` (e.g. `http://127.0.0.1:8080`), signed with `signing_secret`.
    Http {
        bot_url: String,
        signing_secret: String,
    },
    /// Envelopes on the sockets the bot opened with `apps.connections.open`.
    SocketMode(Arc<Hub>),
}

/// Why a request did not reach the bot, as the person is shown it.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the bot is unreachable at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the bot did not answer within 3 s (Slack shows the user \"operation_timeout\")")]
    Timeout,
    #[error("the bot answered HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error(transparent)]
    SocketMode(#[from] SocketModeError),
}

impl Transport {
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Http { .. } => "http",
            Transport::SocketMode(_) => "socket_mode",
        }
    }

    /// Sends a slash command (its form body, as [`requests::command_body`] makes it); returns
    /// the bot's immediate answer (the ephemeral message), if any.
    ///
    /// # Errors
    /// The bot was unreachable, refused, or too slow.
    pub async fn command(&self, form: &str) -> Result<Option<Value>, DeliveryError> {
        match self {
            Transport::Http {
                bot_url,
                signing_secret,
            } => post_signed(bot_url, "/slack/commands", form, signing_secret).await,
            Transport::SocketMode(hub) => {
                // Over the socket the same fields travel as a JSON object.
                let fields: serde_json::Map<String, Value> =
                    serde_urlencoded::from_str::<Vec<(String, String)>>(form)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, json!(v)))
                        .collect();
                Ok(hub
                    .deliver("slash_commands", Value::Object(fields), true)
                    .await?)
            }
        }
    }

    /// Sends a `block_actions` payload.
    ///
    /// # Errors
    /// The bot was unreachable, refused, or too slow.
    pub async fn interaction(&self, payload: &Value) -> Result<(), DeliveryError> {
        match self {
            Transport::Http {
                bot_url,
                signing_secret,
            } => {
                let form = serde_urlencoded::to_string([("payload", payload.to_string())])
                    .unwrap_or_default();
                post_signed(bot_url, "/slack/interactions", &form, signing_secret).await?;
                Ok(())
            }
            Transport::SocketMode(hub) => {
                hub.deliver("interactive", payload.clone(), false).await?;
                Ok(())
            }
        }
    }
}

/// POSTs `body` to `bot_url` + `path` with Slack's headers and v0 signature; the answer's
/// JSON body, if it has one.
async fn post_signed(
    bot_url: &str,
    path: &str,
    body: &str,
    secret: &str,
) -> Result<Option<Value>, DeliveryError> {
    let url = format!("{}{path}", bot_url.trim_end_matches('/'));
    let unreachable = |message: String| DeliveryError::Unreachable {
        url: url.clone(),
        message,
    };
    let ts = requests::now();
    let request = http::Request::post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", requests::signature(secret, &ts, body))
        .body(Full::new(bytes::Bytes::from(body.to_owned())))
        .map_err(|e| unreachable(e.to_string()))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, async {
        let response = client
            .request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        Ok::<_, DeliveryError>((status, bytes))
    })
    .await
    .map_err(|_| DeliveryError::Timeout)??;
    let (status, bytes) = answer;
    if status != 200 {
        return Err(DeliveryError::Refused {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    Ok(serde_json::from_slice(&bytes).ok())
}
