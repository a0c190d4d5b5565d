//! The Jira and GitHub clients against their stand-ins, in process (no cluster): the contract
//! each stand-in enforces is met, the look-up by label finds what was created, and definite
//! refusals (bad credentials, issues disabled, a missing project) come
//! back as errors naming the tracker's reason, after no retries; a 429 is waited out.

mod support;
use support::{github_standin, jira_standin};

use std::time::Duration;

use github_standin::GitHubStandIn;
use jira_standin::JiraStandIn;
use rollback_bot::clients::tickets::{GitHub, Jira, Section, Ticket, TrackerError};
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
    assert_eq!(
        err.to_string(),
        "the tracker is unavailable after 3 attempt(s): HTTP 503"
    );
    assert_eq!(s.issues().len(), 1);
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
