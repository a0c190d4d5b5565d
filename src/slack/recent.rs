//! `/rollback` with no argument: "what changed recently?". Pure: from each known service's
//! rollout history (read by the handler) to the answer — the services whose current revision
//! rolled out inside the correlation window, newest first, with from → to images, age, who
//! deployed (the change-cause) and a "Request rollback" button each; then the other services.
//!
//! The button's click is handled like `/rollback <service>` typed by the clicker in the
//! clicked message's channel (`handlers::handle_interaction`).

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::clients::k8s::{ContainerImage, Revision};
use crate::clients::slack::Message;
use crate::support::text::{escape, truncate};

/// The `action_id` of the "Request rollback" button; its value is the service name.
pub const REQUEST_ROLLBACK: &str = "request_rollback";

/// Recently rolled-out services shown with a button (Slack allows 50 blocks, two each).
const MAX_RECENT: usize = 20;

/// A service's latest rollout, as its history records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub service: String,
    /// When the current ReplicaSet was created (a re-activated one keeps its old time).
    pub at: DateTime<Utc>,
    pub from: Vec<ContainerImage>,
    pub to: Vec<ContainerImage>,
    /// `kubernetes.io/change-cause` of the current revision: who or what deployed.
    pub change_cause: Option<String>,
}

/// The current revision and the one before it, if the current one's time is known.
pub fn latest_rollout(service: &str, revisions: &[Revision]) -> Option<Rollout> {
    let current = revisions.iter().find(|r| r.current)?;
    let previous = revisions
        .iter()
        .filter(|r| r.number < current.number)
        .max_by_key(|r| r.number);
    Some(Rollout {
        service: service.to_owned(),
        at: current.created_at?,
        from: previous.map(|p| p.images.clone()).unwrap_or_default(),
        to: current.images.clone(),
        change_cause: current.change_cause.clone(),
    })
}

fn images(images: &[ContainerImage]) -> String {
    if images.is_empty() {
        return "(first revision)".into();
    }
    images
        .iter()
        .map(|i| i.image.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn age(d: Duration) -> String {
    let minutes = d.num_minutes().max(0);
    if minutes < 60 {
        format!("{minutes} min ago")
    } else {
        format!("{} h {} min ago", minutes / 60, minutes % 60)
    }
}

/// The answer: rollouts inside `window` before `now`, newest first, each with its button;
/// then every other service in `known` (sorted) without one.
pub fn message(
    rollouts: &[Rollout],
    known: &[String],
    window: Duration,
    now: DateTime<Utc>,
) -> Message {
    let mut recent: Vec<&Rollout> = rollouts
        .iter()
        .filter(|r| now - r.at <= window && r.at <= now + Duration::minutes(5))
        .collect();
    recent.sort_by(|a, b| b.at.cmp(&a.at).then(a.service.cmp(&b.service)));
    let window_minutes = window.num_minutes();
    let mut blocks = Vec::new();
    let mut text = Vec::new();
    if recent.is_empty() {
        let line = format!("Nothing rolled out in the last {window_minutes} min.");
        blocks.push(section(&line));
        text.push(line);
    } else {
        let line = format!("*Rolled out in the last {window_minutes} min* (newest first)");
        blocks.push(section(&line));
        text.push(line);
    }
    for r in recent.iter().take(MAX_RECENT) {
        let by = r
            .change_cause
            .as_deref()
            .map(|c| format!(" — {}", escape(&truncate(c, 200))))
            .unwrap_or_default();
        let line = format!(
            "*{}*: {} → {} ({}){by}",
            r.service,
            escape(&truncate(&images(&r.from), 400)),
            escape(&truncate(&images(&r.to), 400)),
            age(now - r.at)
        );
        text.push(line.clone());
        blocks.push(section(&line));
        blocks.push(json!({
            "type": "actions",
            "block_id": format!("recent.{}", r.service),
            "elements": [{
                "type": "button",
                "action_id": REQUEST_ROLLBACK,
                "text": { "type": "plain_text", "text": "Request rollback" },
                "value": r.service,
                "style": "danger",
            }],
        }));
    }
    let others: Vec<String> = known
        .iter()
        .filter(|n| !recent.iter().any(|r| &r.service == *n))
        .map(|n| format!("`{n}`"))
        .collect();
    if !others.is_empty() {
        let line = format!(
            "*Other services*: {}\n`/rollback <service>` requests a rollback of any of them.",
            others.join(", ")
        );
        blocks.push(section(&truncate(&line, 3000)));
        text.push(line);
    }
    Message {
        text: truncate(&text.join("\n"), 3000),
        blocks,
    }
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": truncate(text, 3000) } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(number: i64, image: &str, minutes_ago: i64, current: bool) -> Revision {
        Revision {
            number,
            replica_set: format!("rs-{number}"),
            pod_template_hash: String::new(),
            images: vec![ContainerImage {
                container: "app".into(),
                image: image.into(),
                init: false,
            }],
            change_cause: current.then(|| "deploy by alice".into()),
            created_at: Some(now() - Duration::minutes(minutes_ago)),
            replicas: 1,
            ready_replicas: 1,
            available_replicas: 1,
            current,
            previous_numbers: vec![],
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn recent_rollouts_come_first_newest_first_with_buttons() {
        let rollouts: Vec<Rollout> = [
            (
                "web",
                vec![
                    revision(1, "web:1", 300, false),
                    revision(2, "web:2", 30, true),
                ],
            ),
            (
                "api",
                vec![
                    revision(4, "api:4", 500, false),
                    revision(5, "api:5", 5, true),
                ],
            ),
            ("old", vec![revision(1, "old:1", 200, true)]),
        ]
        .iter()
        .filter_map(|(s, h)| latest_rollout(s, h))
        .collect();
        let known = ["api", "old", "search", "web"].map(String::from);
        let m = message(&rollouts, &known, Duration::minutes(60), now());
        let text = serde_json::to_string(&m.blocks).unwrap();
        let api = text
            .find("*api*: api:4 → api:5 (5 min ago) — deploy by alice")
            .unwrap();
        let web = text.find("*web*: web:1 → web:2 (30 min ago)").unwrap();
        let others = text.find("*Other services*: `old`, `search`").unwrap();
        assert!(api < web && web < others, "{text}");
        let buttons: Vec<&Value> = m
            .blocks
            .iter()
            .filter(|b| b["type"] == "actions")
            .map(|b| &b["elements"][0])
            .collect();
        assert_eq!(buttons.len(), 2);
        assert_eq!(
            (
                buttons[0]["action_id"].as_str(),
                buttons[0]["value"].as_str()
            ),
            (Some(REQUEST_ROLLBACK), Some("api"))
        );
    }

    #[test]
    fn nothing_recent_says_so() {
        let m = message(&[], &["web".into()], Duration::minutes(60), now());
        assert!(
            m.text.starts_with("Nothing rolled out in the last 60 min."),
            "{}",
            m.text
        );
        assert!(m.blocks.iter().all(|b| b["type"] != "actions"));
    }
}
