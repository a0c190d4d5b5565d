//! The Slack sandbox for people: plays Slack for a local bot (the Web API it calls, and the
//! Socket Mode connection it may open) and serves a browser page of `#incident-response`
//! where a person picks who they are, types `/rollback …` and clicks the card's buttons.
//! docs/sandbox.md describes it; `make run` starts it next to the bot.
//!
//! ```text
//! slack_sandbox [--listen 127.0.0.1:3000] [--bot-url http://127.0.0.1:8080]
//!               [--transport http|socket_mode] [--channel C0LOCALINCIDENT] ...
//! ```
//! Tokens and the signing secret come from the environment, as the bot reads them
//! (`SLACK_BOT_TOKEN`, `SLACK_SIGNING_SECRET`, `SLACK_APP_TOKEN`), with local defaults. It
//! prints `sandbox on http://ADDR` on stdout once it serves.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};
use slack_sandbox::deliver::Transport;
use slack_sandbox::page::{Channel, Sandbox};
use slack_sandbox::people::{self, DemoIds};
use slack_sandbox::web_api::SlackStandIn;

#[derive(Clone, Copy, ValueEnum)]
enum TransportArg {
    Http,
    SocketMode,
}

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// How the bot receives commands and clicks (its `server.transport`).
    #[arg(long, value_enum, default_value = "http")]
    transport: TransportArg,
    /// The bot's Slack-facing listener (HTTP transport).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    bot_url: String,
    /// The incident channel's id (the bot's `slack.incident_channels`).
    #[arg(long, default_value = "C0LOCALINCIDENT")]
    channel: String,
    #[arg(long, default_value = "incident-response")]
    channel_name: String,
    #[arg(long, default_value = "U0LOCALREQUESTER")]
    requester: String,
    /// The on-call lead (first of the bot's `slack.lead_user_ids`).
    #[arg(long, default_value = "U0LOCALLEAD")]
    lead: String,
    #[arg(long, default_value = "U0LOCALLEAD2")]
    second_lead: String,
    /// The DBA (the bot's `slack.dba_user_ids`).
    #[arg(long, default_value = "U0LOCALDBA")]
    dba: String,
    /// Answer Web API calls without Slack's rate limits.
    #[arg(long)]
    no_rate_limits: bool,
    #[arg(
        long,
        env = "SLACK_BOT_TOKEN",
        default_value = "xoxb-sandbox",
        hide_env_values = true
    )]
    bot_token: String,
    #[arg(
        long,
        env = "SLACK_SIGNING_SECRET",
        default_value = "sandbox-signing-secret",
        hide_env_values = true
    )]
    signing_secret: String,
    #[arg(
        long,
        env = "SLACK_APP_TOKEN",
        default_value = "xapp-sandbox",
        hide_env_values = true
    )]
    app_token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let slack = SlackStandIn::new(&args.bot_token, addr);
    if !args.no_rate_limits {
        slack.enforce_rate_limits();
    }
    let transport = match args.transport {
        TransportArg::Http => Transport::Http {
            bot_url: args.bot_url.clone(),
            signing_secret: args.signing_secret.clone(),
        },
        TransportArg::SocketMode => Transport::SocketMode(slack.socket_mode(&args.app_token)),
    };
    let people = people::demo(&DemoIds {
        requester: args.requester,
        lead: args.lead,
        second_lead: args.second_lead,
        dba: args.dba,
        ..DemoIds::default()
    });
    let channel = Channel {
        id: args.channel,
        name: args.channel_name,
    };
    let sandbox = Sandbox::new(slack, transport, people, channel);
    let app = sandbox.routes();
    println!("sandbox on http://{addr}");
    println!("sandbox: the bot's SLACK_API_URL is http://{addr}/api/");
    axum::serve(listener, app).await?;
    Ok(())
}
