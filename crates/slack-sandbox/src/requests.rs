//! Signing and payload shapes of real Slack requests, for driving the bot's endpoints.

use axum::body::Body;
use axum::http::Request;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The workspace and app every request comes from (`slack.team_id`, `slack.app_id`).
pub const TEAM_ID: &str = "T0EXAMPLE1";
pub const APP_ID: &str = "A0ROLLBACK";

/// `v0=` + hex(HMAC-SHA256(secret, `v0:{ts}:{body}`)), computed here independently of
/// the bot's own code.
pub fn signature(secret: &str, ts: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn now() -> String {
    chrono::Utc::now().timestamp().to_string()
}

/// A POST as Slack sends it: form-encoded body, timestamp and signature headers.
pub fn signed(path: &str, body: String, secret: &str, ts: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", signature(secret, ts, &body))
        .body(Body::from(body))
        .unwrap()
}

/// The form body of `/rollback <text>`.
pub fn command_body(
    user: &str,
    channel_id: &str,
    channel_name: &str,
    text: &str,
    response_url: &str,
) -> String {
    // Unique per invocation, as Slack's are.
    let trigger_id = format!("13345224609.738474920.{:x}", rand_suffix());
    serde_urlencoded::to_string([
        ("token", "gIkuvaNzQIHg97ATvDxqgjtO"),
        ("team_id", TEAM_ID),
        ("team_domain", "example"),
        ("channel_id", channel_id),
        ("channel_name", channel_name),
        ("user_id", user),
        ("user_name", "someone"),
        ("command", "/rollback"),
        ("text", text),
        ("api_app_id", APP_ID),
        ("is_enterprise_install", "false"),
        ("response_url", response_url),
        ("trigger_id", trigger_id.as_str()),
    ])
    .unwrap()
}

/// The `payload=` form body of a `block_actions` click on a button of message `ts`.
pub fn click_body(
    user: &str,
    channel_id: &str,
    ts: &str,
    action_id: &str,
    value: &str,
    response_url: &str,
) -> String {
    let click = Click {
        user,
        channel_id,
        message: &json!({ "type": "message", "ts": ts, "bot_id": "B0ROLLBACK", "text": "Rollback" }),
        block_id: "rb.actions",
        button: &json!({
            "action_id": action_id,
            "text": { "type": "plain_text", "text": "Approve", "emoji": true },
            "value": value,
            "style": "primary",
            "type": "button",
        }),
        is_ephemeral: false,
        response_url,
    };
    serde_urlencoded::to_string([("payload", click.payload().to_string())]).unwrap()
}

/// A click on a button as Slack reports it.
pub struct Click<'a> {
    pub user: &'a str,
    pub channel_id: &'a str,
    /// The message as Slack shows it (`ts`, `text`, `blocks`, …).
    pub message: &'a Value,
    pub block_id: &'a str,
    /// The button element as the message has it (`action_id`, `text`, `value`, …).
    pub button: &'a Value,
    pub is_ephemeral: bool,
    pub response_url: &'a str,
}

impl Click<'_> {
    /// The `block_actions` payload.
    pub fn payload(&self) -> Value {
        let ts = self.message["ts"].clone();
        let mut action = self.button.clone();
        action["block_id"] = json!(self.block_id);
        action["action_ts"] = json!(format!(
            "{}.{:06}",
            chrono::Utc::now().timestamp(),
            rand_suffix()
        ));
        json!({
            "type": "block_actions",
            "user": { "id": self.user, "username": "someone", "name": "someone", "team_id": TEAM_ID },
            "api_app_id": APP_ID,
            "token": "gIkuvaNzQIHg97ATvDxqgjtO",
            "container": { "type": "message", "message_ts": ts, "channel_id": self.channel_id, "is_ephemeral": self.is_ephemeral },
            "trigger_id": "12466734323.1395872398.8ad2d3a7b1fbb4b8a5b83bc7a1d2d1fc",
            "team": { "id": TEAM_ID, "domain": "example" },
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": { "id": self.channel_id, "name": "incident-response" },
            "message": self.message,
            "state": { "values": {} },
            "response_url": self.response_url,
            "actions": [action],
        })
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::SeqCst)
}

/// The value of button `action_id` on a card, if the card has it.
pub fn button_value(blocks: &[Value], action_id: &str) -> Option<String> {
    blocks
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .find(|e| e["action_id"] == action_id)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

/// Whether a card has any buttons.
pub fn has_buttons(blocks: &[Value]) -> bool {
    blocks.iter().any(|b| b["type"] == "actions")
}
