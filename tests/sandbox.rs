//! The Slack sandbox (crates/slack-sandbox/src/) with the real binary: Socket Mode end to end for the
//! first time (`apps.connections.open`, `hello`, envelopes and acks), a dropped socket and a
//! `disconnect` from which the bot reconnects, and what the page shows when something breaks
//! Slack's contract, hits a rate limit or never reaches the bot.

mod support;
use slack_sandbox::web_api as slack_standin;
use support::bot;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bot::{Bot, CHANNEL, LEAD, REQUESTER, Scenario, free_ports, serve_command};
use rollback_bot::domain::State;
use serde_json::Value;
use slack_sandbox::deliver::Transport;
use slack_sandbox::page::{Channel, ClickRequest, Sandbox};
use slack_sandbox::people::{self, DemoIds};
use slack_sandbox::socket_mode::Hub;
use slack_standin::SlackStandIn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APP_TOKEN: &str = "xapp-1-sandbox-test";

fn sandbox(slack: &SlackStandIn, transport: Transport) -> Arc<Sandbox> {
    let ids = DemoIds {
        requester: REQUESTER.into(),
        lead: LEAD.into(),
        ..DemoIds::default()
    };
    Sandbox::new(
        slack.clone(),
        transport,
        people::demo(&ids),
        Channel {
            id: CHANNEL.into(),
            name: "incident-response".into(),
        },
    )
}

/// The ephemerals `user` sees on the page, newest last.
fn ephemerals_of(sandbox: &Sandbox, user: &str) -> Vec<Value> {
    sandbox.view()["ephemerals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["user"] == user)
        .cloned()
        .collect()
}

/// Waits until the bot has (re)connected: more `hello`s than `before` and a socket open.
async fn reconnected(hub: &Hub, before: u64, what: &str) -> Duration {
    let started = Instant::now();
    while hub.hellos() <= before || hub.connections() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the bot did not reconnect after {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn socket_mode_requests_approves_and_survives_a_dropped_socket() {
    let scenario = Scenario::new("sockmode").await;
    let hub = scenario.slack.socket_mode(APP_TOKEN);
    let ports = free_ports();
    let config = bot::write_config(
        &scenario.dir,
        ports,
        &scenario.ns,
        "transport = \"socket_mode\"",
        "2s",
    );
    let mut command = serve_command(&config, &scenario.db_url, &scenario.slack);
    command.env("SLACK_APP_TOKEN", APP_TOKEN);
    let bot = Bot::spawn(command, ports);
    // Ready only once Slack's `hello` arrived on a socket the bot opened.
    bot.wait_ready().await;
    assert!(hub.connections() >= 1 && hub.hellos() >= 1);
    let opened = scenario.slack.calls_to("apps.connections.open");
    assert!(
        opened.iter().all(|c| c.error.is_none()),
        "the app token opened the connection: {opened:?}"
    );

    let sandbox = sandbox(&scenario.slack, Transport::SocketMode(hub.clone()));
    sandbox
        .run_command(REQUESTER, "/rollback web INC-7")
        .await
        .expect("the command is acknowledged on the socket");
    // The ack's payload is the answer only the requester sees.
    let answers = ephemerals_of(&sandbox, REQUESTER);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["command"], "/rollback web INC-7");
    assert!(
        !answers[0]["text"].as_str().unwrap().is_empty(),
        "{answers:?}"
    );
    assert!(
        ephemerals_of(&sandbox, LEAD).is_empty(),
        "only the requester"
    );

    let id = bot::first_rollback(&scenario.pool).await;
    scenario.until_state(id, &[State::AwaitingApproval]).await;
    // The lead clicks Approve on the card once it shows the button and its first thread line.
    let card = scenario
        .slack
        .wait_for(
            "the card with its first thread line",
            Duration::from_secs(30),
            |s| {
                let card = s.cards(CHANNEL).first().cloned()?;
                let button = card
                    .blocks
                    .iter()
                    .find(|b| {
                        b["elements"]
                            .as_array()
                            .is_some_and(|e| e.iter().any(|e| e["action_id"] == "rollback.approve"))
                    })?
                    .clone();
                (!s.thread(&card.ts).is_empty()).then_some((card, button))
            },
        )
        .await;
    let (card, actions) = card;
    sandbox
        .click(&ClickRequest {
            user: LEAD.into(),
            channel: CHANNEL.into(),
            ts: card.ts.clone(),
            ephemeral: false,
            block_id: actions["block_id"].as_str().unwrap().into(),
            action_id: "rollback.approve".into(),
        })
        .await
        .expect("the click is acknowledged on the socket");
    let done = scenario.until_terminal(&bot, id, true).await;
    scenario
        .assert_rolled_back_once(&done, "over Socket Mode")
        .await;

    // The network drops every socket (no close frame): the bot opens new ones by itself and
    // is reachable again.
    let before = hub.hellos();
    let opens_before = scenario.slack.calls_to("apps.connections.open").len();
    hub.drop_sockets();
    let took = reconnected(&hub, before, "a dropped socket").await;
    assert!(
        scenario.slack.calls_to("apps.connections.open").len() > opens_before,
        "a new connection was opened with apps.connections.open"
    );
    eprintln!("reconnected {took:?} after the drop");
    let status = format!("/rollback status #{id}");
    sandbox
        .run_command(REQUESTER, &status)
        .await
        .expect("a command after the reconnect is acknowledged");
    let last = ephemerals_of(&sandbox, REQUESTER).pop().unwrap();
    assert_eq!(last["command"], status.as_str());
    assert!(
        last["text"].as_str().unwrap().contains(&format!("#{id}")),
        "{last}"
    );

    // Slack recycles a socket with `disconnect`: the bot reconnects too.
    let before = hub.hellos();
    hub.refresh_sockets();
    reconnected(&hub, before, "a disconnect message").await;
    assert_eq!(bot.admin_get("/readyz").await.0, 200);
    assert!(
        sandbox.view()["problems"].as_array().unwrap().is_empty(),
        "{}",
        sandbox.view()["problems"]
    );
    let (exit, _) = bot.terminate();
    assert!(exit.success(), "exit status {exit}");
}

/// A raw call to the sandbox's Web API: (status, headers + body).
async fn api(port: u16, method: &str, body: &str) -> (u16, String) {
    let headers = "Authorization: Bearer xoxb-sandbox-page\r\nContent-Type: application/json\r\n";
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let text = format!(
        "POST /api/{method} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response)
}

#[tokio::test]
async fn the_page_shows_violations_rate_limits_and_requests_that_never_reached_the_bot() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let slack = SlackStandIn::new("xoxb-sandbox-page", listener.local_addr().unwrap());
    slack.enforce_rate_limits();
    // Nothing listens where the bot should be.
    let nowhere = free_ports().slack;
    let sandbox = sandbox(
        &slack,
        Transport::Http {
            bot_url: format!("http://127.0.0.1:{nowhere}"),
            signing_secret: "s".into(),
        },
    );
    let app = sandbox.routes();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // A card Slack would refuse: the page lists the violation.
    let (status, answer) = api(
        port,
        "chat.postMessage",
        &format!(r#"{{"channel":"{CHANNEL}","text":"x","blocks":[{{"type":"header","text":{{"type":"mrkdwn","text":"x"}}}}]}}"#),
    )
    .await;
    assert_eq!(status, 200);
    assert!(answer.contains("invalid_blocks"), "{answer}");
    let view = sandbox.view();
    assert_eq!(
        view["violations"][0],
        "chat.postMessage: header text must be plain_text"
    );

    // Slack's chat.postMessage limit: a burst of 5 calls a channel (the refused one counts
    // too), then 429 with Retry-After.
    for n in 0..4 {
        let body = format!(r#"{{"channel":"{CHANNEL}","text":"message {n}"}}"#);
        assert_eq!(api(port, "chat.postMessage", &body).await.0, 200, "{n}");
    }
    let body = format!(r#"{{"channel":"{CHANNEL}","text":"one too many"}}"#);
    let (status, answer) = api(port, "chat.postMessage", &body).await;
    assert_eq!(status, 429, "{answer}");
    assert!(
        answer.to_lowercase().contains("retry-after: 1\r\n"),
        "{answer}"
    );
    let view = sandbox.view();
    let limited: Vec<&Value> = view["refused_calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == 429)
        .collect();
    assert_eq!(limited.len(), 1, "{view}");
    assert_eq!(view["messages"].as_array().unwrap().len(), 4);

    // A command the bot never got is shown as a problem, naming where the bot should be.
    let refused = sandbox
        .run_command(REQUESTER, "/rollback web")
        .await
        .unwrap_err();
    assert!(
        refused.contains("unreachable") && refused.contains(&nowhere.to_string()),
        "{refused}"
    );
    assert!(
        sandbox.view()["problems"][0]["what"]
            .as_str()
            .unwrap()
            .starts_with("/rollback web: the bot is unreachable"),
        "{}",
        sandbox.view()
    );
    // Only slash commands go to the bot; a stranger to the sandbox cannot act.
    let chat = sandbox.run_command(REQUESTER, "hello").await.unwrap_err();
    assert!(chat.contains("only /rollback"), "{chat}");
    let unknown = sandbox
        .run_command("U0NOBODY", "/rollback web")
        .await
        .unwrap_err();
    assert!(unknown.contains("unknown person"), "{unknown}");

    // The page's event stream starts with the whole view, and sends it again on a change.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /sandbox/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let first = read_until(&mut stream, "problems").await;
    assert!(first.contains("text/event-stream"), "{first}");
    assert!(first.contains("data: {"), "{first}");
    let body = r#"{"channel":"C0OTHER","text":"a change"}"#;
    assert_eq!(api(port, "chat.postMessage", body).await.0, 200);
    let next = read_until(&mut stream, "a change").await;
    assert!(next.contains("C0OTHER"), "{next}");
}

/// Reads from `stream` until `needle` shows up (10 s at most).
async fn read_until(stream: &mut tokio::net::TcpStream, needle: &str) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(needle) {
        assert!(Instant::now() < deadline, "no {needle:?} in {seen}");
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the event stream went quiet")
            .unwrap();
        assert!(n > 0, "the event stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}
