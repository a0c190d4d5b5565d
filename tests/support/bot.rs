//! The real `rollback-bot` binary as tests run it: a scratch database migrated by the binary
//! itself, a config file for the local cluster, `serve` processes that can be started with
//! failpoints, killed with SIGKILL or stopped with SIGTERM, and signed Slack requests to them.
//!
//! Include it with `#[path = "support/bot.rs"] mod bot;` next to `cluster` and
//! `slack_standin`.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rollback_bot::rollback::repo::{self, Rollback};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::slack_standin::SlackStandIn;
use super::slack_standin::requests;

pub const BIN: &str = env!("CARGO_BIN_EXE_rollback-bot");
pub const LEAD: &str = "U0LEAD0001";
pub const REQUESTER: &str = "U0REQUESTER";
pub const SECRET: &str = "binary-test-signing-secret";
pub const TOKEN: &str = "xoxb-binary-test";
pub const CHANNEL: &str = "C0INCIDENT1";

/// A scratch database of its own on the test server, migrated by the binary itself.
pub async fn scratch_database(name: &str) -> (String, PgPool) {
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run the tests with `make test`");
    let admin = PgPool::connect(&url)
        .await
        .expect("connect to DATABASE_URL");
    let db = format!("{name}_{:08x}", rand::random::<u32>());
    sqlx::query(&format!("create database {db}"))
        .execute(&admin)
        .await
        .expect("create scratch database");
    let db_url = format!("{}/{db}", url.rsplit_once('/').expect("url with a path").0);
    let pool = PgPool::connect(&db_url).await.expect("connect scratch db");
    (db_url, pool)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A config for `serve` on `port` that knows service `web` in `namespace`; `extra` is
/// appended (more TOML sections).
pub fn write_config(dir: &Path, port: u16, namespace: &str, lease: &str) -> PathBuf {
    let kubeconfig = std::env::var("ROLLBACK_BOT_TEST_KUBECONFIG")
        .expect("ROLLBACK_BOT_TEST_KUBECONFIG is not set: run the tests with `make test`");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[slack]
incident_channels = ["incident-response"]
lead_user_ids = ["{LEAD}"]
[timeouts]
verification = "60s"
[engine]
workers = 2
lease = "{lease}"
shutdown_grace = "1s"
[clusters.local]
kubeconfig = "{kubeconfig}"
[services.web]
cluster = "local"
namespace = "{namespace}"
"#
    );
    let path = dir.join(format!("rollback-bot-{port}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// One `serve` process.
pub struct Bot {
    child: Child,
    pub port: u16,
}

impl Bot {
    pub fn start(config: &Path, database_url: &str, port: u16, slack: &SlackStandIn) -> Bot {
        Self::start_with(config, database_url, port, slack, &[])
    }

    /// Starts `serve` with extra environment variables (e.g. `ROLLBACK_BOT_FAILPOINTS`).
    pub fn start_with(
        config: &Path,
        database_url: &str,
        port: u16,
        slack: &SlackStandIn,
        env: &[(&str, &str)],
    ) -> Bot {
        let mut command = Command::new(BIN);
        command
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env("DATABASE_URL", database_url)
            .env("SLACK_API_URL", slack.api_url())
            .env("SLACK_BOT_TOKEN", TOKEN)
            .env("SLACK_SIGNING_SECRET", SECRET)
            .env("RUST_LOG", "info,rollback_bot=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start rollback-bot serve");
        Bot { child, port }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path).await
    }

    /// POSTs a form body to `path`, signed as Slack signs it (or with a bad signature).
    pub async fn post_signed(&self, path: &str, body: &str, secret: &str) -> (u16, String) {
        self.try_post_signed(path, body, secret)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// [`Bot::post_signed`] to a process that may be dying.
    pub async fn try_post_signed(
        &self,
        path: &str,
        body: &str,
        secret: &str,
    ) -> std::io::Result<(u16, String)> {
        let ts = requests::now();
        let headers = format!(
            "Content-Type: application/x-www-form-urlencoded\r\n\
             X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {}\r\n",
            requests::signature(secret, &ts, body)
        );
        request(self.port, "POST", path, &headers, body).await
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok((200, _)) =
                tokio::time::timeout(Duration::from_secs(2), try_get(self.port, "/readyz"))
                    .await
                    .unwrap_or(Err(std::io::ErrorKind::TimedOut.into()))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("rollback-bot never became ready");
    }

    /// Whether the process has exited (e.g. aborted at a failpoint).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("poll the bot")
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the bot did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: the process dies on the spot, as a node failure would kill it.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status and how long the process took to exit.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Duration) {
        let sent = Instant::now();
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success());
        let deadline = sent + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the bot") {
                return (status, sent.elapsed());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("rollback-bot did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn try_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    request(port, "GET", path, "", "").await
}

/// A minimal HTTP/1.1 client: one request per connection.
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    try_get(port, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Polls rollback `id` until `done` holds (90 s at most).
pub async fn wait_for(pool: &PgPool, id: i64, done: impl Fn(&Rollback) -> bool) -> Rollback {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = repo::get(pool, id).await.expect("read rollback");
        if done(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "rollback #{id} stuck in {} ({:?})",
            r.state,
            r.last_error
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the first rollback row the bot recorded (an ack may precede the row).
pub async fn first_rollback(pool: &PgPool) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let recorded: Option<i64> = sqlx::query_scalar("select min(id) from rollback")
            .fetch_one(pool)
            .await
            .expect("read rollbacks");
        if let Some(id) = recorded {
            return id;
        }
        assert!(Instant::now() < deadline, "the command recorded nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A scratch directory removed when the test ends, pass or fail.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempdir(prefix: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("rbt-{prefix}-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    TempDir(dir)
}
