//! The Slack sandbox page in a real browser (headless Chromium driven through chromedriver
//! with fantoccini) in front of the real binary over the HTTP transport: the requester types
//! `/rollback web INC-7`, a stranger's Approve is refused privately, the on-call lead approves
//! through the confirm dialog, and the card reaches its final state. The screenshot is kept
//! in `target/tmp/sandbox-browser.png` (the README's picture comes from tests/first_run.rs).

mod support;
use support::{bot, browser};

use bot::{CHANNEL, LEAD, REQUESTER, SECRET, Scenario};
use browser::{APPROVE, act_as, approve, find, keep_screenshot, start_browser, wait_for_text};
use fantoccini::Locator;
use rollback_bot::domain::State;
use slack_sandbox::deliver::Transport;
use slack_sandbox::page::{Channel, Sandbox};
use slack_sandbox::people::{self, DemoIds};

const STRANGER: &str = "U0STRANGER";

#[tokio::test]
async fn a_person_requests_and_the_lead_approves_in_a_real_browser() {
    let scenario = Scenario::new("browser").await;
    // Riley (the requester) deployed the faulty revision: the bot DMs them afterwards, by
    // the address the sandbox gives its people.
    scenario.set_deployer("riley@example.test").await;
    let bot = scenario.start(&[]);
    bot.wait_ready().await;
    let ids = DemoIds {
        requester: REQUESTER.into(),
        lead: LEAD.into(),
        stranger: STRANGER.into(),
        ..DemoIds::default()
    };
    let sandbox = Sandbox::new(
        scenario.slack.clone(),
        Transport::Http {
            bot_url: format!("http://127.0.0.1:{}", bot.ports.slack),
            signing_secret: SECRET.into(),
        },
        people::demo(&ids),
        Channel {
            id: CHANNEL.into(),
            name: "incident-response".into(),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page = format!("http://{}/", listener.local_addr().unwrap());
    let app = sandbox.routes();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (_driver, client) = start_browser().await;
    client.goto(&page).await.expect("open the sandbox page");
    find(&client, "#who option").await;

    // The requester asks; only they see the bot's private answer.
    act_as(&client, REQUESTER).await;
    browser::type_command(&client, "/rollback web INC-7").await;
    wait_for_text(&client, "#timeline .ephemeral", "/rollback web INC-7").await;
    find(&client, APPROVE).await;
    wait_for_text(&client, "#timeline", "reply").await;
    let id = bot::first_rollback(&scenario.pool).await;
    // Rendered as Slack does: a mention by name, Approve green, Reject red.
    wait_for_text(&client, "#timeline .mention", "@Riley").await;
    let approve_class = find(&client, "button[data-action-id='rollback.approve']")
        .await
        .attr("class")
        .await
        .unwrap();
    assert_eq!(approve_class.as_deref(), Some("slack primary"));
    let reject_class = find(&client, "button[data-action-id='rollback.reject']")
        .await
        .attr("class")
        .await
        .unwrap();
    assert_eq!(reject_class.as_deref(), Some("slack danger"));

    // A stranger's Approve is refused, privately, and changes nothing.
    act_as(&client, STRANGER).await;
    let before = find(&client, "#timeline").await.text().await.unwrap();
    assert!(
        !before.contains("/rollback web INC-7"),
        "the requester's answer is theirs only"
    );
    approve(&client).await;
    let refusal = wait_for_text(&client, "#timeline .ephemeral", "Only visible to you").await;
    eprintln!("the stranger was told: {refusal}");
    let still = rollback_bot::db::rollbacks::get(&scenario.pool, id)
        .await
        .unwrap();
    assert_eq!(still.state, State::AwaitingApproval);

    // The on-call lead approves through the confirm dialog; the card ends verified.
    act_as(&client, LEAD).await;
    approve(&client).await;
    wait_for_text(&client, "#timeline", "Rolled back and verified").await;
    let done = scenario.until_terminal(&bot, id, true).await;
    scenario
        .assert_rolled_back_once(&done, "approved in the browser")
        .await;
    find(&client, "#timeline .replies")
        .await
        .click()
        .await
        .expect("open the thread");
    wait_for_text(&client, "#thread-body", "replies").await;
    // The card's buttons are gone in its final state.
    assert!(
        client
            .find_all(Locator::Css(APPROVE))
            .await
            .unwrap()
            .is_empty()
    );
    // The deployer's DM is a conversation of its own, under their name.
    wait_for_text(&client, "#conversations", "● Riley").await;
    let violations = find(&client, "#alerts").await.text().await.unwrap();
    assert!(!violations.contains("Slack would refuse"), "{violations}");

    keep_screenshot(&client, "sandbox-browser", false).await;
    client.close().await.expect("close the browser");
}
