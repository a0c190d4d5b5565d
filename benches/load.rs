//! Load on the real binary: two `serve` replicas, N concurrent `/rollback` requests on N
//! different Deployments plus N duplicates of them, all approved at once. Checks that exactly
//! one rollback per target is active and that all of them are verified, and reports the wall
//! time against one rollback alone, the API requests the bot makes per rollback (from the
//! apiserver's `apiserver_request_total`), and each replica's peak RSS.
//!
//! Run it with `scripts/bench-load.sh [N]` (default 100), which starts Postgres and the
//! cluster and tears them down. Numbers are in docs/reliability.md.

#[path = "../tests/support/bot.rs"]
mod bot;
#[path = "../tests/support/cluster.rs"]
mod cluster;
use slack_sandbox::web_api as slack_standin;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bot::{Bot, CHANNEL, LEAD, REQUESTER, SECRET, TOKEN};
use cluster::TestCluster;
use futures::StreamExt;
use futures::future::join_all;
use rollback_bot::domain::State;
use slack_standin::SlackStandIn;
use slack_standin::requests::{self, button_value};
use sqlx::PgPool;

/// The (resource, verb) pairs only the bot uses during the run: the controllers and kwok
/// watch through informers started long before, and write status, which is not counted.
const BOT_CALLS: [(&str, &str); 7] = [
    ("deployments", "GET"),
    ("deployments", "LIST"),
    ("deployments", "PATCH"),
    ("deployments", "WATCH"),
    ("replicasets", "LIST"),
    ("pods", "LIST"),
    ("pods", "WATCH"),
];

fn config(
    dir: &std::path::Path,
    ports: bot::Ports,
    ns: &str,
    services: usize,
) -> std::path::PathBuf {
    let kubeconfig = std::env::var("ROLLBACK_BOT_TEST_KUBECONFIG").expect("kubeconfig");
    let mut text = format!(
        r#"
[server]
listen = "127.0.0.1:{}"
admin_listen = "127.0.0.1:{}"
[slack]
incident_channels = ["{CHANNEL}"]
lead_user_ids = ["{LEAD}"]
[timeouts]
verification = "120s"
[engine]
workers = 16
max_connections = 24
[clusters.local]
kubeconfig = "{kubeconfig}"
"#,
        ports.slack, ports.admin
    );
    for n in 0..services {
        text.push_str(&format!(
            "[services.svc-{n}]\ncluster = \"local\"\nnamespace = \"{ns}\"\n"
        ));
    }
    let path = dir.join(format!("load-{}.toml", ports.slack));
    std::fs::write(&path, text).expect("write config");
    path
}

/// The sum of `apiserver_request_total` per (resource, verb) for the bot's calls.
async fn api_requests(cluster: &TestCluster) -> BTreeMap<(String, String), f64> {
    let text = cluster.kubectl_ok(&["get", "--raw", "/metrics"]).await;
    let mut sums = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |name: &str| {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("")
                .to_owned()
        };
        let (resource, verb, subresource) =
            (label("resource"), label("verb"), label("subresource"));
        if !subresource.is_empty() || !BOT_CALLS.contains(&(resource.as_str(), verb.as_str())) {
            continue;
        }
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *sums.entry((resource, verb)).or_insert(0.0) += value;
    }
    sums
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn request(bot: &Bot, slack: &SlackStandIn, service: &str, n: u32) -> String {
    let body = requests::command_body(
        REQUESTER,
        CHANNEL,
        "incident-response",
        &format!("{service} INC-LOAD"),
        &slack.response_url(n),
    );
    bot.post_signed("/slack/commands", &body, SECRET).await.1
}

/// Approves every card that shows an Approve button, all at once; returns how many.
async fn approve_all(bots: &[Bot], slack: &SlackStandIn) -> usize {
    let cards: Vec<_> = slack
        .cards(CHANNEL)
        .into_iter()
        .filter_map(|c| button_value(&c.blocks, "rollback.approve").map(|v| (c.ts, v)))
        .collect();
    let clicks = cards.iter().enumerate().map(|(i, (ts, value))| {
        let click = bot::approve_click(slack, ts, value);
        let bot = &bots[i % bots.len()];
        async move {
            bot.post_signed("/slack/interactions", &click, SECRET)
                .await
                .0
        }
    });
    let statuses = join_all(clicks).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    cards.len()
}

async fn states(pool: &PgPool) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>("select state::text, count(*) from rollback group by state")
        .fetch_all(pool)
        .await
        .expect("count states")
        .into_iter()
        .collect()
}

async fn wait_until(pool: &PgPool, what: &str, done: impl Fn(&BTreeMap<String, i64>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let s = states(pool).await;
        if done(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("LOAD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let cluster = TestCluster::connect().await;
    let ns = cluster.namespace("load").await;
    let started = Instant::now();
    let fixtures = (0..=n).map(|i| {
        let (cluster, ns) = (cluster.clone(), ns.clone());
        async move {
            cluster
                .fixture(&ns, &format!("svc-{i}"), &["1.0.0", "1.1.0"])
                .await
        }
    });
    futures::stream::iter(fixtures)
        .buffer_unordered(20)
        .collect::<Vec<_>>()
        .await;
    eprintln!(
        "load: {} Deployments ready in {:?}",
        n + 1,
        started.elapsed()
    );

    let (db_url, pool) = bot::scratch_database("load").await;
    let slack = SlackStandIn::start(TOKEN).await;
    let dir = bot::tempdir("load");
    let bots: Vec<Bot> = (0..2)
        .map(|_| {
            let ports = bot::free_ports();
            let config = config(&dir, ports, &ns, n + 1);
            Bot::start(&config, &db_url, ports, &slack)
        })
        .collect();
    for b in &bots {
        b.wait_ready().await;
    }

    // One rollback alone (svc-0), the reference.
    let before_one = api_requests(&cluster).await;
    let t = Instant::now();
    request(&bots[0], &slack, "svc-0", 1).await;
    wait_until(&pool, "one rollback awaiting approval", |s| {
        s.get("awaiting_approval") == Some(&1)
    })
    .await;
    while slack
        .cards(CHANNEL)
        .iter()
        .all(|c| button_value(&c.blocks, "rollback.approve").is_none())
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    approve_all(&bots, &slack).await;
    wait_until(&pool, "one rollback verified", |s| {
        s.get("succeeded") == Some(&1)
    })
    .await;
    let one = t.elapsed();
    let after_one = api_requests(&cluster).await;

    // N requests plus N duplicates, all at once, spread over both replicas.
    let t = Instant::now();
    let requests = (1..=n).chain(1..=n).enumerate().map(|(i, s)| {
        let bot = &bots[i % 2];
        let slack = &slack;
        async move { request(bot, slack, &format!("svc-{s}"), 10 + i as u32).await }
    });
    let answers = join_all(requests).await;
    wait_until(&pool, "every request planned", |s| {
        s.get("awaiting_approval").copied().unwrap_or(0) == n as i64
    })
    .await;
    let total: i64 = states(&pool).await.values().sum();
    assert_eq!(total, n as i64 + 1, "exactly one rollback per target");
    // Under the burst many acks say the answer follows; it comes through response_url.
    let pending = answers
        .iter()
        .filter(|a| a.contains(rollback_bot::slack::handlers::PENDING_ACK))
        .count();
    let deadline = Instant::now() + Duration::from_secs(60);
    while slack.responses().len() < pending && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let texts: Vec<String> = answers
        .iter()
        .cloned()
        .chain(
            slack
                .responses()
                .iter()
                .filter_map(|r| r["text"].as_str().map(str::to_owned)),
        )
        .collect();
    let refused = texts.iter().filter(|t| t.contains("is already")).count();
    // Wait for every card, then approve them all at once.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = slack
            .cards(CHANNEL)
            .iter()
            .filter(|c| button_value(&c.blocks, "rollback.approve").is_some())
            .count();
        if ready == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} of {n} cards have buttons"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let approved = approve_all(&bots, &slack).await;
    assert_eq!(approved, n);
    wait_until(&pool, "every rollback verified", |s| {
        s.get("succeeded").copied().unwrap_or(0) == n as i64 + 1
    })
    .await;
    let all = t.elapsed();
    let after_all = api_requests(&cluster).await;
    assert_eq!(
        states(&pool).await.get(State::Succeeded.as_str()),
        Some(&(n as i64 + 1))
    );

    let per = |a: &BTreeMap<(String, String), f64>, b: &BTreeMap<(String, String), f64>, k: f64| {
        let mut out = BTreeMap::new();
        for (key, v) in b {
            let d = v - a.get(key).copied().unwrap_or(0.0);
            if d > 0.0 {
                out.insert(format!("{} {}", key.1, key.0), d / k);
            }
        }
        out
    };
    let one_calls = per(&before_one, &after_one, 1.0);
    let load_calls = per(&after_one, &after_all, n as f64);
    println!(
        "load: {n} rollbacks on {n} Deployments (+{n} duplicate requests), 2 replicas x 16 workers"
    );
    println!(
        "load: duplicate requests refused as already active: {refused} of {n} ({pending} of {} acks said the answer follows)",
        2 * n
    );
    println!(
        "load: one rollback alone, request -> verified: {:.2} s",
        one.as_secs_f64()
    );
    println!(
        "load: {n} concurrent, requests -> all verified: {:.2} s ({:.1}x one rollback for {n}x the work)",
        all.as_secs_f64(),
        all.as_secs_f64() / one.as_secs_f64()
    );
    println!(
        "load: apiserver requests by the bot, one rollback alone: {:.0} {one_calls:?}",
        one_calls.values().sum::<f64>()
    );
    println!(
        "load: apiserver requests by the bot per rollback under load: {:.1} {load_calls:?}",
        load_calls.values().sum::<f64>()
    );
    for (i, b) in bots.iter().enumerate() {
        println!("load: replica {i} peak RSS {:.1} MB", peak_rss_mb(b.pid()));
    }
}
