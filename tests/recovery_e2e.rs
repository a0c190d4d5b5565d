//! Recovery validation end to end (see `support/recovery.rs` for the set-up): each test
//! rolls a bad tag out, sees it degrade in Prometheus, then rolls back through Slack and checks
//! the verdict and its evidence. Needs `make test` (Postgres, the cluster and Prometheus).

mod support;
use support::{cluster, recovery, simulator};

use std::time::Duration;

use cluster::TestCluster;
use recovery::{APP, World, assert_contains, number, world};
use rollback_bot::clients::prometheus::Prometheus;
use rollback_bot::db::rollbacks as repo;
use rollback_bot::domain::State;
use sqlx::PgPool;

#[sqlx::test]
async fn rollback_from_slow_to_a_good_revision_is_validated_with_numbers(pool: PgPool) {
    let w = world(pool, "v1", "slow", r#"window = "40s""#).await;
    let slow_p99 = simulator::wait_for_value(
        "P99 of the slow revision",
        &w.p99_query(),
        Duration::from_secs(30),
        |p99| p99 > 1.0,
    )
    .await;
    let (id, ts) = w.roll_back_to_revision_1().await;
    // Watch P99 as Prometheus answers it, to time the verdict against the recovery.
    let samples = simulator::Samples::default();
    let watch = tokio::spawn(simulator::sample(
        w.p99_query(),
        Duration::from_millis(100),
        samples.clone(),
    ));
    let done = w.settled(id).await;
    watch.abort();
    let samples = samples.lock().unwrap().clone();
    assert_eq!(done.state, State::Succeeded, "{:?}", done.last_error);

    let recovery = &done.steps["validate"]["recovery"];
    let observation = &recovery["observation"];
    let (baseline, now) = (
        number(observation, "p99_baseline"),
        number(observation, "p99_now"),
    );
    assert!(
        baseline < 0.2,
        "baseline P99 of the good revision: {baseline}"
    );
    assert!(
        now <= baseline * 1.2,
        "recovered P99 {now} vs baseline {baseline}"
    );
    assert!(
        slow_p99 > 5.0 * baseline,
        "the incident was visible: {slow_p99}"
    );
    // Benchmark (docs/recovery.md): from the first moment Prometheus answers a recovered P99
    // to the verdict; goal ≤ the consecutive-success requirement (2 intervals) + 2 scrape
    // intervals + 1 check interval = 5 s with 1 s intervals.
    let verdict_at = repo::audit_trail(&w.pool, id)
        .await
        .unwrap()
        .into_iter()
        .find(|row| row.from_state == State::Validating)
        .expect("the verdict's audit row")
        .at;
    let recovered_at = samples
        .iter()
        .find(|(_, p99)| *p99 <= baseline * 1.2)
        .map(|(at, _)| *at)
        .expect("Prometheus showed the recovery");
    let lag = (verdict_at - recovered_at).to_std().unwrap_or_default();
    let rounds = recovery["rounds"].as_u64().unwrap();
    eprintln!(
        "bench: metrics recovered -> verdict {:.2} s; {rounds} rounds, {} queries ({} per round + 1 baseline)",
        lag.as_secs_f64(),
        rounds * 3 + 1,
        3
    );
    assert!(
        lag <= Duration::from_secs(5),
        "verdict {lag:?} after the recovery"
    );
    assert!(number(observation, "request_rate") > 10.0, "{observation}");
    assert_eq!(recovery["passes_in_a_row"], 3);

    let (card, thread) = w
        .card_and_thread(&ts, "service recovered", "Recovery validated")
        .await;
    assert_contains(
        &card,
        &[
            "✅ Recovery · P99 latency: ",
            " × baseline ",
            "✅ Recovery · error rate: 0.00 %",
            "✅ Recovery · health: 200",
            "✅ Recovery · soak: 3 of 3 pods Ready, no restarts",
            "✅ Recovery · new alerts: none firing",
            "⏱️ Recovered ",
            "after the faulty rollout started, ",
            " after approval",
            "✅ Pod health",
        ],
    );
    assert_contains(
        &thread,
        &[
            "every check passed 3 times in a row",
            "histogram_quantile(0.99",
            &format!("namespace=\"{}\"", w.namespace),
            "• p99_baseline:",
            "baseline at",
        ],
    );
    // The card showed the checks live while validating.
    let live = w
        .slack
        .calls_to("chat.update")
        .into_iter()
        .map(|c| c.body.to_string())
        .find(|body| body.contains("⏳ Recovery:") && body.contains("passing checks in a row"))
        .expect("a live recovery line on the card");
    assert_contains(
        &live,
        &["Validating recovery", "P99 latency", "error rate", "soak"],
    );
    // The chart: one PNG in the card's thread, after the verdict, introduced as recovered.
    let chart = w.one_chart(id, &ts).await;
    let caption = chart.comment.clone().unwrap_or_default();
    assert_contains(&caption, &["Recovery chart", "(recovered)"]);
    // Both series had data (the real Prometheus answered the range queries).
    assert!(!caption.contains("data:"), "{caption}");
    let range = Prometheus::new(&simulator::prometheus_url(), None)
        .unwrap()
        .query_range(
            &w.p99_query(),
            chrono::Utc::now() - chrono::TimeDelta::seconds(20),
            chrono::Utc::now(),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert!(
        range.len() >= 15 && range.iter().any(|(_, v)| v.is_finite()),
        "{range:?}"
    );
    let thread = w.slack.thread(&ts);
    let verdict_line = thread
        .iter()
        .position(|m| m.text.contains("Recovery validated"))
        .expect("the verdict in the thread");
    let chart_line = thread
        .iter()
        .position(|m| m.files.iter().any(|f| f["id"] == chart.file_id.as_str()))
        .expect("the chart in the thread");
    assert!(chart_line > verdict_line, "the chart follows the verdict");
    assert_eq!(w.slack.calls_to("files.completeUploadExternal").len(), 1);
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}

#[sqlx::test]
async fn rollback_to_a_revision_that_is_itself_bad_fails_with_the_evidence(pool: PgPool) {
    let w = world(pool, "errors", "slow", r#"window = "12s""#).await;
    TestCluster::connect()
        .await
        .grant_edit(&w.namespace, PERSON)
        .await;
    let (id, ts) = w.roll_back_to_revision_1().await;
    // Locked by the rollback patch: while validation runs, and after it failed, a re-deploy
    // is denied (the rollback ends escalated, not unlocked).
    w.wait_state(id, State::Validating).await;
    assert_redeploy_denied(&w, id).await;
    let done = w.settled(id).await;
    assert_eq!(done.state, State::Escalated);
    assert_redeploy_denied(&w, id).await;
    let reason = done.last_error.clone().unwrap_or_default();
    assert_contains(
        &reason,
        &["not validated within", "not recovered", "error rate: "],
    );
    let observation = &done.steps["validate"]["recovery"]["observation"];
    let error_rate = number(observation, "error_rate");
    assert!(error_rate > 0.01, "the errors revision's 5 %: {error_rate}");

    let (card, thread) = w
        .card_and_thread(&ts, "❌ Recovery · error rate", "Recovery not validated")
        .await;
    assert!(!card.contains("Rolled back and verified"), "{card}");
    assert_contains(&card, &["✅ Recovery · P99 latency", "limit 0.10 %"]);
    assert_contains(
        &card,
        &[&format!("*Locked* against re-deploys by rollback #{id}")],
    );
    assert_contains(
        &thread,
        &[
            "❌ error rate:",
            "• error_rate: `(sum(rate(http_requests_total",
        ],
    );
    // A failed validation's chart is shared too.
    let chart = w.one_chart(id, &ts).await;
    assert_contains(
        chart.comment.as_deref().unwrap_or_default(),
        &["(not recovered)"],
    );
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}

#[sqlx::test]
async fn a_chart_slack_refuses_leaves_the_verdict_and_the_thread_says_so(pool: PgPool) {
    let w = world(pool, "v1", "slow", r#"window = "40s""#).await;
    // As for an app installed without the files:write scope.
    w.slack.files().refuse_uploads(Some("missing_scope"));
    let (id, ts) = w.roll_back_to_revision_1().await;
    let done = w.settled(id).await;
    assert_eq!(done.state, State::Succeeded, "{:?}", done.last_error);
    assert_eq!(w.chart_done(id).await, "noted");
    let (_, thread) = w
        .card_and_thread(&ts, "✅ Recovery", "could not be uploaded")
        .await;
    assert_contains(
        &thread,
        &[
            "Recovery validated",
            "⚠️ The recovery chart could not be uploaded: Slack answered files.getUploadURLExternal with error missing_scope.",
            "needs the `files:write` scope",
            "The verdict above stands",
        ],
    );
    assert!(w.slack.files().shared().is_empty());
    // Said once, and the rollback is untouched by it.
    let notes = w
        .slack
        .thread(&ts)
        .iter()
        .filter(|m| m.text.contains("could not be uploaded"))
        .count();
    assert_eq!(notes, 1);
    let after = repo::get(&w.pool, id).await.unwrap();
    assert_eq!((after.state, after.version), (done.state, done.version));
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}

#[sqlx::test]
async fn no_traffic_is_inconclusive_then_fails_when_the_window_ends(pool: PgPool) {
    let w = world(pool, "idle", "slow", r#"window = "8s""#).await;
    let (id, ts) = w.roll_back_to_revision_1().await;
    let started = std::time::Instant::now();
    let (_, reason) = w
        .escalated(
            id,
            &[
                "not validated within 8s",
                "inconclusive",
                "too little traffic",
            ],
        )
        .await;
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "only after the window: {reason}"
    );
    let (card, _) = w
        .card_and_thread(
            &ts,
            "⏳ Recovery · error rate: too little traffic",
            "Recovery not validated",
        )
        .await;
    assert!(!card.contains("Rolled back and verified"), "{card}");
    // Never a success on the way: the audit trail goes validating → failed.
    let trail = repo::audit_trail(&w.pool, id).await.unwrap();
    assert!(trail.iter().all(|row| row.to_state != State::Succeeded));
}

#[sqlx::test]
async fn pods_that_restart_after_verification_fail_the_soak(pool: PgPool) {
    let w = world(pool, "flaky", "slow", r#"window = "30s""#).await;
    let (id, ts) = w.roll_back_to_revision_1().await;
    let done = w.settled(id).await;
    assert_eq!(done.state, State::Escalated, "{:?}", done.steps);
    // Verification passed (Ready, no restarts yet); the soak caught the restarts.
    assert_eq!(done.steps["verify"]["passed"], true);
    let reason = done.last_error.clone().unwrap_or_default();
    assert_contains(&reason, &["soak failed", "restarts"]);
    let (_, thread) = w
        .card_and_thread(&ts, "❌ Recovery · soak", "Recovery not validated")
        .await;
    assert_contains(&thread, &["❌ soak:", "restarts"]);
}

/// A person with the namespace's `edit` role, as a pipeline would have.
const PERSON: &str = "jane@example.com";

/// A person's `kubectl set image` (as a pipeline would re-deploy) is refused by the lock of
/// rollback `id`.
async fn assert_redeploy_denied(w: &World, id: i64) {
    let cluster = TestCluster::connect().await;
    let out = cluster
        .set_image_as(PERSON, &w.namespace, APP, "slow", true)
        .await;
    assert!(!out.success, "a re-deploy passed during rollback #{id}");
    assert!(
        out.stderr.contains(&format!("rollback #{id} of {APP}")),
        "{}",
        out.stderr
    );
}

/// Runbook step 4 for every service: one found by its annotation (no `[services]` entry) is
/// validated like a configured one, against the cluster's Prometheus with the default
/// queries, instead of "✅ Rolled back and verified" with no validation at all.
#[sqlx::test]
async fn a_service_found_by_its_annotation_is_validated_too(pool: PgPool) {
    let w = recovery::world_discovered(pool, "v1", "slow").await;
    let (id, ts) = w.roll_back_to_revision_1().await;
    w.wait_state(id, State::Validating).await;
    // The live line is a round of real readings with the default queries.
    let card = w.card_containing(&ts, "passing checks in a row").await;
    let card = serde_json::to_string(&card.blocks).unwrap();
    assert_contains(&card, &["⏳ Recovery: ", "P99 latency: ", "error rate: "]);
    assert!(!card.contains("NOT validated"), "{card}");
    let r = repo::get(&w.pool, id).await.unwrap();
    assert!(
        r.steps["validate"].is_null(),
        "still validating: {:?}",
        r.steps
    );
}

/// A request counter whose status label is not the `code` the default query selects on (an
/// exporter's `status`, a renamed label) must not read as "0.00 % errors": the ratio has no
/// answer although there is traffic, the check is inconclusive and says what to look at.
#[sqlx::test]
async fn an_error_rate_without_its_code_label_is_inconclusive_not_zero(pool: PgPool) {
    let history = recovery::History {
        tags: &["v1", "errors"],
        simulator: &["--status-label", "status"],
        ..recovery::History::default()
    };
    let w = recovery::world_after(pool, history, r#"window = "8s""#).await;
    let (id, ts) = w.roll_back_to_revision_1().await;
    let (done, _) = w
        .escalated(
            id,
            &[
                "not validated within 8s",
                "the error-rate query returned nothing although there are",
                "`code` label",
            ],
        )
        .await;
    let observation = &done.steps["validate"]["recovery"]["observation"];
    assert_eq!(
        observation["error_rate"]["kind"], "no_data",
        "{observation}"
    );
    assert!(number(observation, "request_rate") > 10.0, "{observation}");
    let (card, _) = w
        .card_and_thread(&ts, "⏳ Recovery · error rate", "Recovery not validated")
        .await;
    assert!(!card.contains("0.00 %"), "{card}");
}

/// A faulty revision that re-activated an old ReplicaSet (a re-deploy of an old build) keeps
/// that ReplicaSet's old creation time; its rollout started at the Deployment's latest scale
/// up of it from zero. The baseline ends there, before the bad traffic, not when the faulty
/// rollout finished (which would measure the incident itself).
#[sqlx::test]
async fn the_baseline_of_a_re_activated_revision_ends_when_its_rollout_started(pool: PgPool) {
    // Revisions: slow = 1, v1 = 2, slow again = 3 (re-activating the first ReplicaSet, and
    // rolled out slowly: 2 s per pod).
    let history = recovery::History {
        tags: &["slow", "v1", "slow"],
        min_ready_seconds: Some(2),
        ..recovery::History::default()
    };
    let w = recovery::world_after(pool, history, r#"window = "40s""#).await;
    let (id, _) = w.roll_back_to(2).await;
    let done = w.settled(id).await;
    assert_eq!(done.state, State::Succeeded, "{:?}", done.last_error);

    let correlation = &done.plan.as_ref().expect("the plan")["correlation"];
    let time = |key: &str| -> chrono::DateTime<chrono::Utc> {
        serde_json::from_value(correlation[key].clone())
            .unwrap_or_else(|e| panic!("{key} of {correlation}: {e}"))
    };
    let (started, finished) = (time("rollout_started_at"), time("rolled_out_at"));
    assert!(
        started < finished,
        "the slow rollout took seconds: {started} .. {finished}"
    );
    let recovery = &done.steps["validate"]["recovery"];
    assert_eq!(
        recovery["baseline_at"],
        serde_json::to_value(started).unwrap(),
        "{recovery}"
    );
    let baseline = number(&recovery["observation"], "p99_baseline");
    assert!(
        baseline < 0.2,
        "the baseline is v1's latency, not the slow revision's: {baseline}"
    );
}

/// A service Prometheus has nothing on from before the faulty rollout (a new service, a
/// fresh Prometheus, short retention) has no baseline; a configured `p99_ceiling` (the SLO)
/// stands in, and the card says it was the yardstick.
#[sqlx::test]
async fn without_a_baseline_the_configured_ceiling_stands_in(pool: PgPool) {
    let history = recovery::History {
        tags: &["v1", "slow"],
        unrecorded: true,
        ..recovery::History::default()
    };
    let settings = "window = \"40s\"\np99_ceiling = \"500ms\"";
    let w = recovery::world_after(pool, history, settings).await;
    let (id, ts) = w.roll_back_to_revision_1().await;
    let done = w.settled(id).await;
    assert_eq!(done.state, State::Succeeded, "{:?}", done.last_error);
    let recovery = &done.steps["validate"]["recovery"];
    assert_eq!(
        recovery["observation"]["p99_baseline"]["kind"], "no_data",
        "{recovery}"
    );
    let (card, _) = w
        .card_and_thread(&ts, "✅ Recovery · P99 latency", "Recovery validated")
        .await;
    assert_contains(
        &card,
        &[
            "limit 0.500 s = the configured p99_ceiling, since there is no baseline: no data for baseline P99",
        ],
    );
}

/// "No new alerts are triggered" (runbook "Roll Back a Faulty Deployment", Verification),
/// against real alerting rules in the test Prometheus (scripts/prometheus.sh): an alert on
/// the service that became active after the faulty rollout and still fires fails validation,
/// even though latency and errors are back; one active since before it is shown, not judged.
#[sqlx::test]
async fn an_alert_triggered_since_the_faulty_rollout_fails_validation(pool: PgPool) {
    let history = recovery::History {
        tags: &["v1", "errors"],
        namespace_prefix: Some("alerting"),
        ..recovery::History::default()
    };
    let w = recovery::world_after(pool, history, r#"window = "8s""#).await;
    // As in an incident, the page came first: otherwise validation could pass three rounds
    // before Prometheus's rule fires.
    simulator::wait_for_value(
        "the errors alert firing",
        &format!(
            r#"count(ALERTS{{alertname="RollbackBotTestServerErrors",alertstate="firing",namespace="{}"}})"#,
            w.namespace
        ),
        Duration::from_secs(30),
        |n| n >= 1.0,
    )
    .await;
    let (id, ts) = w.roll_back_to_revision_1().await;
    let (done, _) = w
        .escalated(
            id,
            &[
                "not validated within 8s",
                "new alerts: RollbackBotTestServerErrors firing since",
            ],
        )
        .await;
    let checks = done.steps["validate"]["recovery"]["checks"]
        .as_array()
        .unwrap();
    let status = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check in {checks:?}"))
            .clone()
    };
    // The service itself recovered: only the alert fails it.
    assert_eq!(status("error_rate")["status"], "pass", "{checks:?}");
    assert_eq!(status("latency")["status"], "pass", "{checks:?}");
    let alerts = status("alerts");
    assert_eq!(alerts["status"], "fail", "{alerts}");
    let evidence = alerts["evidence"].as_str().unwrap();
    assert_contains(
        evidence,
        &["firing since before the faulty rollout, not judged: RollbackBotTestScraped"],
    );
    assert!(
        !evidence.starts_with("RollbackBotTestScraped"),
        "the old alert is not a new one: {evidence}"
    );
    w.card_and_thread(
        &ts,
        "❌ Recovery · new alerts: RollbackBotTestServerErrors",
        "Recovery not validated",
    )
    .await;
}

/// An inconclusive validation is not a dead end: with no traffic to judge, a lead extends
/// it past its window (it does not escalate when the window would have ended), then
/// accepts the recovery as it stands with a reason; the requester may not. The card never
/// says "recovered", and the thread says who chose what.
#[sqlx::test]
async fn a_lead_extends_then_accepts_an_inconclusive_validation(pool: PgPool) {
    let w = world(pool, "idle", "slow", r#"window = "8s""#).await;
    let (id, ts) = w.roll_back_to_revision_1().await;
    w.wait_state(id, State::Validating).await;
    let validating = std::time::Instant::now();
    let card = w.card_containing(&ts, "Extend validation 5 min").await;
    let value = slack_sandbox::web_api::requests::button_value(
        &card.blocks,
        rollback_bot::slack::actions::EXTEND_VALIDATION,
    )
    .expect("an Extend button");
    w.click(
        recovery::LEAD,
        &ts,
        rollback_bot::slack::actions::EXTEND_VALIDATION,
        &value,
    )
    .await;
    w.card_containing(&ts, &format!("extended by <@{}> until", recovery::LEAD))
        .await;
    // Past the 8 s window it still validates: the extension runs 5 minutes from the click.
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(validating.elapsed())).await;
    assert_eq!(
        repo::get(&w.pool, id).await.unwrap().state,
        State::Validating
    );

    let refused = w
        .command(
            recovery::REQUESTER,
            &format!("accept {id} looks fine to me"),
        )
        .await;
    assert!(
        refused.contains("you made this request, so you cannot accept its recovery"),
        "{refused}"
    );
    let accepted = w
        .command(
            recovery::LEAD,
            &format!("accept {id} night traffic is too low to judge"),
        )
        .await;
    assert!(
        accepted.contains("recovery accepted as it stands"),
        "{accepted}"
    );
    let done = w.settled(id).await;
    assert_eq!(done.state, State::Succeeded, "{:?}", done.last_error);
    assert_eq!(
        done.steps["validate"]["accepted"]["reason"],
        "night traffic is too low to judge"
    );
    let (card, thread) = w
        .card_and_thread(&ts, "recovery accepted by", "accepted the recovery")
        .await;
    assert_contains(
        &card,
        &[&format!(
            "recovery accepted by <@{}>, NOT validated*: night traffic is too low to judge",
            recovery::LEAD
        )],
    );
    assert!(!card.contains("service recovered"), "{card}");
    assert_contains(
        &thread,
        &[
            &format!("<@{}> extended recovery validation", recovery::LEAD),
            &format!(
                "<@{}> accepted the recovery without a full validation: night traffic is too low to judge",
                recovery::LEAD
            ),
        ],
    );
    let trail = repo::audit_trail(&w.pool, id).await.unwrap();
    let actions: Vec<&str> = trail.iter().map(|a| a.action.as_str()).collect();
    assert!(
        actions.contains(&"extend_validation") && actions.contains(&"accept_recovery"),
        "{actions:?}"
    );
}
