//! Recovery validation when Prometheus fails mid-way. In a test binary of its own: stopping
//! the shared Prometheus would disturb the other recovery tests running in parallel. Needs
//! `make test` (Postgres, the cluster and Prometheus).

mod support;
use support::{bot, recovery, simulator};

use std::time::Duration;

use bot::Scenario;
use recovery::{assert_contains, world};
use rollback_bot::db::rollbacks as repo;
use rollback_bot::domain::State;
use sqlx::PgPool;

/// The tests that stop Prometheus run one at a time.
static PROMETHEUS_STOPPED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _one_at_a_time = PROMETHEUS_STOPPED.lock().await;
    let (id, ts) = w.roll_back_to_revision_1().await;
    w.wait_state(id, State::Validating).await;
    let restart = Restart;
    simulator::prometheus_ctl("stop");
    let done = w.settled(id).await;
    drop(restart);
    let reason = done.last_error.clone().unwrap_or_default();
    assert_eq!(done.state, State::Escalated, "{reason}");
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

#[sqlx::test]
async fn prometheus_back_within_the_window_lets_validation_succeed(pool: PgPool) {
    let w = world(pool, "v1", "slow", "window = \"45s\"").await;
    let _one_at_a_time = PROMETHEUS_STOPPED.lock().await;
    let (id, _) = w.roll_back_to_revision_1().await;
    w.wait_state(id, State::Validating).await;
    let restart = Restart;
    simulator::prometheus_ctl("stop");
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(restart);
    let done = w.settled(id).await;
    assert_eq!(done.state, State::Succeeded, "{:?}", done.last_error);
    assert_eq!(done.steps["validate"]["recovery"]["passes_in_a_row"], 3);
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
    assert_eq!(done.state, State::Escalated, "{reason}");
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

#[tokio::test]
async fn check_config_queries_prometheus_and_names_a_broken_query() {
    let dir = bot::tempdir("recovery-check");
    let kubeconfig = std::env::var("ROLLBACK_BOT_TEST_KUBECONFIG").expect("the test cluster");
    let run = |name: &str, cluster: &str, recovery: &str| {
        let text = format!(
            "[slack]\nincident_channels = [\"C0INCIDENT1\"]\nlead_user_ids = [\"U0LEAD0001\"]\n\
             [clusters.local]\nkubeconfig = \"{kubeconfig}\"\n{cluster}\n\
             [services.web]\ncluster = \"local\"\nnamespace = \"default\"\n\
             [services.web.recovery]\n{recovery}\n"
        );
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(bot::BIN)
            .args(["--config", path.to_str().unwrap(), "check-config"])
            .output()
            .expect("run check-config");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let prometheus = format!("prometheus_url = \"{}\"", simulator::prometheus_url());

    let (_, text) = run("good.toml", &prometheus, "");
    assert_contains(
        &text,
        &[
            "recovery validated against http://127.0.0.1:",
            "ok    prometheus for web: http://127.0.0.1:",
            "reachable, 4 queries accepted",
        ],
    );

    let (code, text) = run(
        "broken.toml",
        &prometheus,
        "p99_query = \"histogram_quantile(0.99,\"",
    );
    assert_eq!(code, 2, "{text}");
    assert_contains(
        &text,
        &[
            "FAIL  prometheus for web: p99_baseline query: Prometheus refused the query (HTTP 400, bad_data)",
        ],
    );

    let closed = bot::free_port();
    let (code, text) = run(
        "unreachable.toml",
        &format!("prometheus_url = \"http://127.0.0.1:{closed}\""),
        "",
    );
    assert_eq!(code, 2, "{text}");
    assert_contains(
        &text,
        &[
            "FAIL  prometheus for web: p99_baseline query: Prometheus unreachable at http://127.0.0.1:",
        ],
    );

    let (_, text) = run("off.toml", "", "");
    assert_contains(
        &text,
        &["recovery validation skipped: no Prometheus configured for cluster local"],
    );
    assert!(!text.contains("prometheus for web"), "{text}");
}
