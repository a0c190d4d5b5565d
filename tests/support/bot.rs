//! The real `rollback-bot` binary as tests run it: a scratch database migrated by the binary
//! itself, a config file for the local cluster, `serve` processes that can be started with
//! failpoints, killed with SIGKILL or stopped with SIGTERM, and signed Slack requests to them.
//!
//! Used as `support::bot` next to `cluster` and
//! `slack_standin`.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use rollback_bot::db::rollbacks::{self as repo, Rollback};
use rollback_bot::domain::State;
use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cluster::{self, TestCluster};
use super::slack_standin::SlackStandIn;
use super::slack_standin::requests::{self, button_value};

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

/// Ports handed out, from below the kernel's ephemeral range (32768–60999 on Linux): a port
/// the kernel picks for `:0` is in that range, and on a busy test machine an outgoing
/// connection can take it as its source port between this check and the bot's own bind
/// ("Address already in use", a bot that never becomes ready). Below it only listeners
/// live, and the counter keeps this process's tests apart.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port nothing listens on now, for a bot to bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(PORTS.end - PORTS.start);
    // Test binaries run one after the other; an offset per process still keeps two that
    // overlap (a stray one) from starting at the same port.
    let offset = std::process::id() % span;
    for _ in 0..span {
        let n = (offset + NEXT.fetch_add(1, Ordering::Relaxed) % span) % span;
        let port = PORTS.start + u16::try_from(n).expect("below the span");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORTS:?}");
}

/// The Slack-facing and the admin port of one bot.
#[derive(Clone, Copy)]
pub struct Ports {
    pub slack: u16,
    pub admin: u16,
}

pub fn free_ports() -> Ports {
    Ports {
        slack: free_port(),
        admin: free_port(),
    }
}

/// A configuration for one bot that knows service `web` in `namespace`; `server` adds keys
/// to its `[server]` table; `lease` is the engine's lease.
pub fn write_config(
    dir: &Path,
    ports: Ports,
    namespace: &str,
    server: &str,
    lease: &str,
) -> PathBuf {
    write_config_with(dir, ports, namespace, server, lease, "")
}

/// [`write_config`] with `extra` appended inside the `[clusters.local]` table, which comes
/// last: keys such as `prometheus_url`, then further tables such as `[services.web.recovery]`.
pub fn write_config_with(
    dir: &Path,
    ports: Ports,
    namespace: &str,
    server: &str,
    lease: &str,
    extra: &str,
) -> PathBuf {
    let kubeconfig = std::env::var("ROLLBACK_BOT_TEST_KUBECONFIG")
        .expect("ROLLBACK_BOT_TEST_KUBECONFIG is not set: run the tests with `make test`");
    let Ports { slack, admin } = ports;
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{slack}"
admin_listen = "127.0.0.1:{admin}"
{server}
[slack]
incident_channels = ["{CHANNEL}"]
lead_user_ids = ["{LEAD}"]
notifier_lease = "2s"
[timeouts]
verification = "60s"
[engine]
workers = 2
lease = "{lease}"
shutdown_grace = "1s"
[services.web]
cluster = "local"
namespace = "{namespace}"
[clusters.local]
kubeconfig = "{kubeconfig}"
{extra}
"#
    );
    let path = dir.join(format!("rollback-bot-{slack}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// `rollback-bot serve` with everything it needs in its environment.
pub fn serve_command(config: &Path, database_url: &str, slack: &SlackStandIn) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("DATABASE_URL", database_url)
        .env("SLACK_API_URL", slack.api_url())
        .env("SLACK_BOT_TOKEN", TOKEN)
        .env("SLACK_SIGNING_SECRET", SECRET)
        .env("RUST_LOG", "info,rollback_bot=debug")
        .stdout(Stdio::null());
    command
}

/// One `serve` process.
pub struct Bot {
    child: Child,
    pub ports: Ports,
}

impl Bot {
    pub fn start(config: &Path, database_url: &str, ports: Ports, slack: &SlackStandIn) -> Bot {
        Bot::spawn(serve_command(config, database_url, slack), ports)
    }

    pub fn spawn(mut command: Command, ports: Ports) -> Bot {
        let child = command
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rollback-bot serve");
        Bot { child, ports }
    }

    /// GET on the Slack-facing listener.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.ports.slack, path).await
    }

    /// GET on the admin listener.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.ports.admin, path).await
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
        request(self.ports.slack, "POST", path, &headers, body).await
    }

    pub async fn wait_ready(&self) {
        // Generous: the crash suite starts dozens of processes at once on two cores.
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if let Ok((200, _)) =
                tokio::time::timeout(Duration::from_secs(2), try_get(self.ports.admin, "/readyz"))
                    .await
                    .unwrap_or(Err(std::io::ErrorKind::TimedOut.into()))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("rollback-bot never became ready");
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

/// The lead's click on Approve (button value `value`) on the card `ts`.
pub fn approve_click(slack: &SlackStandIn, ts: &str, value: &str) -> String {
    requests::click_body(
        LEAD,
        CHANNEL,
        ts,
        "rollback.approve",
        value,
        &slack.response_url(2),
    )
}

/// One rollback scenario for the real binary: Deployment `web` at revisions 1.0.0, 1.1.0,
/// 1.2.0 in a namespace of its own, a scratch database, a Slack stand-in; `/rollback web`
/// rolls back to 1.1.0.
pub struct Scenario {
    pub cluster: TestCluster,
    pub ns: String,
    pub generation_before: i64,
    pub db_url: String,
    pub pool: PgPool,
    pub slack: SlackStandIn,
    pub dir: TempDir,
}

/// Calls `approve` (until it says it approved) while `doomed` runs, until `doomed` aborts at
/// `failpoint` (within `limit`, as `kill -9` would end it), and checks it died by that abort.
/// Returns whether it approved.
pub async fn approve_until_abort(
    doomed: &mut Bot,
    failpoint: &str,
    limit: Duration,
    mut approve: impl AsyncFnMut(&Bot) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    let mut approved = false;
    while doomed.exited().is_none() {
        assert!(
            Instant::now() < deadline,
            "serve never reached failpoint {failpoint}"
        );
        if !approved {
            approved = approve(doomed).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = doomed.wait_exit(Duration::from_secs(1)).await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(6),
        "serve must die by abort at {failpoint}, got {status}"
    );
    approved
}

impl Scenario {
    pub async fn new(prefix: &str) -> Scenario {
        let cluster = TestCluster::connect().await;
        let ns = cluster.namespace(prefix).await;
        let before = cluster
            .fixture(&ns, "web", &["1.0.0", "1.1.0", "1.2.0"])
            .await;
        let (db_url, pool) = scratch_database("scenario").await;
        Scenario {
            cluster,
            ns,
            generation_before: before.metadata.generation.expect("a generation"),
            db_url,
            pool,
            slack: SlackStandIn::start(TOKEN).await,
            dir: tempdir(prefix),
        }
    }

    /// Gives the Deployment a progress deadline long enough to outlast an injected fault,
    /// so that only the bot, not the rollout, is under test.
    pub async fn set_progress_deadline(&mut self, seconds: i32) {
        let patched = self
            .cluster
            .deployments(&self.ns)
            .patch(
                "web",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"progressDeadlineSeconds": seconds}})),
            )
            .await
            .expect("set the progress deadline");
        self.generation_before = patched.metadata.generation.expect("a generation");
    }

    /// Sets the deployed-by annotation (`rollback-bot.io/deployed-by`) on the ReplicaSet of
    /// revision 3 (1.2.0, the faulty one), as a pipeline's annotation on the Deployment would
    /// have been copied there.
    pub async fn set_deployer(&self, value: &str) {
        let replica_sets: kube::Api<ReplicaSet> =
            kube::Api::namespaced(self.cluster.admin(), &self.ns);
        let all = replica_sets
            .list(&kube::api::ListParams::default().labels("app=web"))
            .await
            .expect("list ReplicaSets");
        let faulty = all
            .items
            .iter()
            .find(|rs| {
                rs.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                    .map(String::as_str)
                    == Some("3")
            })
            .expect("the ReplicaSet of revision 3");
        let annotation =
            json!({ "metadata": { "annotations": { "rollback-bot.io/deployed-by": value } } });
        replica_sets
            .patch(
                faulty.metadata.name.as_deref().unwrap(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(annotation),
            )
            .await
            .expect("annotate the faulty ReplicaSet");
    }

    /// Starts a replica on free ports (2 s leases: takeovers are quick), with extra
    /// environment variables such as `ROLLBACK_BOT_FAILPOINTS`.
    pub fn start(&self, env: &[(&str, &str)]) -> Bot {
        self.start_with(env, "")
    }

    /// [`Scenario::start`] with `extra` configuration ([`write_config_with`]).
    pub fn start_with(&self, env: &[(&str, &str)], extra: &str) -> Bot {
        let ports = free_ports();
        let config = write_config_with(&self.dir, ports, &self.ns, "", "2s", extra);
        let mut command = serve_command(&config, &self.db_url, &self.slack);
        command.envs(env.iter().copied());
        Bot::spawn(command, ports)
    }

    /// Starts a replica with `env` (arming `failpoint`, `ROLLBACK_BOT_FAILPOINTS`) and `extra`
    /// configuration, requests `/rollback web INC-7`, approves when the card asks, and waits
    /// until the process aborts at the failpoint (as `kill -9` would). Returns the rollback's
    /// id and whether the approval went in.
    pub async fn run_until_abort(
        &self,
        failpoint: &str,
        env: &[(&str, &str)],
        extra: &str,
    ) -> (i64, bool) {
        let mut env = env.to_vec();
        env.push((rollback_bot::support::failpoint::ENV, failpoint));
        let mut doomed = self.start_with(&env, extra);
        doomed.wait_ready().await;
        let id = self.request(&doomed).await;
        let approved = approve_until_abort(
            &mut doomed,
            failpoint,
            Duration::from_secs(90),
            async |bot: &Bot| self.approve_when_asked(bot).await,
        )
        .await;
        (id, approved)
    }

    /// `/rollback web INC-7` through `bot`; returns the rollback's id.
    pub async fn request(&self, bot: &Bot) -> i64 {
        let command = requests::command_body(
            REQUESTER,
            CHANNEL,
            "incident-response",
            "web INC-7",
            &self.slack.response_url(1),
        );
        let (status, ack) = bot.post_signed("/slack/commands", &command, SECRET).await;
        assert_eq!(status, 200, "{ack}");
        first_rollback(&self.pool).await
    }

    /// `/rollback web INC-7` through `bot`, approved by the lead as soon as the card asks;
    /// returns the rollback's id once the approval is recorded.
    pub async fn request_approved(&self, bot: &Bot) -> i64 {
        let id = self.request(bot).await;
        self.until_state(id, &[State::AwaitingApproval]).await;
        while !self.approve_when_asked(bot).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.until_state(id, &[State::Approved, State::Executing, State::Verifying])
            .await;
        id
    }

    /// Clicks Approve as the lead once the card shows the button and its first thread reply
    /// (so the approval's reply is the thread's second). Returns whether it clicked.
    pub async fn approve_when_asked(&self, bot: &Bot) -> bool {
        let Some(card) = self.slack.cards(CHANNEL).first().cloned() else {
            return false;
        };
        let Some(value) = button_value(&card.blocks, "rollback.approve") else {
            return false;
        };
        if self.slack.thread(&card.ts).is_empty() {
            return false;
        }
        let click = approve_click(&self.slack, &card.ts, &value);
        // The process may die (a failpoint) while the click is on its way: click again.
        matches!(
            bot.try_post_signed("/slack/interactions", &click, SECRET)
                .await,
            Ok((200, _))
        )
    }

    /// Polls rollback `id`, approving through `bot` when asked, until it is terminal.
    /// Database errors (a restarting server) are retried.
    pub async fn until_terminal(&self, bot: &Bot, id: i64, mut approved: bool) -> Rollback {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = repo::get(&self.pool, id).await {
                // Terminal with nothing left to do: a failure is escalated first.
                if r.state.is_terminal() && r.state.step().is_none() {
                    return r;
                }
                if !approved && r.state == State::AwaitingApproval {
                    approved = self.approve_when_asked(bot).await;
                }
                assert!(
                    Instant::now() < deadline,
                    "rollback #{id} stuck in {}: {:?}",
                    r.state,
                    r.last_error
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until rollback `id` is in one of `states` (database errors are retried).
    pub async fn until_state(&self, id: i64, states: &[State]) -> Rollback {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = repo::get(&self.pool, id).await {
                if states.contains(&r.state) {
                    return r;
                }
                assert!(
                    Instant::now() < deadline && !r.state.is_terminal(),
                    "rollback #{id} is {} ({:?}), waited for {states:?}",
                    r.state,
                    r.last_error
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The promises that hold whatever happened on the way: the rollback succeeded once,
    /// the Deployment got exactly one new revision (to 1.1.0), the audit trail records no
    /// step twice, and the channel has one card that ends showing the success.
    pub async fn assert_rolled_back_once(&self, done: &Rollback, context: &str) {
        assert_eq!(
            done.state,
            State::Succeeded,
            "{context}: {:?}",
            done.last_error
        );
        let after = self.cluster.deployments(&self.ns).get("web").await.unwrap();
        // A Deployment's generation also counts annotation changes: the rollback patch sets
        // the deploy lock itself, and the lock step finds it set, so one write in all.
        assert_eq!(
            after.metadata.generation.unwrap(),
            self.generation_before + 1,
            "{context}: one rollback patch, which also locked the Deployment"
        );
        let annotations = after.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations
                .get("rollback-bot.io/lock-rollback")
                .map(String::as_str),
            Some(done.id.to_string().as_str()),
            "{context}: locked by this rollback"
        );
        assert_eq!(
            annotations
                .get("deployment.kubernetes.io/revision")
                .map(String::as_str),
            Some("4"),
            "{context}: one new revision"
        );
        assert_eq!(
            after.spec.unwrap().template.spec.unwrap().containers[0].image,
            Some(cluster::image("web", "1.1.0"))
        );

        let trail = repo::audit_trail(&self.pool, done.id).await.unwrap();
        let mut seen = HashMap::new();
        for a in trail.iter().filter(|a| a.outcome == "applied") {
            *seen
                .entry((a.action.clone(), a.from_state, a.to_state))
                .or_insert(0) += 1;
        }
        assert!(
            seen.values().all(|n| *n == 1),
            "{context}: a step was recorded twice: {seen:?}"
        );
        assert_eq!(
            trail.iter().filter(|a| a.to_state.is_terminal()).count(),
            1,
            "{context}: one terminal transition"
        );

        self.assert_shown_once(done, &trail, context).await;
    }

    /// Slack shows the rollback exactly once: one card post, ending with the result, and
    /// every audit row that has a thread line in the thread exactly once.
    async fn assert_shown_once(&self, done: &Rollback, trail: &[repo::AuditRow], context: &str) {
        let id = done.id;
        let last_row = trail.last().expect("an audit trail").id;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let caught_up: Option<bool> = sqlx::query_scalar(
                "select rendered_version >= $2 and thread_cursor >= $3 and post_in_flight is null
                 from slack_card where rollback_id = $1",
            )
            .bind(id)
            .bind(done.version)
            .bind(last_row)
            .fetch_optional(&self.pool)
            .await
            .unwrap_or(None);
            if caught_up == Some(true) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{context}: the card never caught up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let card_posts = self
            .slack
            .calls_to("chat.postMessage")
            .into_iter()
            .filter(|c| c.status == 200 && c.error.is_none() && c.body["thread_ts"].is_null())
            // DMs (to the deployer) are top-level posts too, in another channel.
            .filter(|c| c.body["channel"] == CHANNEL)
            .count();
        assert_eq!(card_posts, 1, "{context}: one card post");
        let cards = self.slack.cards(CHANNEL);
        assert_eq!(cards.len(), 1, "{context}: one card");
        assert!(
            serde_json::to_string(&cards[0].blocks)
                .unwrap()
                .contains("Rolled back and verified"),
            "{context}: the card shows the result"
        );
        // Each thread line is one audit row's block (`rb<id>.a<row>`).
        let thread = self.slack.thread(&cards[0].ts);
        let mut shown: Vec<String> = thread
            .iter()
            .flat_map(|m| m.blocks.iter())
            .filter_map(|b| b["block_id"].as_str().map(str::to_owned))
            .collect();
        shown.sort();
        let mut expected: Vec<String> = trail
            .iter()
            .filter(|a| rollback_bot::slack::render::thread_line(a).is_some())
            .map(|a| format!("rb{id}.a{}", a.id))
            .collect();
        expected.sort();
        assert_eq!(shown, expected, "{context}: every thread line exactly once");
        assert!(
            self.slack.violations().is_empty(),
            "{context}: {:?}",
            self.slack.violations()
        );
    }
}
