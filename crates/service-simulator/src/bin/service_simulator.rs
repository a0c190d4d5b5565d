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
//! Until the Deployment has been read, and while it does not exist, there is no traffic.
//!
//! ```text
//! service_simulator --namespace demo --deployment demo-api [--listen 127.0.0.1:0] [--rps 100] [--status-label code]
//! ```
//! It prints `listening on http://ADDR` on stdout once it serves. Kubernetes credentials come
//! from `KUBECONFIG` (or the in-cluster account), as with kubectl.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::watch_object;
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
    /// Name of the Deployment to follow.
    #[arg(long)]
    deployment: String,
    /// The `service` label of the metrics (default: the Deployment's name).
    #[arg(long)]
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

    /// Prometheus's text exposition format.
    fn render(&self, labels: &str, status_label: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# TYPE http_request_duration_seconds histogram");
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
        let _ = writeln!(out, "# TYPE http_requests_total counter");
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
        out
    }
}

struct Simulator {
    labels: String,
    status_label: String,
    mode: Mutex<Mode>,
    counters: Mutex<Counters>,
}

impl Simulator {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One synthetic request, as the current mode serves it.
    fn serve_one(&self) {
        let mode = self.mode();
        if mode == Mode::Idle {
            return;
        }
        let mut rng = rand::rng();
        let seconds = match mode {
            Mode::Slow => rng.random_range(0.8..1.5),
            _ => rng.random_range(0.02..0.08),
        };
        let failed = mode == Mode::Errors && rng.random_bool(0.05);
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(seconds, failed);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let service = args.service.clone().unwrap_or(args.deployment.clone());
    let simulator = Arc::new(Simulator {
        labels: format!("service=\"{service}\",namespace=\"{}\"", args.namespace),
        status_label: args.status_label.clone(),
        mode: Mutex::new(Mode::Idle),
        counters: Mutex::new(Counters::default()),
    });

    let client = kube::Client::try_default().await?;
    let deployments: Api<Deployment> = Api::namespaced(client, &args.namespace);
    let watched = simulator.clone();
    let name = args.deployment.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watch_object(deployments, &name).default_backoff());
        while let Some(event) = events.next().await {
            match event {
                Ok(deployment) => {
                    let mode = Mode::of_deployment(deployment.as_ref());
                    let mut current = watched.mode.lock().unwrap_or_else(|e| e.into_inner());
                    if *current != mode {
                        eprintln!("service_simulator: {name} now behaves {mode:?}");
                        *current = mode;
                    }
                }
                Err(e) => eprintln!("service_simulator: watching {name}: {e}"),
            }
        }
    });

    let traffic = simulator.clone();
    let every = Duration::from_secs(1) / args.rps.max(1);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            traffic.serve_one();
        }
    });

    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(simulator);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn metrics(State(simulator): State<Arc<Simulator>>) -> String {
    let counters = simulator.counters.lock().unwrap_or_else(|e| e.into_inner());
    counters.render(&simulator.labels, &simulator.status_label)
}

async fn health(State(simulator): State<Arc<Simulator>>) -> (StatusCode, &'static str) {
    if simulator.mode() == Mode::Unhealthy {
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
        let text = c.render("service=\"s\",namespace=\"n\"", "code");
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
        let renamed = c.render("service=\"s\",namespace=\"n\"", "status");
        assert!(
            renamed.contains("http_requests_total{service=\"s\",namespace=\"n\",status=\"500\"} 1")
        );
        assert!(!renamed.contains("code="));
    }
}
