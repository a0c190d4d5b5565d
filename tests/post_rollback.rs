//! After a successful rollback, end to end with the real binary on the real control plane and
//! the Slack, Jira and GitHub stand-ins: the engineer who deployed the faulty revision gets
//! one DM (found by an email looked up in Slack, or by a user id; nobody found: the card says
//! which annotation to set and mentions the owning team), and the post-incident ticket is
//! opened exactly once in the configured tracker (none: the card says so). A tracker that is
//! down or a DM that fails shows on the card and leaves the rollback succeeded. Then the same
//! promises across `kill -9` at each point around the DM and the ticket.

mod support;
use support::{bot, cluster, github_standin, jira_standin};

use std::time::Duration;

use slack_sandbox::web_api as slack_standin;

use bot::{Bot, CHANNEL, LEAD, Scenario};
use github_standin::GitHubStandIn;
use jira_standin::JiraStandIn;
use rollback_bot::db::rollbacks::Rollback;
use rollback_bot::domain::State;
use slack_standin::SlackStandIn;

const DEPLOYER: &str = "U0DEPLOYER1";
const DEPLOYER_EMAIL: &str = "dev@example.com";
const ANNOTATION: &str = "rollback-bot.io/deployed-by";
const OWNERS: &str = "S0WEBTEAM01";

fn jira_config(jira: &JiraStandIn) -> String {
    format!(
        "\n[tickets]\ntracker = \"jira\"\njira_url = \"{}\"\njira_project = \"{}\"\n\
         jira_email = \"{}\"\nlabels = [\"post-incident\"]\n",
        jira.site(),
        jira_standin::PROJECT,
        jira_standin::EMAIL
    )
}

fn github_config(github: &GitHubStandIn) -> String {
    format!(
        "\n[tickets]\ntracker = \"github\"\ngithub_api_url = \"{}\"\n\
         github_repository = \"{}\"\n",
        github.api_url(),
        github_standin::REPOSITORY
    )
}

const JIRA_ENV: (&str, &str) = ("JIRA_API_TOKEN", jira_standin::TOKEN);
const GITHUB_ENV: (&str, &str) = ("GITHUB_TOKEN", github_standin::TOKEN);

/// Requests `/rollback web INC-7` through a fresh bot, approves it, and waits for the end
/// with every exactly-once promise of the rollback itself checked. Returns the bot (the card
/// is caught up) and the rollback.
async fn roll_back(
    s: &Scenario,
    env: &[(&str, &str)],
    extra: &str,
    context: &str,
) -> (Bot, Rollback) {
    let bot = s.start_with(env, extra);
    bot.wait_ready().await;
    let id = s.request(&bot).await;
    let done = s.until_terminal(&bot, id, false).await;
    s.assert_rolled_back_once(&done, context).await;
    (bot, done)
}

/// The DMs posted to `user`.
fn dms(slack: &SlackStandIn, user: &str) -> Vec<slack_standin::Posted> {
    slack.cards(&SlackStandIn::dm_channel(user))
}

/// Accepted `chat.postMessage` calls outside the incident channel.
fn dm_posts(slack: &SlackStandIn) -> usize {
    slack
        .calls_to("chat.postMessage")
        .iter()
        .filter(|c| c.error.is_none() && c.body["channel"] != CHANNEL)
        .count()
}

fn card_text(slack: &SlackStandIn) -> String {
    serde_json::to_string(&slack.cards(CHANNEL)[0].blocks).unwrap()
}

fn thread_text(slack: &SlackStandIn) -> String {
    let card = &slack.cards(CHANNEL)[0];
    slack
        .thread(&card.ts)
        .iter()
        .map(|m| serde_json::to_string(&m.blocks).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The DM says what happened, where, and that the service is locked.
fn assert_dm_content(dm: &slack_standin::Posted, id: i64) {
    for part in [
        "INC-7".to_owned(),
        "https://example.slack.com/archives/C0INCIDENT1/p".to_owned(),
        format!("rollback #{id}"),
        cluster::image("web", "1.2.0"),
        cluster::image("web", "1.1.0"),
        "Revision*: 3 → 2".to_owned(),
        format!("<@{LEAD}>"),
        "locked against re-deploys until a fix is approved".to_owned(),
        "/rollback unlock web &lt;fix reference&gt;".to_owned(),
    ] {
        assert!(
            dm.text.contains(&part),
            "{part:?} missing from the DM: {}",
            dm.text
        );
    }
    let metadata = dm.metadata.as_ref().expect("the DM carries metadata");
    assert_eq!(metadata["event_type"], "rollback_deployer_dm");
    assert_eq!(metadata["event_payload"]["rollback_id"], id);
}

#[tokio::test]
async fn an_email_annotation_is_looked_up_the_deployer_gets_one_dm_and_jira_one_ticket() {
    let s = Scenario::new("post-email-jira").await;
    s.slack.add_user(DEPLOYER, DEPLOYER_EMAIL, false);
    s.set_deployer(DEPLOYER_EMAIL).await;
    let jira = JiraStandIn::start().await;
    let (bot, done) = roll_back(&s, &[JIRA_ENV], &jira_config(&jira), "email + jira").await;

    assert_eq!(done.steps["notify"]["status"], "sent", "{}", done.steps);
    assert_eq!(done.steps["notify"]["user"], DEPLOYER);
    let lookups = s.slack.calls_to("users.lookupByEmail");
    assert_eq!(lookups.len(), 1);
    assert_eq!(lookups[0].body["email"], DEPLOYER_EMAIL);
    let dms = dms(&s.slack, DEPLOYER);
    assert_eq!(dms.len(), 1, "one DM");
    assert_eq!(dm_posts(&s.slack), 1);
    assert_dm_content(&dms[0], done.id);

    let issues = jira.issues();
    assert_eq!(issues.len(), 1, "one ticket");
    let issue = &issues[0];
    assert_eq!(
        issue.labels(),
        vec![
            "post-incident".to_owned(),
            format!("rollback-bot-{}-{}", installation(&s).await, done.id)
        ]
    );
    let summary = issue.fields["summary"].as_str().unwrap();
    assert!(
        summary.contains("web") && summary.contains("INC-7"),
        "{summary}"
    );
    assert_eq!(issue.fields["issuetype"]["name"], "Bug");
    let description = issue.description_text();
    for part in [
        "Incident: INC-7".to_owned(),
        "Rollback card: https://example.slack.com/archives/C0INCIDENT1/p".to_owned(),
        "Revision: 3 → 2".to_owned(),
        format!(
            "Image app: {} → {}",
            cluster::image("web", "1.2.0"),
            cluster::image("web", "1.1.0")
        ),
        format!("Requested by Slack user {}", bot::REQUESTER),
        format!("Approved by Slack user {LEAD} (on-call lead)"),
        format!("Deployer notified: Slack user {DEPLOYER}"),
        "Verification".to_owned(),
        "Timeline (audit trail)".to_owned(),
        "approve (awaiting_approval → approved)".to_owned(),
        "step_succeeded (locking → notifying)".to_owned(),
        "Locked against re-deploys".to_owned(),
    ] {
        assert!(
            description.contains(&part),
            "{part:?} missing:\n{description}"
        );
    }
    let creates: Vec<_> = jira
        .calls()
        .into_iter()
        .filter(|c| c.path == "/rest/api/3/issue")
        .collect();
    assert_eq!(creates.len(), 1);
    let url = format!("{}/browse/OPS-1", jira.site());
    assert_eq!(done.steps["ticket"]["url"], url.as_str());

    let card = card_text(&s.slack);
    assert!(
        card.contains(&format!("Deployer <@{DEPLOYER}> told by DM")),
        "{card}"
    );
    assert!(
        card.contains(&format!("Post-incident ticket: <{url}|OPS-1>")),
        "{card}"
    );
    let thread = thread_text(&s.slack);
    assert!(thread.contains("Post-incident ticket <"), "{thread}");
    assert!(jira.violations().is_empty(), "{:?}", jira.violations());
    bot.terminate();
}

#[tokio::test]
async fn a_user_id_annotation_is_messaged_directly_and_github_gets_one_issue_after_a_429() {
    let s = Scenario::new("post-id-github").await;
    s.slack.add_user(DEPLOYER, DEPLOYER_EMAIL, false);
    s.set_deployer(DEPLOYER).await;
    let github = GitHubStandIn::start().await;
    // Longer than the client's own first backoff (0.5 s): the wait must be GitHub's.
    github.http().rate_limit_next(1, 2);
    let (bot, done) = roll_back(&s, &[GITHUB_ENV], &github_config(&github), "id + github").await;

    assert!(s.slack.calls_to("users.lookupByEmail").is_empty());
    assert_eq!(dms(&s.slack, DEPLOYER).len(), 1);
    assert_dm_content(&dms(&s.slack, DEPLOYER)[0], done.id);

    let issues = github.issues();
    assert_eq!(issues.len(), 1, "one issue");
    let body = issues[0]["body"].as_str().unwrap();
    assert!(body.contains("### Timeline (audit trail)"), "{body}");
    assert!(
        body.contains(&format!("- Approved by Slack user {LEAD}")),
        "{body}"
    );
    let posts: Vec<_> = github
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST")
        .collect();
    assert_eq!(
        posts.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 201]
    );
    let waited = posts[1].at - posts[0].at;
    assert!(
        waited >= Duration::from_millis(1900),
        "waited {waited:?}, Retry-After said 2 s"
    );
    let url = issues[0]["html_url"].as_str().unwrap();
    assert!(card_text(&s.slack).contains(&format!("Post-incident ticket: <{url}|#1>")));
    assert!(github.violations().is_empty(), "{:?}", github.violations());
    bot.terminate();
}

#[tokio::test]
async fn nobody_found_the_card_names_the_annotation_and_the_owning_team_and_no_tracker() {
    let s = Scenario::new("post-nobody").await;
    let extra = format!("\n[deployer.owner_user_groups]\nweb = \"{OWNERS}\"\n");
    let (bot, done) = roll_back(&s, &[], &extra, "nobody found").await;

    assert_eq!(done.state, State::Succeeded);
    assert_eq!(
        done.steps["notify"]["status"], "not_found",
        "{}",
        done.steps
    );
    assert_eq!(done.steps["ticket"]["status"], "not_configured");
    assert!(s.slack.calls_to("conversations.open").is_empty());
    assert_eq!(dm_posts(&s.slack), 0);
    let card = card_text(&s.slack);
    for part in [
        "Deployer not identified",
        &format!("`{ANNOTATION}`"),
        &format!("<!subteam^{OWNERS}> please take it"),
        "no ticket tracker is configured (tickets.tracker)",
    ] {
        assert!(
            card.contains(part),
            "{part:?} missing from the card: {card}"
        );
    }
    assert!(thread_text(&s.slack).contains(&format!("<!subteam^{OWNERS}>")));
    bot.terminate();
}

/// An email annotation naming a deactivated account is nobody: no DM, the card says why.
#[tokio::test]
async fn an_email_of_a_deactivated_account_is_nobody_found() {
    let s = Scenario::new("post-deactivated").await;
    s.slack.add_user(DEPLOYER, DEPLOYER_EMAIL, true);
    s.set_deployer(DEPLOYER_EMAIL).await;
    let (bot, done) = roll_back(&s, &[], "", "deactivated").await;

    assert_eq!(
        done.steps["notify"]["status"], "not_found",
        "{}",
        done.steps
    );
    assert_eq!(s.slack.calls_to("users.lookupByEmail").len(), 1);
    assert!(s.slack.calls_to("conversations.open").is_empty());
    assert_eq!(dm_posts(&s.slack), 0);
    let card = card_text(&s.slack);
    assert!(
        card.contains(&format!(
            "names {DEPLOYER_EMAIL}, which is no active Slack user (users.lookupByEmail)"
        )),
        "{card}"
    );
    bot.terminate();
}

#[tokio::test]
async fn a_tracker_that_is_down_and_a_dm_that_fails_leave_the_rollback_succeeded() {
    let s = Scenario::new("post-down").await;
    // Slack knows no such user: conversations.open answers user_not_found.
    s.set_deployer("U0NOBODY001").await;
    let jira = JiraStandIn::start().await;
    jira.http().set_down(true);
    let (bot, done) = roll_back(&s, &[JIRA_ENV], &jira_config(&jira), "tracker down").await;

    assert_eq!(done.state, State::Succeeded, "{:?}", done.last_error);
    assert_eq!(done.steps["notify"]["status"], "failed", "{}", done.steps);
    assert_eq!(done.steps["ticket"]["status"], "failed", "{}", done.steps);
    assert_eq!(
        s.slack.calls_to("conversations.open").len(),
        3,
        "three attempts"
    );
    assert!(jira.issues().is_empty());
    assert!(jira.calls().iter().all(|c| c.status == 503));
    assert!(jira.calls().len() >= 2, "retried: {:?}", jira.calls().len());
    let card = card_text(&s.slack);
    assert!(
        card.contains(
            "DM to the deployer failed: Slack answered conversations.open with error user_not_found"
        ),
        "{card}"
    );
    assert!(
        card.contains("Post-incident ticket not opened (jira): the tracker is unavailable after"),
        "{card}"
    );
    // The lock was set all the same.
    assert!(done.steps["lock"]["lock"].is_object());
    let last_error: Option<String> = sqlx::query_scalar(
        "select last_error from post_rollback_action where rollback_id = $1 and action = 'ticket'",
    )
    .bind(done.id)
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert!(last_error.is_some_and(|e| e.contains("HTTP 503")));
    bot.terminate();
}

/// Which tracker a crash test uses.
#[derive(Clone, Copy)]
enum Tracker {
    Jira,
    GitHub,
}

/// `serve` aborts at `failpoint` (as `kill -9` would) somewhere around the DM or the ticket;
/// two replicas resume. Exactly one DM and one ticket, and the rollback succeeded once.
async fn crash_at(failpoint: &str, tracker: Tracker) {
    let s = Scenario::new(&format!(
        "post-crash-{}",
        failpoint.replace(['.', '_', ':'], "-")
    ))
    .await;
    s.slack.add_user(DEPLOYER, DEPLOYER_EMAIL, false);
    s.set_deployer(DEPLOYER_EMAIL).await;
    let jira = JiraStandIn::start().await;
    let github = GitHubStandIn::start().await;
    let (extra, token) = match tracker {
        Tracker::Jira => (jira_config(&jira), JIRA_ENV),
        Tracker::GitHub => (github_config(&github), GITHUB_ENV),
    };

    let (id, approved) = s.run_until_abort(failpoint, &[token], &extra).await;

    let replicas = [
        s.start_with(&[token], &extra),
        s.start_with(&[token], &extra),
    ];
    for r in &replicas {
        r.wait_ready().await;
    }
    let done = s.until_terminal(&replicas[1], id, approved).await;
    let context = format!("after a crash at {failpoint}");
    s.assert_rolled_back_once(&done, &context).await;

    assert_eq!(
        done.steps["notify"]["status"], "sent",
        "{context}: {}",
        done.steps
    );
    assert_eq!(dms(&s.slack, DEPLOYER).len(), 1, "{context}: one DM");
    assert_eq!(dm_posts(&s.slack), 1, "{context}: one DM post");
    assert_eq!(
        done.steps["ticket"]["status"], "opened",
        "{context}: {}",
        done.steps
    );
    let tickets = match tracker {
        Tracker::Jira => jira.issues().len(),
        Tracker::GitHub => github.issues().len(),
    };
    assert_eq!(tickets, 1, "{context}: one ticket");
    assert!(jira.violations().is_empty() && github.violations().is_empty());
    for r in replicas {
        let (exit, _) = r.terminate();
        assert!(exit.success());
    }
}

macro_rules! crash_tests {
    ($($name:ident: $point:literal, $tracker:expr,)*) => {$(
        #[tokio::test]
        async fn $name() {
            crash_at($point, $tracker).await;
        }
    )*};
}

crash_tests! {
    crash_after_recording_the_dm_intent: "deployer.dm.after_intent", Tracker::Jira,
    crash_after_sending_the_dm: "deployer.dm.after_post", Tracker::Jira,
    crash_before_recording_the_notify_step: "engine.before_record.notify", Tracker::Jira,
    crash_after_recording_the_ticket_intent: "ticket.after_intent", Tracker::Jira,
    crash_after_creating_the_jira_ticket: "ticket.after_create", Tracker::Jira,
    crash_after_creating_the_github_issue: "ticket.after_create", Tracker::GitHub,
    crash_before_recording_the_ticket_step: "engine.before_record.ticket", Tracker::GitHub,
}

/// This installation's id, as the ticket's marker label carries it.
async fn installation(s: &Scenario) -> String {
    let id: String = sqlx::query_scalar("select id from installation")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(id.len(), 12, "{id}");
    id
}
