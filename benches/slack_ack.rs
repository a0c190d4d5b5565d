//! Slash-command ack latency (`scripts/bench-slack.sh`): the real axum handlers on a bound
//! TCP port, a real PostgreSQL, 200 concurrent signed `/rollback` requests per round, each
//! over its own (already open) connection, all released at once. Reports p50 / p99 / max
//! from sending the request to reading the whole response. Goal: p99 < 50 ms on the project machine (2 cores).
//!
//! Scenarios: `help` (signature check and parsing only), a rollback request (one insert
//! transaction with its audit row), and `status` (the read path, eleven small queries).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rollback_bot::clients::k8s::Clusters;
use rollback_bot::config::{Config, Secrets};
use rollback_bot::slack::{handlers, signature};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "bench-secret";

/// Concurrent requests per round, and rounds: `scripts/bench-slack.sh --smoke` (in
/// `make test`) sends a few, and times nothing.
fn load() -> (usize, usize) {
    if std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1") {
        (10, 1)
    } else {
        (200, 5)
    }
}

fn body(text: &str) -> String {
    serde_urlencoded::to_string([
        ("team_id", "T0001"),
        ("channel_id", "C0INCIDENT1"),
        ("channel_name", "incident-response"),
        ("user_id", "U0REQUEST01"),
        ("command", "/rollback"),
        ("text", text),
        ("response_url", "http://127.0.0.1:9/response"),
        ("trigger_id", "1.2.3"),
    ])
    .unwrap()
}

/// Connects, waits for `go`, then sends one signed command and reads the whole response.
/// Only the request → response time is measured: Slack keeps its connections open, and a
/// burst of 200 simultaneous TCP handshakes measures the kernel's SYN handling instead.
async fn send(addr: std::net::SocketAddr, body: String, go: Arc<tokio::sync::Barrier>) -> Duration {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    go.wait().await;
    let ts = chrono::Utc::now().timestamp().to_string();
    let sig = signature::sign(SECRET, &ts, body.as_bytes());
    let request = format!(
        "POST /slack/commands HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {sig}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    elapsed
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests, {} concurrent)",
        ms(at(0.50)),
        ms(at(0.99)),
        ms(*samples.last().unwrap()),
        samples.len(),
        load().0
    );
}

async fn scenario(
    addr: std::net::SocketAddr,
    name: &str,
    text: impl Fn(usize) -> String,
) -> Vec<Duration> {
    let (concurrency, rounds) = load();
    let mut samples = Vec::new();
    for round in 0..rounds {
        let go = Arc::new(tokio::sync::Barrier::new(concurrency));
        let tasks: Vec<_> = (0..concurrency)
            .map(|i| {
                let body = body(&text(round * concurrency + i));
                tokio::spawn(send(addr, body, go.clone()))
            })
            .collect();
        for t in tasks {
            samples.push(t.await.unwrap());
        }
    }
    report(name, samples.clone());
    samples
}

#[tokio::main]
async fn main() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/bench-slack.sh sets it)");
    let admin = rollback_bot::db::connect(&url, 2).await.unwrap();
    let db = format!("slack_bench_{}", std::process::id());
    sqlx::query(&format!("create database {db}"))
        .execute(&admin)
        .await
        .unwrap();
    let base = url.rsplit_once('/').unwrap().0;
    let mut config_text = String::from(
        "[slack]\nincident_channels = [\"C0INCIDENT1\"]\nlead_user_ids = [\"U0LEAD00001\"]\n[clusters.bench]\n",
    );
    let (concurrency, rounds) = load();
    for n in 0..concurrency * rounds {
        config_text.push_str(&format!("[services.svc-{n}]\ncluster = \"bench\"\n"));
    }
    let config = Config::parse(&config_text, "bench").unwrap();
    let pool = rollback_bot::db::connect(&format!("{base}/{db}"), config.engine.max_connections)
        .await
        .unwrap();
    rollback_bot::db::migrate(&pool).await.unwrap();
    let config = Arc::new(config);
    // Through serve's composition root; no clusters, so the catalogue is the configured one.
    let state = rollback_bot::startup::state(
        pool.clone(),
        config,
        Arc::new(Secrets {
            slack_signing_secret: Some(SECRET.into()),
            ..Default::default()
        }),
        Clusters::default(),
        None,
        &tokio_util::sync::CancellationToken::new(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = handlers::routes().with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Warm-up: connections in the pool, code paths.
    for _ in 0..20 {
        send(addr, body("help"), Arc::new(tokio::sync::Barrier::new(1))).await;
    }
    scenario(addr, "/rollback help (signature + parse)", |_| {
        "help".into()
    })
    .await;
    scenario(addr, "/rollback <service> (signature + insert)", |n| {
        format!("svc-{n} INC-{n}")
    })
    .await;
    scenario(addr, "/rollback status (signature + reads)", |_| {
        "status".into()
    })
    .await;

    pool.close().await;
    // Background tasks of the handlers (answers through response_url) may still hold a
    // connection of their own: the scratch database goes regardless.
    sqlx::query(&format!("drop database {db} with (force)"))
        .execute(&admin)
        .await
        .unwrap();
}
