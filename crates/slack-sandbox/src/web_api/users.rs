//! The Slack stand-in's users and DMs (a child module of `slack_standin.rs`, so it shares its
//! state): `users.lookupByEmail` (`email` required; `users_not_found` for an unknown address;
//! the user with `deleted`) and `conversations.open` (`users` or `channel` required; every
//! user must exist, else `user_not_found`; the same DM channel id for the same user every
//! time). Tests register people with [`SlackStandIn::add_user`].

use serde_json::{Value, json};

use super::{Call, Inner, SlackStandIn, slack_error, violation};
use axum::response::{IntoResponse, Response};

/// A workspace member.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub email: String,
    pub deleted: bool,
}

/// The workspace's members.
#[derive(Debug, Default)]
pub struct Directory {
    members: Vec<Member>,
}

impl SlackStandIn {
    /// Adds a member with `id` and `email` (deactivated when `deleted`).
    pub fn add_user(&self, id: &str, email: &str, deleted: bool) {
        self.inner.directory.lock().unwrap().members.push(Member {
            id: id.to_owned(),
            email: email.to_owned(),
            deleted,
        });
    }

    /// The DM channel `conversations.open` gives for `user`.
    pub fn dm_channel(user: &str) -> String {
        format!("D{}", user.trim_start_matches(['U', 'W']))
    }
}

fn answered(inner: &Inner, method: &str, body: Value, answer: Value) -> Response {
    inner.calls.lock().unwrap().push(Call {
        method: method.to_owned(),
        body,
        status: 200,
        error: None,
    });
    axum::Json(answer).into_response()
}

pub(super) fn lookup_by_email(inner: &Inner, method: &str, args: Value) -> Response {
    let Some(email) = args["email"].as_str().map(str::to_owned) else {
        return violation(inner, method, args, "email is required".into());
    };
    let found = inner
        .directory
        .lock()
        .unwrap()
        .members
        .iter()
        .find(|m| m.email.eq_ignore_ascii_case(&email))
        .cloned();
    match found {
        None => slack_error(inner, method, args, "users_not_found"),
        Some(m) => answered(
            inner,
            method,
            args,
            json!({ "ok": true, "user": {
                "id": m.id, "team_id": "T0STANDIN1", "name": m.email.split('@').next(),
                "deleted": m.deleted, "real_name": m.email,
                "profile": { "email": m.email, "display_name": m.email },
            }}),
        ),
    }
}

pub(super) fn conversations_open(inner: &Inner, method: &str, args: Value) -> Response {
    let users: Vec<String> = args["users"]
        .as_str()
        .map(|u| u.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default();
    if users.is_empty() && args["channel"].is_null() {
        return violation(inner, method, args, "users or channel is required".into());
    }
    if users.len() != 1 {
        // The bot opens one-to-one DMs only.
        return violation(
            inner,
            method,
            args,
            format!("expected one user, got {users:?}"),
        );
    }
    let member = inner
        .directory
        .lock()
        .unwrap()
        .members
        .iter()
        .find(|m| m.id == users[0])
        .cloned();
    match member {
        None => slack_error(inner, method, args, "user_not_found"),
        Some(m) if m.deleted => slack_error(inner, method, args, "user_disabled"),
        Some(m) => {
            let channel = SlackStandIn::dm_channel(&m.id);
            answered(
                inner,
                method,
                args,
                json!({ "ok": true, "channel": { "id": channel } }),
            )
        }
    }
}
