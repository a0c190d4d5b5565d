//! The command line: its arguments (clap) and the one-shot commands — `migrate`,
//! `check-config`, `plan`, `audit verify`. `serve` is in `main.rs`. Like `main.rs`, the
//! edge of the program: `anyhow` and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use rollback_bot::clients::k8s::{PlanContext, Target};
use rollback_bot::config::{Config, Secrets};
use rollback_bot::db::audit::{self, Verdict};
use rollback_bot::engine::catalog::Catalog;
use rollback_bot::startup as app;
use rollback_bot::{config, db, steps};

#[derive(Parser)]
#[command(
    version,
    about = "Slack-driven, approval-gated Kubernetes Deployment rollbacks"
)]
pub struct Cli {
    /// Configuration file (see config/rollback-bot.example.toml).
    #[arg(
        long,
        short,
        env = "ROLLBACK_BOT_CONFIG",
        default_value = "config/rollback-bot.toml",
        global = true
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP (or Socket Mode) server and the rollback workers.
    Serve,
    /// Apply the database migrations and exit (as DATABASE_MIGRATION_URL, else DATABASE_URL).
    Migrate,
    /// Validate the configuration and, where reachable, Postgres and the clusters.
    CheckConfig {
        /// Only validate the file; contact nothing.
        #[arg(long)]
        offline: bool,
    },
    /// Print the rollback plan the approval card would show (read-only).
    Plan {
        service: String,
        /// Revision to roll back to; omitted = the previous one.
        revision: Option<i64>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit trail's hash chain; exit 2 naming the first broken row.
    Verify,
}

pub async fn migrate(config_path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let secrets = Secrets::from_env();
    let url = secrets.migration_database_url();
    let url = Secrets::require(
        &url,
        "DATABASE_MIGRATION_URL or DATABASE_URL",
        "the schema owner's connection",
    )?;
    let pool = db::connect(url, config.engine.max_connections).await?;
    db::migrate(&pool).await?;
    println!("migrations applied");
    Ok(ExitCode::SUCCESS)
}

pub async fn check_config(
    config_path: &std::path::Path,
    offline: bool,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    println!("config {}: valid", config_path.display());
    println!(
        "  transport {:?} on {} (admin on {}), incident channels: {}",
        config.server.transport,
        config.server.listen,
        config.server.admin_listen,
        config.slack.incident_channels.join(", ")
    );
    println!(
        "  workspace {}, app {}",
        config
            .slack
            .team_id
            .as_deref()
            .unwrap_or("(any: slack.team_id unset)"),
        config
            .slack
            .app_id
            .as_deref()
            .unwrap_or("(any: slack.app_id unset)")
    );
    for name in config.services.keys() {
        let s = config.service(name).expect("listed service");
        println!(
            "  service {name}: {}/{}/{}{}",
            s.cluster,
            s.namespace,
            s.deployment,
            if s.database_coupled {
                " (database-coupled: DBA sign-off)"
            } else {
                ""
            }
        );
        match config.validation(name, s.cluster) {
            config::Validation::Skipped(reason) => {
                println!("    recovery validation skipped: {reason}");
            }
            config::Validation::On { prometheus_url, .. } => {
                println!("    recovery validated against {prometheus_url}");
            }
        }
    }
    let secrets = Secrets::from_env();
    println!("  secrets: {secrets:?}");
    match rollback_bot::steps::ticket::tracker_from_config(&config, &secrets) {
        Ok(Some(tracker)) => println!("  post-incident tickets: {}", tracker.name()),
        Ok(None) => println!("  post-incident tickets: none (tickets.tracker)"),
        // `serve` refuses to start like this; say so before it is deployed.
        Err(e) => {
            println!("FAIL  post-incident tickets: {e}");
            return Ok(ExitCode::from(2));
        }
    }
    if offline {
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    let mut report = |what: String, outcome: Result<String, String>| {
        match &outcome {
            Ok(detail) => println!("ok    {what}: {detail}"),
            Err(detail) => println!("FAIL  {what}: {detail}"),
        }
        failed |= outcome.is_err();
    };
    match &secrets.database_url {
        None => report("postgres".into(), Err("DATABASE_URL is not set".into())),
        Some(url) => {
            let checked = async {
                let pool = db::connect(url, 1).await.map_err(|e| e.to_string())?;
                let pending = db::pending_migrations(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((
                    pool,
                    if pending.is_empty() {
                        "reachable, migrations applied".to_string()
                    } else {
                        format!("reachable, {} migration(s) pending", pending.len())
                    },
                    pending.is_empty(),
                ))
            };
            match checked.await {
                Err(e) => report("postgres".into(), Err(e)),
                Ok((pool, detail, current)) => {
                    report("postgres".into(), Ok(detail));
                    // The chain exists once the schema is current.
                    if current {
                        report("audit trail".into(), check_audit_trail(&pool).await);
                    }
                }
            }
        }
    }
    match app::connect_clusters(&config).await {
        Err(e) => report("clusters".into(), Err(e.to_string())),
        Ok(clusters) => {
            for name in clusters.names() {
                let client = clusters.client(&name).expect("listed cluster");
                let version = client
                    .apiserver_version()
                    .await
                    .map(|v| format!("reachable, Kubernetes {}", v.git_version))
                    .map_err(|e| e.to_string());
                report(format!("cluster {name}"), version);
            }
            // Not a failure: rollbacks still work, but their locks would be words only.
            let executor = rollback_bot::clients::k8s::Executor::new(clusters);
            for (place, verdict) in steps::lock_enforcement_of_services(&config, &executor).await {
                if verdict.enforced {
                    println!("ok    deploy lock in {place}: {}", verdict.summary());
                } else {
                    println!(
                        "WARN  deploy lock in {place}: NOT enforced: {}",
                        verdict.summary()
                    );
                }
            }
        }
    }
    for name in config.services.keys() {
        if let Some(outcome) = steps::check_prometheus(&config, name).await {
            report(format!("prometheus for {name}"), outcome);
        }
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The audit trail's chain, and whether `serve`'s role is separated from the schema owner.
async fn check_audit_trail(pool: &sqlx::PgPool) -> Result<String, String> {
    let verdict = audit::verify(pool).await.map_err(|e| e.to_string())?;
    let owns = audit::connected_role_owns_trail(pool)
        .await
        .map_err(|e| e.to_string())?;
    match verdict {
        Verdict::Broken(broken) => Err(format!("hash chain broken at {broken}")),
        Verdict::Intact { rows, .. } => Ok(format!(
            "{rows} row(s), hash chain intact{}",
            if owns {
                "; note: DATABASE_URL's role owns the tables, so the bot itself could disable \
                 the audit triggers (README: Database roles)"
            } else {
                ""
            }
        )),
    }
}

pub async fn audit_verify(config_path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let secrets = Secrets::from_env();
    let url = Secrets::require(&secrets.database_url, "DATABASE_URL", "the bot's state")?;
    let pool = db::connect(url, config.engine.max_connections.min(2))
        .await
        .context("connecting to Postgres")?;
    match audit::verify(&pool).await? {
        Verdict::Intact { rows, head } => {
            println!("audit trail intact: {rows} row(s), head {head}");
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Broken(broken) => {
            println!("audit trail BROKEN: {broken}");
            Ok(ExitCode::from(2))
        }
    }
}

pub async fn plan(
    config_path: &std::path::Path,
    service: &str,
    revision: Option<i64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = Arc::new(Config::load(config_path)?);
    let clusters = app::connect_clusters(&config).await?;
    let shutdown = CancellationToken::new();
    let catalog = Catalog::watch(config.clone(), &clusters, &shutdown)?;
    tokio::time::timeout(std::time::Duration::from_secs(20), catalog.ready())
        .await
        .context("listing the Deployments of clusters.*.discover_namespaces")??;
    let s = catalog.service(service)?;
    shutdown.cancel();
    let target = Target::new(&s.cluster, &s.namespace, &s.deployment);
    let ctx = PlanContext {
        request_time: chrono::Utc::now(),
        correlation_window: chrono::Duration::from_std(config.timeouts.correlation_window)?,
        database_coupled: s.database_coupled,
        force: false,
        kept_annotations: steps::kept_annotations(&config),
    };
    let executor = rollback_bot::clients::k8s::Executor::new(clusters);
    let plan = executor.plan(&target, revision, &ctx).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", describe_plan(&plan));
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan as plain text, in the order of the approval card.
fn describe_plan(plan: &rollback_bot::clients::k8s::RollbackPlan) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let rs = |r: &rollback_bot::clients::k8s::ReplicaSetRef| {
        format!(
            "revision {} ({}, hash {}){}",
            r.revision,
            r.name,
            r.pod_template_hash,
            r.change_cause
                .as_deref()
                .map(|c| format!(" \"{c}\""))
                .unwrap_or_default()
        )
    };
    let _ = writeln!(out, "rollback plan for {}", plan.target);
    let current = plan.current.as_ref().map_or_else(
        || "a template the controller never created a ReplicaSet for".to_owned(),
        rs,
    );
    let _ = writeln!(out, "  current:  {current}");
    let _ = writeln!(out, "  target:   {}", rs(&plan.rollback_to));
    for c in &plan.image_changes {
        let _ = writeln!(
            out,
            "  image {}: {} -> {}",
            c.container,
            c.from.as_deref().unwrap_or("(none)"),
            c.to.as_deref().unwrap_or("(removed)")
        );
    }
    for d in &plan.template_differences {
        let _ = writeln!(out, "  {} {}: {}", d.scope, d.field, d.summary);
    }
    let _ = writeln!(out, "  rollout:  {}", plan.rollout_status.trim_end());
    let _ = writeln!(out, "  correlation: {}", plan.correlation.summary);
    for w in &plan.warnings {
        let _ = writeln!(out, "  warning ({:?}): {}", w.requires, w.message);
    }
    let _ = writeln!(out, "  fingerprint: {}", plan.fingerprint());
    out
}
