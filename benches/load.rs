//! A fleet-wide incident on the real binary in its production configuration: two `serve`
//! replicas with the default worker count, every service validated against the test
//! environment's real Prometheus scraping the service simulator, then locked and its deployer
//! DM'd. N services roll out a faulty revision (`:errors`, 5 % of requests fail); N
//! `/rollback` requests plus N duplicates arrive at once and are all approved at once. While
//! those N validate, probe rollbacks are requested and approved one at a time, and the time
//! from the lead's click to the Deployment's PATCH (seen by a watch) is measured: no
//! approved rollback may wait behind another one's validation. Last, the same N rollbacks by
//! parallel `kubectl rollout undo` + `rollout status` on the same cluster, the physical
//! reference.
//!
//! Reported in one run: approve → PATCH p50/p99 (for the probes, and for the burst), all
//! verified, all validated, apiserver requests and Slack calls per rollback, each replica's
//! peak RSS, and the ratio to kubectl.
//!
//! `scripts/bench-load.sh [N]` (default 200) starts Postgres, the cluster and Prometheus and
//! tears them down; `--smoke` (run by `make test`) does the same with N = 3, compressed
//! validation timings and nothing timed. Numbers are in docs/reliability.md.

#[path = "../tests/support/bot.rs"]
mod bot;
#[path = "../tests/support/cluster.rs"]
mod cluster;
#[path = "../tests/support/simulator.rs"]
mod simulator;
use slack_sandbox::web_api as slack_standin;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bot::{Bot, CHANNEL, REQUESTER, SECRET};
use cluster::TestCluster;
use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::watcher::{self, Event};
use simulator::Simulator;
use slack_standin::SlackStandIn;
use slack_standin::requests::{self, button_value};
use sqlx::PgPool;

/// The (resource, verb) pairs only the bot uses during the measured phases: the controllers
/// and kwok watch through informers started long before, and write status, which is not
/// counted; the benchmark's own watch and the simulator's start before the first phase.
const BOT_CALLS: [(&str, &str); 11] = [
    ("deployments", "GET"),
    ("deployments", "LIST"),
    ("deployments", "PATCH"),
    ("deployments", "WATCH"),
    ("replicasets", "GET"),
    ("replicasets", "LIST"),
    ("replicasets", "PATCH"),
    ("pods", "LIST"),
    ("pods", "WATCH"),
    ("events", "LIST"),
    ("validatingadmissionpolicies", "GET"),
];

/// The tag every service is rolled back to, and the faulty one.
const GOOD: &str = "1.0.0";
const FAULTY: &str = "errors";
/// Who deployed the faulty revision (the deployer's DM goes there).
const DEPLOYER: &str = "U0DEPLOYER1";

struct Run {
    smoke: bool,
    /// Services in the wide incident (and rollbacks by kubectl).
    n: usize,
    /// Rollbacks approved one at a time while the N validate.
    probes: usize,
}

impl Run {
    fn from_env() -> Run {
        let smoke = std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1");
        let n = std::env::var("LOAD_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if smoke { 3 } else { 200 });
        Run {
            smoke,
            n,
            probes: if smoke { 2 } else { 30 },
        }
    }

    fn names(&self) -> Vec<String> {
        let incident = (1..=self.n).map(|i| format!("svc-{i}"));
        let probes = (1..=self.probes).map(|i| format!("probe-{i}"));
        std::iter::once("svc-0".to_owned())
            .chain(incident)
            .chain(probes)
            .collect()
    }

    /// `[services.<name>.recovery]` beyond the health URL: production defaults (checks every
    /// 15 s over a 1 m rate window, 3 passes in a row, 5 minutes at most), compressed in the
    /// smoke run so that it ends in seconds.
    fn recovery(&self) -> &'static str {
        if self.smoke {
            "interval = \"1s\"\nrate_window = \"5s\"\nbaseline_window = \"5s\"\n"
        } else {
            ""
        }
    }
}

fn config(
    run: &Run,
    dir: &std::path::Path,
    ports: bot::Ports,
    ns: &str,
    simulator: &str,
) -> std::path::PathBuf {
    let kubeconfig = std::env::var("ROLLBACK_BOT_TEST_KUBECONFIG").expect("kubeconfig");
    let mut text = format!(
        r#"
[server]
listen = "127.0.0.1:{}"
admin_listen = "127.0.0.1:{}"
[slack]
incident_channels = ["{CHANNEL}"]
lead_user_ids = ["{}"]
[clusters.local]
kubeconfig = "{kubeconfig}"
prometheus_url = "{}"
"#,
        ports.slack,
        ports.admin,
        bot::LEAD,
        simulator::prometheus_url()
    );
    for name in run.names() {
        text.push_str(&format!(
            "[services.{name}]\ncluster = \"local\"\nnamespace = \"{ns}\"\n\
             [services.{name}.recovery]\nhealth_url = \"http://{simulator}/health/{name}\"\n{}",
            run.recovery()
        ));
    }
    let path = dir.join(format!("load-{}.toml", ports.slack));
    std::fs::write(&path, text).expect("write config");
    path
}

type Counts = BTreeMap<(String, String), f64>;

/// The sum of `apiserver_request_total` per (resource, verb) for the bot's calls.
async fn api_requests(cluster: &TestCluster) -> Counts {
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
        let counted = BOT_CALLS.contains(&(resource.as_str(), verb.as_str()));
        // Pod logs (the escalation evidence) are the one subresource the bot reads.
        let log = resource == "pods" && subresource == "log";
        if !(log || counted && subresource.is_empty()) {
            continue;
        }
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let resource = if log { "pods/log".into() } else { resource };
        *sums.entry((resource, verb)).or_insert(0.0) += value;
    }
    sums
}

/// Requests per rollback between two snapshots, by "VERB resource".
fn per_rollback(before: &Counts, after: &Counts, rollbacks: usize) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(key, v)| {
            let d = v - before.get(key).copied().unwrap_or(0.0);
            (d > 0.0).then(|| (format!("{} {}", key.1, key.0), d / rollbacks as f64))
        })
        .collect()
}

fn watches(calls: &BTreeMap<String, f64>) -> (f64, f64) {
    let watch: f64 = calls
        .iter()
        .filter(|(k, _)| k.starts_with("WATCH"))
        .map(|(_, v)| v)
        .sum();
    (calls.values().sum::<f64>() - watch, watch)
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

/// When each Deployment of the namespace was first seen back on [`GOOD`]: the bot's PATCH,
/// as a watch reports it (a few milliseconds after the apiserver accepted it).
#[derive(Clone, Default)]
struct Patches(Arc<Mutex<HashMap<String, Instant>>>);

impl Patches {
    async fn watch(cluster: &TestCluster, ns: &str) -> Patches {
        let patches = Patches::default();
        let recorded = patches.clone();
        let api: kube::Api<Deployment> = kube::Api::namespaced(cluster.admin(), ns);
        let (listed, mut listed_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
            while let Some(event) = events.next().await {
                match event {
                    Ok(Event::Apply(d)) if template_image(&d).ends_with(&format!(":{GOOD}")) => {
                        let name = d.metadata.name.unwrap_or_default();
                        recorded
                            .0
                            .lock()
                            .unwrap()
                            .entry(name)
                            .or_insert_with(Instant::now);
                    }
                    Ok(Event::InitDone) => {
                        let _ = listed.send(true);
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("load: watching deployments: {e}"),
                }
            }
        });
        listed_rx.wait_for(|l| *l).await.expect("the watch lists");
        patches
    }

    fn at(&self, name: &str) -> Option<Instant> {
        self.0.lock().unwrap().get(name).copied()
    }

    async fn wait(&self, name: &str) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(at) = self.at(name) {
                return at;
            }
            assert!(Instant::now() < deadline, "{name} was never patched");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn template_image(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.as_deref())
        .unwrap_or("")
}

/// Rolls the faulty revision out on `name`, deployed by [`DEPLOYER`], and waits for it.
async fn roll_out_faulty(cluster: &TestCluster, ns: &str, name: &str) {
    let patch = serde_json::json!({
        "metadata": {"annotations": {
            "rollback-bot.io/deployed-by": DEPLOYER,
            "kubernetes.io/change-cause": format!("deploy {FAULTY} (bad)"),
        }},
        "spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": cluster::image(name, FAULTY)}
        ]}}}
    });
    cluster
        .deployments(ns)
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(patch),
        )
        .await
        .unwrap_or_else(|e| panic!("roll out {FAULTY} on {name}: {e}"));
    cluster.wait_rollout(ns, name).await;
}

async fn each(names: &[String], f: impl AsyncFn(&str)) {
    futures::stream::iter(names)
        .for_each_concurrent(20, |name| f(name))
        .await;
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

/// The rollback id in an Approve button's value (`<id>:<plan fingerprint>`).
fn rollback_id(value: &str) -> i64 {
    value
        .split(':')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("unexpected button value {value:?}"))
}

/// Approves every card that shows an Approve button, all at once; returns when each click
/// was answered, by rollback id.
async fn approve_all(bots: &[Bot], slack: &SlackStandIn) -> HashMap<i64, Instant> {
    let cards: Vec<_> = slack
        .cards(CHANNEL)
        .into_iter()
        .filter_map(|c| button_value(&c.blocks, "rollback.approve").map(|v| (c.ts, v)))
        .collect();
    let clicks = cards.iter().enumerate().map(|(i, (ts, value))| {
        let click = bot::approve_click(slack, ts, value);
        let bot = &bots[i % bots.len()];
        async move {
            let clicked = Instant::now();
            let status = bot
                .post_signed("/slack/interactions", &click, SECRET)
                .await
                .0;
            assert_eq!(status, 200, "approve {value}");
            (rollback_id(value), clicked)
        }
    });
    join_all(clicks).await.into_iter().collect()
}

/// Waits for the card of rollback `id` to offer Approve; returns its ts and button value.
async fn approvable_card(slack: &SlackStandIn, id: i64) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let card = slack.cards(CHANNEL).into_iter().find_map(|c| {
            button_value(&c.blocks, "rollback.approve")
                .filter(|v| rollback_id(v) == id)
                .map(|v| (c.ts, v))
        });
        if let Some(card) = card {
            return card;
        }
        assert!(
            Instant::now() < deadline,
            "rollback {id} never got its card"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn states(pool: &PgPool) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>("select state::text, count(*) from rollback group by state")
        .fetch_all(pool)
        .await
        .expect("count states")
        .into_iter()
        .collect()
}

fn count(states: &BTreeMap<String, i64>, names: &[&str]) -> i64 {
    names.iter().filter_map(|n| states.get(*n)).sum()
}

async fn wait_until(pool: &PgPool, what: &str, done: impl Fn(&BTreeMap<String, i64>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let s = states(pool).await;
        if done(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rollbacks_by_deployment(pool: &PgPool) -> HashMap<i64, String> {
    sqlx::query_as::<_, (i64, String)>("select id, deployment from rollback")
        .fetch_all(pool)
        .await
        .expect("read rollbacks")
        .into_iter()
        .collect()
}

/// Percentile `p` of `xs` in milliseconds (nearest rank).
fn percentile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    let rank = ((p * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The physical reference: `kubectl rollout undo` then `kubectl rollout status` for each of
/// `names` in `ns`, all in parallel; how long until the last one returned.
async fn kubectl_rollbacks(cluster: &TestCluster, ns: &str, names: &[String]) -> Duration {
    let started = Instant::now();
    let all = names.iter().map(|name| async move {
        let deployment = format!("deployment/{name}");
        let undo = cluster
            .kubectl_ok(&["-n", ns, "rollout", "undo", &deployment])
            .await;
        assert!(undo.ends_with("rolled back\n"), "{undo}");
        let status = cluster
            .kubectl_ok(&["-n", ns, "rollout", "status", &deployment])
            .await;
        assert!(status.ends_with("successfully rolled out\n"), "{status}");
    });
    join_all(all).await;
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let run = Run::from_env();
    let n = run.n;
    let cluster = TestCluster::connect().await;
    let ns = cluster.namespace("load").await;
    let kubectl_ns = cluster.namespace("load-kubectl").await;
    let names = run.names();
    let kubectl_names: Vec<String> = (1..=n).map(|i| format!("svc-{i}")).collect();
    let started = Instant::now();
    each(&names, async |name| {
        cluster.fixture(&ns, name, &[GOOD]).await;
    })
    .await;
    each(&kubectl_names, async |name| {
        cluster.fixture(&kubectl_ns, name, &[GOOD, FAULTY]).await;
    })
    .await;
    // Fewer synthetic requests per service than the default: one process serves them all.
    let simulator = Simulator::start_for_namespace(&ns, &["--rps", "20"]);
    simulator::wait_for_value(
        "every service scraped",
        &format!(r#"count(http_requests_total{{namespace="{ns}"}})"#),
        Duration::from_secs(60),
        |c| c >= 2.0 * names.len() as f64,
    )
    .await;
    // A baseline of the good revision before the faulty one rolls out.
    tokio::time::sleep(Duration::from_secs(if run.smoke { 6 } else { 20 })).await;
    each(&names, async |name| {
        roll_out_faulty(&cluster, &ns, name).await
    })
    .await;
    eprintln!(
        "load: {} + {n} Deployments ready, faulty revision rolled out, in {:.1} s",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    let patches = Patches::watch(&cluster, &ns).await;

    let (db_url, pool) = bot::scratch_database("load").await;
    let slack = SlackStandIn::start(bot::TOKEN).await;
    slack.add_user(DEPLOYER, "deployer@example.test", false);
    let dir = bot::tempdir("load");
    let bots: Vec<Bot> = (0..2)
        .map(|_| {
            let ports = bot::free_ports();
            let config = config(&run, &dir, ports, &ns, &simulator.addr);
            let mut command = bot::serve_command(&config, &db_url, &slack);
            command.env("RUST_LOG", "info");
            Bot::spawn(command, ports)
        })
        .collect();
    for b in &bots {
        b.wait_ready().await;
    }

    // One rollback alone (svc-0), the reference.
    let (api_before_one, slack_before_one) = (api_requests(&cluster).await, slack.calls().len());
    let t = Instant::now();
    request(&bots[0], &slack, "svc-0", 1).await;
    wait_until(&pool, "one rollback awaiting approval", |s| {
        s.get("awaiting_approval") == Some(&1)
    })
    .await;
    let id = *rollbacks_by_deployment(&pool).await.keys().next().unwrap();
    approvable_card(&slack, id).await;
    let clicked = approve_all(&bots, &slack).await[&id];
    let one_patch = patches.wait("svc-0").await - clicked;
    wait_until(&pool, "one rollback verified", |s| {
        count(s, &["approved", "executing", "verifying"]) == 0
    })
    .await;
    let one_verified = t.elapsed();
    wait_until(&pool, "one rollback validated", |s| {
        s.get("succeeded") == Some(&1)
    })
    .await;
    let one = t.elapsed();
    let (api_one, slack_one) = (
        per_rollback(&api_before_one, &api_requests(&cluster).await, 1),
        slack.calls().len() - slack_before_one,
    );

    // The wide incident: N requests plus N duplicates at once, spread over both replicas.
    let (api_before, slack_before) = (api_requests(&cluster).await, slack.calls().len());
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
    let refused = answers
        .iter()
        .cloned()
        .chain(
            slack
                .responses()
                .iter()
                .filter_map(|r| r["text"].as_str().map(str::to_owned)),
        )
        .filter(|t| t.contains("is already"))
        .count();
    assert_eq!(refused, n, "every duplicate is refused as already active");
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
    let approved_at = Instant::now();
    let clicks = approve_all(&bots, &slack).await;
    assert_eq!(clicks.len(), n);
    wait_until(&pool, "every rollback verified", |s| {
        count(s, &["approved", "executing", "verifying"]) == 0
    })
    .await;
    let all_verified = approved_at.elapsed();
    let deployments = rollbacks_by_deployment(&pool).await;
    let mut burst: Vec<f64> = Vec::new();
    for (id, clicked) in &clicks {
        let patched = patches.wait(&deployments[id]).await;
        burst.push(ms(patched - *clicked));
    }

    // While the N validate: probes, one at a time, from the click to their PATCH.
    let mut probe_latencies = Vec::new();
    let mut fewest_validating = i64::MAX;
    for (i, name) in names.iter().filter(|n| n.starts_with("probe-")).enumerate() {
        request(&bots[i % 2], &slack, name, 1000 + i as u32).await;
        let id = loop {
            let found = sqlx::query_scalar::<_, i64>(
                "select id from rollback where deployment = $1 and state = 'awaiting_approval'",
            )
            .bind(name)
            .fetch_optional(&pool)
            .await
            .expect("find the probe");
            if let Some(id) = found {
                break id;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let (ts, value) = approvable_card(&slack, id).await;
        fewest_validating =
            fewest_validating.min(states(&pool).await.get("validating").copied().unwrap_or(0));
        let click = bot::approve_click(&slack, &ts, &value);
        let clicked = Instant::now();
        let status = bots[(i + 1) % 2]
            .post_signed("/slack/interactions", &click, SECRET)
            .await
            .0;
        assert_eq!(status, 200, "approve {name}");
        probe_latencies.push(ms(patches.wait(name).await - clicked));
    }
    let everyone = n as i64 + 1 + run.probes as i64;
    wait_until(&pool, "every rollback validated, locked and DM'd", |s| {
        s.get("succeeded").copied().unwrap_or(0) == everyone
    })
    .await;
    let all_validated = approved_at.elapsed();
    let burst_requests = n + run.probes;
    let (api_load, slack_load) = (
        per_rollback(&api_before, &api_requests(&cluster).await, burst_requests),
        (slack.calls().len() - slack_before) as f64 / burst_requests as f64,
    );
    let dms: i64 = sqlx::query_scalar(
        "select count(*) from post_rollback_action where action = 'deployer_dm' and done_at is not null",
    )
    .fetch_one(&pool)
    .await
    .expect("count the DMs");
    assert_eq!(dms, everyone, "every deployer is told");
    let rss: Vec<f64> = bots.iter().map(|b| peak_rss_mb(b.pid())).collect();
    assert!(slack.violations().is_empty(), "{:?}", slack.violations());

    // The physical reference, on the same cluster, after the bot is done.
    let kubectl = kubectl_rollbacks(&cluster, &kubectl_ns, &kubectl_names).await;

    let smoke = if run.smoke {
        " (smoke run: nothing here is a measurement)"
    } else {
        ""
    };
    println!(
        "load: production configuration{smoke}: 2 replicas x default workers, validation against Prometheus, lock, deployer DM"
    );
    println!(
        "load: {n} rollbacks on {n} Deployments (+{n} duplicate requests, all refused), then {} probes approved one at a time while they validate",
        run.probes
    );
    println!(
        "load: one rollback alone: approve -> PATCH {:.1} ms, request -> verified {:.2} s, -> validated and locked {:.1} s",
        ms(one_patch),
        one_verified.as_secs_f64(),
        one.as_secs_f64()
    );
    println!(
        "load: burst approve -> PATCH ({n} approved at once): p50 {:.0} ms, p99 {:.0} ms",
        percentile(&mut burst, 0.5),
        percentile(&mut burst, 0.99)
    );
    println!(
        "load: probe approve -> PATCH, while at least {fewest_validating} rollbacks validated: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} probes)",
        percentile(&mut probe_latencies, 0.5),
        percentile(&mut probe_latencies, 0.99),
        percentile(&mut probe_latencies, 1.0),
        run.probes
    );
    println!(
        "load: approve -> all {n} verified: {:.2} s; -> all validated, locked and DM'd: {:.1} s (requests -> approve {:.1} s)",
        all_verified.as_secs_f64(),
        all_validated.as_secs_f64(),
        (approved_at - t).as_secs_f64()
    );
    println!(
        "load: the same {n} rollbacks by parallel kubectl rollout undo + status: {:.2} s; bot/kubectl = {:.2}",
        kubectl.as_secs_f64(),
        all_verified.as_secs_f64() / kubectl.as_secs_f64()
    );
    let (requests_one, watches_one) = watches(&api_one);
    println!(
        "load: apiserver requests, one rollback alone: {requests_one:.0} + {watches_one:.0} watches {api_one:?}"
    );
    let (requests_load, watches_load) = watches(&api_load);
    println!(
        "load: apiserver requests per rollback under load: {requests_load:.1} + {watches_load:.1} watches {api_load:?}"
    );
    println!(
        "load: Slack Web API calls per rollback: {slack_one} alone, {slack_load:.1} under load; deployer DMs: {dms} of {everyone}"
    );
    for (i, mb) in rss.iter().enumerate() {
        println!("load: replica {i} peak RSS {mb:.1} MB");
    }
}
