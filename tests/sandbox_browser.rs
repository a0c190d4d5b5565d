//! The Slack sandbox page in a real browser (headless Chromium driven through chromedriver
//! with fantoccini) in front of the real binary over the HTTP transport: the requester types
//! `/rollback web INC-7`, a stranger's Approve is refused privately, the on-call lead approves
//! through the confirm dialog, and the card reaches its final state. The screenshot is kept
//! in `target/tmp/sandbox-browser.png`; with `ROLLBACK_BOT_UPDATE_SCREENSHOT=1` it also
//! replaces docs/sandbox.png (the README's picture).
//!
//! Needs `chromium` and `chromedriver`: scripts/browser.sh installs them (scripts/test.sh
//! runs it). `ROLLBACK_BOT_CHROMEDRIVER` overrides where chromedriver is.

mod support;
use support::bot;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bot::{CHANNEL, LEAD, REQUESTER, SECRET, Scenario, free_port};
use fantoccini::{Client, ClientBuilder, Locator};
use rollback_bot::domain::State;
use serde_json::json;
use slack_sandbox::deliver::Transport;
use slack_sandbox::page::{Channel, Sandbox};
use slack_sandbox::people::{self, DemoIds};

const STRANGER: &str = "U0STRANGER";

/// A chromedriver process, killed when the test ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_browser() -> (Driver, Client) {
    let binary =
        std::env::var("ROLLBACK_BOT_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = free_port();
    let driver = Driver(
        Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary}: {e}; run `bash scripts/browser.sh` to install it")
            }),
    );
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"] }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "chromedriver never started a browser: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Waits for an element matching `css` (30 s at most).
async fn find(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
}

/// Waits until the text of `css` contains `needle` (60 s at most); returns the text.
async fn wait_for_text(client: &Client, css: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = match client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never showed {needle:?}; it shows:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn act_as(client: &Client, user: &str) {
    find(client, "#who")
        .await
        .select_by_value(user)
        .await
        .expect("pick who I am");
}

/// Clicks the card's Approve and confirms Slack's confirm dialog.
async fn approve(client: &Client) {
    find(
        client,
        "#timeline .message:not(.ephemeral) button[data-action-id='rollback.approve']",
    )
    .await
    .click()
    .await
    .expect("click Approve");
    let title = find(client, "#confirm-backdrop.open #confirm-title")
        .await
        .text()
        .await
        .unwrap();
    assert!(!title.is_empty(), "the confirm dialog has a title");
    find(client, "#confirm-yes")
        .await
        .click()
        .await
        .expect("confirm");
}

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
    let composer = find(&client, "#composer").await;
    composer
        .send_keys("/rollback web INC-7\u{E007}")
        .await
        .expect("type the command");
    wait_for_text(&client, "#timeline .ephemeral", "/rollback web INC-7").await;
    find(
        &client,
        "#timeline .message:not(.ephemeral) button[data-action-id='rollback.approve']",
    )
    .await;
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
            .find_all(Locator::Css(
                "#timeline .message:not(.ephemeral) button[data-action-id='rollback.approve']"
            ))
            .await
            .unwrap()
            .is_empty()
    );
    // The deployer's DM is a conversation of its own, under their name.
    wait_for_text(&client, "#conversations", "● Riley").await;
    let violations = find(&client, "#alerts").await.text().await.unwrap();
    assert!(!violations.contains("Slack would refuse"), "{violations}");

    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    let artifact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-browser.png");
    std::fs::write(&artifact, &png).expect("keep the screenshot");
    eprintln!("screenshot: {}", artifact.display());
    if std::env::var("ROLLBACK_BOT_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/sandbox.png");
        std::fs::write(docs, &png).expect("update docs/sandbox.png");
    }
    client.close().await.expect("close the browser");
}
