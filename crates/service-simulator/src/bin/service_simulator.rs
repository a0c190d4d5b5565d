//! A stand-in for the service behind a kwok Deployment (kwok pods run nothing), for the test
//! environment and `make run`: it serves Prometheus metrics fed by its own synthetic traffic
//! and a health endpoint, and behaves according to the image tag the Deployment's pod
//! template currently names, so rolling a bad tag out and back is visible in Prometheus.
//!
//! | tag          | behaviour                                        |
//! |--------------|--------------------------------------------------|
//! | `slow`       | requests take 0.8–1.5 s (P99 ≈ 1.5 s)            |
//! | `errors`     | 5 % of requests answer 500                        |
//! | `unhealthy`  | `/health` answers 503                             |
//! | `idle`       | no traffic at all                                 |
//! | anything else| healthy: 20–80 ms, all 200 (P99 ≈ 0.1 s)          |
//!
//! `--status-label status` names the status-code label of `http_requests_total` otherwise
//! than `code`, as some exporters do.
//!
//! Without `--deployment` it follows every Deployment of the namespace (one process for a
//! load benchmark's hundreds of services): each gets its own series, labelled with its name
//! as `service`, and its own `/health/<deployment>`.
//!
//! Until a Deployment has been read, and while it does not exist, it has no traffic.
//!
//! ```text
//! service_simulator --namespace demo [--deployment demo-api] [--listen 127.0.0.1:0] [--rps 100] [--status-label code]
//! ```
//! It prints `listening on http://ADDR` on stdout once it serves. Kubernetes credentials come
//! from `KUBECONFIG` (or the in-cluster account), as with kubectl.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use rand::Rng;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Parser)]
struct Args {
    /// Namespace of the Deployment to follow (also the `namespace` label of the metrics).
    #[arg(long)]
    namespace: String,
    /// Name of the Deployment to follow (default: every Deployment of the namespace).
    #[arg(long)]
    deployment: Option<String>,
    /// The `service` label of the metrics (default: the Deployment's name; only with
    /// `--deployment`).
    #[arg(long, requires = "deployment")]
    service: Option<String>,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Synthetic requests per second.
    #[arg(long, default_value_t = 100)]
    rps: u32,
    /// The label of `http_requests_total` that carries the status code (`code` by
    /// convention; another name stands for an exporter the default queries do not fit).
    #[arg(long, default_value = "code")]
    status_label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Healthy,
    Slow,
    Errors,
    Unhealthy,
    Idle,
}

impl Mode {
    /// The behaviour an image asks for, by its tag.
    fn of_image(image: &str) -> Mode {
        let name = image.rsplit('/').next().unwrap_or(image);
        match name.split_once(':').map(|(_, tag)| tag) {
            Some("slow") => Mode::Slow,
            Some("errors") => Mode::Errors,
            Some("unhealthy") => Mode::Unhealthy,
            Some("idle") => Mode::Idle,
            _ => Mode::Healthy,
        }
    }

    fn of_deployment(deployment: Option<&Deployment>) -> Mode {
        deployment
            .and_then(|d| d.spec.as_ref())
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.as_deref())
            .map_or(Mode::Idle, Mode::of_image)
    }
}

/// The metrics as counted so far.
#[derive(Default)]
struct Counters {
    /// Cumulative count per bucket of [`BUCKETS`] (the `+Inf` bucket is `count`).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
    ok: u64,
    server_errors: u64,
}

impl Counters {
    fn record(&mut self, seconds: f64, failed: bool) {
        for (bound, n) in BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
        if failed {
            self.server_errors += 1;
        } else {
            self.ok += 1;
        }
    }

    /// Its histogram samples, in Prometheus's text exposition format.
    fn render_histogram(&self, labels: &str, out: &mut String) {
        for (bound, n) in BUCKETS.iter().zip(self.buckets.iter()) {
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(
            out,
            "http_request_duration_seconds_sum{{{labels}}} {}",
            self.sum
        );
        let _ = writeln!(
            out,
            "http_request_duration_seconds_count{{{labels}}} {}",
            self.count
        );
    }

    /// Its request counter samples.
    fn render_requests(&self, labels: &str, status_label: &str, out: &mut String) {
        let _ = writeln!(
            out,
            "http_requests_total{{{labels},{status_label}=\"200\"}} {}",
            self.ok
        );
        let _ = writeln!(
            out,
            "http_requests_total{{{labels},{status_label}=\"500\"}} {}",
            self.server_errors
        );
    }
}

/// Prometheus's text exposition format for `(labels, counters)` of every service: each
/// family's `# TYPE` once, its samples together, as the format requires.
fn render<'a>(
    services: impl Iterator<Item = (&'a str, &'a Counters)> + Clone,
    status_label: &str,
) -> String {
    let mut out = String::from("# TYPE http_request_duration_seconds histogram\n");
    for (labels, counters) in services.clone() {
        counters.render_histogram(labels, &mut out);
    }
    out.push_str("# TYPE http_requests_total counter\n");
    for (labels, counters) in services {
        counters.render_requests(labels, status_label, &mut out);
    }
    out
}

/// One followed Deployment: how it behaves now and what it has served.
struct Service {
    /// `service="…",namespace="…"`
    labels: String,
    mode: Mode,
    counters: Counters,
}

impl Service {
    /// One synthetic request, as the current mode serves it.
    fn serve_one(&mut self, rng: &mut impl Rng) {
        if self.mode == Mode::Idle {
            return;
        }
        let seconds = match self.mode {
            Mode::Slow => rng.random_range(0.8..1.5),
            _ => rng.random_range(0.02..0.08),
        };
        let failed = self.mode == Mode::Errors && rng.random_bool(0.05);
        self.counters.record(seconds, failed);
    }
}

struct Simulator {
    namespace: String,
    /// `--service`, for the one Deployment followed.
    service_label: Option<String>,
    status_label: String,
    /// By Deployment name.
    services: Mutex<BTreeMap<String, Service>>,
}

impl Simulator {
    fn services(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Service>> {
        self.services.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what `deployment` (now `Some` state, or deleted) asks for.
    fn follow(&self, name: &str, deployment: Option<&Deployment>) {
        let mode = Mode::of_deployment(deployment);
        let mut services = self.services();
        let service = services.entry(name.to_owned()).or_insert_with(|| Service {
            labels: format!(
                "service=\"{}\",namespace=\"{}\"",
                self.service_label.as_deref().unwrap_or(name),
                self.namespace
            ),
            mode: Mode::Idle,
            counters: Counters::default(),
        });
        if service.mode != mode {
            eprintln!("service_simulator: {name} now behaves {mode:?}");
            service.mode = mode;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let simulator = Arc::new(Simulator {
        namespace: args.namespace.clone(),
        service_label: args.service.clone(),
        status_label: args.status_label.clone(),
        services: Mutex::new(BTreeMap::new()),
    });
    // The one Deployment followed has its (zero) series from the start.
    if let Some(name) = &args.deployment {
        simulator.follow(name, None);
    }

    let client = kube::Client::try_default().await?;
    let deployments: Api<Deployment> = Api::namespaced(client, &args.namespace);
    let mut selection = watcher::Config::default();
    if let Some(name) = &args.deployment {
        selection = selection.fields(&format!("metadata.name={name}"));
    }
    let watched = simulator.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher::watcher(deployments, selection).default_backoff());
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Apply(d) | Event::InitApply(d)) => {
                    watched.follow(&d.metadata.name.clone().unwrap_or_default(), Some(&d));
                }
                Ok(Event::Delete(d)) => {
                    watched.follow(&d.metadata.name.unwrap_or_default(), None);
                }
                Ok(Event::Init | Event::InitDone) => {}
                Err(e) => eprintln!("service_simulator: watching deployments: {e}"),
            }
        }
    });

    let traffic = simulator.clone();
    let every = Duration::from_secs(1) / args.rps.max(1);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            let mut rng = rand::rng();
            for service in traffic.services().values_mut() {
                service.serve_one(&mut rng);
            }
        }
    });

    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health_of_the_one))
        .route("/health/{deployment}", get(health))
        .with_state(simulator);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn metrics(State(simulator): State<Arc<Simulator>>) -> String {
    let services = simulator.services();
    let all = services.values().map(|s| (s.labels.as_str(), &s.counters));
    render(all, &simulator.status_label)
}

/// `/health`: of the one Deployment followed (`--deployment`).
async fn health_of_the_one(State(simulator): State<Arc<Simulator>>) -> (StatusCode, &'static str) {
    let services = simulator.services();
    match services.values().next() {
        Some(service) if services.len() == 1 => answer(service.mode),
        _ => (StatusCode::NOT_FOUND, "use /health/<deployment>\n"),
    }
}

async fn health(
    State(simulator): State<Arc<Simulator>>,
    Path(deployment): Path<String>,
) -> (StatusCode, &'static str) {
    match simulator.services().get(&deployment) {
        Some(service) => answer(service.mode),
        None => (StatusCode::NOT_FOUND, "no such deployment\n"),
    }
}

fn answer(mode: Mode) -> (StatusCode, &'static str) {
    if mode == Mode::Unhealthy {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_picks_the_behaviour() {
        assert_eq!(Mode::of_image("registry.local/web:slow"), Mode::Slow);
        assert_eq!(
            Mode::of_image("registry.local:5000/web:errors"),
            Mode::Errors
        );
        assert_eq!(Mode::of_image("web:unhealthy"), Mode::Unhealthy);
        assert_eq!(Mode::of_image("web:idle"), Mode::Idle);
        assert_eq!(
            Mode::of_image("registry.local:5000/web:1.2.0"),
            Mode::Healthy
        );
        assert_eq!(Mode::of_image("registry.local:5000/web"), Mode::Healthy);
        assert_eq!(Mode::of_deployment(None), Mode::Idle);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut c = Counters::default();
        c.record(0.03, false);
        c.record(0.9, true);
        let one = |status_label| {
            render(
                [("service=\"s\",namespace=\"n\"", &c)].into_iter(),
                status_label,
            )
        };
        let text = one("code");
        assert!(text.contains(
            "http_request_duration_seconds_bucket{service=\"s\",namespace=\"n\",le=\"0.05\"} 1"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{service=\"s\",namespace=\"n\",le=\"1\"} 2"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{service=\"s\",namespace=\"n\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("http_requests_total{service=\"s\",namespace=\"n\",code=\"500\"} 1"));
        assert!(text.contains("http_requests_total{service=\"s\",namespace=\"n\",code=\"200\"} 1"));
        let renamed = one("status");
        assert!(
            renamed.contains("http_requests_total{service=\"s\",namespace=\"n\",status=\"500\"} 1")
        );
        assert!(!renamed.contains("code="));
    }

    #[test]
    fn many_services_share_one_type_line_per_family() {
        let (mut a, b) = (Counters::default(), Counters::default());
        a.record(0.03, false);
        let text = render(
            [("service=\"a\"", &a), ("service=\"b\"", &b)].into_iter(),
            "code",
        );
        assert_eq!(text.matches("# TYPE").count(), 2, "{text}");
        let families: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                l.split('{')
                    .next()
                    .unwrap()
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count")
            })
            .collect();
        let first_counter = families
            .iter()
            .position(|f| *f == "http_requests_total")
            .unwrap();
        assert!(
            families[..first_counter]
                .iter()
                .all(|f| *f == "http_request_duration_seconds")
        );
        assert!(
            families[first_counter..]
                .iter()
                .all(|f| *f == "http_requests_total")
        );
        assert!(text.contains("http_requests_total{service=\"a\",code=\"200\"} 1"));
        assert!(text.contains("http_requests_total{service=\"b\",code=\"200\"} 0"));
    }
}
