//! Crash injection on the real binary: `serve` is aborted (as `kill -9` would) at each named
//! failpoint (src/support/failpoint.rs) around the engine's transitions, the rollback patch and the
//! Slack notifier's posts, then two replicas start and race to resume. Whatever the point,
//! the rollback must reach exactly one terminal state, the Deployment must get exactly one new
//! revision, the audit trail no step twice, and Slack exactly one card with every thread line
//! exactly once.

mod support;
use support::bot;

use bot::Scenario;

/// Requests `web`'s previous revision and approves it when the card asks, with `serve`
/// aborting at `failpoint` first; then two replicas finish the job.
async fn crash_at(failpoint: &str) {
    let s = Scenario::new(&format!(
        "crash-{}",
        failpoint.replace(['.', '_', ':'], "-")
    ))
    .await;

    // Phase 1: one replica that aborts at the failpoint.
    let (id, approved) = s.run_until_abort(failpoint, &[], "").await;

    // Phase 2: two replicas race to resume.
    let replicas = [s.start(&[]), s.start(&[])];
    for r in &replicas {
        r.wait_ready().await;
    }
    let done = s.until_terminal(&replicas[1], id, approved).await;
    s.assert_rolled_back_once(&done, &format!("after a crash at {failpoint}"))
        .await;
    for r in replicas {
        let (exit, _) = r.terminate();
        assert!(exit.success());
    }
}

macro_rules! crash_tests {
    ($($name:ident: $point:literal,)*) => {$(
        #[tokio::test]
        async fn $name() {
            crash_at($point).await;
        }
    )*};
}

crash_tests! {
    crash_before_recording_the_plan: "engine.before_record.plan",
    crash_after_recording_the_plan: "engine.after_record.plan",
    crash_before_recording_the_start: "engine.before_record.begin",
    crash_after_recording_the_start: "engine.after_record.begin",
    crash_before_the_rollback_patch: "executor.before_patch",
    crash_after_the_rollback_patch: "executor.after_patch",
    crash_before_recording_the_execution: "engine.before_record.execute",
    crash_after_recording_the_execution: "engine.after_record.execute",
    crash_before_recording_the_verification: "engine.before_record.verify",
    crash_after_recording_the_verification: "engine.after_record.verify",
    crash_before_posting_the_card: "notifier.card.before_post",
    crash_after_posting_the_card: "notifier.card.after_post",
    crash_after_recording_the_card: "notifier.card.after_record",
    crash_before_updating_the_card: "notifier.update.before",
    crash_after_updating_the_card: "notifier.update.after",
    crash_after_recording_the_update: "notifier.update.after_record",
    // The second reply is the approval's ("Approved by … all sign-offs are in").
    crash_before_the_approval_reply: "notifier.reply.before_post:2",
    crash_after_the_approval_reply: "notifier.reply.after_post:2",
    crash_after_recording_the_approval_reply: "notifier.reply.after_record:2",
}
