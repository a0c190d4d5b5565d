//! The README's first run, exactly as a newcomer does it: `make run`, the URL it prints,
//! `make bad-deploy` right before the request, `/rollback demo-api INC-1` as Riley and
//! Approve as Lee in a real browser, through to "service recovered" and "locked"; then a
//! second `make bad-deploy` that the deploy lock denies, the approved `/rollback unlock`, a
//! redeploy that is accepted, and Ctrl-C, after which no process of the run is left.
//!
//! `make run` gets its own state directory and free ports (the variables scripts/run-local.sh
//! documents) and the binaries `cargo test` built, so it neither clashes with a `make run` of
//! the developer nor runs cargo inside cargo. The screenshot is kept in
//! `target/tmp/first-run.png`; with `ROLLBACK_BOT_UPDATE_SCREENSHOT=1` it also replaces
//! docs/sandbox.png, the README's picture.
//!
//! Also here: scripts/postgres.sh (which `make run` and `make test` start first) in a
//! directory whose parent is private, as a clone under /root is.

mod support;
use support::browser;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use browser::{APPROVE, act_as, approve, find, keep_screenshot, start_browser, wait_for_text};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// `make run`'s people (scripts/run-local.sh, the sandbox's defaults).
const RILEY: &str = "U0LOCALREQUESTER";
const LEE: &str = "U0LOCALLEAD";

fn free_addr() -> String {
    format!("127.0.0.1:{}", support::bot::free_port())
}

/// A fresh directory under `target/tmp`.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Processes whose command line names `path` (Postgres, Prometheus and the cluster's
/// components do: their data lives there).
fn processes_naming(path: &Path) -> String {
    let out = Command::new("pgrep")
        .args(["-a", "-f", "--"])
        .arg(path)
        .output()
        .expect("run pgrep");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `make run` waits for the baseline the bot will read: its literal query must stay the
/// default P99 query over the default baseline window, rendered for demo-api.
#[test]
fn make_run_waits_for_the_bots_own_baseline_query() {
    use rollback_bot::domain::recovery::{DEFAULT_P99_QUERY, QueryVars, render_query};
    let vars = QueryVars {
        service: "demo-api",
        namespace: "demo",
        deployment: "demo-api",
    };
    let window = rollback_bot::config::Recovery::default().baseline_window;
    let query = render_query(DEFAULT_P99_QUERY, vars, &window);
    let script = std::fs::read_to_string(format!("{REPO}/scripts/run-local.sh")).unwrap();
    assert!(
        script.contains(&format!("p99_query='{query}'")),
        "scripts/run-local.sh must wait for {query}"
    );
}

#[test]
fn postgres_starts_in_a_directory_under_a_private_parent() {
    let parent = scratch("private-parent");
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = parent.join("checkout");
    let script = format!("{REPO}/scripts/postgres.sh");
    let up = Command::new("bash")
        .args([&script, "up"])
        .arg(&dir)
        .output()
        .expect("run postgres.sh up");
    assert!(up.status.success(), "postgres.sh up failed:\n{}", text(&up));

    // The server answers on the address pg.env names.
    let check = Command::new("bash")
        .arg("-c")
        .arg(r#". "$1/pg.env" && psql "$DATABASE_URL" -Atc 'select 40 + 2'"#)
        .arg("check")
        .arg(&dir)
        .output()
        .expect("run psql");
    let answer = text(&check);
    assert_eq!(answer.trim(), "42", "psql through pg.env: {answer}");

    // `down` stops it and removes its data wherever it was put.
    let data = match std::fs::read_to_string(dir.join("pg.location")) {
        Ok(location) => PathBuf::from(location.trim()),
        Err(_) => dir.join("pg"),
    };
    assert!(data.join("PG_VERSION").exists(), "{}", data.display());
    let down = Command::new("bash")
        .args([&script, "down"])
        .arg(&dir)
        .output()
        .expect("run postgres.sh down");
    assert!(down.status.success(), "postgres.sh down:\n{}", text(&down));
    assert!(!data.exists(), "{} is left behind", data.display());
    assert_eq!(processes_naming(&data), "", "a server survived `down`");
    std::fs::remove_dir_all(&parent).unwrap();
}

/// `make run` in its own process group, torn down with Ctrl-C's SIGINT when dropped.
struct MakeRun {
    child: Child,
    lines: mpsc::Receiver<String>,
    state: PathBuf,
}

impl MakeRun {
    fn start(state: &Path, env: &[(&str, String)]) -> MakeRun {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_rollback-bot"))
            .parent()
            .expect("the binaries' directory");
        let mut command = Command::new("make");
        command
            .args(["-s", "run"])
            .current_dir(REPO)
            // What the developer's shell might set that would change the demo.
            .env_remove("SLACK_BOT_TOKEN")
            .env_remove("SLACK_APP_TOKEN")
            .env_remove("SLACK_SIGNING_SECRET")
            .env_remove("ROLLBACK_BOT_CONFIG")
            .env_remove("ROLLBACK_BOT_SANDBOX_TRANSPORT")
            .env("ROLLBACK_BOT_LOCAL_STATE", state)
            .env("ROLLBACK_BOT_BIN_DIR", bin_dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // As a terminal does: Ctrl-C goes to the whole foreground group.
            .process_group(0);
        let mut child = command.spawn().expect("run make run");
        let (tx, lines) = mpsc::channel();
        let log = state.with_extension("log");
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    use std::io::Write as _;
                    if let Ok(mut f) = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                    {
                        let _ = writeln!(f, "{line}");
                    }
                    let _ = tx.send(line);
                }
            });
        }
        MakeRun {
            child,
            lines,
            state: state.to_owned(),
        }
    }

    /// The first line `make run` prints that contains `needle`.
    fn wait_for_line(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!(
                    "make run never printed {needle:?} ({e}); its output is in {}",
                    self.state.with_extension("log").display()
                ),
            }
        }
    }

    /// Ctrl-C, then waits for `make run` to finish tearing down.
    fn interrupt(&mut self) -> std::process::ExitStatus {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-INT", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for make run") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "make run did not stop within 90 s of Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `make bad-deploy` against this run.
    fn bad_deploy(&self) -> Output {
        Command::new("make")
            .args(["-s", "bad-deploy"])
            .current_dir(REPO)
            .env("ROLLBACK_BOT_LOCAL_STATE", &self.state)
            .output()
            .expect("run make bad-deploy")
    }
}

impl Drop for MakeRun {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.interrupt();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_try_it_flow_recovers_locks_denies_and_unlocks() {
    let state = scratch("first-run");
    let mut run = MakeRun::start(
        &state,
        &[
            ("ROLLBACK_BOT_LISTEN", free_addr()),
            ("ROLLBACK_BOT_ADMIN_LISTEN", free_addr()),
            ("ROLLBACK_BOT_SANDBOX_LISTEN", free_addr()),
        ],
    );
    let started = Instant::now();
    let try_it = run.wait_for_line("Try it: open ", Duration::from_secs(300));
    let url = try_it
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {try_it:?}"))
        .to_owned();
    eprintln!("make run said \"Try it\" after {:?}", started.elapsed());

    // As fast as a person can type: the bad deploy, then the request.
    let bad = run.bad_deploy();
    assert!(bad.status.success(), "make bad-deploy:\n{}", text(&bad));

    let (_driver, client) = start_browser().await;
    client.goto(&url).await.expect("open the sandbox page");
    find(&client, "#who option").await;
    act_as(&client, RILEY).await;
    browser::type_command(&client, "/rollback demo-api INC-1").await;
    find(&client, APPROVE).await;
    act_as(&client, LEE).await;
    approve(&client).await;
    let done = browser::wait_for_text_within(
        &client,
        "#timeline",
        "locked until a fix is approved",
        Duration::from_secs(240),
    )
    .await;
    assert!(
        done.contains("Rolled back and verified — service recovered"),
        "{done}"
    );
    find(&client, "#timeline .replies")
        .await
        .click()
        .await
        .expect("open the thread");
    wait_for_text(&client, "#thread-body", "Recovery validated").await;
    keep_screenshot(&client, "first-run", true).await;

    // The lock holds: the next bad deploy is refused by the API server, naming the rollback,
    // the incident and the way out.
    let denied = run.bad_deploy();
    let said = text(&denied);
    assert!(
        !denied.status.success(),
        "a locked redeploy went through:\n{said}"
    );
    eprintln!("the locked redeploy was told:\n{said}");
    for needle in [
        "deployment demo/demo-api is locked by rollback-bot",
        "rollback #",
        "INC-1",
        "/rollback unlock demo-api <fix reference>",
    ] {
        assert!(said.contains(needle), "{needle:?} missing from:\n{said}");
    }

    // The approved unlock lifts it; the redeploy goes through.
    act_as(&client, RILEY).await;
    browser::type_command(&client, "/rollback unlock demo-api FIX-1").await;
    wait_for_text(&client, "#timeline", "Unlock awaiting approval").await;
    act_as(&client, LEE).await;
    approve(&client).await;
    wait_for_text(&client, "#timeline", "Unlocked").await;
    let again = run.bad_deploy();
    assert!(
        again.status.success(),
        "the redeploy after the unlock was refused:\n{}",
        text(&again)
    );
    client.close().await.expect("close the browser");

    // Ctrl-C tears everything down.
    run.interrupt();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = processes_naming(&state);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left running after Ctrl-C:\n{left}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let group = Command::new("pgrep")
        .args(["-g", &run.child.id().to_string()])
        .output()
        .expect("run pgrep");
    assert!(
        group.stdout.is_empty(),
        "processes of make run's group survived Ctrl-C: {}",
        String::from_utf8_lossy(&group.stdout)
    );
}
