//! The `rollback-bot` binary: `serve` (here, wired through `rollback_bot::startup`) and the
//! one-shot commands of `cli.rs` (`migrate`, `check-config`, `plan`, `audit verify`).
//!
//! The edge of the program: with `cli.rs` the only place that uses `anyhow`, reads the process
//! environment and decides exit codes.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use rollback_bot::config::{Config, Secrets, Transport};
use rollback_bot::engine::retention;
use rollback_bot::startup as app;
use rollback_bot::support::readiness::Readiness;
use rollback_bot::support::telemetry;
use rollback_bot::{db, http, steps};

mod cli;

use cli::{AuditCommand, Cli, Command, audit_verify, check_config, migrate, plan};

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve(&cli.config).await,
        Command::Migrate => migrate(&cli.config).await,
        Command::CheckConfig { offline } => check_config(&cli.config, offline).await,
        Command::Plan {
            service,
            revision,
            json,
        } => plan(&cli.config, &service, revision, json).await,
        Command::Audit {
            command: AuditCommand::Verify,
        } => audit_verify(&cli.config).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config_path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = Arc::new(Config::load(config_path)?);
    let secrets = Arc::new(Secrets::from_env());
    // Without its transport's secret the bot would run deaf (every Slack request refused, or
    // no socket at all) while looking healthy: refuse to start instead.
    match config.server.transport {
        Transport::Http => Secrets::require(
            &secrets.slack_signing_secret,
            "SLACK_SIGNING_SECRET",
            "it verifies Slack's requests with server.transport = \"http\"",
        )
        .map(drop)?,
        Transport::SocketMode => Secrets::require(
            &secrets.slack_app_token,
            "SLACK_APP_TOKEN",
            "it opens the connection with server.transport = \"socket_mode\"",
        )
        .map(drop)?,
    }
    for (key, value) in [
        ("slack.team_id", &config.slack.team_id),
        ("slack.app_id", &config.slack.app_id),
    ] {
        if value.is_none() {
            tracing::warn!("{key} is not set: requests are not checked against it");
        }
    }
    let url = Secrets::require(&secrets.database_url, "DATABASE_URL", "the bot's state")?;
    let pool = db::connect(url, config.engine.max_connections)
        .await
        .context("connecting to Postgres")?;
    apply_pending_migrations(&pool).await?;
    let clusters = app::connect_clusters(&config).await?;
    let slack = app::slack_api(&config, &secrets)?;
    let shutdown = CancellationToken::new();
    let state = app::state(pool, config, secrets, clusters, slack, &shutdown)?;

    // The operators' warning for locks that would be words only; in the background, so an
    // API server that is slow to answer does not hold the bot's start-up.
    let (config, executor) = (state.config.clone(), state.executor.clone());
    tokio::spawn(async move {
        for (place, verdict) in steps::lock_enforcement_of_services(&config, &executor).await {
            if !verdict.enforced {
                tracing::warn!(
                    "the deploy lock is NOT enforced in {place}: {}",
                    verdict.summary()
                );
            }
        }
    });
    let escalation = app::escalation(&state).context("setting up PagerDuty")?;
    if state.secrets.pagerduty_routing_key.is_none() {
        tracing::warn!("PAGERDUTY_ROUTING_KEY is not set: failed rollbacks page nobody");
    }
    tokio::spawn(
        escalation
            .clone()
            .run(rollback_bot::steps::escalate::SWEEP_EVERY, shutdown.clone()),
    );
    let tracker = rollback_bot::steps::ticket::tracker_from_config(&state.config, &state.secrets)
        .context("setting up the ticket tracker (tickets.tracker)")?;
    let (engine, notifier) = app::engine(&state, escalation, tracker);
    let readiness = Arc::new(Readiness::default());
    let engine = engine.with_readiness(readiness.clone());
    let workers = tokio::spawn(Arc::new(engine).run(shutdown.clone()));
    match notifier {
        Some(notifier) => drop(tokio::spawn(notifier.run(shutdown.clone()))),
        None => tracing::warn!("SLACK_BOT_TOKEN is not set: no approval cards will be posted"),
    }
    tokio::spawn(retention::run(
        state.pool.clone(),
        state.config.retention.plan_period(),
        retention::SWEEP_EVERY,
        shutdown.clone(),
    ));
    let socket_mode = (state.config.server.transport == Transport::SocketMode).then(|| {
        let (state, readiness, shutdown) = (state.clone(), readiness.clone(), shutdown.clone());
        tokio::spawn(async move {
            let served =
                rollback_bot::slack::socket_mode::serve(state, readiness.clone(), shutdown).await;
            if let Err(e) = &served {
                tracing::error!(error = %e, "Socket Mode stopped");
                readiness.slack_down(format!("Socket Mode stopped: {e}"));
            }
            served
        })
    });
    let (listen, admin_listen) = (state.config.server.listen, state.config.server.admin_listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding server.listen {listen}"))?;
    let admin_listener = tokio::net::TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("binding server.admin_listen {admin_listen}"))?;
    tracing::info!(%listen, %admin_listen, "serving");
    let admin = http::admin_router(&state, readiness);
    let (stop, admin_stop) = (shutdown.clone(), shutdown.clone());
    let server = axum::serve(listener, http::router(state))
        .with_graceful_shutdown(async move { stop.cancelled().await });
    let admin_server = axum::serve(admin_listener, admin)
        .with_graceful_shutdown(async move { admin_stop.cancelled().await });
    tokio::spawn(wait_for_signal(shutdown.clone()));
    let (served, admin_served) = tokio::join!(server, admin_server);
    served.context("HTTP server")?;
    admin_served.context("admin HTTP server")?;
    shutdown.cancel();
    workers.await.context("workers")??;
    if let Some(socket_mode) = socket_mode {
        socket_mode.await.context("Socket Mode")??;
    }
    tracing::info!("shut down cleanly");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
    shutdown.cancel();
}

/// `serve` applies pending migrations only when there are some: with separate roles its
/// role may read the schema's version but not change the schema (`migrate` does that).
async fn apply_pending_migrations(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let pending = db::pending_migrations(pool)
        .await
        .context("reading the schema's version")?;
    if pending.is_empty() {
        return Ok(());
    }
    db::migrate(pool).await.with_context(|| {
        format!(
            "applying {} pending migration(s) as the DATABASE_URL role; when `serve` runs as \
             the application role, run `rollback-bot migrate` with DATABASE_MIGRATION_URL first",
            pending.len()
        )
    })
}
