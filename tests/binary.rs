//! The real `rollback-bot` binary against the local Postgres and Kubernetes cluster: probes
//! and metrics on the admin listener only, `check-config`, start-up refusals that would
//! otherwise leave the bot deaf, a Socket Mode connection that cannot come up, and a clean
//! SIGTERM while a rollback is in flight, which the next start resumes.

mod support;
use slack_sandbox::web_api as slack_standin;
use support::{bot, cluster};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bot::{
    BIN, Bot, CHANNEL, REQUESTER, SECRET, TOKEN, approve_click, free_ports, scratch_database,
    serve_command, tempdir, try_get, wait_for, write_config, write_config_with,
};

use cluster::TestCluster;
use rollback_bot::clients::k8s::RolloutStatus;
use rollback_bot::db::rollbacks as repo;
use rollback_bot::domain::State;
use slack_standin::SlackStandIn;
use slack_standin::requests::{self, button_value};

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
    let ports = free_ports();
    let config = write_config(&dir, ports, &ns, "", "3s");
    let first = Bot::start(&config, &db_url, ports, &slack);
    first.wait_ready().await;
    assert_eq!(first.get("/healthz").await, (200, "ok\n".into()));
    assert_eq!(first.admin_get("/healthz").await, (200, "ok\n".into()));
    // Readiness details and metrics are on the admin listener only, not where Slack reaches.
    assert_eq!(first.get("/readyz").await.0, 404);
    assert_eq!(first.get("/metrics").await.0, 404);

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

    let (status, metrics) = first.admin_get("/metrics").await;
    assert_eq!(status, 200);
    // One /healthz on each listener.
    assert!(
        metrics.contains("rollback_bot_http_requests_total{route=\"/healthz\",status=\"200\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("rollback_bot_step_duration_seconds_count{step=\"execute\"} 1"));

    let (exit, took) = first.terminate();
    assert!(exit.success(), "exit status {exit}");
    assert!(took < Duration::from_secs(5), "took {took:?} to exit");
    let parked = repo::get(&pool, id).await.unwrap();
    assert_eq!(parked.state, State::Verifying, "still in flight");
    assert_eq!(parked.lease_owner, None, "the lease was handed back");

    let second = Bot::start(&config, &db_url, ports, &slack);
    // `failed` is terminal for the target, but its escalation follows at once.
    let done = wait_for(&pool, id, |r| r.state == State::Escalated).await;
    assert_eq!(
        done.state,
        State::Escalated,
        "the crash-looping target must fail and be escalated"
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
    // The card, re-rendered from the row by whichever process was running, ends failed: no
    // escalation group and no PagerDuty here, so it says nobody was paged.
    slack
        .wait_for(
            "the card to show the failure nobody was paged for",
            Duration::from_secs(30),
            |s| {
                let card = s.cards(CHANNEL).first()?.blocks.clone();
                serde_json::to_string(&card)
                    .ok()?
                    .contains("*Failed — nobody paged*")
                    .then_some(())
            },
        )
        .await;
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());
    let (exit, _) = second.terminate();
    assert!(exit.success());
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
        "[slack]\nincident_channels = [\"C0INCIDENT1\"]\nlead_user_ids = [\"U0LEAD0001\"]\n\
         [clusters.local]\n[services.web]\ncluster = \"nope\"\n",
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

    // A channel given by name is refused: names can be renamed and taken over.
    let by_name = dir.join("by-name.toml");
    std::fs::write(
        &by_name,
        "[slack]\nincident_channels = [\"incident-response\"]\nlead_user_ids = [\"U0LEAD0001\"]\n\
         [clusters.local]\n[services.web]\ncluster = \"local\"\n",
    )
    .unwrap();
    let (code, text) = run_check_config(&by_name, &["--offline"], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("by-name.toml: slack.incident_channels: channel ids like C0123ABCDEF"),
        "{text}"
    );

    let (code, text) = run_check_config(&dir.join("missing.toml"), &[], &[]);
    assert_eq!(code, 1);
    assert!(text.contains("missing.toml: cannot read"), "{text}");
}

#[test]
fn check_config_names_the_missing_tracker_token() {
    let dir = tempdir("check-tracker");
    let config = dir.join("jira.toml");
    std::fs::write(
        &config,
        "[slack]\nincident_channels = [\"C0INCIDENT1\"]\nlead_user_ids = [\"U0LEAD0001\"]\n\
         [tickets]\ntracker = \"jira\"\njira_url = \"https://x.atlassian.net\"\n\
         jira_project = \"OPS\"\njira_email = \"bot@example.com\"\n\
         [clusters.local]\n[services.web]\ncluster = \"local\"\n",
    )
    .unwrap();
    let (code, text) = run_check_config(&config, &["--offline"], &[("JIRA_API_TOKEN", "")]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(
            "FAIL  post-incident tickets: JIRA_API_TOKEN must be set (tickets.tracker = \"jira\")"
        ),
        "{text}"
    );
    let (code, text) = run_check_config(&config, &["--offline"], &[("JIRA_API_TOKEN", "t0ken")]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("post-incident tickets: jira"), "{text}");
    assert!(!text.contains("t0ken"), "{text}");
}

#[test]
fn check_config_refuses_a_database_coupled_service_without_a_dba() {
    let dir = tempdir("check-dba");
    let config = dir.join("no-dba.toml");
    std::fs::write(
        &config,
        "[slack]\nincident_channels = [\"C0INCIDENT1\"]\nlead_user_ids = [\"U0LEAD0001\"]\ndba_user_ids = []\n[clusters.local]\n\
         [services.orders]\ncluster = \"local\"\ndatabase_coupled = true\n",
    )
    .unwrap();
    let (code, text) = run_check_config(&config, &["--offline"], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(
            "no-dba.toml: services.orders.database_coupled: needs a DBA: \
             set slack.dba_user_ids or slack.dba_user_group"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn check_config_reaches_postgres_and_the_clusters() {
    let ns = TestCluster::connect().await.namespace("check").await;
    let (db_url, _pool) = scratch_database("check").await;
    let dir = tempdir("check-online");
    let config = write_config(&dir, free_ports(), &ns, "", "3s");
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
    assert!(
        text.contains(&format!(
            "ok    deploy lock in local/{ns}: enforced by the admission policy rollback-bot-deploy-lock"
        )),
        "{text}"
    );
    // A cluster without the policy (here: the bot looks for another name) is warned about,
    // without failing the check: rollbacks still work, their locks would be words only.
    let unpoliced = write_config_with(
        &dir,
        free_ports(),
        &ns,
        "",
        "3s",
        r#"lock_policy = "no-such-policy""#,
    );
    let (code, warned) = run_check_config(&unpoliced, &[], &[("DATABASE_URL", &db_url)]);
    assert_eq!(code, 0, "{warned}");
    assert!(
        warned.contains(&format!(
            "WARN  deploy lock in local/{ns}: NOT enforced: the ValidatingAdmissionPolicy no-such-policy is not installed"
        )),
        "{warned}"
    );

    let (code, text) = run_check_config(
        &config,
        &[],
        &[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("FAIL  postgres:"), "{text}");
}

/// Runs `command` until it exits (at most 30 s); its exit code and stderr.
fn run_to_exit(mut command: Command) -> (Option<i32>, String) {
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rollback-bot serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait for the bot").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            return (None, String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("collect output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn serve_refuses_to_start_deaf_naming_the_missing_secret() {
    let ns = TestCluster::connect().await.namespace("deaf").await;
    let (db_url, _pool) = scratch_database("deaf").await;
    let slack = SlackStandIn::start(TOKEN).await;
    let dir = tempdir("deaf");

    // HTTP transport without the signing secret: every Slack request would be refused.
    let config = write_config(&dir, free_ports(), &ns, "", "3s");
    let mut command = serve_command(&config, &db_url, &slack);
    command.env_remove("SLACK_SIGNING_SECRET");
    let (code, stderr) = run_to_exit(command);
    assert!(
        code.is_some_and(|c| c != 0),
        "serve kept running (or exited 0) without SLACK_SIGNING_SECRET: {code:?}\n{stderr}"
    );
    assert!(
        stderr.contains("environment variable SLACK_SIGNING_SECRET: must be set"),
        "{stderr}"
    );

    // Socket Mode without the app token: no connection could ever be opened.
    let socket_dir = tempdir("deaf-socket");
    let config = write_config(
        &socket_dir,
        free_ports(),
        &ns,
        "transport = \"socket_mode\"",
        "3s",
    );
    let mut command = serve_command(&config, &db_url, &slack);
    command.env_remove("SLACK_APP_TOKEN");
    let (code, stderr) = run_to_exit(command);
    assert!(code.is_some_and(|c| c != 0), "{code:?}\n{stderr}");
    assert!(
        stderr.contains("environment variable SLACK_APP_TOKEN: must be set"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_socket_mode_connection_that_never_comes_up_is_not_ready_with_the_reason() {
    let ns = TestCluster::connect().await.namespace("socket").await;
    let (db_url, _pool) = scratch_database("socket").await;
    // The stand-in knows only the bot token: Slack's answer to a revoked or wrong app token.
    let slack = SlackStandIn::start(TOKEN).await;
    let dir = tempdir("socket");
    let ports = free_ports();
    let config = write_config(&dir, ports, &ns, "transport = \"socket_mode\"", "3s");
    let mut command = serve_command(&config, &db_url, &slack);
    command.env("SLACK_APP_TOKEN", "xapp-1-revoked");
    let bot = Bot::spawn(command, ports);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        if let Ok(answer) = try_get(ports.admin, "/readyz").await
            && answer.1.contains("apps.connections.open")
        {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never reported the failing connection"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("Socket Mode cannot connect")
            && body.contains("apps.connections.open with error not_authed"),
        "{body}"
    );
    assert!(!body.contains("xapp-1-revoked"), "the token is never shown");
    // Alive, just not ready: liveness stays green so the pod is not restarted in a loop.
    assert_eq!(bot.admin_get("/healthz").await.0, 200);
    assert!(!slack.calls_to("apps.connections.open").is_empty());
    let (exit, _) = bot.terminate();
    assert!(exit.success(), "exit status {exit}");
}
