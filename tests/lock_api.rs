//! `GET /v1/locks/{cluster}/{namespace}/{deployment}` over HTTP on the real binary, reading
//! real Deployments through the executor's ServiceAccount: bearer token required, unlocked and
//! locked answers, and clear errors for unknown or unreadable targets.

mod support;
use slack_sandbox::web_api as slack_standin;
use support::{bot, cluster};

use bot::{Bot, free_ports, request, scratch_database, serve_command, tempdir, write_config};
use chrono::{DateTime, Utc};
use cluster::{CLUSTER, TestCluster};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use rollback_bot::clients::k8s::lock::Lock;
use serde_json::Value;
use slack_standin::SlackStandIn;

const TOKEN: &str = "lock-api-test-token-0123456789";

async fn get(bot: &Bot, path: &str, token: Option<&str>) -> (u16, Value, String) {
    let headers = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let (status, body) = request(bot.ports.slack, "GET", path, &headers, "")
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    (status, json, body)
}

fn start(
    dir: &std::path::Path,
    ns: &str,
    db_url: &str,
    slack: &SlackStandIn,
    token: Option<&str>,
) -> Bot {
    let ports = free_ports();
    let config = write_config(dir, ports, ns, "", "3s");
    let mut command = serve_command(&config, db_url, slack);
    if let Some(token) = token {
        command.env("ROLLBACK_BOT_LOCK_API_TOKEN", token);
    }
    Bot::spawn(command, ports)
}

#[tokio::test]
async fn pipelines_read_the_lock_with_the_token() {
    let cluster = TestCluster::connect().await;
    let ns = cluster.namespace("lock-api").await;
    cluster.fixture(&ns, "web", &["1.0.0"]).await;
    let hidden = cluster.unauthorised_namespace("lock-api-hidden").await;
    let (db_url, _pool) = scratch_database("lockapi").await;
    let slack = SlackStandIn::start(bot::TOKEN).await;
    let dir = tempdir("lock-api");
    let bot = start(&dir, &ns, &db_url, &slack, Some(TOKEN));
    bot.wait_ready().await;
    let path = format!("/v1/locks/{CLUSTER}/{ns}/web");

    // No token, a wrong one, another scheme: 401, and the answer never echoes a token.
    for token in [None, Some("wrong"), Some(&TOKEN[..TOKEN.len() - 1])] {
        let (status, _, body) = get(&bot, &path, token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert!(!body.contains(TOKEN), "{body}");
    }

    let (status, answer, body) = get(&bot, &path, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer["locked"], false, "{body}");
    assert_eq!(answer["deployment"], "web");

    // The bot's ServiceAccount locks it (as the lock step will after a rollback).
    let since = DateTime::parse_from_rfc3339("2026-11-22T17:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let lock = Lock {
        reason: "rollback #42 of web for incident INC-7".into(),
        rollback_id: Some(42),
        service: Some("web".into()),
        incident: Some("https://incidents.example/INC-7".into()),
        since: Some(since),
        ..Lock::default()
    };
    Api::<Deployment>::namespaced(cluster.executor(), &ns)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(lock.lock_patch()),
        )
        .await
        .expect("the bot may set the lock");
    let (status, answer, body) = get(&bot, &path, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer["locked"], true, "{body}");
    assert_eq!(answer["lock"]["rollback"], 42);
    assert_eq!(answer["lock"]["since"], "2026-11-22T17:00:00Z");
    assert_eq!(answer["lock"]["reason"], lock.reason);
    assert_eq!(
        answer["lock"]["incident_link"],
        "https://incidents.example/INC-7"
    );
    assert_eq!(
        answer["lock"]["unlock"],
        "/rollback unlock web <fix reference>"
    );

    let not_found = [
        format!("/v1/locks/{CLUSTER}/{ns}/nope"),
        format!("/v1/locks/elsewhere/{ns}/web"),
    ];
    for path in &not_found {
        let (status, answer, body) = get(&bot, path, Some(TOKEN)).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(answer["error"].is_string(), "{body}");
    }
    let (status, _, body) = get(
        &bot,
        &format!("/v1/locks/{CLUSTER}/Bad_NS/web"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A namespace the executor is not authorised in: said so, nothing else leaks.
    let (status, answer, body) = get(
        &bot,
        &format!("/v1/locks/{CLUSTER}/{hidden}/web"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        answer["error"].as_str().unwrap().contains("may not read"),
        "{body}"
    );
    let (exit, _) = bot.terminate();
    assert!(exit.success());

    // Without a token configured the endpoint does not exist.
    let closed = start(&dir, &ns, &db_url, &slack, None);
    closed.wait_ready().await;
    let (status, _, body) = get(&closed, &path, Some(TOKEN)).await;
    assert_eq!(status, 404, "{body}");
    let (exit, _) = closed.terminate();
    assert!(exit.success());
}
