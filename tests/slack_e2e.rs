//! From `/rollback` to a verified rollback on the real (kwok) control plane, through the real
//! axum handlers, the engine with the Kubernetes steps, and the Slack notifier talking to the
//! contract-enforcing Web API stand-in. Needs `make test` (Postgres and the cluster).

mod support;
use in_process::{CHANNEL, InProcessBot, WAIT};
use slack_sandbox::web_api as slack_standin;
use support::{cluster, in_process};

use std::sync::Arc;
use std::time::Duration;

use cluster::TestCluster;
use rollback_bot::clients::k8s::lock;
use rollback_bot::clients::k8s::{Executor, Target};
use rollback_bot::config::Config;
use rollback_bot::db::rollbacks::{self as repo};
use rollback_bot::domain::State;
use rollback_bot::domain::Step;
use rollback_bot::engine::{StepOutcome, StepRunner};
use rollback_bot::slack::actions;
use rollback_bot::steps::KubernetesSteps;
use serde_json::json;
use slack_standin::SlackStandIn;
use slack_standin::requests::{button_value, has_buttons};
use sqlx::PgPool;

const SECRET: &str = "e2e-signing-secret";
const TOKEN: &str = "xoxb-e2e";
const REQUESTER: &str = "U0REQUEST01";
const LEAD: &str = "U0LEAD00001";
/// A second on-call lead: approves what the first one requested.
const LEAD2: &str = "U0LEAD00002";

struct World {
    bot: InProcessBot,
    cluster: TestCluster,
    namespace: String,
    config: Arc<Config>,
}

impl std::ops::Deref for World {
    type Target = InProcessBot;
    fn deref(&self) -> &InProcessBot {
        &self.bot
    }
}

async fn world(pool: PgPool) -> World {
    world_with(pool, &["v1", "v2", "v3"], "").await
}

/// The world with checkout-api rolled out through `tags` (`crashloop` rollouts fail at their
/// progress deadline, the others complete) and `cluster` added to `[clusters.local]`.
async fn world_with(pool: PgPool, tags: &[&str], cluster_config: &str) -> World {
    world_with_timeouts(pool, tags, cluster_config, "").await
}

/// Like [`world_with`], with more `[timeouts]` settings.
async fn world_with_timeouts(
    pool: PgPool,
    tags: &[&str],
    cluster_config: &str,
    timeouts: &str,
) -> World {
    let cluster = TestCluster::connect().await;
    let namespace = cluster.namespace("slack-e2e").await;
    cluster
        .fixture(&namespace, "checkout-api", &tags[..1])
        .await;
    for tag in &tags[1..] {
        cluster.set_image(&namespace, "checkout-api", tag).await;
        cluster.wait_rollout(&namespace, "checkout-api").await;
    }
    let slack = SlackStandIn::start(TOKEN).await;
    let text = format!(
        r#"
        [server]
        slack_api_url = "{}"
        [slack]
        incident_channels = ["{CHANNEL}"]
        lead_user_ids = ["{LEAD}", "{LEAD2}"]
        [timeouts]
        verification = "60s"
        {timeouts}
        [clusters.local]
        {cluster_config}
        [services.checkout-api]
        cluster = "local"
        namespace = "{namespace}"
        "#,
        slack.api_url()
    );
    let config = Arc::new(Config::parse(&text, "e2e").unwrap());
    config.validate("e2e").unwrap();
    let bot = in_process::start(
        &pool,
        config.clone(),
        &cluster,
        &slack,
        (TOKEN, SECRET),
        "e2e",
    );
    World {
        bot,
        cluster,
        namespace,
        config,
    }
}

impl World {
    /// Requests the rollback to revision 2 and waits for its approval card.
    async fn card_awaiting_approval(&self) -> (i64, String, String) {
        let ack = self.command(REQUESTER, "checkout-api 2 INC-42").await;
        assert!(ack.contains("requested"), "{ack}");
        let (ts, value) = self
            .slack
            .wait_for("the approval card with its Approve button", WAIT, |s| {
                s.cards(CHANNEL).first().and_then(|c| {
                    button_value(&c.blocks, actions::APPROVE).map(|v| (c.ts.clone(), v))
                })
            })
            .await;
        let id: i64 = value.split(':').next().unwrap().parse().unwrap();
        (id, ts, value)
    }

    /// Waits for the final card and returns (card text, thread text).
    async fn final_card(&self, ts: &str) -> (String, String) {
        let card = self.card_containing(ts, "Rolled back and verified").await;
        // The decision's buttons are gone; a succeeded rollback keeps the lead's Escalate
        // now (a data-integrity concern can show up later).
        for decided in [
            actions::APPROVE,
            actions::APPROVE_OVERRIDE,
            actions::REJECT,
            actions::ABORT,
        ] {
            assert!(
                button_value(&card.blocks, decided).is_none(),
                "no {decided} button after the decision"
            );
        }
        assert!(button_value(&card.blocks, actions::ESCALATE_DATA_INTEGRITY).is_some());
        let thread = self
            .slack
            .wait_for("the verification reply in the thread", WAIT, |s| {
                let text: Vec<String> = s.thread(ts).into_iter().map(|m| m.text).collect();
                let text = text.join("\n");
                text.contains("Verification passed").then_some(text)
            })
            .await;
        (serde_json::to_string(&card.blocks).unwrap(), thread)
    }

    /// `kubectl set image` back to v3 as [`PERSON`]; `dry_run` asks the server to run
    /// admission only.
    async fn set_image_as_person(&self, dry_run: bool) -> cluster::KubectlOutput {
        self.cluster
            .set_image_as(PERSON, &self.namespace, "checkout-api", "v3", dry_run)
            .await
    }

    /// Installs the deploy lock admission policy and gives [`PERSON`] the namespace's `edit`
    /// role, as a CI pipeline or a developer would have.
    async fn install_lock_policy(&self) {
        let policy = format!(
            "{}/config/kubernetes/base/deploy-lock.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        self.cluster.kubectl_apply(&["-f", &policy]).await;
        self.cluster.grant_edit(&self.namespace, PERSON).await;
    }

    /// The policy's informer picks a lock up asynchronously: waits until a dry run of
    /// [`PERSON`]'s `kubectl set image` is refused.
    async fn wait_until_person_is_denied(&self) {
        let enforced = async {
            loop {
                if !self.set_image_as_person(true).await.success {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), enforced)
            .await
            .expect("the lock policy was never enforced");
    }

    async fn deployment_image(&self) -> String {
        let d = self
            .cluster
            .deployments(&self.namespace)
            .get("checkout-api")
            .await
            .unwrap();
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    }
}

fn assert_card_and_thread(card: &str, thread: &str) {
    for line in [
        "Rolled back and verified",
        "INC-42",
        &format!("Approved by <@{LEAD}> (lead)"),
        "✅ Executing: rollback patch applied",
        "✅ Rollout status",
        "✅ Image check",
        "✅ Pod health",
        "registry.local/checkout-api:v3",
        "registry.local/checkout-api:v2",
    ] {
        assert!(card.contains(line), "card lacks {line:?}: {card}");
    }
    for line in [
        &format!("Plan ready; waiting for approval: <@{LEAD}> or <@{LEAD2}> may approve"),
        &format!("Approved by <@{LEAD}>"),
        "Execution started",
        "Rollback patch applied",
        "Verification passed",
        "`images`",
    ] {
        assert!(thread.contains(line), "thread lacks {line:?}:\n{thread}");
    }
}

#[sqlx::test]
async fn happy_path_from_command_to_verified_rollback(pool: PgPool) {
    let w = world(pool).await;
    let (id, ts, value) = w.card_awaiting_approval().await;
    let card = serde_json::to_string(&w.slack.cards(CHANNEL)[0].blocks).unwrap();
    assert!(
        card.contains("3 → *2*"),
        "current → target revision: {card}"
    );
    assert!(card.contains("registry.local/checkout-api:v3"), "{card}");
    assert!(
        card.contains(&format!(
            "Who may approve: <@{LEAD}> or <@{LEAD2}> may approve (on-call leads)"
        )),
        "{card}"
    );
    w.click(LEAD, &ts, actions::APPROVE, &value).await;
    w.wait_state(id, State::Succeeded).await;
    let (card, thread) = w.final_card(&ts).await;
    assert_card_and_thread(&card, &thread);
    assert_eq!(
        w.deployment_image().await,
        cluster::image("checkout-api", "v2")
    );
    assert_eq!(
        w.slack.cards(CHANNEL).len(),
        1,
        "one card, updated in place"
    );
    assert!(w.slack.calls_to("chat.update").len() >= 3);
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}

/// Nobody decides: at half of the approval window the thread mentions the leads again (once),
/// and at its end the card flips to "Expired" without buttons.
#[sqlx::test]
async fn an_undecided_request_reminds_the_leads_then_expires(pool: PgPool) {
    let w = world_with_timeouts(pool, &["v1", "v2", "v3"], "", r#"approval_expiry = "12s""#).await;
    let (id, ts, _) = w.card_awaiting_approval().await;
    let reminder = w
        .slack
        .wait_for("the reminder in the thread", WAIT, |s| {
            s.thread(&ts)
                .into_iter()
                .find(|m| m.text.contains("⏰ Still waiting for approval"))
                .map(|m| m.text)
        })
        .await;
    assert!(
        reminder.contains(&format!("<@{LEAD}> or <@{LEAD2}> may approve")),
        "{reminder}"
    );
    assert_eq!(
        repo::get(&w.pool, id).await.unwrap().state,
        State::AwaitingApproval
    );
    w.wait_state(id, State::Expired).await;
    let card = w.card_containing(&ts, "Expired").await;
    let blocks = serde_json::to_string(&card.blocks).unwrap();
    assert!(
        blocks.contains("request again if it is still needed"),
        "{blocks}"
    );
    assert!(
        button_value(&card.blocks, actions::APPROVE).is_none(),
        "an expired card has no buttons: {blocks}"
    );
    let reminders = w
        .slack
        .thread(&ts)
        .into_iter()
        .filter(|m| m.text.contains("⏰ Still waiting for approval"))
        .count();
    assert_eq!(reminders, 1, "reminded once");
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}

#[sqlx::test]
async fn slack_down_during_the_steps_the_rollback_completes_and_the_card_catches_up(pool: PgPool) {
    let w = world(pool).await;
    let (id, ts, value) = w.card_awaiting_approval().await;
    w.slack.set_down(true);
    w.click(LEAD, &ts, actions::APPROVE, &value).await;
    w.wait_state(id, State::Succeeded).await;
    assert_eq!(
        w.deployment_image().await,
        cluster::image("checkout-api", "v2")
    );
    // The notifier tried while Slack was down.
    w.slack
        .wait_for("a call refused while Slack is down", WAIT, |s| {
            s.calls().into_iter().find(|c| c.status == 503)
        })
        .await;
    let card = serde_json::to_string(&w.slack.cards(CHANNEL)[0].blocks).unwrap();
    assert!(!card.contains("Rolled back and verified"));
    w.slack.set_down(false);
    let (card, thread) = w.final_card(&ts).await;
    assert_card_and_thread(&card, &thread);
    assert_eq!(w.slack.cards(CHANNEL).len(), 1);
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}

#[sqlx::test]
async fn history_and_an_unknown_revision(pool: PgPool) {
    let w = world(pool).await;
    let ack = w.command(REQUESTER, "history checkout-api").await;
    assert!(ack.contains("Reading the rollout history"), "{ack}");
    let table = w
        .slack
        .wait_for("the history through response_url", WAIT, |s| {
            s.responses()
                .iter()
                .filter_map(|r| r["text"].as_str())
                .find(|t| t.contains("Revisions of"))
                .map(str::to_owned)
        })
        .await;
    for needle in [
        "registry.local/checkout-api:v1",
        "registry.local/checkout-api:v3",
        "← current",
        "deploy registry.local/checkout-api:v2",
    ] {
        assert!(table.contains(needle), "history lacks {needle:?}:\n{table}");
    }
    // Revision 99 does not exist: the plan step refuses, the card says why, no buttons.
    let ack = w.command(REQUESTER, "checkout-api 99").await;
    assert!(ack.contains("requested"), "{ack}");
    let card = w
        .slack
        .wait_for("the refused card", WAIT, |s| {
            s.cards(CHANNEL).into_iter().find(|c| {
                serde_json::to_string(&c.blocks)
                    .unwrap()
                    .contains("Refused")
            })
        })
        .await;
    assert!(!has_buttons(&card.blocks));
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}

/// A person with the namespace's `edit` role, as a CI pipeline or a developer would have.
const PERSON: &str = "jane@example.com";

/// The rollback patch itself locks the Deployment; after validation the lock step finds the
/// lock set and checks the admission policy enforces it, the card says it is locked until a
/// fix is approved, running the step again leaves the lock as it was, and a person's
/// `kubectl set image` is denied.
#[sqlx::test]
async fn a_successful_rollback_locks_the_deployment_against_redeploys(pool: PgPool) {
    let w = world(pool).await;
    w.install_lock_policy().await;
    let (id, ts, value) = w.card_awaiting_approval().await;
    w.click(LEAD, &ts, actions::APPROVE, &value).await;
    let done = w.wait_state(id, State::Succeeded).await;
    // Set by the rollback patch (execute), found by the lock step.
    assert_eq!(
        done.steps["execute"]["lock"]["rollback_id"],
        json!(id),
        "{done:?}"
    );
    assert_eq!(
        done.steps["execute"]["enforcement"]["enforced"],
        json!(true),
        "{done:?}"
    );
    assert_eq!(done.steps["lock"]["already_set"], json!(true), "{done:?}");
    assert_eq!(
        done.steps["lock"]["enforcement"]["enforced"],
        json!(true),
        "{done:?}"
    );

    let executor = Arc::new(Executor::new(w.cluster.executor_clusters()));
    let target = Target::new(cluster::CLUSTER, &w.namespace, "checkout-api");
    let set = lock::read(&executor, &target)
        .await
        .unwrap()
        .expect("the Deployment is locked after the rollback");
    assert_eq!(set.rollback_id, Some(id));
    assert_eq!(set.service.as_deref(), Some("checkout-api"));
    assert!(
        set.reason
            .contains(&format!("rollback #{id} of checkout-api")),
        "{set:?}"
    );
    assert!(
        set.reason.contains(&format!("approved by <@{LEAD}>")),
        "{set:?}"
    );
    assert!(set.since.is_some());
    assert_eq!(set.approver.as_deref(), Some(LEAD));
    // Rolled away from revision 3 (v3) to 2.
    assert_eq!(set.faulty_revisions, vec![3], "{set:?}");
    assert_eq!(
        set.faulty_images.as_deref(),
        Some(format!("app={}", cluster::image("checkout-api", "v3")).as_str())
    );

    w.card_containing(&ts, "locked until a fix is approved")
        .await;
    w.card_containing(
        &ts,
        "enforced by the admission policy rollback-bot-deploy-lock",
    )
    .await;
    let thread = w
        .slack
        .wait_for("the lock reply in the thread", WAIT, |s| {
            let text: Vec<String> = s.thread(&ts).into_iter().map(|m| m.text).collect();
            let text = text.join("\n");
            text.contains("Deployment locked until a fix is approved")
                .then_some(text)
        })
        .await;
    assert!(
        thread.contains("/rollback unlock checkout-api <fix reference>"),
        "{thread}"
    );

    // Exactly once: the step run again (a resume after a crash between the patch and the
    // transition) finds this rollback's lock and leaves it as it was.
    let steps = KubernetesSteps::new(executor.clone(), w.config.clone());
    match steps.run(Step::Lock, &done).await {
        StepOutcome::Finished { detail, .. } => {
            assert_eq!(detail["already_set"], json!(true), "{detail}")
        }
        other => panic!("the lock step did not finish: {other:?}"),
    }
    assert_eq!(lock::read(&executor, &target).await.unwrap(), Some(set));

    w.wait_until_person_is_denied().await;
    let denied = w.set_image_as_person(false).await;
    assert!(!denied.success, "set image on a locked Deployment passed");
    for part in [
        &format!(
            "deployment {}/checkout-api is locked by rollback-bot",
            w.namespace
        ),
        &format!("rollback #{id} of checkout-api"),
        "/rollback unlock checkout-api <fix reference>",
    ] {
        assert!(
            denied.stderr.contains(part),
            "{part:?} missing: {}",
            denied.stderr
        );
    }
    assert_eq!(
        w.deployment_image().await,
        cluster::image("checkout-api", "v2")
    );
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}

/// `/rollback unlock`: the unlock card names the fix and the lock; the lead who requested it
/// cannot approve it; another lead's approval makes the bot remove the lock, after which a
/// person's `kubectl set image` passes the admission policy again.
#[sqlx::test]
async fn an_approved_unlock_removes_the_lock_and_people_may_deploy_again(pool: PgPool) {
    let w = world(pool).await;
    w.install_lock_policy().await;
    let (id, ts, value) = w.card_awaiting_approval().await;
    w.click(LEAD, &ts, actions::APPROVE, &value).await;
    w.wait_state(id, State::Succeeded).await;
    w.wait_until_person_is_denied().await;

    let status = w.command(REQUESTER, "status").await;
    assert!(status.contains("Active deploy locks"), "{status}");
    assert!(
        status.contains("`/rollback unlock checkout-api <fix reference>`"),
        "{status}"
    );

    let ack = w
        .command(LEAD, "unlock checkout-api https://git.example/pr/77")
        .await;
    assert!(ack.contains("Unlock #"), "{ack}");
    let (unlock_ts, unlock_value, card) = w
        .slack
        .wait_for("the unlock card with its Approve button", WAIT, |s| {
            s.cards(CHANNEL).into_iter().find_map(|c| {
                let text = serde_json::to_string(&c.blocks).unwrap();
                let value = button_value(&c.blocks, actions::APPROVE)?;
                text.contains("Unlock #")
                    .then(|| (c.ts.clone(), value, text))
            })
        })
        .await;
    for part in [
        "https://git.example/pr/77",
        &format!("rollback #{id} of checkout-api"),
        "Unlock awaiting approval",
    ] {
        assert!(
            card.contains(part),
            "{part:?} missing from the unlock card: {card}"
        );
    }
    let unlock_id: i64 = unlock_value.split(':').next().unwrap().parse().unwrap();

    // The requester may not approve their own unlock, lead or not.
    w.click(LEAD, &unlock_ts, actions::APPROVE, &unlock_value)
        .await;
    let refused = w
        .slack
        .wait_for("the refusal of the self-approval", WAIT, |s| {
            s.responses().into_iter().find(|r| {
                r.to_string()
                    .contains("you made this request, so you cannot approve it")
            })
        })
        .await;
    assert!(!refused.is_null());
    let still = repo::get(&w.pool, unlock_id).await.unwrap();
    assert_eq!(still.state, State::AwaitingApproval);
    let executor = Executor::new(w.cluster.executor_clusters());
    let target = Target::new(cluster::CLUSTER, &w.namespace, "checkout-api");
    assert!(lock::read(&executor, &target).await.unwrap().is_some());

    w.click(LEAD2, &unlock_ts, actions::APPROVE, &unlock_value)
        .await;
    let done = w.wait_state(unlock_id, State::Succeeded).await;
    assert_eq!(done.lead_approved_by.as_deref(), Some(LEAD2));
    assert_eq!(lock::read(&executor, &target).await.unwrap(), None);
    let status = w.command(REQUESTER, "status").await;
    assert!(!status.contains("Active deploy locks"), "{status}");
    let trail = repo::audit_trail(&w.pool, unlock_id).await.unwrap();
    assert!(
        trail
            .iter()
            .any(|row| row.action == "approve" && row.actor == LEAD && row.outcome != "applied"),
        "the self-approval is audited as refused: {trail:?}"
    );

    // The policy's informer sees the lock gone asynchronously: retry until the change passes.
    let passed = async {
        loop {
            let out = w.set_image_as_person(false).await;
            if out.success {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), passed)
        .await
        .expect("kubectl set image was still denied after the unlock");
    assert_eq!(
        w.deployment_image().await,
        cluster::image("checkout-api", "v3")
    );
    w.slack
        .wait_for("the unlock card's final state", WAIT, |s| {
            s.cards(CHANNEL).into_iter().find(|c| {
                c.ts == unlock_ts
                    && serde_json::to_string(&c.blocks)
                        .unwrap()
                        .contains("Unlocked")
            })
        })
        .await;
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}

/// The first approval card (its ts and Approve button's value) that is none of `not`.
async fn next_card(w: &World, not: &[&str]) -> (String, String) {
    w.slack
        .wait_for("a new approval card", WAIT, |s| {
            s.cards(CHANNEL).into_iter().find_map(|c| {
                if not.contains(&c.ts.as_str()) {
                    return None;
                }
                let value = button_value(&c.blocks, actions::APPROVE)?;
                Some((c.ts.clone(), value))
            })
        })
        .await
}

/// Runbook §5: no redeploy until the fix is approved — also not while the bot itself rolls a
/// locked Deployment back again. A plan on a locked Deployment says so, and a plan whose
/// target is the revision the lock keeps out warns before anyone approves. The second rollback
/// fails verification (its target crash-loops) and is escalated; in every phase a person's
/// `kubectl set image` is denied, and afterwards the lock names both rollbacks, has held since
/// the first, and the bot's own annotations survived the revision swap.
#[sqlx::test]
async fn a_second_rollback_keeps_the_deployment_locked_in_every_phase(pool: PgPool) {
    // Revisions: v1 = 1, v2 = 2, crashloop = 3, v3 = 4.
    let w = world_with(pool, &["v1", "v2", "crashloop", "v3"], "").await;
    w.install_lock_policy().await;
    let (first, ts1, value) = w.card_awaiting_approval().await;
    w.click(LEAD, &ts1, actions::APPROVE, &value).await;
    w.wait_state(first, State::Succeeded).await;
    w.wait_until_person_is_denied().await;
    let executor = Executor::new(w.cluster.executor_clusters());
    let target = Target::new(cluster::CLUSTER, &w.namespace, "checkout-api");
    let first_lock = lock::read(&executor, &target).await.unwrap().unwrap();
    assert_eq!(first_lock.faulty_revisions, vec![4], "{first_lock:?}");
    // Who deployed, as a pipeline records it: not a lock annotation, so people may set it.
    w.cluster
        .kubectl_ok(&[
            "-n",
            &w.namespace,
            "annotate",
            "deployment/checkout-api",
            "rollback-bot.io/deployed-by=riley@example.test",
        ])
        .await;

    // Back to the locked-out revision 4 (v3): said before anyone approves.
    w.command(REQUESTER, "checkout-api 4 INC-42").await;
    let (ts_bad, value_bad) = next_card(&w, &[&ts1]).await;
    w.card_containing(
        &ts_bad,
        "revision 4 is the faulty revision the lock keeps out",
    )
    .await;
    w.click(LEAD, &ts_bad, actions::REJECT, &value_bad).await;

    // To revision 3, which crash-loops: the plan says the lock stays.
    w.command(REQUESTER, "checkout-api 3 INC-42").await;
    let (ts2, value2) = next_card(&w, &[&ts1, &ts_bad]).await;
    w.card_containing(
        &ts2,
        &format!("this deployment is locked by rollback #{first}"),
    )
    .await;
    let second: i64 = value2.split(':').next().unwrap().parse().unwrap();
    let watch = async {
        let mut seen = Vec::new();
        loop {
            let state = repo::get(&w.pool, second).await.unwrap().state;
            let out = w.set_image_as_person(true).await;
            seen.push((state, out.success, out.stderr));
            if state.is_settled() {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let approve = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        w.click(LEAD, &ts2, actions::APPROVE, &value2).await;
    };
    let (seen, ()) = tokio::time::timeout(WAIT, async { tokio::join!(watch, approve) })
        .await
        .expect("the second rollback never settled");
    for (state, passed, stderr) in &seen {
        assert!(
            !passed,
            "a re-deploy passed while the second rollback was {state}"
        );
        assert!(
            stderr.contains("is locked by rollback-bot"),
            "{state}: {stderr}"
        );
    }
    let states: Vec<State> = seen.iter().map(|(s, _, _)| *s).collect();
    for phase in [State::AwaitingApproval, State::Verifying, State::Escalated] {
        assert!(states.contains(&phase), "{phase} not observed: {states:?}");
    }

    let done = repo::get(&w.pool, second).await.unwrap();
    assert_eq!(done.state, State::Escalated, "{:?}", done.last_error);
    let now = lock::read(&executor, &target)
        .await
        .unwrap()
        .expect("still locked");
    assert_eq!(now.rollback_id, Some(second));
    assert_eq!(now.earlier_rollbacks, vec![first]);
    assert_eq!(now.since, first_lock.since, "the lock never lapsed");
    // Rolled away from v3 (4) first, then from v2 (re-activated as 5).
    assert_eq!(now.faulty_revisions, vec![4, 5], "{now:?}");
    let annotations = w
        .cluster
        .deployments(&w.namespace)
        .get("checkout-api")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    assert_eq!(
        annotations
            .get("rollback-bot.io/deployed-by")
            .map(String::as_str),
        Some("riley@example.test"),
        "{annotations:?}"
    );
    // The failed rollback's card says the deployment stays locked (the escalation's evidence
    // says the same: src/steps/escalate.rs, unit-tested there).
    w.card_containing(
        &ts2,
        &format!("*Locked* against re-deploys by rollback #{first}, #{second}"),
    )
    .await;
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}

/// A cluster whose admission policy is missing (here: the bot looks for a policy of another
/// name) gets no "locked" claim: the card's headline and lock line, and the thread, say the
/// lock is recorded but not enforced and what to install; an operator metric counts it.
#[sqlx::test]
async fn a_lock_nothing_enforces_is_said_plainly(pool: PgPool) {
    let w = world_with(
        pool,
        &["v1", "v2", "v3"],
        r#"lock_policy = "rollback-bot-deploy-lock-absent""#,
    )
    .await;
    let (id, ts, value) = w.card_awaiting_approval().await;
    w.click(LEAD, &ts, actions::APPROVE, &value).await;
    let done = w.wait_state(id, State::Succeeded).await;
    assert_eq!(
        done.steps["lock"]["enforcement"]["enforced"],
        json!(false),
        "{done:?}"
    );
    let card = w
        .card_containing(&ts, "lock recorded but *NOT enforced*")
        .await;
    let card = serde_json::to_string(&card.blocks).unwrap();
    for part in [
        "the ValidatingAdmissionPolicy rollback-bot-deploy-lock-absent is not installed",
        "install config/kubernetes/base/deploy-lock.yaml",
    ] {
        assert!(card.contains(part), "{part:?} missing: {card}");
    }
    assert!(!card.contains("locked until a fix is approved"), "{card}");
    w.slack
        .wait_for("the lock line in the thread", WAIT, |s| {
            s.thread(&ts)
                .into_iter()
                .find(|m| m.text.contains("Lock recorded but *NOT enforced*"))
        })
        .await;
    let metrics = rollback_bot::support::telemetry::metrics().render();
    assert!(
        metrics.contains(r#"rollback_bot_unenforced_locks_total{cluster="local"}"#),
        "{metrics}"
    );
}

/// The wrong revision was approved (here one that crash-loops): during verification the
/// requester clicks **Abort**. The bot stops at once: no verdict is ever recorded, the
/// deployment stays as the patch left it, still locked, and the card says what was and was
/// not done.
#[sqlx::test]
async fn abort_after_the_patch_stops_the_bot_and_leaves_the_deployment_as_it_is(pool: PgPool) {
    // Revisions: v1 = 1, crashloop = 2, v3 = 3; the card asks for revision 2.
    let w = world_with(pool, &["v1", "crashloop", "v3"], "").await;
    let (id, ts, value) = w.card_awaiting_approval().await;
    w.click(LEAD, &ts, actions::APPROVE, &value).await;
    w.wait_state(id, State::Verifying).await;
    let card = w.card_containing(&ts, "Verifying").await;
    let abort_value = button_value(&card.blocks, actions::ABORT).expect("an Abort button");

    // A stranger may not; the requester may.
    let n = w
        .click("U0STRANGER", &ts, actions::ABORT, &abort_value)
        .await;
    let refused = w.slack.answer_at(n).await;
    assert!(
        refused.contains("only the requester or an on-call lead"),
        "{refused}"
    );
    w.click(REQUESTER, &ts, actions::ABORT, &abort_value).await;
    let aborted = w.wait_state(id, State::Cancelled).await;
    assert_eq!(aborted.decided_by.as_deref(), Some(REQUESTER));

    let card = w.card_containing(&ts, "Aborted").await;
    let blocks = serde_json::to_string(&card.blocks).unwrap();
    for part in [
        &format!("🛑 *Aborted* by <@{REQUESTER}> after the rollback patch"),
        "the deployment stays as the patch left it (revision 2)",
        // "Locked" because the execute step saw the cluster's admission policy enforce it.
        "(revision 2) — 🔒 locked until a fix is approved",
        "Not done: verification, recovery validation, lock check, deployer DM, post-incident ticket",
    ] {
        assert!(blocks.contains(part), "{part:?} missing: {blocks}");
    }
    assert!(
        !has_buttons(&card.blocks),
        "an aborted card has no buttons: {blocks}"
    );

    // The worker let go: past a lease, nothing more happened.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = repo::get(&w.pool, id).await.unwrap();
    assert_eq!(after.state, State::Cancelled);
    assert!(after.steps.get("verify").is_none(), "{:?}", after.steps);
    let trail = repo::audit_trail(&w.pool, id).await.unwrap();
    let last = trail.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.actor.as_str()),
        ("abort", REQUESTER)
    );
    assert_eq!(
        w.deployment_image().await,
        cluster::image("checkout-api", "crashloop")
    );
    let executor = Executor::new(w.cluster.executor_clusters());
    let target = Target::new(cluster::CLUSTER, &w.namespace, "checkout-api");
    let held = lock::read(&executor, &target)
        .await
        .unwrap()
        .expect("still locked");
    assert_eq!(held.rollback_id, Some(id));
    let thread = w.slack.thread(&ts);
    assert!(
        thread
            .iter()
            .any(|m| m.text.contains(&format!("🛑 Aborted by <@{REQUESTER}>"))),
        "{thread:?}"
    );
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}

/// A data-integrity concern during verification: a lead's **Escalate now** pages at once,
/// without waiting for the verification window to run out; the requester may not.
#[sqlx::test]
async fn escalate_now_escalates_at_once_with_the_leads_reason(pool: PgPool) {
    let w = world_with(pool, &["v1", "crashloop", "v3"], "").await;
    let (id, ts, value) = w.card_awaiting_approval().await;
    w.click(LEAD, &ts, actions::APPROVE, &value).await;
    w.wait_state(id, State::Verifying).await;
    let card = w.card_containing(&ts, "Escalate now: data integrity").await;
    let escalate =
        button_value(&card.blocks, actions::ESCALATE_DATA_INTEGRITY).expect("Escalate now");
    let n = w
        .click(REQUESTER, &ts, actions::ESCALATE_DATA_INTEGRITY, &escalate)
        .await;
    let refused = w.slack.answer_at(n).await;
    assert!(refused.contains("only the on-call leads"), "{refused}");

    let clicked = std::time::Instant::now();
    w.click(LEAD, &ts, actions::ESCALATE_DATA_INTEGRITY, &escalate)
        .await;
    let done = w.settled(id).await;
    assert_eq!(done.state, State::Escalated, "{:?}", done.last_error);
    assert!(
        clicked.elapsed() < Duration::from_secs(30),
        "escalated at once, not after verification's 60 s: {:?}",
        clicked.elapsed()
    );
    assert_eq!(
        done.last_error.as_deref(),
        Some("an on-call lead asked to escalate at once: a data-integrity concern")
    );
    assert!(done.steps.get("verify").is_none(), "{:?}", done.steps);
    let card = w.card_containing(&ts, "a data-integrity concern").await;
    let blocks = serde_json::to_string(&card.blocks).unwrap();
    assert!(blocks.contains("Failed — nobody paged"), "{blocks}");
    let thread = w
        .slack
        .wait_for("the escalate-now line", WAIT, |s| {
            s.thread(&ts)
                .into_iter()
                .find(|m| m.text.contains("asked to escalate at once"))
                .map(|m| m.text)
        })
        .await;
    assert!(
        thread.contains(&format!("📣 <@{LEAD}> asked to escalate at once")),
        "{thread}"
    );
    assert_eq!(w.slack.violations(), Vec::<String>::new());
}
