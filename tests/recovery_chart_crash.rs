//! Crash injection around the recovery chart's upload (src/slack/chart_upload.rs) on the real
//! binary: `serve` aborts (as `kill -9` would) at each failpoint between
//! files.getUploadURLExternal, the upload and files.completeUploadExternal, then two replicas
//! race to resume. Whatever the point, the card's thread must end with exactly one chart (a
//! PNG of the right size), completed once, and the stand-in must have seen no breach of the
//! upload contract. Needs `make test` (Postgres, the cluster and Prometheus).
//!
//! Nothing scrapes the scenario's namespace, so validation is inconclusive and fails when its
//! short window ends: the chart then shows "no data", which is all the upload needs.

mod support;
use support::{bot, simulator};

use std::time::Duration;

use bot::{CHANNEL, Scenario};
use rollback_bot::domain::State;

async fn chart_state(s: &Scenario, id: i64) -> Option<String> {
    sqlx::query_scalar("select state from slack_chart where rollback_id = $1")
        .bind(id)
        .fetch_optional(&s.pool)
        .await
        .unwrap_or(None)
}

async fn crash_at(failpoint: &str) {
    let s = Scenario::new(&format!("chart-{}", failpoint.replace(['.', '_'], "-"))).await;
    let extra = format!(
        "prometheus_url = \"{}\"\n[services.web.recovery]\ninterval = \"1s\"\nwindow = \"3s\"",
        simulator::prometheus_url()
    );

    // Phase 1: one replica that aborts at the failpoint, after the verdict.
    let (id, approved) = s.run_until_abort(failpoint, &[], &extra).await;
    assert_ne!(chart_state(&s, id).await.as_deref(), Some("shared"));

    // Phase 2: two replicas race to resume.
    let replicas = [s.start_with(&[], &extra), s.start_with(&[], &extra)];
    for r in &replicas {
        r.wait_ready().await;
    }
    let done = s.until_terminal(&replicas[1], id, approved).await;
    assert_eq!(done.state, State::Escalated, "{:?}", done.last_error);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while chart_state(&s, id).await.as_deref() != Some("shared") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "after a crash at {failpoint}: the chart is {:?}",
            chart_state(&s, id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a wrongly resumed second upload time to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let card = s.slack.cards(CHANNEL).first().cloned().expect("the card");
    let files = s.slack.files().in_thread(&card.ts);
    assert_eq!(files.len(), 1, "after a crash at {failpoint}: {files:?}");
    assert_eq!(
        files[0].png_dimensions(),
        (
            rollback_bot::support::chart::WIDTH,
            rollback_bot::support::chart::HEIGHT
        )
    );
    assert_eq!(s.slack.files().shared().len(), 1);
    // Nothing scraped the namespace: the caption says what the chart lacks.
    let caption = files[0].comment.clone().unwrap_or_default();
    assert!(caption.contains("(not recovered)"), "{caption}");
    assert!(caption.contains("No P99 data: "), "{caption}");
    let completions = s
        .slack
        .calls_to("files.completeUploadExternal")
        .into_iter()
        .filter(|c| c.error.is_none())
        .count();
    assert_eq!(
        completions, 1,
        "after a crash at {failpoint}: completed once"
    );
    let chart_lines = s
        .slack
        .thread(&card.ts)
        .iter()
        .filter(|m| !m.files.is_empty())
        .count();
    assert_eq!(chart_lines, 1);
    assert_eq!(s.slack.violations(), Vec::<String>::new());
    for r in replicas {
        let (exit, _) = r.terminate();
        assert!(exit.success());
    }
}

#[tokio::test]
async fn crash_after_getting_the_upload_url() {
    // The file id was never recorded: a new one is got, the first is never completed.
    crash_at("chart.after_get_url").await;
}

#[tokio::test]
async fn crash_after_uploading_the_bytes() {
    crash_at("chart.after_upload").await;
}

#[tokio::test]
async fn crash_before_completing_the_upload() {
    crash_at("chart.before_complete").await;
}

#[tokio::test]
async fn crash_after_completing_the_upload() {
    // Completed but not recorded: found in the thread, not completed again.
    crash_at("chart.after_complete").await;
}
