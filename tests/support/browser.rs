//! Headless Chromium driven through chromedriver (fantoccini), for the tests that use the
//! Slack sandbox's page as a person would: start the browser, act as someone, type, click
//! Approve through Slack's confirm dialog, wait for text.
//!
//! Needs `chromium` and `chromedriver`: scripts/browser.sh installs them (scripts/test.sh
//! runs it). `ROLLBACK_BOT_CHROMEDRIVER` overrides where chromedriver is.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::bot::free_port;

/// The card's Approve button (the card is a message that is not ephemeral).
pub const APPROVE: &str =
    "#timeline .message:not(.ephemeral) button[data-action-id='rollback.approve']";

/// A chromedriver process, killed when the test ends.
pub struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn start_browser() -> (Driver, Client) {
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
pub async fn find(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
}

/// Waits until the text of `css` contains `needle` (60 s at most); returns the text.
pub async fn wait_for_text(client: &Client, css: &str, needle: &str) -> String {
    wait_for_text_within(client, css, needle, Duration::from_secs(60)).await
}

/// Waits until the text of `css` contains `needle`, for at most `limit`; returns the text.
pub async fn wait_for_text_within(
    client: &Client,
    css: &str,
    needle: &str,
    limit: Duration,
) -> String {
    let deadline = Instant::now() + limit;
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

/// Picks who the person at the page is.
pub async fn act_as(client: &Client, user: &str) {
    find(client, "#who")
        .await
        .select_by_value(user)
        .await
        .expect("pick who I am");
}

/// Types a line into the channel's composer and sends it (Enter).
pub async fn type_command(client: &Client, line: &str) {
    find(client, "#composer")
        .await
        .send_keys(&format!("{line}\u{E007}"))
        .await
        .expect("type the command");
}

/// Clicks the card's Approve and confirms Slack's confirm dialog.
pub async fn approve(client: &Client) {
    find(client, APPROVE)
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

/// Takes a screenshot, keeps it as `target/tmp/<name>.png` (the test's artifact) and
/// returns its path. With `ROLLBACK_BOT_UPDATE_SCREENSHOT=1` and `readme_picture`, it also
/// replaces docs/sandbox.png, the README's picture.
pub async fn keep_screenshot(client: &Client, name: &str, readme_picture: bool) {
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    let artifact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"));
    std::fs::write(&artifact, &png).expect("keep the screenshot");
    eprintln!("screenshot: {}", artifact.display());
    if readme_picture && std::env::var("ROLLBACK_BOT_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/sandbox.png");
        std::fs::write(docs, &png).expect("update docs/sandbox.png");
    }
}
