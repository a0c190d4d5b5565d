//! The Slack notifier under load and with two replicas, against real Postgres and the
//! contract-enforcing Web API stand-in: a card Slack rate-limits must not hold up the
//! others, and two replicas must post one card even when a post outlasts the claim's lease.
//! The engine's part (plan, decisions) is played with `repo::apply`, as the engine does.

use slack_sandbox::web_api as slack_standin;

use std::sync::Arc;
use std::time::Duration;

use rollback_bot::clients::slack::SlackApi;
use rollback_bot::db::rollbacks::{self as repo, Change, NewRollback};
use rollback_bot::domain::machine::Event;
use rollback_bot::slack::Notifier;
use serde_json::json;
use slack_standin::{Posted, SlackStandIn};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "xoxb-notifier-test";
const CHANNEL_A: &str = "C0INCIDENTA";
const CHANNEL_B: &str = "C0INCIDENTB";
const REQUESTER: &str = "U0REQUEST01";
const LEAD: &str = "U0LEAD00001";

/// A running notifier (one replica's), stopped when dropped.
struct Replica(CancellationToken);

impl Drop for Replica {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn replica(pool: &PgPool, slack: &SlackStandIn, lease: Duration) -> Replica {
    let api = Arc::new(SlackApi::new(&slack.api_url(), TOKEN).unwrap());
    let notifier = Notifier::new(pool.clone(), api)
        .with_sweep_every(Duration::from_millis(100))
        .with_lease(lease);
    let shutdown = CancellationToken::new();
    tokio::spawn(Arc::new(notifier).run(shutdown.clone()));
    Replica(shutdown)
}

/// A rollback of `service` requested in `channel` with its plan ready: its card is due.
async fn awaiting_approval(pool: &PgPool, service: &str, channel: &str) -> i64 {
    let r = repo::insert(
        pool,
        &NewRollback {
            service: service.into(),
            cluster: "local".into(),
            namespace: "default".into(),
            deployment: service.into(),
            requested_revision: Some(2),
            incident: Some("INC-11".into()),
            requested_by: REQUESTER.into(),
            channel_id: channel.into(),
            response_url: None,
            force: false,
            approval_ttl: Duration::from_secs(900),
        },
    )
    .await
    .unwrap();
    let event = Event::PlanReady {
        fingerprint: "fp-notifier".into(),
        needs_dba: false,
        needs_override: false,
    };
    let plan = json!({ "stand-in": "plan" });
    let change = Change {
        plan: Some(&plan),
        ..Change::by("worker:test", &event)
    };
    repo::apply(pool, r.id, &change).await.unwrap();
    r.id
}

async fn reject(pool: &PgPool, id: i64) {
    let event = Event::Reject {
        by: LEAD.into(),
        is_lead: true,
        is_dba: false,
    };
    repo::apply(pool, id, &Change::by(LEAD, &event))
        .await
        .unwrap();
}

fn shows(card: &Posted, text: &str) -> bool {
    serde_json::to_string(&card.blocks).unwrap().contains(text)
}

async fn card_in(slack: &SlackStandIn, channel: &str) -> Posted {
    let channel = channel.to_owned();
    slack
        .wait_for("the card", Duration::from_secs(10), |s| {
            s.cards(&channel).into_iter().next()
        })
        .await
}

/// Successful top-level posts (cards) in `channel`.
fn card_posts(slack: &SlackStandIn, channel: &str) -> usize {
    slack
        .calls_to("chat.postMessage")
        .iter()
        .filter(|c| c.status == 200 && c.error.is_none())
        .filter(|c| c.body["channel"] == channel && c.body["thread_ts"].is_null())
        .count()
}

#[sqlx::test]
async fn a_rate_limited_card_does_not_hold_up_the_others(pool: PgPool) {
    let slack = SlackStandIn::start(TOKEN).await;
    let _replica = replica(&pool, &slack, Duration::from_secs(5));
    let a = awaiting_approval(&pool, "checkout-api", CHANNEL_A).await;
    let b = awaiting_approval(&pool, "search", CHANNEL_B).await;
    card_in(&slack, CHANNEL_A).await;
    card_in(&slack, CHANNEL_B).await;

    // Slack limits channel A: the update of card A waits out a long Retry-After.
    slack.rate_limit_channel(CHANNEL_A, 8);
    reject(&pool, a).await;
    slack
        .wait_for(
            "card A's update to be rate-limited",
            Duration::from_secs(5),
            |s| s.calls().into_iter().find(|c| c.status == 429),
        )
        .await;
    let changed = Instant::now();
    reject(&pool, b).await;
    slack
        .wait_for(
            "card B to show its rejection promptly",
            Duration::from_secs(3),
            |s| {
                s.cards(CHANNEL_B)
                    .into_iter()
                    .find(|c| shows(c, "Rejected"))
            },
        )
        .await;
    eprintln!("card B updated {:?} after its change", changed.elapsed());
    assert!(
        !shows(&slack.cards(CHANNEL_A)[0], "Rejected"),
        "card A is still waiting"
    );
    let limited = slack.calls().iter().filter(|c| c.status == 429).count();
    assert_eq!(
        limited, 1,
        "one call at a time for card A, however often it is nudged"
    );

    // Once Slack lets channel A through, card A catches up after its Retry-After.
    slack.clear_rate_limit_channel(CHANNEL_A);
    slack
        .wait_for("card A to catch up", Duration::from_secs(20), |s| {
            s.cards(CHANNEL_A)
                .into_iter()
                .find(|c| shows(c, "Rejected"))
        })
        .await;
    assert_eq!(card_posts(&slack, CHANNEL_A), 1);
    assert_eq!(card_posts(&slack, CHANNEL_B), 1);
    assert_eq!(slack.violations(), Vec::<String>::new());
}

#[sqlx::test]
async fn two_replicas_post_one_card_even_when_a_post_outlasts_the_lease(pool: PgPool) {
    let slack = SlackStandIn::start(TOKEN).await;
    // Every post takes three times the claim's lease: a claim that lapsed while its owner
    // is still posting would let the other replica post the card (and replies) again.
    slack.slow_down("chat.postMessage", Duration::from_secs(3));
    let lease = Duration::from_secs(1);
    let _one = replica(&pool, &slack, lease);
    let _two = replica(&pool, &slack, lease);
    let id = awaiting_approval(&pool, "checkout-api", CHANNEL_A).await;
    let card = card_in(&slack, CHANNEL_A).await;
    reject(&pool, id).await;

    let last_row = repo::audit_trail(&pool, id)
        .await
        .unwrap()
        .last()
        .unwrap()
        .id;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up: Option<bool> = sqlx::query_scalar(
            "select thread_cursor >= $2 and post_in_flight is null from slack_card
             where rollback_id = $1",
        )
        .bind(id)
        .bind(last_row)
        .fetch_optional(&pool)
        .await
        .unwrap();
        if caught_up == Some(true) {
            break;
        }
        assert!(Instant::now() < deadline, "the thread never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let both replicas sweep a while longer: nothing more may be posted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(card_posts(&slack, CHANNEL_A), 1, "one card");
    assert_eq!(slack.cards(CHANNEL_A).len(), 1);
    let mut lines: Vec<String> = slack
        .thread(&card.ts)
        .iter()
        .flat_map(|m| m.blocks.iter())
        .filter_map(|b| b["block_id"].as_str().map(str::to_owned))
        .collect();
    let all = lines.len();
    lines.sort();
    lines.dedup();
    assert_eq!(all, lines.len(), "every thread line once: {lines:?}");
    assert_eq!(lines.len(), 2, "plan ready and the rejection: {lines:?}");
    assert_eq!(slack.violations(), Vec::<String>::new());
}
