//! Escalation end to end with the real binary, the real cluster and the Slack and PagerDuty
//! stand-ins: a rollback to a crash-looping revision fails, is escalated (the thread mentions
//! the escalation user group with the reason and the evidence) and pages PagerDuty exactly
//! once; a later successful rollback of the same target resolves the alert. Then the same
//! promise across `kill -9` at each point around the page, and around the lead's Abort and
//! Escalate now.

mod support;
use slack_sandbox::web_api as slack_standin;
use support::{bot, cluster, github_standin, pagerduty_standin};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bot::{
    Bot, CHANNEL, LEAD, Ports, REQUESTER, SECRET, TempDir, free_ports, scratch_database,
    serve_command, tempdir, write_config,
};
use cluster::TestCluster;
use pagerduty_standin::{PagerDutyStandIn, ROUTING_KEY};
use rollback_bot::clients::k8s::RolloutStatus;
use rollback_bot::clients::pagerduty::{PagerDuty, Retries};
use rollback_bot::db::rollbacks::{self as repo, Change, NewRollback, Rollback};
use rollback_bot::domain::machine::Event;
use rollback_bot::domain::{State, Step};
use rollback_bot::engine::{Engine, EngineConfig, StepOutcome, StepRunner};
use rollback_bot::slack::actions;
use rollback_bot::steps::escalate::Escalation;
use slack_standin::SlackStandIn;
use slack_standin::requests::{self, button_value};
use sqlx::PgPool;

const GROUP: &str = "S0PLATFORM";

/// Deployment `web` at revisions 1 = 1.0.0, 2 = crashloop (its rollout failed), 3 = 1.2.0
/// (running); a scratch database; the two stand-ins.
struct Setup {
    ns: String,
    db_url: String,
    pool: PgPool,
    slack: SlackStandIn,
    pagerduty: PagerDutyStandIn,
    dir: TempDir,
}

impl Setup {
    async fn new(prefix: &str) -> Setup {
        let cluster = TestCluster::connect().await;
        let ns = cluster.namespace(prefix).await;
        cluster.fixture(&ns, "web", &["1.0.0"]).await;
        cluster.set_image(&ns, "web", "crashloop").await;
        assert!(matches!(
            cluster.wait_rollout(&ns, "web").await,
            RolloutStatus::Failed(_)
        ));
        cluster.set_image(&ns, "web", "1.2.0").await;
        assert!(matches!(
            cluster.wait_rollout(&ns, "web").await,
            RolloutStatus::Done(_)
        ));
        let (db_url, pool) = scratch_database("escalation").await;
        Setup {
            ns,
            db_url,
            pool,
            slack: SlackStandIn::start(bot::TOKEN).await,
            pagerduty: PagerDutyStandIn::start().await,
            dir: tempdir(prefix),
        }
    }

    /// The test config plus the escalation group and the PagerDuty stand-in.
    fn config(&self, ports: Ports) -> PathBuf {
        let path = write_config(&self.dir, ports, &self.ns, "", "2s");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replacen(
            "[slack]\n",
            &format!("[slack]\nescalation_user_group = \"{GROUP}\"\n"),
            1,
        ) + &format!(
            "[pagerduty]\nevents_url = \"{}\"\n",
            self.pagerduty.events_url()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn start(&self, env: &[(&str, &str)]) -> Bot {
        let ports = free_ports();
        let mut command = serve_command(&self.config(ports), &self.db_url, &self.slack);
        command.env("PAGERDUTY_ROUTING_KEY", ROUTING_KEY);
        command.envs(env.iter().copied());
        Bot::spawn(command, ports)
    }

    /// `/rollback web <args>`; returns the new rollback's id.
    async fn request(&self, bot: &Bot, args: &str) -> i64 {
        let before: i64 = sqlx::query_scalar("select coalesce(max(id), 0) from rollback")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let command = requests::command_body(
            REQUESTER,
            CHANNEL,
            "incident-response",
            &format!("web {args}"),
            &self.slack.response_url(1),
        );
        let (status, ack) = bot.post_signed("/slack/commands", &command, SECRET).await;
        assert_eq!(status, 200, "{ack}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let id: Option<i64> = sqlx::query_scalar("select max(id) from rollback where id > $1")
                .bind(before)
                .fetch_one(&self.pool)
                .await
                .unwrap();
            if let Some(id) = id {
                return id;
            }
            assert!(Instant::now() < deadline, "the command recorded nothing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The card of rollback `id` (its Approve button's value names it), once it has one.
    fn card(&self, id: i64) -> Option<slack_standin::Posted> {
        self.slack.cards(CHANNEL).into_iter().find(|c| {
            c.metadata
                .as_ref()
                .is_some_and(|m| m["event_payload"]["rollback_id"] == id)
        })
    }

    /// Clicks Approve on rollback `id`'s card once it shows the button; returns whether it
    /// clicked (the bot may be dying at a failpoint).
    async fn approve(&self, bot: &Bot, id: i64) -> bool {
        self.click(bot, id, LEAD, actions::APPROVE).await
    }

    /// `user` clicks the button `action` on rollback `id`'s card once the card shows it;
    /// returns whether the click got its 200 (the bot may be dying at a failpoint).
    async fn click(&self, bot: &Bot, id: i64, user: &str, action: &str) -> bool {
        let Some(card) = self.card(id) else {
            return false;
        };
        let Some(value) = button_value(&card.blocks, action) else {
            return false;
        };
        let click = requests::click_body(
            user,
            CHANNEL,
            &card.ts,
            action,
            &value,
            &self.slack.response_url(2),
        );
        matches!(
            bot.try_post_signed("/slack/interactions", &click, SECRET)
                .await,
            Ok((200, _))
        )
    }

    /// Polls rollback `id`, approving through `bot` when asked, until `done` holds.
    async fn until(&self, bot: &Bot, id: i64, done: impl Fn(&Rollback) -> bool) -> Rollback {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut approved = false;
        loop {
            if let Ok(r) = repo::get(&self.pool, id).await {
                if done(&r) {
                    return r;
                }
                if !approved && r.state == State::AwaitingApproval {
                    approved = self.approve(bot, id).await;
                }
                assert!(
                    Instant::now() < deadline,
                    "rollback #{id} stuck in {}: {:?}",
                    r.state,
                    r.last_error
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn dedup_key(&self) -> String {
        format!("rollback-bot/local/{}/web", self.ns)
    }

    /// The thread of rollback `id`'s card as one text, once `want` appears in it.
    async fn thread_with(&self, id: i64, want: &str) -> String {
        self.slack
            .wait_for(
                &format!("{want:?} in the thread"),
                Duration::from_secs(30),
                |s| {
                    let card = self.card(id)?;
                    let text: String = s
                        .thread(&card.ts)
                        .iter()
                        .map(|m| serde_json::to_string(&m.blocks).unwrap())
                        .collect();
                    text.contains(want).then_some(text)
                },
            )
            .await
    }
}

#[tokio::test]
async fn a_failed_rollback_is_escalated_once_and_a_later_success_resolves_the_page() {
    let s = Setup::new("escalation").await;
    let bot = s.start(&[]);
    bot.wait_ready().await;

    // Revision 2 crash-loops: the rollback fails verification and is escalated.
    let id = s.request(&bot, "2 INC-42").await;
    let escalated = s.until(&bot, id, |r| r.state == State::Escalated).await;
    let trail = repo::audit_trail(&s.pool, id).await.unwrap();
    let actions: Vec<_> = trail.iter().map(|a| a.action.as_str()).collect();
    assert!(
        actions.ends_with(&["step_failed", "escalate"]),
        "{actions:?}"
    );
    assert_eq!(
        escalated.steps["escalate"]["pagerduty"]["status"],
        "triggered"
    );

    let triggers = s.pagerduty.accepted("trigger");
    assert_eq!(triggers.len(), 1, "one page: {:?}", s.pagerduty.calls());
    let page = &triggers[0].body;
    assert_eq!(page["dedup_key"], s.dedup_key());
    assert_eq!(page["payload"]["severity"], "critical");
    let summary = page["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!(
            "Rollback #{id} of web (local/{}/web) failed",
            s.ns
        )),
        "{summary}"
    );
    assert_eq!(page["payload"]["custom_details"]["incident"], "INC-42");
    assert!(s.pagerduty.alerts()[&s.dedup_key()].open);
    // The page carries what the on-call engineer needs first: the failing pod's reason,
    // exit code and restarts and the end of its previous log (the password masked), and
    // the Warning events of the workload.
    let diagnosis = &page["payload"]["custom_details"]["diagnosis"];
    let pod = &diagnosis["pods"][0];
    assert!(
        pod["reason"]
            .as_str()
            .unwrap()
            .starts_with("CrashLoopBackOff"),
        "{diagnosis}"
    );
    assert_eq!(pod["exit_code"], 1, "{diagnosis}");
    assert!(pod["restarts"].as_i64().unwrap() >= 1, "{diagnosis}");
    let log: Vec<&str> = pod["log_tail"]
        .as_array()
        .unwrap_or_else(|| panic!("no log tail: {diagnosis}"))
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(
        log.last(),
        Some(&"panic: migration 42 not applied; exiting with status 1"),
        "{diagnosis}"
    );
    assert!(
        log.contains(&"connecting to postgres://checkout:‹redacted›@db.internal:5432/orders"),
        "{log:?}"
    );
    assert!(!diagnosis.to_string().contains("s3cr3t-pw"), "{diagnosis}");
    let evidence = page["payload"]["custom_details"]["evidence"].to_string();
    assert!(
        evidence.contains("panic: migration 42 not applied"),
        "{evidence}"
    );

    // The thread mentions the group with the reason, the evidence and the page.
    let thread = s.thread_with(id, &format!("<!subteam^{GROUP}>")).await;
    assert!(thread.contains("CrashLoopBackOff"), "{thread}");
    assert!(thread.contains("PagerDuty paged"), "{thread}");
    // The log line's Slack markup is shown, never acted on.
    assert!(
        thread.contains("does not exist &lt;!channel&gt;") && !thread.contains("<!channel>"),
        "{thread}"
    );
    // The card is re-rendered by the next sync (the thread may show the escalation first,
    // when the escalation landed while a sync that read the failed row was replying).
    s.slack
        .wait_for(
            "the card showing the escalation",
            Duration::from_secs(30),
            |_| {
                let card = s.card(id)?;
                serde_json::to_string(&card.blocks)
                    .unwrap()
                    .contains("*Escalated*")
                    .then_some(())
            },
        )
        .await;

    // A later rollback of the same target (back to 1.2.0, revision 3) succeeds and resolves
    // the alert.
    let second = s.request(&bot, "3 INC-42").await;
    let done = s.until(&bot, second, |r| r.state.is_terminal()).await;
    assert_eq!(done.state, State::Succeeded, "{:?}", done.last_error);
    s.pagerduty
        .wait_for("the resolve", Duration::from_secs(30), |p| {
            p.accepted("resolve").first().cloned()
        })
        .await;
    let resolves = s.pagerduty.accepted("resolve");
    assert_eq!(resolves.len(), 1);
    assert_eq!(resolves[0].body["dedup_key"], s.dedup_key());
    assert!(
        !s.pagerduty.alerts()[&s.dedup_key()].open,
        "the alert is resolved"
    );
    s.thread_with(second, "resolved: this rollback succeeded")
        .await;
    // Still one trigger: the sweep never sent the page again.
    assert_eq!(s.pagerduty.accepted("trigger").len(), 1);

    assert!(
        s.pagerduty.violations().is_empty(),
        "{:?}",
        s.pagerduty.violations()
    );
    assert!(
        s.slack.violations().is_empty(),
        "{:?}",
        s.slack.violations()
    );
    let (exit, _) = bot.terminate();
    assert!(exit.success());
}

/// Two rollbacks of the same target fail in the same incident: each is escalated, the second
/// says it is the second (the way back itself is failing) in the thread and the page, and
/// both triggers carry the target's dedup key, so PagerDuty holds one open alert that the
/// second updated.
#[tokio::test]
async fn a_second_failed_rollback_in_the_incident_is_escalated_as_such() {
    let s = Setup::new("escalation-twice").await;
    // Revision 4: another crash-looping template (an annotation differs), then 1.2.0 again
    // (revision 5).
    let cluster = TestCluster::connect().await;
    let variant = serde_json::json!({"spec": {"template": {
        "metadata": {"annotations": {"variant": "b"}},
        "spec": {"containers": [{"name": "app", "image": cluster::image("web", "crashloop")}]},
    }}});
    cluster
        .deployments(&s.ns)
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(variant),
        )
        .await
        .unwrap();
    assert!(matches!(
        cluster.wait_rollout(&s.ns, "web").await,
        RolloutStatus::Failed(_)
    ));
    cluster.set_image(&s.ns, "web", "1.2.0").await;
    assert!(matches!(
        cluster.wait_rollout(&s.ns, "web").await,
        RolloutStatus::Done(_)
    ));
    let bot = s.start(&[]);
    bot.wait_ready().await;

    let first = s.request(&bot, "2 INC-44").await;
    let escalated = s.until(&bot, first, |r| r.state == State::Escalated).await;
    assert_eq!(
        escalated.steps["escalate"]["earlier_failures"],
        serde_json::json!([])
    );
    let second = s.request(&bot, "4 INC-44").await;
    let escalated = s.until(&bot, second, |r| r.state == State::Escalated).await;
    let note = format!("2nd failed rollback of web in incident INC-44 (after #{first})");
    assert_eq!(
        escalated.steps["escalate"]["earlier_failures"],
        serde_json::json!([first])
    );

    let thread = s.thread_with(second, &format!("<!subteam^{GROUP}>")).await;
    assert!(thread.contains(&note), "{thread}");
    assert!(thread.contains("CrashLoopBackOff"), "{thread}");
    let triggers = s.pagerduty.accepted("trigger");
    assert_eq!(
        triggers.len(),
        2,
        "one page per failure: {:?}",
        s.pagerduty.calls()
    );
    assert!(
        triggers
            .iter()
            .all(|t| t.body["dedup_key"] == s.dedup_key())
    );
    let summary = triggers[1].body["payload"]["summary"].as_str().unwrap();
    assert!(summary.contains(&note), "{summary}");
    let alert = &s.pagerduty.alerts()[&s.dedup_key()];
    assert!(alert.open && alert.triggers == 2, "{alert:?}");
    assert!(alert.summary.contains(&note));
    assert!(s.pagerduty.violations().is_empty());
    let (exit, _) = bot.terminate();
    assert!(exit.success());
}

/// PagerDuty answers 429 with `Retry-After` twice: the page still goes out, once, after the
/// waits it asked for.
#[tokio::test]
async fn a_rate_limited_page_is_retried_after_retry_after() {
    let s = Setup::new("escalation-429").await;
    // Longer than the client's own backoff (0.5 s, then 1 s): the waits must be PagerDuty's.
    s.pagerduty.rate_limit_next(2, 2);
    let bot = s.start(&[]);
    bot.wait_ready().await;
    let id = s.request(&bot, "2 INC-43").await;
    let escalated = s.until(&bot, id, |r| r.state == State::Escalated).await;
    assert_eq!(
        escalated.steps["escalate"]["pagerduty"]["status"],
        "triggered"
    );
    let calls = s.pagerduty.calls();
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 429, 202]);
    for pair in calls.windows(2) {
        let waited = pair[1].at - pair[0].at;
        assert!(
            waited >= Duration::from_millis(1900),
            "waited {waited:?}, Retry-After said 2 s"
        );
    }
    assert!(s.pagerduty.violations().is_empty());
}

/// `serve` aborts (as `kill -9` would) at `failpoint` while escalating; a fresh replica
/// resumes. Returns the stand-in's accepted triggers.
async fn escalate_across_a_crash(failpoint: &str) -> (Setup, usize) {
    let s = Setup::new(&format!(
        "esc-crash-{}",
        failpoint.replace(['.', '_', ':'], "-")
    ))
    .await;
    let mut doomed = s.start(&[(rollback_bot::support::failpoint::ENV, failpoint)]);
    doomed.wait_ready().await;
    let id = s.request(&doomed, "2 INC-44").await;
    bot::approve_until_abort(
        &mut doomed,
        failpoint,
        Duration::from_secs(120),
        async |bot: &Bot| s.approve(bot, id).await,
    )
    .await;
    assert_eq!(
        repo::get(&s.pool, id).await.unwrap().state,
        State::Failed,
        "the crash came while escalating"
    );

    let replica = s.start(&[]);
    replica.wait_ready().await;
    let escalated = s.until(&replica, id, |r| r.state == State::Escalated).await;
    assert_eq!(
        escalated.steps["escalate"]["pagerduty"]["status"],
        "triggered"
    );
    let trail = repo::audit_trail(&s.pool, id).await.unwrap();
    assert_eq!(
        trail.iter().filter(|a| a.action == "escalate").count(),
        1,
        "escalated once"
    );
    let rows: i64 = sqlx::query_scalar("select count(*) from pagerduty_event")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "one page recorded");
    s.thread_with(id, &format!("<!subteam^{GROUP}>")).await;
    let alerts = s.pagerduty.alerts();
    assert_eq!(alerts.len(), 1, "one alert at PagerDuty: {alerts:?}");
    assert!(alerts[&s.dedup_key()].open);
    assert!(s.pagerduty.violations().is_empty());
    let (exit, _) = replica.terminate();
    assert!(exit.success());
    let triggers = s.pagerduty.accepted("trigger").len();
    (s, triggers)
}

/// The page was recorded, not sent: the resumed step sends it, once.
#[tokio::test]
async fn crash_after_recording_the_page() {
    let (_, triggers) = escalate_across_a_crash("escalation.after_intent").await;
    assert_eq!(triggers, 1);
}

/// PagerDuty accepted the page, the bot died before recording it: the resumed step sends it
/// again with the same dedup key, which PagerDuty folds into the same alert (checked above:
/// one alert), so the on-call engineer is paged once.
#[tokio::test]
async fn crash_after_sending_the_page() {
    let (s, triggers) = escalate_across_a_crash("escalation.after_send").await;
    assert_eq!(triggers, 2, "sent again after the crash");
    assert_eq!(s.pagerduty.alerts()[&s.dedup_key()].triggers, 2);
}

/// The page was sent and recorded, the transition to `escalated` was not: nothing is sent
/// again.
#[tokio::test]
async fn crash_before_recording_the_escalation() {
    let (_, triggers) = escalate_across_a_crash("engine.before_record.escalate").await;
    assert_eq!(triggers, 1);
}

/// Gives `web` a progress deadline of a minute, so that the wrong revision (crashloop) stays
/// in verification long enough for the lead's click, whatever the machine's speed.
async fn slow_progress_deadline(s: &Setup) {
    TestCluster::connect()
        .await
        .deployments(&s.ns)
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"progressDeadlineSeconds": 60}})),
        )
        .await
        .expect("set the progress deadline");
}

/// The wrong revision (crashloop) was approved; during its verification `user` clicks
/// `action` on a replica armed to die at `failpoint` (as `kill -9` would). Returns the
/// rollback's id and the clicked button's value.
async fn click_across_a_crash(
    s: &Setup,
    failpoint: &str,
    user: &str,
    action: &str,
) -> (i64, String) {
    slow_progress_deadline(s).await;
    let mut doomed = s.start(&[(rollback_bot::support::failpoint::ENV, failpoint)]);
    doomed.wait_ready().await;
    let id = s.request(&doomed, "2 INC-45").await;
    s.until(&doomed, id, |r| r.state == State::Verifying).await;
    let value = s
        .slack
        .wait_for("the button on the card", Duration::from_secs(30), |_| {
            button_value(&s.card(id)?.blocks, action)
        })
        .await;
    bot::approve_until_abort(
        &mut doomed,
        failpoint,
        Duration::from_secs(40),
        async |bot: &Bot| s.click(bot, id, user, action).await,
    )
    .await;
    (id, value)
}

/// How many applied audit rows of rollback `id` have `action`.
async fn applied(s: &Setup, id: i64, action: &str) -> usize {
    repo::audit_trail(&s.pool, id)
        .await
        .unwrap()
        .iter()
        .filter(|a| a.action == action && a.outcome == "applied")
        .count()
}

/// The requester's **Abort** is recorded and the replica dies before answering it or
/// updating the card. The click took the verifying worker's lease, so the fresh replica runs
/// no step of it again (no verdict, no escalation, no page); it shows the abort once, and the
/// requester's second click (they saw no answer) is answered "Already handled". The
/// Deployment stays as the patch left it.
#[tokio::test]
async fn crash_after_recording_an_abort() {
    let s = Setup::new("crash-abort").await;
    let (id, value) =
        click_across_a_crash(&s, "click.abort.after_record", REQUESTER, actions::ABORT).await;
    let aborted = repo::get(&s.pool, id).await.unwrap();
    assert_eq!(aborted.state, State::Cancelled, "{:?}", aborted.last_error);
    assert_eq!(
        aborted.lease_owner, None,
        "the click took the worker's lease"
    );

    let replica = s.start(&[]);
    replica.wait_ready().await;
    s.thread_with(id, &format!("Aborted by <@{REQUESTER}>"))
        .await;
    let card = s
        .slack
        .wait_for("the aborted card", Duration::from_secs(30), |_| {
            let card = s.card(id)?;
            serde_json::to_string(&card.blocks)
                .unwrap()
                .contains("*Aborted*")
                .then_some(card)
        })
        .await;
    let again = requests::click_body(
        REQUESTER,
        CHANNEL,
        &card.ts,
        actions::ABORT,
        &value,
        &s.slack.response_url(3),
    );
    let (status, _) = replica
        .post_signed("/slack/interactions", &again, SECRET)
        .await;
    assert_eq!(status, 200);
    let answer = s.slack.answer_at(3).await;
    assert!(
        answer.contains(&format!("Already handled: rollback #{id} is cancelled")),
        "{answer}"
    );

    // Past several leases nothing more happened.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = repo::get(&s.pool, id).await.unwrap();
    assert_eq!(after.state, State::Cancelled);
    assert!(after.steps.get("verify").is_none(), "{:?}", after.steps);
    assert_eq!(applied(&s, id, "abort").await, 1, "aborted once");
    let trail = repo::audit_trail(&s.pool, id).await.unwrap();
    assert_eq!(
        trail.last().unwrap().action,
        "abort",
        "nothing after the abort"
    );
    assert!(s.pagerduty.calls().is_empty(), "nobody paged");
    let web = TestCluster::connect()
        .await
        .deployments(&s.ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        web.spec.unwrap().template.spec.unwrap().containers[0].image,
        Some(cluster::image("web", "crashloop")),
        "the Deployment stays as the patch left it"
    );
    let thread = s.slack.thread(&card.ts);
    assert_eq!(
        thread
            .iter()
            .filter(|m| m.text.contains(&format!("Aborted by <@{REQUESTER}>")))
            .count(),
        1,
        "the abort's thread line once: {thread:?}"
    );
    assert!(
        s.slack.violations().is_empty(),
        "{:?}",
        s.slack.violations()
    );
    let (exit, _) = replica.terminate();
    assert!(exit.success());
}

/// A lead's **Escalate now** (data integrity) during verification, with the replica dying
/// at `failpoint`; a fresh replica resumes. The escalation runs once with the lead's reason,
/// the verification never again, and PagerDuty has one alert. Returns the accepted triggers.
async fn escalate_now_across_a_crash(failpoint: &str) -> usize {
    let s = Setup::new(&format!(
        "esc-now-{}",
        failpoint.replace(['.', '_', ':'], "-")
    ))
    .await;
    let (id, _) = click_across_a_crash(&s, failpoint, LEAD, actions::ESCALATE_DATA_INTEGRITY).await;
    assert_eq!(repo::get(&s.pool, id).await.unwrap().state, State::Failed);

    let replica = s.start(&[]);
    replica.wait_ready().await;
    let escalated = s.until(&replica, id, |r| r.state == State::Escalated).await;
    assert_eq!(
        escalated.last_error.as_deref(),
        Some("an on-call lead asked to escalate at once: a data-integrity concern")
    );
    assert!(
        escalated.steps.get("verify").is_none(),
        "{:?}",
        escalated.steps
    );
    assert_eq!(
        escalated.steps["escalate"]["pagerduty"]["status"],
        "triggered"
    );
    assert_eq!(applied(&s, id, "escalate_now").await, 1);
    assert_eq!(applied(&s, id, "escalate").await, 1, "escalated once");
    let thread = s.thread_with(id, &format!("<!subteam^{GROUP}>")).await;
    assert_eq!(
        thread
            .matches(&format!("<@{LEAD}> asked to escalate at once"))
            .count(),
        1,
        "the lead's line once: {thread}"
    );
    let alerts = s.pagerduty.alerts();
    assert_eq!(alerts.len(), 1, "one alert at PagerDuty: {alerts:?}");
    assert!(alerts[&s.dedup_key()].open);
    assert!(s.pagerduty.violations().is_empty());
    let (exit, _) = replica.terminate();
    assert!(exit.success());
    s.pagerduty.accepted("trigger").len()
}

/// The click is recorded, the replica dies before its worker escalates: the fresh one pages.
#[tokio::test]
async fn crash_after_recording_an_escalate_now() {
    assert_eq!(
        escalate_now_across_a_crash("click.escalate_now.after_record").await,
        1
    );
}

/// The escalate-now page reached PagerDuty, the replica died before recording it: sent again
/// with the same dedup key, folded into the one alert.
#[tokio::test]
async fn crash_after_sending_an_escalate_now_page() {
    assert_eq!(
        escalate_now_across_a_crash("escalation.after_send").await,
        2
    );
}

/// Runs no step: the test below only escalates.
struct NoSteps;

#[async_trait::async_trait]
impl StepRunner for NoSteps {
    async fn run(&self, step: Step, _: &Rollback) -> StepOutcome {
        unreachable!("only the escalator runs here, not {step:?}")
    }
}

/// PagerDuty down does not hold up the escalation: the rollback is escalated at once, saying
/// the page is not delivered yet; once PagerDuty is back the sweep sends it, once, and says
/// so in the thread. In process, on real Postgres and the stand-in.
#[sqlx::test]
async fn pagerduty_down_delays_the_page_not_the_escalation(pool: PgPool) {
    let pagerduty = PagerDutyStandIn::start().await;
    pagerduty.set_down(true);
    let (pager, escalation, engine) = in_process(&pool, &pagerduty, 2);
    let id = repo::insert(&pool, &new_request()).await.unwrap().id;
    let failure = Event::StepFailed {
        reason: "plan failed 6 times in a row; last error: apiserver unreachable".into(),
    };
    let failed = repo::apply(&pool, id, &Change::by("worker:test", &failure))
        .await
        .unwrap();
    assert_eq!(failed.rollback.state, State::Failed);
    assert!(engine.run_once("w").await.unwrap(), "the escalation is due");

    let r = repo::get(&pool, id).await.unwrap();
    assert_eq!(r.state, State::Escalated);
    let page = &r.steps["escalate"]["pagerduty"];
    assert_eq!(page["status"], "failed", "{page}");
    assert!(
        page["error"].as_str().unwrap().contains("HTTP 503"),
        "{page}"
    );
    let statuses: Vec<u16> = pagerduty.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [503, 503], "two attempts, both refused");

    pagerduty.set_down(false);
    escalation.sweep(&pager).await.unwrap();
    let triggers = pagerduty.accepted("trigger");
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0].body["dedup_key"], "rollback-bot/local/shop/web");
    assert_eq!(triggers[0].body["payload"]["severity"], "error");
    let late = repo::audit_trail(&pool, id).await.unwrap().pop().unwrap();
    assert_eq!(
        (late.action.as_str(), late.from_state, late.to_state),
        ("pagerduty_trigger", State::Escalated, State::Escalated)
    );
    assert!(
        rollback_bot::slack::render::thread_line(&late)
            .unwrap()
            .contains("PagerDuty paged Platform Engineering")
    );
    // The card's page line follows: paged now, no longer "not delivered yet".
    let r = repo::get(&pool, id).await.unwrap();
    assert_eq!(r.steps["escalate"]["pagerduty"]["status"], "triggered");
    // Delivered: later sweeps send nothing again.
    escalation.sweep(&pager).await.unwrap();
    assert_eq!(pagerduty.calls().len(), 3);
    assert!(pagerduty.violations().is_empty());
}

/// The escalation in process: PagerDuty with `attempts` per delivery, the
/// engine with only the escalator, the sweep with no redelivery delay.
fn in_process(
    pool: &PgPool,
    pagerduty: &PagerDutyStandIn,
    attempts: u32,
) -> (Arc<PagerDuty>, Arc<Escalation>, Engine) {
    let pager = Arc::new(
        PagerDuty::new(&pagerduty.events_url(), ROUTING_KEY)
            .unwrap()
            .with_retries(Retries {
                attempts,
                backoff_base: Duration::from_millis(10),
                ..Retries::default()
            }),
    );
    let escalation = Arc::new(
        Escalation::new(
            pool.clone(),
            Some(pager.clone()),
            Some(GROUP.into()),
            "error",
        )
        .with_redeliver_after(Duration::ZERO),
    );
    let engine = Engine::new(pool.clone(), Arc::new(NoSteps), EngineConfig::default())
        .with_escalator(escalation.clone());
    (pager, escalation, engine)
}

/// A rollback of shop/web in INC-9 that failed and was escalated by `engine`.
async fn escalated(pool: &PgPool, engine: &Engine) -> i64 {
    let id = repo::insert(pool, &new_request()).await.unwrap().id;
    let failure = Event::StepFailed {
        reason: "pods do not stabilise".into(),
    };
    repo::apply(pool, id, &Change::by("worker:test", &failure))
        .await
        .unwrap();
    assert!(engine.run_once("w").await.unwrap(), "the escalation is due");
    let r = repo::get(pool, id).await.unwrap();
    assert_eq!(r.state, State::Escalated, "{:?} {}", r.last_error, r.steps);
    id
}

/// A rollback of shop/web in INC-9 that succeeded (set directly: the machine's path there is
/// tested elsewhere).
async fn succeeded(pool: &PgPool) -> i64 {
    let id = repo::insert(pool, &new_request()).await.unwrap().id;
    sqlx::query("update rollback set state = 'succeeded', next_attempt_at = null where id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
    id
}

fn new_request() -> NewRollback {
    NewRollback {
        service: "web".into(),
        cluster: "local".into(),
        namespace: "shop".into(),
        deployment: "web".into(),
        requested_revision: None,
        incident: Some("INC-9".into()),
        requested_by: REQUESTER.into(),
        channel_id: CHANNEL.into(),
        response_url: None,
        force: false,
        approval_ttl: Duration::from_secs(900),
    }
}

async fn last_audit_action(pool: &PgPool, id: i64) -> rollback_bot::db::rollbacks::AuditRow {
    repo::audit_trail(pool, id).await.unwrap().pop().unwrap()
}

/// #1 fails (paged), #2 succeeds while PagerDuty is down (its resolve waits), #3 fails again
/// (the same alert is triggered anew). PagerDuty back: the waiting resolve is withheld, since
/// sending it would silence #3's failure; the thread says so. #4 succeeds: that resolve goes.
#[sqlx::test]
async fn a_resolve_is_never_sent_after_a_newer_trigger_of_the_same_alert(pool: PgPool) {
    let pagerduty = PagerDutyStandIn::start().await;
    let (pager, escalation, engine) = in_process(&pool, &pagerduty, 1);
    escalated(&pool, &engine).await;
    assert_eq!(pagerduty.accepted("trigger").len(), 1);

    let recovered = succeeded(&pool).await;
    pagerduty.set_down(true);
    escalation.sweep(&pager).await.unwrap();
    assert!(
        pagerduty.accepted("resolve").is_empty(),
        "PagerDuty is down"
    );

    pagerduty.set_down(false);
    let again = escalated(&pool, &engine).await;
    assert_eq!(pagerduty.accepted("trigger").len(), 2, "#{again} paged");
    escalation.sweep(&pager).await.unwrap();
    escalation.sweep(&pager).await.unwrap();
    assert!(
        pagerduty.accepted("resolve").is_empty(),
        "the resolve of #{recovered} would silence #{again}'s failure"
    );
    let withheld = last_audit_action(&pool, recovered).await;
    assert_eq!(withheld.action, "pagerduty_resolve_withheld");
    let line = rollback_bot::slack::render::thread_line(&withheld).unwrap();
    assert!(
        line.contains(&format!(
            "left open: rollback #{again} failed after this one succeeded"
        )),
        "{line}"
    );

    let fixed = succeeded(&pool).await;
    escalation.sweep(&pager).await.unwrap();
    let resolves = pagerduty.accepted("resolve");
    assert_eq!(resolves.len(), 1, "#{fixed} resolves the alert");
    assert_eq!(resolves[0].body["dedup_key"], "rollback-bot/local/shop/web");
    assert_eq!(
        last_audit_action(&pool, fixed).await.action,
        "pagerduty_resolve"
    );
    escalation.sweep(&pager).await.unwrap();
    assert_eq!(pagerduty.accepted("resolve").len(), 1, "once");
    assert!(pagerduty.violations().is_empty());
}

/// PagerDuty never comes back: after `MAX_ATTEMPTS` deliveries the sweep stops, and the card
/// no longer says the bot keeps retrying: it says the page was never delivered and to page
/// by hand (the group was mentioned). The thread says so too, and the operator metric
/// counts it.
#[sqlx::test]
async fn when_delivery_gives_up_the_card_and_the_metric_say_so(pool: PgPool) {
    let pagerduty = PagerDutyStandIn::start().await;
    pagerduty.set_down(true);
    let (pager, escalation, engine) = in_process(&pool, &pagerduty, 1);
    let id = escalated(&pool, &engine).await;
    let card = |r: &Rollback| {
        let message = rollback_bot::slack::render::card(r, None, None, chrono::Utc::now());
        serde_json::to_string(&message.blocks).unwrap()
    };
    let r = repo::get(&pool, id).await.unwrap();
    assert!(card(&r).contains("the bot keeps retrying"), "{}", card(&r));

    for _ in 1..rollback_bot::db::pages::MAX_ATTEMPTS {
        escalation.sweep(&pager).await.unwrap();
    }
    let calls = pagerduty.calls().len();
    assert_eq!(calls, rollback_bot::db::pages::MAX_ATTEMPTS as usize);
    escalation.sweep(&pager).await.unwrap();
    assert_eq!(
        pagerduty.calls().len(),
        calls,
        "no delivery after giving up"
    );

    let r = repo::get(&pool, id).await.unwrap();
    assert_eq!(r.steps["escalate"]["pagerduty"]["status"], "gave_up");
    let text = card(&r);
    assert!(
        text.contains("<!subteam^S0PLATFORM> mentioned")
            && text.contains("PagerDuty page NOT delivered: the bot gave up after 20 attempts")
            && text.contains("page Platform Engineering by hand")
            && !text.contains("keeps retrying"),
        "{text}"
    );
    let gave_up = last_audit_action(&pool, id).await;
    assert_eq!(gave_up.action, "pagerduty_gave_up");
    assert!(
        rollback_bot::slack::render::thread_line(&gave_up)
            .unwrap()
            .contains("PagerDuty trigger NOT delivered")
    );
    let metrics = rollback_bot::support::telemetry::metrics().render();
    assert!(
        metrics.contains("rollback_bot_pagerduty_gave_up_total{action=\"trigger\"}"),
        "{metrics}"
    );
}

/// A failed rollback is documented and its deployer told, as a successful one is: the
/// engineer named on the Deployment gets one DM saying the rollback FAILED and why, and the
/// tracker one post-incident ticket titled FAILED, saying exactly who was told, with the
/// escalation's evidence (the crash-looping pod, its log). The card shows both.
#[tokio::test]
async fn a_failed_rollback_gets_the_deployers_dm_and_a_failed_ticket() {
    let s = Setup::new("escalation-documented").await;
    const DEPLOYER: &str = "U0DEPLOYER1";
    s.slack.add_user(DEPLOYER, "dev@example.com", false);
    TestCluster::connect()
        .await
        .kubectl_ok(&[
            "-n",
            &s.ns,
            "annotate",
            "deployment/web",
            &format!("rollback-bot.io/deployed-by={DEPLOYER}"),
        ])
        .await;
    let github = github_standin::GitHubStandIn::start().await;
    let tickets = format!(
        "\n[tickets]\ntracker = \"github\"\ngithub_api_url = \"{}\"\ngithub_repository = \"{}\"\n",
        github.api_url(),
        github_standin::REPOSITORY
    );
    let ports = free_ports();
    let path = s.config(ports);
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap() + &tickets).unwrap();
    let mut command = serve_command(&path, &s.db_url, &s.slack);
    command.env("PAGERDUTY_ROUTING_KEY", ROUTING_KEY);
    command.env("GITHUB_TOKEN", github_standin::TOKEN);
    let bot = Bot::spawn(command, ports);
    bot.wait_ready().await;

    let id = s.request(&bot, "2 INC-42").await;
    let escalated = s.until(&bot, id, |r| r.state == State::Escalated).await;
    let e = &escalated.steps["escalate"];
    assert_eq!(e["notify"]["status"], "sent", "{e}");
    assert_eq!(e["ticket"]["status"], "opened", "{e}");

    let dms = s.slack.cards(&SlackStandIn::dm_channel(DEPLOYER));
    assert_eq!(dms.len(), 1, "one DM");
    assert!(
        dms[0].text.contains("FAILED during an incident")
            && dms[0].text.contains("INC-42")
            && !dms[0].text.contains("was rolled back during an incident"),
        "{}",
        dms[0].text
    );
    let issues = github.issues();
    assert_eq!(issues.len(), 1, "one ticket");
    let title = issues[0]["title"].as_str().unwrap();
    assert!(
        title.contains("rollback of web FAILED, escalated"),
        "{title}"
    );
    let body = issues[0]["body"].as_str().unwrap();
    for part in [
        "### Escalation\n- Result: FAILED; Slack group S0PLATFORM mentioned, PagerDuty paged\n",
        "CrashLoopBackOff",
        "panic: migration 42 not applied",
    ] {
        assert!(body.contains(part), "{part:?} missing:\n{body}");
    }
    assert!(!body.contains("s3cr3t-pw"), "{body}");
    s.slack
        .wait_for("the card showing the DM", Duration::from_secs(30), |_| {
            let card = serde_json::to_string(&s.card(id)?.blocks).unwrap();
            (card.contains("told by DM") && card.contains("*Escalated*")).then_some(())
        })
        .await;
    assert!(github.violations().is_empty(), "{:?}", github.violations());
    let (exit, _) = bot.terminate();
    assert!(exit.success());
}
