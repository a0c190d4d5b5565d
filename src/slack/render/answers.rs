//! The ephemeral answers: history, status, lock.

use chrono::{DateTime, Utc};

use super::card::{checklist, headline};
use super::*;

/// `/rollback history` as an ephemeral table.
pub fn history(service: &str, revisions: &[Revision], now: DateTime<Utc>) -> String {
    if revisions.is_empty() {
        return format!("`{service}` has no rollout history.");
    }
    let mut out = format!(
        "*Revisions of `{service}`* (newest first)\n```\nREV  IMAGES                                   CHANGE-CAUSE                                 AGE\n"
    );
    for r in revisions.iter().rev().take(20) {
        let images = r
            .images
            .iter()
            .map(|i| i.image.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let age = r
            .created_at
            .map(|c| human_age(now - c))
            .unwrap_or_else(|| "?".into());
        out.push_str(&format!(
            "{:<4} {:<40} {:<44} {:<6}{}\n",
            r.number,
            truncate(&images, 40),
            truncate(r.change_cause.as_deref().unwrap_or("<none>"), 44),
            age,
            if r.current { " ← current" } else { "" }
        ));
    }
    out.push_str("```");
    truncate(&out, MAX_SECTION_TEXT)
}

fn human_age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// One line of `/rollback status`.
pub fn status_line(r: &Rollback) -> String {
    format!(
        "#{} `{}` ({}/{}) — *{}* — requested by {} {}",
        r.id,
        r.service,
        r.cluster,
        r.namespace,
        r.state.as_str().replace('_', " "),
        user(&r.requested_by),
        slack_date(r.created_at)
    )
}

/// One active deploy lock in `/rollback status`: who locked it, since when, and how to lift it.
pub fn lock_line(service: &str, lock: &crate::clients::k8s::lock::Lock) -> String {
    format!(
        "🔒 `{service}` — {}{} — `/rollback unlock {service} <fix reference>`",
        escape(&lock.reason),
        lock.since
            .map(|at| format!(", since {}", slack_date(at)))
            .unwrap_or_default()
    )
}

/// `/rollback status <id>` in detail.
pub fn status_detail(r: &Rollback) -> String {
    let mut out = status_line(r);
    out.push('\n');
    out.push_str(&headline(r));
    if r.decided_by.is_some() || r.lead_approved_by.is_some() {
        out.push('\n');
        out.push_str(&checklist(r, None));
    }
    truncate(&out, MAX_SECTION_TEXT)
}
