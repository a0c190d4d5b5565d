//! Named crash points for crash-injection tests, and pause points for races.
//!
//! `failpoint::hit("name")` aborts the process on the spot (`std::process::abort`, as abrupt
//! as `kill -9`: no destructors, no graceful shutdown) when the environment variable
//! `ROLLBACK_BOT_FAILPOINTS` lists `name`. The list is comma separated; an entry `name:N`
//! aborts at the N-th hit of `name` instead of the first (e.g. the second thread reply).
//! The variable is read once. Release builds (`debug_assertions` off) ignore it entirely,
//! and with the variable unset a hit is one atomic load.
//!
//! Place a point before and after every external effect and around the database record of
//! it, so a test can kill the process at each dangerous moment and check what a restart does.
//!
//! Points (keep this list current):
//!
//! | name | where |
//! |---|---|
//! | `notifier.card.before_post` | the card's post intent is recorded, `chat.postMessage` not sent |
//! | `notifier.card.after_post` | Slack has the card, its `ts` is not recorded |
//! | `notifier.card.after_record` | the card's `ts` is recorded |
//! | `notifier.update.before` | before `chat.update` of the card |
//! | `notifier.update.after` | the card is updated, the rendered version not recorded |
//! | `notifier.update.after_record` | the rendered version is recorded |
//! | `notifier.reply.before_post` | a thread reply's intent is recorded, not sent |
//! | `notifier.reply.after_post` | Slack has the reply, the thread cursor not advanced |
//! | `notifier.reply.after_record` | the thread cursor is advanced |
//! | `engine.before_record.<step>` | step `plan`, `begin`, `execute`, `verify`, `escalate`, … finished, its result not recorded |
//! | `engine.after_record.<step>` | the step's result is recorded (or refused) |
//! | `executor.before_patch` | the Deployment is checked against the plan, the patch not sent |
//! | `executor.after_patch` | the API server applied the rollback patch, the executor has not returned |
//! | `chart.after_get_url` | `files.getUploadURLExternal` answered, the file id not recorded |
//! | `chart.after_upload` | the upload URL took the chart's bytes, not recorded |
//! | `chart.before_complete` | the completion is recorded as in flight, not sent |
//! | `chart.after_complete` | the chart is in the thread, not recorded |
//! | `escalation.after_intent` | a failed rollback's PagerDuty trigger is recorded, not sent |
//! | `escalation.after_send` | PagerDuty accepted the trigger, it is not marked sent |
//! | `deployer.dm.after_intent` | the DM to the deployer is recorded as intended, not sent |
//! | `deployer.dm.after_post` | Slack has the DM, its result is not recorded |
//! | `ticket.after_intent` | the post-incident ticket is recorded as intended, not created |
//! | `ticket.after_create` | the tracker created the ticket, its key is not recorded |
//! | `click.<action>.after_record` | a lead's click (`approve`, `abort`, `escalate_now`, …) is recorded, not answered; the card not updated |
//!
//! In-process tests can also register a hook at a point ([`on`]) to act at exactly that
//! moment, e.g. write to the Deployment between the executor's check and its patch. Hooks
//! get the point's context (the target) so parallel tests only see their own.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The environment variable listing the armed points.
pub const ENV: &str = "ROLLBACK_BOT_FAILPOINTS";

struct Armed {
    name: String,
    /// Abort at this hit (1 = the first).
    at: u32,
    hits: AtomicU32,
}

static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();

/// Aborts the process if `name` is armed in `ROLLBACK_BOT_FAILPOINTS` and this is the hit it
/// is armed for. A no-op in release builds.
pub fn hit(name: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    let armed = ARMED.get_or_init(|| parse(std::env::var(ENV).ok().as_deref().unwrap_or("")));
    for point in armed.iter().filter(|p| p.name == name) {
        if point.hits.fetch_add(1, Ordering::SeqCst) + 1 == point.at {
            eprintln!("failpoint {name}: aborting the process");
            std::process::abort();
        }
    }
}

/// `a,b:2` → [a at its 1st hit, b at its 2nd]. Empty entries are skipped; an unreadable
/// count arms the point at its first hit (a test asking for a crash should get one).
fn parse(list: &str) -> Vec<Armed> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (name, at) = match entry.rsplit_once(':') {
                Some((name, n)) => (name, n.trim().parse().unwrap_or(1).max(1)),
                None => (entry, 1),
            };
            Armed {
                name: name.trim().to_owned(),
                at,
                hits: AtomicU32::new(0),
            }
        })
        .collect()
}

/// A test's action at a point; it receives the point's context.
pub type Hook = Arc<dyn Fn(&str) + Send + Sync>;

static HOOKS: Mutex<Vec<(u64, String, Hook)>> = Mutex::new(Vec::new());

/// [`hit`], then runs the hooks registered at `name` with `context` (debug builds only).
pub fn hit_with(name: &str, context: &str) {
    hit(name);
    if !cfg!(debug_assertions) {
        return;
    }
    let hooks: Vec<Hook> = HOOKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(_, point, _)| point == name)
        .map(|(_, _, hook)| hook.clone())
        .collect();
    for hook in hooks {
        hook(context);
    }
}

/// Runs `hook` at every [`hit_with`] of `name` until the returned guard is dropped.
pub fn on(name: &str, hook: Hook) -> Registration {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    HOOKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, name.to_owned(), hook));
    Registration(id)
}

/// Removes its hook when dropped.
#[must_use = "the hook is removed when the registration is dropped"]
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        HOOKS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _, _)| *id != self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(list: &str) -> Vec<(String, u32)> {
        parse(list).into_iter().map(|a| (a.name, a.at)).collect()
    }

    #[test]
    fn parses_names_and_hit_counts() {
        assert_eq!(summary(""), vec![]);
        assert_eq!(
            summary(" a.b , c:2,,d:x, e:0"),
            vec![
                ("a.b".into(), 1),
                ("c".into(), 2),
                ("d".into(), 1),
                ("e".into(), 1)
            ]
        );
    }
}
