//! The Jira and GitHub clients against their stand-ins, in process (no cluster): the contract
//! each stand-in enforces is met, the look-up by label finds what was created, and definite
//! refusals (bad credentials, issues disabled, a missing project) come
//! back as errors naming the tracker's reason, after no retries; a 429 is waited out; a
//! create answered 5xx or too late after it was carried out opens one ticket, not two.

mod support;
use support::http_standin::Fault;
use support::{github_standin, jira_standin};

use std::time::Duration;

use github_standin::GitHubStandIn;
use jira_standin::JiraStandIn;
use rollback_bot::clients::tickets::{GitHub, Jira, Section, Ticket, Tracker, TrackerError};
use rollback_bot::support::http::Retries;

fn quick() -> Retries {
    Retries {
        attempts: 3,
        backoff_base: Duration::from_millis(10),
        max_wait: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
    }
}

fn ticket() -> Ticket {
    Ticket {
        title: "Post-incident: web rolled back".into(),
        sections: vec![Section {
            heading: "Summary".into(),
            lines: vec!["Incident: INC-1".into()],
        }],
    }
}

fn labels(marker: &str) -> Vec<String> {
    vec!["post-incident".into(), marker.into()]
}

fn jira(s: &JiraStandIn, project: &str, token: &str) -> Jira {
    Jira::new(&s.site(), project, "Bug", jira_standin::EMAIL, token)
        .unwrap()
        .with_retries(quick())
}

#[tokio::test]
async fn jira_creates_and_finds_by_label() {
    let s = JiraStandIn::start().await;
    let client = jira(&s, jira_standin::PROJECT, jira_standin::TOKEN);
    assert_eq!(client.find("rollback-bot-1").await.unwrap(), None);
    let created = client
        .create(&ticket(), &labels("rollback-bot-1"))
        .await
        .unwrap();
    assert_eq!(created.key, "OPS-1");
    assert_eq!(created.url, format!("{}/browse/OPS-1", s.site()));
    assert_eq!(client.find("rollback-bot-1").await.unwrap(), Some(created));
    assert_eq!(client.find("rollback-bot-2").await.unwrap(), None);
    assert!(s.violations().is_empty(), "{:?}", s.violations());
}

#[tokio::test]
async fn jira_refusals_name_the_reason_and_are_not_retried() {
    let s = JiraStandIn::start().await;
    let err = jira(&s, jira_standin::PROJECT, "wrong-token")
        .create(&ticket(), &labels("rollback-bot-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TrackerError::Rejected { status: 401, message } if message.contains("not authenticated")),
        "{err}"
    );
    let err = jira(&s, "NOPE", jira_standin::TOKEN)
        .create(&ticket(), &labels("rollback-bot-1"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the tracker refused (400): project: valid project is required"
    );
    assert_eq!(s.calls().len(), 2, "no retries of a definite answer");
    assert!(s.issues().is_empty());
}

#[tokio::test]
async fn jira_waits_out_a_429_then_gives_up_when_down() {
    let s = JiraStandIn::start().await;
    s.http().rate_limit_next(1, 1);
    let client = jira(&s, jira_standin::PROJECT, jira_standin::TOKEN);
    client
        .create(&ticket(), &labels("rollback-bot-1"))
        .await
        .unwrap();
    let calls = s.calls();
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 201]
    );
    assert!(calls[1].at - calls[0].at >= Duration::from_millis(950));
    s.http().set_down(true);
    let err = client
        .create(&ticket(), &labels("rollback-bot-2"))
        .await
        .unwrap_err();
    // A 503 to a create may hide a created issue: the client does not resend it blindly
    // (`Tracker::create` looks it up first, tested below).
    assert_eq!(
        err.to_string(),
        "the tracker is unavailable after 1 attempt(s): HTTP 503"
    );
    assert_eq!(s.issues().len(), 1);
    // A look-up is safe to repeat: it is retried.
    let err = client.find("rollback-bot-2").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the tracker is unavailable after 3 attempt(s): HTTP 503"
    );
}

fn github(s: &GitHubStandIn, token: &str) -> GitHub {
    GitHub::new(&s.api_url(), github_standin::REPOSITORY, token)
        .unwrap()
        .with_retries(quick())
}

#[tokio::test]
async fn github_creates_and_finds_by_label() {
    let s = GitHubStandIn::start().await;
    let client = github(&s, github_standin::TOKEN);
    assert_eq!(client.find("rollback-bot-9").await.unwrap(), None);
    let created = client
        .create(&ticket(), &labels("rollback-bot-9"))
        .await
        .unwrap();
    assert_eq!(created.key, "#1");
    assert_eq!(
        created.url,
        format!("https://github.com/{}/issues/1", github_standin::REPOSITORY)
    );
    assert_eq!(client.find("rollback-bot-9").await.unwrap(), Some(created));
    let issue = &s.issues()[0];
    assert_eq!(issue["body"], "### Summary\n- Incident: INC-1\n\n");
    assert!(s.violations().is_empty(), "{:?}", s.violations());
}

#[tokio::test]
async fn github_refusals_name_the_reason() {
    let s = GitHubStandIn::start().await;
    let err = github(&s, "ghp_wrong")
        .create(&ticket(), &labels("rollback-bot-1"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the tracker refused (401): Bad credentials"
    );
    s.disable_issues(true);
    let err = github(&s, github_standin::TOKEN)
        .create(&ticket(), &labels("rollback-bot-1"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the tracker refused (410): Issues are disabled for this repo"
    );
    assert!(s.issues().is_empty());
}

/// Neither tracker has an idempotency key: a create that was carried out but answered 5xx
/// or too late must not become two tickets. The client looks the ticket up by its marker
/// label before it sends the create again.
#[tokio::test]
async fn a_create_answered_5xx_or_too_late_is_looked_up_and_opens_one_ticket() {
    let marker = "rollback-bot-0123456789ab-5";
    for fault in [
        Fault::DoneThenStatus(502),
        Fault::DoneThenSlow(Duration::from_millis(1500)),
    ] {
        let j = JiraStandIn::start().await;
        j.http().fault_next(&[fault]);
        let tracker = Tracker::Jira(
            Jira::new(
                &j.site(),
                jira_standin::PROJECT,
                "Bug",
                jira_standin::EMAIL,
                jira_standin::TOKEN,
            )
            .unwrap()
            .with_retries(impatient()),
        );
        let created = tracker
            .create(&ticket(), &labels(marker), marker)
            .await
            .unwrap();
        assert_eq!(j.issues().len(), 1, "one Jira issue after {fault:?}");
        assert_eq!(created.key, j.issues()[0].key);
        let paths: Vec<_> = j.calls().iter().map(|c| c.path.clone()).collect();
        assert_eq!(
            paths,
            ["/rest/api/3/issue", "/rest/api/3/search/jql"],
            "{fault:?}: created, looked up, not created again"
        );

        let g = GitHubStandIn::start().await;
        g.http().fault_next(&[fault]);
        let tracker = Tracker::GitHub(
            GitHub::new(
                &g.api_url(),
                github_standin::REPOSITORY,
                github_standin::TOKEN,
            )
            .unwrap()
            .with_retries(impatient()),
        );
        let created = tracker
            .create(&ticket(), &labels(marker), marker)
            .await
            .unwrap();
        assert_eq!(g.issues().len(), 1, "one GitHub issue after {fault:?}");
        assert_eq!(created.key, "#1");
        let methods: Vec<_> = g.calls().iter().map(|c| c.method.clone()).collect();
        assert_eq!(methods, ["POST", "GET"], "{fault:?}");
    }
}

/// A 5xx before anything was created: the look-up finds nothing, so the create is sent
/// again, and the ticket is opened once.
#[tokio::test]
async fn a_create_that_failed_before_creating_is_sent_again_after_the_look_up() {
    let marker = "rollback-bot-0123456789ab-6";
    let j = JiraStandIn::start().await;
    j.http().fault_next(&[Fault::Refused(503)]);
    let tracker = Tracker::Jira(jira(&j, jira_standin::PROJECT, jira_standin::TOKEN));
    let attempt = tracker.create(&ticket(), &labels(marker), marker).await;
    let created = attempt.unwrap();
    assert_eq!(j.issues().len(), 1);
    assert_eq!(created.key, j.issues()[0].key);
    let calls: Vec<_> = j
        .calls()
        .iter()
        .map(|c| (c.path.clone(), c.status))
        .collect();
    assert_eq!(
        calls,
        [
            ("/rest/api/3/issue".to_owned(), 503),
            ("/rest/api/3/search/jql".to_owned(), 200),
            ("/rest/api/3/issue".to_owned(), 201),
        ],
        "refused, looked up (none), created once"
    );
    assert_eq!(j.issues()[0].labels(), labels(marker));
}

/// Like [`quick`], but a second is too long to wait for an answer.
fn impatient() -> Retries {
    Retries {
        request_timeout: Duration::from_millis(500),
        ..quick()
    }
}
