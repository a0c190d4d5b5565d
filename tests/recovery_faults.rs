//! Recovery validation when Prometheus fails mid-way. In a test binary of its own: stopping
//! the shared Prometheus would disturb the other recovery tests running in parallel. Needs
//! `make test` (Postgres, the cluster and Prometheus).

#[path = "support/bot.rs"]
mod bot;
#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/recovery.rs"]
mod recovery;
#[path = "support/simulator.rs"]
mod simulator;
#[path = "support/slack_standin.rs"]
mod slack_standin;

use std::time::Duration;

use bot::Scenario;
use recovery::{assert_contains, world};
use rollback_bot::rollback::State;
use rollback_bot::rollback::repo;
use sqlx::PgPool;

/// Starts Prometheus again when dropped, also when the test fails.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        simulator::prometheus_ctl("start");
    }
}

#[sqlx::test]
async fn prometheus_stopped_mid_validation_fails_naming_it_never_succeeds(pool: PgPool) {
    // More passes than the window has rounds: only Prometheus's absence can end it early.
    let w = world(
        pool,
        "v1",
        "slow",
        "window = \"8s\"\nconsecutive_successes = 30",
    )
    .await;
    let (id, ts) = w.roll_back_to_revision_1().await;
    w.wait_state(id, State::Validating).await;
    let restart = Restart;
    simulator::prometheus_ctl("stop");
    let done = w.finished(id).await;
    drop(restart);
    let reason = done.last_error.clone().unwrap_or_default();
    assert_eq!(done.state, State::Failed, "{reason}");
    assert_contains(
        &reason,
        &[
            "not validated within 8s",
            "inconclusive",
            "Prometheus unreachable at http://127.0.0.1:",
        ],
    );
    let (_, thread) = w
        .card_and_thread(&ts, "Prometheus unreachable", "Recovery not validated")
        .await;
    assert_contains(&thread, &["Prometheus unreachable"]);
}

#[tokio::test]
async fn bot_killed_mid_validation_resumes_with_the_remaining_window_and_one_verdict() {
    let s = Scenario::new("recovery-restart").await;
    // Nothing scrapes this namespace: every round is inconclusive, so the verdict comes exactly
    // when the window ends, which shows whether the resumed step kept the original window.
    let extra = format!(
        "prometheus_url = \"{}\"\n[services.web.recovery]\ninterval = \"1s\"\nwindow = \"12s\"",
        simulator::prometheus_url()
    );
    let first = s.start_with(&[], &extra);
    first.wait_ready().await;
    let id = s.request(&first).await;
    s.until_state(id, &[State::AwaitingApproval]).await;
    while !s.approve_when_asked(&first).await {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.until_state(id, &[State::Validating]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(first); // SIGKILL mid-validation
    let second = s.start_with(&[], &extra);
    let done = s.until_terminal(&second, id, true).await;
    let reason = done.last_error.clone().unwrap_or_default();
    assert_eq!(done.state, State::Failed, "{reason}");
    assert_contains(&reason, &["not validated within 12s", "inconclusive"]);

    let trail = repo::audit_trail(&s.pool, id).await.unwrap();
    let verdicts: Vec<_> = trail
        .iter()
        .filter(|row| row.from_state == State::Validating)
        .collect();
    assert_eq!(verdicts.len(), 1, "one verdict: {trail:#?}");
    let verified_at = chrono::DateTime::parse_from_rfc3339(
        done.steps["verify"]["at"]
            .as_str()
            .expect("verification's end"),
    )
    .unwrap();
    let took = (verdicts[0].at - verified_at.to_utc()).to_std().unwrap();
    // The remaining window, not a new one (which would end ≥ 3 s + lease + 12 s later).
    assert!(
        took >= Duration::from_secs(11) && took <= Duration::from_secs(14),
        "verdict {took:?} after verification"
    );
    assert!(
        verdicts[0].actor
            != trail
                .iter()
                .find(|r| r.to_state == State::Validating)
                .unwrap()
                .actor,
        "another process gave the verdict"
    );
}
