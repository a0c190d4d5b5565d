//! The real `rollback-bot` binary against the local Postgres and Kubernetes cluster: probes,
//! metrics, `check-config`, a clean SIGTERM while a rollback is in flight, which the next
//! start resumes, and a crash (abort, like kill -9) at each Slack notifier failpoint.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/slack_standin.rs"]
mod slack_standin;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster::TestCluster;
use rollback_bot::k8s::RolloutStatus;
use rollback_bot::rollback::State;
use rollback_bot::rollback::repo::{self, Rollback};
use slack_standin::SlackStandIn;
use slack_standin::requests::{self, button_value};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_rollback-bot");
const LEAD: &str = "U0LEAD0001";
const REQUESTER: &str = "U0REQUESTER";
const SECRET: &str = "binary-test-signing-secret";
const TOKEN: &str = "xoxb-binary-test";
const CHANNEL: &str = "C0INCIDENT1";

/// A scratch database of its own on the test server, migrated by the binary itself.
async fn scratch_database(name: &str) -> (String, PgPool) {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn write_config(dir: &Path, port: u16, namespace: &str) -> PathBuf {
    let kubeconfig = std::env::var("ROLLBACK_BOT_TEST_KUBECONFIG")
        .expect("ROLLBACK_BOT_TEST_KUBECONFIG is not set: run the tests with `make test`");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[slack]
incident_channels = ["incident-response"]
lead_user_ids = ["{LEAD}"]
notifier_lease = "2s"
[timeouts]
verification = "60s"
[engine]
workers = 2
lease = "3s"
shutdown_grace = "1s"
[clusters.local]
kubeconfig = "{kubeconfig}"
[services.web]
cluster = "local"
namespace = "{namespace}"
"#
    );
    let path = dir.join("rollback-bot.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

struct Bot {
    child: Child,
    port: u16,
}

impl Bot {
    fn start(config: &Path, database_url: &str, port: u16, slack: &SlackStandIn) -> Bot {
        Bot::start_with_failpoints(config, database_url, port, slack, "")
    }

    /// Starts `serve` with `ROLLBACK_BOT_FAILPOINTS=failpoints` (src/failpoint.rs).
    fn start_with_failpoints(
        config: &Path,
        database_url: &str,
        port: u16,
        slack: &SlackStandIn,
        failpoints: &str,
    ) -> Bot {
        let child = Command::new(BIN)
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env("ROLLBACK_BOT_FAILPOINTS", failpoints)
            .env("DATABASE_URL", database_url)
            .env("SLACK_API_URL", slack.api_url())
            .env("SLACK_BOT_TOKEN", TOKEN)
            .env("SLACK_SIGNING_SECRET", SECRET)
            .env("RUST_LOG", "info,rollback_bot=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rollback-bot serve");
        Bot { child, port }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path).await
    }

    /// POSTs a form body to `path`, signed as Slack signs it (or with a bad signature).
    async fn post_signed(&self, path: &str, body: &str, secret: &str) -> (u16, String) {
        self.try_post_signed(path, body, secret)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    async fn try_post_signed(
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

    async fn wait_ready(&self) {
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

    /// SIGTERM, then the exit status and how long the process took to exit.
    fn terminate(mut self) -> (std::process::ExitStatus, Duration) {
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

async fn try_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    request(port, "GET", path, "", "").await
}

/// A minimal HTTP/1.1 client: one request per connection.
async fn request(
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

async fn http_get(port: u16, path: &str) -> (u16, String) {
    try_get(port, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

async fn wait_for(pool: &PgPool, id: i64, done: impl Fn(&Rollback) -> bool) -> Rollback {
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

#[tokio::test]
async fn serve_answers_probes_and_resumes_an_in_flight_rollback_after_sigterm() {
    let cluster = TestCluster::connect().await;
    let ns = cluster.namespace("bin").await;
    // Revisions: 1 = 1.0.0, 2 = 1.1.0, 3 = crashloop (stuck), 4 = 1.2.0 (running). Rolling
    // back to 3 keeps verification busy until the progress deadline: a rollback in flight.
    cluster.fixture(&ns, "web", &["1.0.0", "1.1.0"]).await;
    cluster.set_image(&ns, "web", "crashloop").await;
    assert!(matches!(
        cluster.wait_rollout(&ns, "web").await,
        RolloutStatus::Failed(_)
    ));
    cluster.set_image(&ns, "web", "1.2.0").await;
    assert!(matches!(
        cluster.wait_rollout(&ns, "web").await,
        RolloutStatus::Done(_)
    ));

    let (db_url, pool) = scratch_database("serve").await;
    let slack = SlackStandIn::start(TOKEN).await;
    let dir = tempdir("serve");
    let port = free_port();
    let config = write_config(&dir, port, &ns);
    let first = Bot::start(&config, &db_url, port, &slack);
    first.wait_ready().await;
    assert_eq!(first.get("/healthz").await, (200, "ok\n".into()));

    // Slack's signature is required: a forged request is refused and records nothing.
    let command = requests::command_body(
        REQUESTER,
        CHANNEL,
        "incident-response",
        "web 3 INC-42",
        &slack.response_url(1),
    );
    let (status, _) = first
        .post_signed("/slack/commands", &command, "not-the-secret")
        .await;
    assert_eq!(status, 401);
    let (status, ack) = first.post_signed("/slack/commands", &command, SECRET).await;
    assert_eq!(status, 200, "{ack}");
    assert!(ack.contains("ephemeral"), "{ack}");
    // The ack may come before the request is recorded (the ack budget): wait for the row.
    let deadline = Instant::now() + Duration::from_secs(10);
    let id: i64 = loop {
        let recorded: Option<i64> = sqlx::query_scalar("select id from rollback")
            .fetch_optional(&pool)
            .await
            .expect("read rollbacks");
        if let Some(id) = recorded {
            break id;
        }
        assert!(Instant::now() < deadline, "the command recorded nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let planned = wait_for(&pool, id, |r| r.state != State::Requested).await;
    assert_eq!(
        planned.state,
        State::AwaitingApproval,
        "{:?}",
        planned.last_error
    );
    let card = slack
        .wait_for("the approval card", Duration::from_secs(30), |s| {
            s.cards(CHANNEL).first().cloned()
        })
        .await;
    let approve = button_value(&card.blocks, "rollback.approve").expect("an Approve button");
    let click = approve_click(&slack, &card.ts, &approve);
    let (status, _) = first
        .post_signed("/slack/interactions", &click, SECRET)
        .await;
    assert_eq!(status, 200);
    wait_for(&pool, id, |r| r.state == State::Verifying).await;

    let (status, metrics) = first.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("rollback_bot_http_requests_total{route=\"/healthz\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("rollback_bot_step_duration_seconds_count{step=\"execute\"} 1"));

    let (exit, took) = first.terminate();
    assert!(exit.success(), "exit status {exit}");
    assert!(took < Duration::from_secs(5), "took {took:?} to exit");
    let parked = repo::get(&pool, id).await.unwrap();
    assert_eq!(parked.state, State::Verifying, "still in flight");
    assert_eq!(parked.lease_owner, None, "the lease was handed back");

    let second = Bot::start(&config, &db_url, port, &slack);
    let done = wait_for(&pool, id, |r| r.state.is_terminal()).await;
    assert_eq!(
        done.state,
        State::Failed,
        "the crash-looping target must fail"
    );
    let evidence = done.steps["verify"].to_string();
    assert!(evidence.contains("CrashLoopBackOff"), "{evidence}");

    let trail = repo::audit_trail(&pool, id).await.unwrap();
    let actor_of = |action: &str| {
        trail
            .iter()
            .find(|a| a.action == action)
            .map(|a| a.actor.clone())
            .unwrap_or_else(|| panic!("no {action} in the audit trail"))
    };
    assert_ne!(
        actor_of("start_execution"),
        actor_of("step_failed"),
        "the second process resumed the rollback"
    );
    let executions = trail
        .iter()
        .filter(|a| a.from_state == State::Executing)
        .count();
    assert_eq!(executions, 1, "the rollback was executed once");
    // The card, re-rendered from the row by whichever process was running, ends failed.
    slack
        .wait_for(
            "the card to show the failure",
            Duration::from_secs(30),
            |s| {
                let card = s.cards(CHANNEL).first()?.blocks.clone();
                serde_json::to_string(&card)
                    .ok()?
                    .contains("*Failed*")
                    .then_some(())
            },
        )
        .await;
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
    let (exit, _) = second.terminate();
    assert!(exit.success());
}

/// A scratch directory removed when the test ends, pass or fail.
struct TempDir(PathBuf);

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

fn tempdir(prefix: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("rbt-{prefix}-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    TempDir(dir)
}

fn run_check_config(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["--config", config.to_str().unwrap(), "check-config"])
        .args(extra)
        .env_remove("DATABASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run check-config");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_config_reports_on_the_example_and_names_the_broken_key() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rollback-bot.example.toml");
    let (code, text) = run_check_config(&example, &["--offline"], &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("rollback-bot.example.toml: valid"), "{text}");
    assert!(text.contains("service payments-api: production/production/payments-api (database-coupled: DBA sign-off)"), "{text}");

    let dir = tempdir("check");
    let broken = dir.join("broken.toml");
    std::fs::write(
        &broken,
        "[slack]\nlead_user_ids = [\"U0LEAD0001\"]\n[clusters.local]\n[services.web]\ncluster = \"nope\"\n",
    )
    .unwrap();
    let (code, text) = run_check_config(&broken, &["--offline"], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(
            "broken.toml: services.web.cluster: one of the [clusters] (local), got \"nope\""
        ),
        "{text}"
    );

    let (code, text) = run_check_config(&dir.join("missing.toml"), &[], &[]);
    assert_eq!(code, 1);
    assert!(text.contains("missing.toml: cannot read"), "{text}");
}

#[tokio::test]
async fn check_config_reaches_postgres_and_the_clusters() {
    let ns = TestCluster::connect().await.namespace("check").await;
    let (db_url, _pool) = scratch_database("check").await;
    let dir = tempdir("check-online");
    let config = write_config(&dir, free_port(), &ns);
    let (code, text) = run_check_config(&config, &[], &[("DATABASE_URL", &db_url)]);
    assert_eq!(code, 0, "{text}");
    let migrations = rollback_bot::db::MIGRATOR.iter().count();
    assert!(
        text.contains(&format!(
            "ok    postgres: reachable, {migrations} migration(s) pending"
        )),
        "{text}"
    );
    assert!(
        text.contains("ok    cluster local: reachable, Kubernetes v1.36.3"),
        "{text}"
    );

    let (code, text) = run_check_config(
        &config,
        &[],
        &[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("FAIL  postgres:"), "{text}");
}

/// Every notifier failpoint (src/failpoint.rs). The reply points abort at the second reply:
/// the one an approval makes ("Approved by … all sign-offs are in"), as in the report.
const NOTIFIER_FAILPOINTS: [&str; 9] = [
    "notifier.card.before_post",
    "notifier.card.after_post",
    "notifier.card.after_record",
    "notifier.update.before",
    "notifier.update.after",
    "notifier.update.after_record",
    "notifier.reply.before_post:2",
    "notifier.reply.after_post:2",
    "notifier.reply.after_record:2",
];

#[tokio::test]
async fn serve_killed_at_each_notifier_failpoint_posts_one_card_and_each_thread_line_once() {
    let cluster = TestCluster::connect().await;
    for point in NOTIFIER_FAILPOINTS {
        let started = Instant::now();
        crash_at_notifier_failpoint(&cluster, point).await;
        eprintln!("failpoint {point}: passed in {:?}", started.elapsed());
    }
}

/// Request → approval against `serve` armed with `point`; the process aborts there; a
/// restart without failpoints finishes the rollback. Slack must then hold one card and
/// every thread line once.
async fn crash_at_notifier_failpoint(cluster: &TestCluster, point: &str) {
    use std::os::unix::process::ExitStatusExt;

    let ns = cluster.namespace("crash").await;
    cluster.fixture(&ns, "web", &["1.0.0", "1.1.0"]).await;
    let (db_url, pool) = scratch_database("crash").await;
    let slack = SlackStandIn::start(TOKEN).await;
    let dir = tempdir("crash");
    let port = free_port();
    let config = write_config(&dir, port, &ns);
    let mut first = Bot::start_with_failpoints(&config, &db_url, port, &slack, point);
    first.wait_ready().await;
    let command = requests::command_body(
        REQUESTER,
        CHANNEL,
        "incident-response",
        "web 1 INC-9",
        &slack.response_url(1),
    );
    let (status, ack) = first.post_signed("/slack/commands", &command, SECRET).await;
    assert_eq!(status, 200, "{ack}");

    // Play the lead until the process dies: approve once the card and its first reply are
    // there (so a reply point armed for the second reply dies at the approval's reply).
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = first.child.try_wait().expect("wait for serve") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "{point}: serve never reached the failpoint"
        );
        approve_when_shown(&first, &slack, &pool).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        exit.signal(),
        Some(6),
        "{point}: serve must die by abort, got {exit}"
    );
    drop(first);

    let second = Bot::start(&config, &db_url, port, &slack);
    second.wait_ready().await;
    let id: i64 = sqlx::query_scalar("select id from rollback")
        .fetch_one(&pool)
        .await
        .expect("the request was recorded");
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let cards = slack.cards(CHANNEL).len();
        assert!(cards <= 1, "{point}: {cards} cards posted for one rollback");
        approve_when_shown(&second, &slack, &pool).await;
        let r = repo::get(&pool, id).await.expect("read rollback");
        if r.state.is_terminal() {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "{point}: rollback #{id} stuck in {}",
            r.state
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        done.state,
        State::Succeeded,
        "{point}: {:?}",
        done.last_error
    );

    // Wait until the notifier has shown everything: card rendered, thread caught up.
    let trail = repo::audit_trail(&pool, id).await.unwrap();
    let last_row = trail.last().expect("an audit trail").id;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up: Option<bool> = sqlx::query_scalar(
            "select rendered_version >= $2 and thread_cursor >= $3 and post_in_flight is null
             from slack_card where rollback_id = $1",
        )
        .bind(id)
        .bind(done.version)
        .bind(last_row)
        .fetch_optional(&pool)
        .await
        .unwrap();
        if caught_up == Some(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{point}: the card never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let card_posts = slack
        .calls_to("chat.postMessage")
        .into_iter()
        .filter(|c| c.status == 200 && c.error.is_none() && c.body["thread_ts"].is_null())
        .count();
    assert_eq!(card_posts, 1, "{point}: one card post for the rollback");
    let cards = slack.cards(CHANNEL);
    assert_eq!(cards.len(), 1, "{point}: one card");
    assert!(
        serde_json::to_string(&cards[0].blocks)
            .unwrap()
            .contains("Rolled back and verified"),
        "{point}: the card shows the result"
    );
    // Each thread line is one audit row's block (`rb<id>.a<row>`): every row with a line
    // must be in the thread exactly once.
    let thread = slack.thread(&cards[0].ts);
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
    assert_eq!(shown, expected, "{point}: every thread line exactly once");
    let approvals = thread
        .iter()
        .filter(|m| m.text.contains("all sign-offs are in"))
        .count();
    assert_eq!(approvals, 1, "{point}: the approval reply once");
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
    let (exit, _) = second.terminate();
    assert!(exit.success());
}

/// Clicks Approve (once per process) when the rollback awaits approval and its card with
/// the button and its first thread reply are in Slack.
async fn approve_when_shown(bot: &Bot, slack: &SlackStandIn, pool: &PgPool) {
    if !awaiting_approval(pool).await {
        return;
    }
    let Some(card) = slack.cards(CHANNEL).into_iter().next() else {
        return;
    };
    let Some(approve) = button_value(&card.blocks, "rollback.approve") else {
        return;
    };
    if slack.thread(&card.ts).is_empty() {
        return;
    }
    let click = approve_click(slack, &card.ts, &approve);
    // The process may die while answering: a lost click is clicked again after the restart.
    if bot
        .try_post_signed("/slack/interactions", &click, SECRET)
        .await
        .is_err()
    {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while awaiting_approval(pool).await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The lead's click on Approve (button value `value`) on the card `ts`.
fn approve_click(slack: &SlackStandIn, ts: &str, value: &str) -> String {
    requests::click_body(
        LEAD,
        CHANNEL,
        ts,
        "rollback.approve",
        value,
        &slack.response_url(2),
    )
}

async fn awaiting_approval(pool: &PgPool) -> bool {
    sqlx::query_scalar::<_, i64>("select id from rollback where state = 'awaiting_approval'")
        .fetch_optional(pool)
        .await
        .expect("read rollbacks")
        .is_some()
}
