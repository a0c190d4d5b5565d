//! Named crash points for the crash-injection tests, and pause points for races.
//!
//! `hit("name")` aborts the process on the spot, as `kill -9` would, when the environment
//! variable `ROLLBACK_BOT_FAILPOINTS` lists `name` (comma-separated). Release builds ignore the
//! variable entirely (`debug_assertions` off), so production cannot be crashed this way; in
//! debug builds an unset variable costs one atomic load per point.
//!
//! The points sit right before and after every external effect and every transition:
//!
//! | point | where |
//! |---|---|
//! | `engine.before_record.<step>`, `engine.after_record.<step>` | around recording the result of step `plan`, `execute`, `verify`, … |
//! | `executor.before_patch`, `executor.after_patch` | around the rollback patch |
//! | `notifier.before_card_post`, `notifier.after_card_post` | around posting the card |
//! | `notifier.before_card_update`, `notifier.after_card_update` | around `chat.update` |
//! | `notifier.before_thread_reply`, `notifier.after_thread_reply` | around a thread reply |

//!
//! In-process tests can also register a hook at a point ([`on`]) to act at exactly that
//! moment, e.g. write to the Deployment between the executor's check and its patch. Hooks
//! get the point's context (the target) so parallel tests only see their own.

use std::sync::{Arc, Mutex, OnceLock};

/// The environment variable naming the points that crash the process.
pub const ENV: &str = "ROLLBACK_BOT_FAILPOINTS";

/// Aborts the process if `name` is an enabled failpoint (debug builds only).
pub fn hit(name: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    static ENABLED: OnceLock<Vec<String>> = OnceLock::new();
    let enabled = ENABLED.get_or_init(|| {
        std::env::var(ENV)
            .map(|v| v.split(',').map(|p| p.trim().to_owned()).collect())
            .unwrap_or_default()
    });
    if enabled.iter().any(|p| p == name) {
        eprintln!("failpoint {name}: aborting the process");
        std::process::abort();
    }
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
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
