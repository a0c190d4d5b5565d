//! Crash injection on the real binary: `serve` is aborted (as `kill -9` would) at each named
//! failpoint around the engine's transitions and the rollback patch, then two replicas start
//! and race to resume. Whatever the point, the rollback must reach exactly one terminal state,
//! the Deployment must get exactly one new revision, the channel exactly one card, and the
//! audit trail no step twice.

#[path = "support/bot.rs"]
mod bot;
#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/slack_standin.rs"]
mod slack_standin;

use std::collections::HashMap;
use std::time::Duration;

use bot::{Bot, CHANNEL, LEAD, REQUESTER, SECRET, TOKEN};
use cluster::TestCluster;
use rollback_bot::rollback::State;
use rollback_bot::rollback::repo;
use slack_standin::SlackStandIn;
use slack_standin::requests::{self, button_value};

const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// Requests `web`'s previous revision, approves it as the lead when the card asks, and
/// checks every invariant, with `serve` crashing at `failpoint` first.
async fn crash_at(failpoint: &str) {
    let cluster = TestCluster::connect().await;
    let ns = cluster
        .namespace(&format!("crash-{}", failpoint.replace(['.', '_'], "-")))
        .await;
    let before = cluster
        .fixture(&ns, "web", &["1.0.0", "1.1.0", "1.2.0"])
        .await;
    let generation_before = before.metadata.generation.unwrap();
    let (db_url, pool) = bot::scratch_database("crash").await;
    let slack = SlackStandIn::start(TOKEN).await;
    let dir = bot::tempdir("crash");
    let ports = [bot::free_port(), bot::free_port()];
    let configs = ports.map(|port| bot::write_config(&dir, port, &ns, "2s"));

    // Phase 1: one replica that aborts at the failpoint.
    let mut doomed = Bot::start_with(
        &configs[0],
        &db_url,
        ports[0],
        &slack,
        &[(rollback_bot::failpoint::ENV, failpoint)],
    );
    doomed.wait_ready().await;
    let command = requests::command_body(
        REQUESTER,
        CHANNEL,
        "incident-response",
        "web INC-7",
        &slack.response_url(1),
    );
    let (status, ack) = doomed
        .post_signed("/slack/commands", &command, SECRET)
        .await;
    assert_eq!(status, 200, "{ack}");
    let id = bot::first_rollback(&pool).await;
    let mut approved = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while doomed.exited().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve never reached failpoint {failpoint}"
        );
        if !approved && approve_when_asked(&doomed, &slack).await {
            approved = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = doomed.wait_exit(Duration::from_secs(1)).await;
    assert!(!status.success(), "aborted at {failpoint}: {status}");

    // Phase 2: two replicas race to resume.
    let replicas = [
        Bot::start(&configs[0], &db_url, ports[0], &slack),
        Bot::start(&configs[1], &db_url, ports[1], &slack),
    ];
    for r in &replicas {
        r.wait_ready().await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let done = loop {
        let r = repo::get(&pool, id).await.unwrap();
        if r.state.is_terminal() {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollback #{id} stuck in {} after a crash at {failpoint}: {:?}",
            r.state,
            r.last_error
        );
        if !approved && r.state == State::AwaitingApproval {
            approved = approve_when_asked(&replicas[1], &slack).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        done.state,
        State::Succeeded,
        "after a crash at {failpoint}: {:?}",
        done.last_error
    );

    // Exactly one new revision: the Deployment was patched once.
    let after = cluster.deployments(&ns).get("web").await.unwrap();
    assert_eq!(
        after.metadata.generation.unwrap(),
        generation_before + 1,
        "one rollback patch after a crash at {failpoint}"
    );
    let revision = after.metadata.annotations.unwrap()[REVISION_ANNOTATION].clone();
    assert_eq!(
        revision, "4",
        "one new revision after a crash at {failpoint}"
    );
    assert_eq!(
        after.spec.unwrap().template.spec.unwrap().containers[0].image,
        Some(cluster::image("web", "1.1.0"))
    );

    // No step twice in the audit trail, and the terminal state once.
    let trail = repo::audit_trail(&pool, id).await.unwrap();
    let mut seen = HashMap::new();
    for a in trail.iter().filter(|a| a.outcome == "applied") {
        *seen
            .entry((a.action.clone(), a.from_state, a.to_state))
            .or_insert(0) += 1;
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a step was recorded twice after a crash at {failpoint}: {seen:?}"
    );
    assert_eq!(trail.iter().filter(|a| a.to_state.is_terminal()).count(), 1);

    // One card for the rollback, which ends showing the success.
    slack
        .wait_for("the card's final state", Duration::from_secs(30), |s| {
            let cards = s.cards(CHANNEL);
            let text = serde_json::to_string(&cards.first()?.blocks).ok()?;
            text.contains("Rolled back and verified").then_some(())
        })
        .await;
    assert_eq!(
        slack.cards(CHANNEL).len(),
        1,
        "one card after a crash at {failpoint}"
    );
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
    for r in replicas {
        let (exit, _) = r.terminate();
        assert!(exit.success());
    }
}

/// Clicks Approve as the lead if the card shows the button. Returns whether it clicked.
async fn approve_when_asked(bot: &Bot, slack: &SlackStandIn) -> bool {
    let Some(card) = slack.cards(CHANNEL).first().cloned() else {
        return false;
    };
    let Some(value) = button_value(&card.blocks, "rollback.approve") else {
        return false;
    };
    let click = requests::click_body(
        LEAD,
        CHANNEL,
        &card.ts,
        "rollback.approve",
        &value,
        &slack.response_url(2),
    );
    // The process may abort at its failpoint while the click is on its way: click again.
    matches!(
        bot.try_post_signed("/slack/interactions", &click, SECRET).await,
        Ok((200, _))
    )
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
}
