//! What an on-call engineer opening an escalation at 3 a.m. needs to see first, read from
//! the cluster when a rollback fails: for each failing pod its phase, the waiting or
//! terminated reason, the exit code and the restarts, and the last lines of the failing
//! container's previous log; and the recent Warning events of the Deployment, its
//! ReplicaSets and its pods. Pure: [`failing_pods`], [`warnings`], [`Diagnosis::lines`];
//! the reads are [`super::Executor::diagnose`]. Every text is bounded and has its
//! secret-looking words masked here; escaping for Slack or Markdown is the renderer's.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ContainerStatus, Event as KubeEvent, Pod};
use serde::{Deserialize, Serialize};

use super::redact;
use crate::support::text::truncate;

/// Pods described, at most (the first ones, by name).
pub const MAX_PODS: usize = 2;
/// Log lines quoted per failing pod, at most.
pub const LOG_LINES: i64 = 6;
/// Warning events quoted, at most (the newest).
pub const MAX_EVENTS: usize = 5;
/// Characters of one quoted line, at most.
const MAX_LINE: usize = 200;

/// A failing pod, as `kubectl describe pod` would summarize it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingPod {
    pub name: String,
    pub phase: String,
    /// The container that fails (the first not ready one).
    pub container: String,
    /// `CrashLoopBackOff`, `ImagePullBackOff`, `OOMKilled`, …
    pub reason: Option<String>,
    /// The exit code of the last termination.
    pub exit_code: Option<i32>,
    pub restarts: i32,
    /// The termination message (`terminationMessagePath` or `FallbackToLogsOnError`).
    pub message: Option<String>,
    /// The last lines of the container's previous log, or why there are none.
    #[serde(default)]
    pub log_tail: Vec<String>,
    #[serde(default)]
    pub log_error: Option<String>,
}

/// What [`super::Executor::diagnose`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub pods: Vec<FailingPod>,
    /// "Warning BackOff pod/web-1: Back-off restarting failed container" (the newest last).
    pub events: Vec<String>,
}

impl Diagnosis {
    /// One line per pod (with its log tail indented below it) and per event, for the
    /// evidence list.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![];
        for p in &self.pods {
            let mut line = format!("pod {} ({}), container {}", p.name, p.phase, p.container);
            if let Some(reason) = &p.reason {
                line.push_str(&format!(": {reason}"));
            }
            if let Some(code) = p.exit_code {
                line.push_str(&format!(", exit code {code}"));
            }
            line.push_str(&format!(", {} restart(s)", p.restarts));
            if let Some(message) = &p.message {
                line.push_str(&format!(", message: {message}"));
            }
            match (&p.log_error, p.log_tail.is_empty()) {
                (Some(e), _) => line.push_str(&format!("; previous log unavailable: {e}")),
                (None, true) => line.push_str("; previous log empty"),
                (None, false) => {
                    line.push_str("; previous log ends:");
                    for l in &p.log_tail {
                        line.push_str(&format!("\n    {l}"));
                    }
                }
            }
            lines.push(line);
        }
        lines.extend(self.events.iter().map(|e| format!("event: {e}")));
        lines
    }
}

/// One quoted text: bounded, secrets masked.
fn quote(text: &str) -> String {
    truncate(&redact::line(text.trim()), MAX_LINE)
}

/// The last lines of a log, quoted.
pub fn log_tail(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(LOG_LINES as usize);
    lines[start..].iter().map(|l| quote(l)).collect()
}

/// Pods that are not Running and ready, or whose containers restarted: at most
/// [`MAX_PODS`], by name. A log tail is read for each afterwards.
pub fn failing_pods(pods: &[Pod]) -> Vec<FailingPod> {
    let mut failing: Vec<FailingPod> = pods.iter().filter_map(failing).collect();
    failing.sort_by(|a, b| a.name.cmp(&b.name));
    failing.truncate(MAX_PODS);
    failing
}

fn failing(pod: &Pod) -> Option<FailingPod> {
    let status = pod.status.as_ref()?;
    let statuses = status.container_statuses.as_deref().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_else(|| "Unknown".into());
    let bad = statuses
        .iter()
        .find(|c| !c.ready || c.restart_count > 0)
        .or_else(|| (phase != "Running").then(|| statuses.first()).flatten());
    let Some(c) = bad else {
        // Not started at all (Pending, unschedulable): the pod's own reason.
        return (phase != "Running" && phase != "Succeeded").then(|| FailingPod {
            name: pod.metadata.name.clone().unwrap_or_default(),
            phase: phase.clone(),
            reason: status.reason.clone().or_else(|| unscheduled(pod)),
            ..FailingPod::default()
        });
    };
    let (reason, exit_code, message) = termination(c);
    Some(FailingPod {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase,
        container: c.name.clone(),
        reason,
        exit_code,
        restarts: c.restart_count,
        message: message.map(|m| quote(&m)),
        ..FailingPod::default()
    })
}

/// Why the scheduler has not placed the pod, from its `PodScheduled` condition.
fn unscheduled(pod: &Pod) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| {
            quote(&format!(
                "{}: {}",
                c.reason.as_deref().unwrap_or("Unschedulable"),
                c.message.as_deref().unwrap_or("")
            ))
        })
}

/// The waiting reason, else the last termination's; the exit code and the message of the
/// termination (current, else last).
fn termination(c: &ContainerStatus) -> (Option<String>, Option<i32>, Option<String>) {
    let state = c.state.as_ref();
    let terminated = state
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
    let waiting = state.and_then(|s| s.waiting.as_ref());
    let reason = waiting
        .and_then(|w| w.reason.clone())
        .or_else(|| terminated.and_then(|t| t.reason.clone()));
    // "CrashLoopBackOff" hides why it crashed: name the termination's reason too.
    let reason = match (reason, terminated.and_then(|t| t.reason.as_deref())) {
        (Some(r), Some(t)) if r != t => Some(format!("{r} (last exit: {t})")),
        (r, _) => r,
    };
    let message = terminated
        .and_then(|t| t.message.clone())
        .filter(|m| !m.trim().is_empty());
    (reason, terminated.map(|t| t.exit_code), message)
}

/// The newest [`MAX_EVENTS`] Warning events about `names` (the Deployment, its ReplicaSets,
/// the failing pods), oldest first, each once per reason and object.
pub fn warnings(events: &[KubeEvent], names: &BTreeSet<String>) -> Vec<String> {
    let mut relevant: Vec<&KubeEvent> = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| {
            e.involved_object
                .name
                .as_ref()
                .is_some_and(|n| names.contains(n))
        })
        .collect();
    relevant.sort_by_key(|e| {
        e.last_timestamp
            .as_ref()
            .map(|t| t.0)
            .or(e.event_time.as_ref().map(|t| t.0))
            .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    });
    let mut seen = BTreeSet::new();
    let mut lines: Vec<String> = relevant
        .into_iter()
        .rev()
        .filter(|e| {
            seen.insert((
                e.reason.clone(),
                e.involved_object.kind.clone(),
                e.involved_object.name.clone(),
            ))
        })
        .take(MAX_EVENTS)
        .map(|e| {
            quote(&format!(
                "{} {}/{}: {}{}",
                e.reason.as_deref().unwrap_or("Warning"),
                e.involved_object
                    .kind
                    .as_deref()
                    .unwrap_or("object")
                    .to_lowercase(),
                e.involved_object.name.as_deref().unwrap_or("?"),
                e.message.as_deref().unwrap_or(""),
                e.count
                    .filter(|n| *n > 1)
                    .map(|n| format!(" (×{n})"))
                    .unwrap_or_default()
            ))
        })
        .collect();
    lines.reverse();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_crash_looping_pod_names_the_reason_the_exit_code_and_the_restarts() {
        let crashing = pod(json!({
            "metadata": {"name": "web-2"},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 4, "image": "web:2", "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                             "message": "token=abcd1234 out of memory"}},
            }]},
        }));
        let healthy = pod(json!({
            "metadata": {"name": "web-1"},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "app", "ready": true, "restartCount": 0, "image": "web:1", "imageID": "",
            }]},
        }));
        let pending = pod(json!({
            "metadata": {"name": "web-3"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/3 nodes are available"}]},
        }));
        let found = failing_pods(&[crashing, healthy, pending]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found[0],
            FailingPod {
                name: "web-2".into(),
                phase: "Running".into(),
                container: "app".into(),
                reason: Some("CrashLoopBackOff (last exit: OOMKilled)".into()),
                exit_code: Some(137),
                restarts: 4,
                message: Some("token=‹redacted› out of memory".into()),
                ..FailingPod::default()
            }
        );
        assert_eq!(found[1].name, "web-3");
        assert_eq!(
            found[1].reason.as_deref(),
            Some("Unschedulable: 0/3 nodes are available")
        );
        let mut d = Diagnosis {
            pods: found,
            events: vec!["BackOff pod/web-2: Back-off restarting failed container".into()],
        };
        d.pods[0].log_tail = log_tail("a\n\nconnecting with password=hunter2\npanic: boom\n");
        d.pods[1].log_error = Some("the pod has not started".into());
        assert_eq!(
            d.lines(),
            vec![
                "pod web-2 (Running), container app: CrashLoopBackOff (last exit: OOMKilled), \
                 exit code 137, 4 restart(s), message: token=‹redacted› out of memory; previous \
                 log ends:\n    a\n    connecting with password=‹redacted›\n    panic: boom"
                    .to_owned(),
                "pod web-3 (Pending), container : Unschedulable: 0/3 nodes are available, 0 \
                 restart(s); previous log unavailable: the pod has not started"
                    .to_owned(),
                "event: BackOff pod/web-2: Back-off restarting failed container".to_owned(),
            ]
        );
    }

    #[test]
    fn the_log_tail_is_the_last_lines_bounded() {
        let log: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let tail = log_tail(&log);
        assert_eq!(tail.len(), LOG_LINES as usize);
        assert_eq!(tail[0], "line 25");
        assert_eq!(tail[5], "line 30");
        let long = "x".repeat(1000);
        assert!(log_tail(&long)[0].chars().count() <= MAX_LINE);
    }

    #[test]
    fn warnings_are_the_newest_about_the_workload_once_each() {
        let event = |name: &str, kind: &str, reason: &str, at: &str, kind_of: &str| -> KubeEvent {
            serde_json::from_value(json!({
                "metadata": {"name": format!("{name}.{reason}")},
                "involvedObject": {"kind": kind_of, "name": name},
                "reason": reason, "message": format!("{reason} of {name}"), "type": kind,
                "lastTimestamp": at, "count": 3,
            }))
            .unwrap()
        };
        let events = vec![
            event("web-2", "Warning", "BackOff", "2026-12-05T10:00:05Z", "Pod"),
            event("web-2", "Normal", "Pulled", "2026-12-05T10:00:04Z", "Pod"),
            event(
                "other-1",
                "Warning",
                "BackOff",
                "2026-12-05T10:00:06Z",
                "Pod",
            ),
            event(
                "web-7d9",
                "Warning",
                "FailedCreate",
                "2026-12-05T10:00:01Z",
                "ReplicaSet",
            ),
        ];
        let names: BTreeSet<String> = ["web-2", "web-7d9"].map(String::from).into();
        assert_eq!(
            warnings(&events, &names),
            vec![
                "FailedCreate replicaset/web-7d9: FailedCreate of web-7d9 (×3)",
                "BackOff pod/web-2: BackOff of web-2 (×3)",
            ]
        );
    }
}
