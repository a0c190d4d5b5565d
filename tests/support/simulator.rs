//! The service simulator (`crates/service-simulator/src/bin/service_simulator.rs`) as a child process of a test, and
//! the test environment's Prometheus (`scripts/prometheus.sh`) scraping it.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rollback_bot::clients::prometheus::Prometheus;

const ENV_PROMETHEUS_URL: &str = "ROLLBACK_BOT_TEST_PROMETHEUS_URL";
const ENV_PROMETHEUS_SD: &str = "ROLLBACK_BOT_TEST_PROMETHEUS_SD";
const ENV_PROMETHEUS_DIR: &str = "ROLLBACK_BOT_TEST_PROMETHEUS_DIR";
const ENV_ADMIN: &str = "ROLLBACK_BOT_TEST_KUBECONFIG_ADMIN";

fn env(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: these tests need the test environment's Prometheus; run them \
             via `make test` (or `scripts/prometheus.sh up DIR && . DIR/prom.env`)"
        ),
    }
}

/// The test environment's Prometheus URL.
pub fn prometheus_url() -> String {
    env(ENV_PROMETHEUS_URL)
}

/// Stops (`stop`) or starts again (`start`) the test environment's Prometheus.
pub fn prometheus_ctl(action: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/prometheus.sh");
    let status = Command::new("bash")
        .args([script, action, &env(ENV_PROMETHEUS_DIR)])
        .status()
        .expect("run scripts/prometheus.sh");
    assert!(status.success(), "prometheus.sh {action} failed");
}

/// One simulator process following Deployment `namespace/deployment`, scraped by Prometheus
/// for as long as it lives.
pub struct Simulator {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    target_file: PathBuf,
}

/// The simulator's binary (`crates/service-simulator`), next to the bot's: `cargo test` in
/// the workspace builds it (its package has an integration test of its own).
fn simulator_bin() -> std::path::PathBuf {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_rollback-bot"))
        .with_file_name(format!("service_simulator{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p service-simulator` (or the whole workspace's tests)",
        bin.display()
    );
    bin
}

impl Simulator {
    pub fn start(namespace: &str, deployment: &str) -> Simulator {
        Simulator::start_with(namespace, deployment, &[])
    }

    /// With more of the simulator's options, e.g. `["--status-label", "status"]`.
    pub fn start_with(namespace: &str, deployment: &str, options: &[&str]) -> Simulator {
        let mut args = vec!["--deployment", deployment];
        args.extend_from_slice(options);
        Simulator::spawn(namespace, &args)
    }

    /// Following every Deployment of `namespace` (one series and one `/health/<name>` each).
    pub fn start_for_namespace(namespace: &str, options: &[&str]) -> Simulator {
        Simulator::spawn(namespace, options)
    }

    fn spawn(namespace: &str, args: &[&str]) -> Simulator {
        let mut child = Command::new(simulator_bin())
            .args(["--namespace", namespace])
            .args(args)
            .env("KUBECONFIG", env(ENV_ADMIN))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the service simulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the simulator's address");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line from the simulator: {line:?}"))
            .to_owned();
        let target_file = PathBuf::from(env(ENV_PROMETHEUS_SD)).join(format!("{namespace}.json"));
        let targets = serde_json::json!([{ "targets": [addr] }]);
        std::fs::write(&target_file, targets.to_string()).expect("write the file_sd target");
        Simulator {
            child,
            addr,
            target_file,
        }
    }

    pub fn health_url(&self) -> String {
        format!("http://{}/health", self.addr)
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.target_file);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `promql` every 250 ms until `ok` accepts its value; panics after `within`.
pub async fn wait_for_value(
    what: &str,
    promql: &str,
    within: Duration,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let prometheus = Prometheus::new(&prometheus_url(), None).expect("Prometheus client");
    let deadline = tokio::time::Instant::now() + within;
    let mut last = None;
    loop {
        let answer = prometheus.query(promql, None).await;
        if let Ok(Some(v)) = answer
            && ok(v)
        {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached within {within:?}; last answer {last:?} to {promql}"
        );
        last = Some(answer);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Answers to one query over time: (when, value).
pub type Samples = std::sync::Arc<std::sync::Mutex<Vec<(chrono::DateTime<chrono::Utc>, f64)>>>;

/// Queries `promql` every `every` until aborted, recording each answered value in `into`.
pub async fn sample(promql: String, every: Duration, into: Samples) {
    let prometheus = Prometheus::new(&prometheus_url(), None).expect("Prometheus client");
    loop {
        if let Ok(Some(v)) = prometheus.query(&promql, None).await {
            into.lock().unwrap().push((chrono::Utc::now(), v));
        }
        tokio::time::sleep(every).await;
    }
}
