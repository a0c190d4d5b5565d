//! Recovery validation when Prometheus fails mid-way. In a test binary of its own: stopping
//! the shared Prometheus would disturb the other recovery tests running in parallel. Needs
//! `make test` (Postgres, the cluster and Prometheus).

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/recovery.rs"]
mod recovery;
#[path = "support/simulator.rs"]
mod simulator;
#[path = "support/slack_standin.rs"]
mod slack_standin;

use recovery::{assert_contains, world};
use rollback_bot::rollback::State;
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
