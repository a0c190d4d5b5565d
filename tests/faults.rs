//! Fault injection on the real binary: Postgres restarted mid-rollback, the apiserver killed
//! and restarted during verification, Slack answering 429 with Retry-After and failing with
//! 5xx bursts. Each rollback must end in the right terminal state with nothing lost or done
//! twice, and the card must end right.
//!
//! The faults hit servers every test shares (the Postgres server, the cluster's apiserver),
//! so the tests in this file run one at a time.

mod support;
use support::bot;

use std::time::Duration;

use bot::Scenario;
use rollback_bot::domain::State;
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Restarts the tests' Postgres server (`scripts/postgres.sh restart`), cutting every
/// connection.
fn restart_postgres() {
    let dir = std::env::var("ROLLBACK_BOT_TEST_PG_DIR")
        .expect("ROLLBACK_BOT_TEST_PG_DIR is not set: run the tests with `make test`");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh");
    let status = std::process::Command::new("bash")
        .args([script, "restart", &dir])
        .status()
        .expect("run postgres.sh restart");
    assert!(status.success(), "postgres.sh restart failed");
}

#[tokio::test]
async fn postgres_restarted_mid_rollback() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let s = Scenario::new("fault-postgres").await;
    let bot = s.start(&[]);
    bot.wait_ready().await;
    let id = s.request_approved(&bot).await;
    tokio::task::spawn_blocking(restart_postgres).await.unwrap();
    let done = s.until_terminal(&bot, id, true).await;
    s.assert_rolled_back_once(&done, "after a Postgres restart")
        .await;
    let (_, metrics) = bot.admin_get("/metrics").await;
    assert!(
        metrics.contains("rollback_bot_rollbacks_total{outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn apiserver_killed_and_restarted_during_verification() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut s = Scenario::new("fault-apiserver").await;
    s.set_progress_deadline(300).await;
    let bot = s.start(&[]);
    bot.wait_ready().await;
    let id = s.request_approved(&bot).await;
    s.until_state(id, &[State::Verifying]).await;
    let cluster = s.cluster.clone();
    tokio::task::spawn_blocking(move || cluster.restart_apiserver(Duration::from_secs(5)))
        .await
        .unwrap();
    let done = s.until_terminal(&bot, id, true).await;
    s.assert_rolled_back_once(&done, "after an apiserver restart")
        .await;
}

#[tokio::test]
async fn slack_rate_limits_and_fails_during_the_rollback() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let s = Scenario::new("fault-slack").await;
    let bot = s.start(&[]);
    bot.wait_ready().await;
    let id = s.request_approved(&bot).await;
    // The next calls are answered 429 with Retry-After: 2, then Slack is down for 3 s.
    s.slack.rate_limit_next(3, 2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.slack.set_down(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    s.slack.set_down(false);
    let done = s.until_terminal(&bot, id, true).await;
    s.assert_rolled_back_once(&done, "with Slack rate-limiting and failing")
        .await;
    let limited = s.slack.calls().iter().filter(|c| c.status == 429).count();
    assert!(limited >= 1, "the stand-in rate-limited some calls");
}
