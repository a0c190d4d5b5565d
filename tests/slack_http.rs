//! The Slack endpoints driven through the real axum router with real payload shapes
//! (form-encoded slash commands, `payload=` JSON `block_actions`) signed with Slack's v0
//! scheme, against a local Slack Web API stand-in that enforces the documented contract.
//! The card is posted and updated by the real notifier. Each test gets its own database;
//! the plan step is played by the test (the Kubernetes flow is in tests/slack_e2e.rs).

use slack_sandbox::web_api as slack_standin;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use rollback_bot::clients::k8s::Clusters;
use rollback_bot::clients::slack::SlackApi;
use rollback_bot::config::{Config, Secrets};
use rollback_bot::db::rollbacks::{self as repo, Change};
use rollback_bot::domain::State;
use rollback_bot::domain::machine::Event;
use rollback_bot::slack::{Notifier, actions, handlers};
use serde_json::{Value, json};
use slack_standin::SlackStandIn;
use slack_standin::requests::{self, APP_ID, TEAM_ID, button_value, has_buttons};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const SECRET: &str = "test-signing-secret-0123456789";
const TOKEN: &str = "xoxb-test-token";
const CHANNEL: &str = "C0INCIDENT1";
const REQUESTER: &str = "U0REQUEST01";
const LEAD: &str = "U0LEAD00001";
const LEAD_2: &str = "U0LEAD00002";
const GROUP_LEAD: &str = "U0GROUPLEAD";
const STRANGER: &str = "U0STRANGER1";
const DBA: &str = "U0DBA000001";
const FINGERPRINT: &str = "fp0123456789abcdef";

struct Harness {
    next_url: std::sync::atomic::AtomicU32,
    app: Router,
    pool: PgPool,
    slack: SlackStandIn,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn config(api_url: &str, approval_expiry: &str) -> Config {
    let text = format!(
        r#"
        [server]
        slack_api_url = "{api_url}"
        [slack]
        incident_channels = ["{CHANNEL}"]
        team_id = "{TEAM_ID}"
        app_id = "{APP_ID}"
        lead_user_ids = ["{LEAD}", "{LEAD_2}", "{REQUESTER}"]
        lead_user_group = "S0LEADS"
        dba_user_ids = ["{DBA}"]
        [timeouts]
        approval_expiry = "{approval_expiry}"
        [clusters.local]
        [services.checkout-api]
        cluster = "local"
        [services.payments-api]
        cluster = "local"
        [services.search]
        cluster = "local"
        "#
    );
    let config = Config::parse(&text, "test").unwrap();
    config.validate("test").unwrap();
    config
}

async fn harness_with(pool: PgPool, approval_expiry: &str) -> Harness {
    let slack = SlackStandIn::start(TOKEN).await;
    slack.set_usergroup("S0LEADS", &[GROUP_LEAD]);
    let config = Arc::new(config(&slack.api_url(), approval_expiry));
    // Through serve's composition root; no clusters, so the catalogue is the configured one.
    let state = rollback_bot::startup::state(
        pool.clone(),
        config,
        Arc::new(Secrets {
            slack_signing_secret: Some(SECRET.into()),
            slack_bot_token: Some(TOKEN.into()),
            ..Default::default()
        }),
        Clusters::default(),
        Some(Arc::new(SlackApi::new(&slack.api_url(), TOKEN).unwrap())),
        &tokio_util::sync::CancellationToken::new(),
    )
    .unwrap();
    let api = Arc::new(SlackApi::new(&slack.api_url(), TOKEN).unwrap());
    let notifier =
        Arc::new(Notifier::new(pool.clone(), api).with_sweep_every(Duration::from_millis(200)));
    let shutdown = CancellationToken::new();
    tokio::spawn(notifier.run(shutdown.clone()));
    Harness {
        next_url: std::sync::atomic::AtomicU32::new(100),
        app: handlers::routes().with_state(state),
        pool,
        slack,
        shutdown,
    }
}

async fn harness(pool: PgPool) -> Harness {
    harness_with(pool, "15m").await
}

async fn body_json(response: axum::response::Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

impl Harness {
    async fn send(&self, request: Request<Body>) -> axum::response::Response {
        self.app.clone().oneshot(request).await.unwrap()
    }

    /// `/rollback <text>` by `user` in #incident-response; returns the ack's text.
    async fn command(&self, user: &str, text: &str) -> String {
        self.command_in(user, CHANNEL, "incident-response", text)
            .await
    }

    /// The command's answer: the ack, or when the ack says the answer follows, the answer
    /// posted to the command's `response_url`.
    async fn command_in(&self, user: &str, channel: &str, name: &str, text: &str) -> String {
        let ack = self.ack(user, channel, name, text).await;
        if ack.1 == handlers::PENDING_ACK {
            return self.slack.answer_at(ack.0).await;
        }
        ack.1
    }

    /// Sends the command; returns its `response_url` number and the ack's text.
    async fn ack(&self, user: &str, channel: &str, name: &str, text: &str) -> (u32, String) {
        let n = self
            .next_url
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let body = requests::command_body(user, channel, name, text, &self.slack.response_url(n));
        let response = self
            .send(requests::signed(
                "/slack/commands",
                body,
                SECRET,
                &requests::now(),
            ))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let json = body_json(response).await;
        assert_eq!(json["response_type"], "ephemeral", "{json}");
        (n, json["text"].as_str().unwrap().to_owned())
    }

    async fn click(&self, user: &str, ts: &str, action_id: &str, value: &str) -> StatusCode {
        let body = requests::click_body(
            user,
            CHANNEL,
            ts,
            action_id,
            value,
            &self.slack.response_url(2),
        );
        self.send(requests::signed(
            "/slack/interactions",
            body,
            SECRET,
            &requests::now(),
        ))
        .await
        .status()
    }

    /// Sends a signed command exactly as given (replays included); returns the ack's text.
    /// An ack from `send_command`, or when it says the answer follows, the
    /// `response_url` answer containing `needle`.
    async fn resolved(&self, ack: String, needle: &str) -> String {
        if ack == handlers::PENDING_ACK {
            return self.wait_response(needle).await;
        }
        ack
    }

    async fn send_command(&self, body: &str, ts: &str) -> String {
        let response = self
            .send(requests::signed(
                "/slack/commands",
                body.to_owned(),
                SECRET,
                ts,
            ))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let json = body_json(response).await;
        json["text"].as_str().unwrap().to_owned()
    }

    /// Waits until rollback `id` is in `state`: a click is acked within the ack budget, so
    /// what it changes can land just after the ack.
    async fn wait_state(&self, id: i64, state: State) -> repo::Rollback {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = repo::get(&self.pool, id).await.unwrap();
            if r.state == state {
                return r;
            }
            assert!(Instant::now() < deadline, "#{id} stuck in {}", r.state);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits until `table` has `n` rows: an accepted command may be acked before its work
    /// is done (the ack budget), so what it records can land just after the ack.
    async fn wait_count(&self, table: &str, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count(table).await != n {
            assert!(Instant::now() < deadline, "{table} never reached {n} rows");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Requests a rollback and plays the plan step; returns (id, the posted card's ts).
    async fn awaiting_card(&self, needs_override: bool) -> (i64, String) {
        self.awaiting_card_for("checkout-api 2 INC-77", needs_override)
            .await
    }

    async fn awaiting_card_for(&self, text: &str, needs_override: bool) -> (i64, String) {
        self.awaiting_card_with(text, needs_override, false).await
    }

    async fn awaiting_card_with(
        &self,
        text: &str,
        needs_override: bool,
        needs_dba: bool,
    ) -> (i64, String) {
        let ack = self.command(REQUESTER, text).await;
        assert!(ack.contains("requested"), "{ack}");
        let id = latest_id(&self.pool).await;
        let event = Event::PlanReady {
            fingerprint: FINGERPRINT.into(),
            needs_dba,
            needs_override,
        };
        let plan = json!({ "stand-in": "plan" });
        let change = Change {
            plan: Some(&plan),
            ..Change::by("worker:test", &event)
        };
        repo::apply(&self.pool, id, &change).await.unwrap();
        let ts = self
            .slack
            .wait_for("the approval card", Duration::from_secs(10), |s| {
                s.cards(CHANNEL).first().map(|c| c.ts.clone())
            })
            .await;
        (id, ts)
    }

    /// The card as Slack shows it now.
    fn card(&self, ts: &str) -> slack_standin::Posted {
        self.slack
            .cards(CHANNEL)
            .into_iter()
            .find(|c| c.ts == ts)
            .expect("card")
    }

    async fn wait_card(
        &self,
        ts: &str,
        what: &str,
        check: impl Fn(&slack_standin::Posted) -> bool,
    ) {
        let ts = ts.to_owned();
        self.slack
            .wait_for(what, Duration::from_secs(10), |s| {
                s.cards(CHANNEL)
                    .into_iter()
                    .find(|c| c.ts == ts)
                    .filter(|c| check(c))
            })
            .await;
    }

    async fn wait_response(&self, needle: &str) -> String {
        self.slack
            .wait_for(
                &format!("a response_url answer containing {needle:?}"),
                Duration::from_secs(10),
                |s| {
                    s.responses()
                        .iter()
                        .filter_map(|r| r["text"].as_str())
                        .find(|t| t.contains(needle))
                        .map(str::to_owned)
                },
            )
            .await
    }

    fn assert_contract_kept(&self) {
        assert_eq!(self.slack.violations(), Vec::<String>::new());
    }
}

async fn latest_id(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select max(id) from rollback")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn text_of(blocks: &[Value]) -> String {
    serde_json::to_string(blocks).unwrap()
}

#[sqlx::test]
async fn bad_signature_is_refused_and_nothing_recorded(pool: PgPool) {
    let h = harness(pool).await;
    let body = requests::command_body(
        REQUESTER,
        CHANNEL,
        "incident-response",
        "checkout-api",
        &h.slack.response_url(1),
    );
    let ts = requests::now();
    // Signed with another secret.
    let response = h
        .send(requests::signed(
            "/slack/commands",
            body.clone(),
            "not-the-secret",
            &ts,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Signed correctly, but the body was changed afterwards.
    let mut tampered = requests::signed("/slack/commands", body.clone(), SECRET, &ts);
    *tampered.body_mut() = Body::from(body.replace("checkout-api", "payments-api"));
    assert_eq!(h.send(tampered).await.status(), StatusCode::UNAUTHORIZED);
    // No signature at all.
    let unsigned = Request::post("/slack/commands")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(h.send(unsigned).await.status(), StatusCode::UNAUTHORIZED);
    // A forged click.
    let click = requests::click_body(
        LEAD,
        CHANNEL,
        "1.2",
        actions::APPROVE,
        "1:fp",
        &h.slack.response_url(2),
    );
    let response = h
        .send(requests::signed(
            "/slack/interactions",
            click,
            "forged",
            &ts,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(h.count("rollback").await, 0);
    assert_eq!(h.count("rollback_audit").await, 0);
    assert!(h.slack.calls().is_empty());
}

#[sqlx::test]
async fn stale_timestamp_is_refused(pool: PgPool) {
    let h = harness(pool).await;
    let body = requests::command_body(
        REQUESTER,
        CHANNEL,
        "incident-response",
        "checkout-api",
        &h.slack.response_url(1),
    );
    let stale = (chrono::Utc::now().timestamp() - 301).to_string();
    let response = h
        .send(requests::signed(
            "/slack/commands",
            body.clone(),
            SECRET,
            &stale,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let future = (chrono::Utc::now().timestamp() + 301).to_string();
    let response = h
        .send(requests::signed(
            "/slack/commands",
            body.clone(),
            SECRET,
            &future,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(h.count("rollback").await, 0);
    // Within the window it is accepted.
    let recent = (chrono::Utc::now().timestamp() - 240).to_string();
    let response = h
        .send(requests::signed("/slack/commands", body, SECRET, &recent))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    h.wait_count("rollback", 1).await;
}

#[sqlx::test]
async fn wrong_channel_is_refused_naming_the_incident_channel(pool: PgPool) {
    let h = harness(pool).await;
    let text = h
        .command_in(REQUESTER, "C0RANDOM001", "random", "checkout-api")
        .await;
    assert!(text.contains(&format!("<#{CHANNEL}>")), "{text}");
    // Another channel renamed to the incident channel's name is still another channel.
    let renamed = h
        .command_in(
            REQUESTER,
            "C0RENAMED01",
            "incident-response",
            "checkout-api",
        )
        .await;
    assert!(
        renamed.contains("only works in the incident channel"),
        "{renamed}"
    );
    assert_eq!(h.count("rollback").await, 0);
    // Help works anywhere.
    let help = h
        .command_in(REQUESTER, "C0RANDOM001", "random", "help")
        .await;
    assert!(help.contains("/rollback history <service>"), "{help}");
}

#[sqlx::test]
async fn malformed_commands_get_usage_saying_what_was_wrong(pool: PgPool) {
    let h = harness(pool).await;
    for (text, expected) in [
        ("--force", "no service given"),
        ("cancel", "needs the rollback id"),
        ("cancel abc", "`abc` is not a rollback id"),
        ("checkout-api 0", "positive whole number"),
        ("checkout-api INC-1 41", "`INC-1` is not a revision number"),
        ("history", "needs a service"),
        ("Checkout_API", "not a service name"),
    ] {
        let answer = h.command(REQUESTER, text).await;
        assert!(answer.contains(expected), "{text:?}: {answer}");
        assert!(answer.contains("*Usage*"), "{text:?}: {answer}");
    }
    let unknown = h.command(REQUESTER, "chekout-api").await;
    assert!(
        unknown.contains("Unknown service `chekout-api`"),
        "{unknown}"
    );
    assert!(unknown.contains("`checkout-api`"), "{unknown}");
    let help = h.command(REQUESTER, "help").await;
    assert!(help.contains("/rollback cancel <id>"), "{help}");
    assert_eq!(h.count("rollback").await, 0);
}

#[sqlx::test]
async fn a_second_active_rollback_names_the_first(pool: PgPool) {
    let h = harness(pool).await;
    let first = h.command(REQUESTER, "checkout-api").await;
    assert!(first.contains("Rollback #"), "{first}");
    let id = latest_id(&h.pool).await;
    let second = h.command(LEAD, "checkout-api 3").await;
    assert!(second.contains(&format!("rollback #{id}")), "{second}");
    assert!(second.contains(&format!("<@{REQUESTER}>")), "{second}");
    assert_eq!(h.count("rollback").await, 1);
    let status = h.command(LEAD, "status").await;
    assert!(
        status.contains(&format!("#{id} `checkout-api`")),
        "{status}"
    );
    let detail = h.command(LEAD, &format!("status {id}")).await;
    assert!(detail.contains("Planning"), "{detail}");
}

#[sqlx::test]
async fn self_approval_is_refused_privately_and_audited(pool: PgPool) {
    let h = harness(pool).await;
    let (id, ts) = h.awaiting_card(false).await;
    let value = button_value(&h.card(&ts).blocks, actions::APPROVE).unwrap();
    assert_eq!(value, format!("{id}:{FINGERPRINT}"));
    // The requester is an on-call lead too, and still may not approve.
    assert_eq!(
        h.click(REQUESTER, &ts, actions::APPROVE, &value).await,
        StatusCode::OK
    );
    let answer = h
        .wait_response("you made this request, so you cannot approve it")
        .await;
    assert!(answer.starts_with("❌"), "{answer}");
    let r = repo::get(&h.pool, id).await.unwrap();
    assert_eq!(r.state, State::AwaitingApproval);
    let trail = repo::audit_trail(&h.pool, id).await.unwrap();
    let refused = trail.last().unwrap();
    assert_eq!(
        (
            refused.actor.as_str(),
            refused.action.as_str(),
            refused.outcome.as_str()
        ),
        (REQUESTER, "approve", "refused")
    );
    assert!(has_buttons(&h.card(&ts).blocks));
    h.assert_contract_kept();
}

#[sqlx::test]
async fn non_lead_click_is_refused_and_a_usergroup_lead_may_approve(pool: PgPool) {
    let h = harness(pool).await;
    let (id, ts) = h.awaiting_card(false).await;
    let value = button_value(&h.card(&ts).blocks, actions::APPROVE).unwrap();
    h.click(STRANGER, &ts, actions::APPROVE, &value).await;
    let answer = h.wait_response("only the on-call leads").await;
    assert!(answer.contains("Not done"), "{answer}");
    let trail = repo::audit_trail(&h.pool, id).await.unwrap();
    assert!(
        trail
            .iter()
            .any(|a| a.actor == STRANGER && a.outcome == "refused")
    );
    assert_eq!(
        repo::get(&h.pool, id).await.unwrap().state,
        State::AwaitingApproval
    );
    // A member of the lead user group (resolved with usergroups.users.list at click time).
    h.click(GROUP_LEAD, &ts, actions::APPROVE, &value).await;
    let r = h.wait_state(id, State::Approved).await;
    assert_eq!(r.lead_approved_by.as_deref(), Some(GROUP_LEAD));
    assert!(!h.slack.calls_to("usergroups.users.list").is_empty());
    h.wait_card(&ts, "buttons gone after approval", |c| {
        !has_buttons(&c.blocks)
    })
    .await;
    let card = h.card(&ts);
    assert!(text_of(&card.blocks).contains(&format!("Approved by <@{GROUP_LEAD}>")));
    h.assert_contract_kept();
}

#[sqlx::test]
async fn double_click_changes_nothing(pool: PgPool) {
    let h = harness(pool).await;
    let (id, ts) = h.awaiting_card(false).await;
    let value = button_value(&h.card(&ts).blocks, actions::APPROVE).unwrap();
    let (a, b) = tokio::join!(
        h.click(LEAD, &ts, actions::APPROVE, &value),
        h.click(LEAD, &ts, actions::APPROVE, &value)
    );
    assert_eq!((a, b), (StatusCode::OK, StatusCode::OK));
    // A late second lead's click, too.
    h.click(LEAD_2, &ts, actions::APPROVE, &value).await;
    h.wait_response("Already handled").await;
    let trail = repo::audit_trail(&h.pool, id).await.unwrap();
    let approvals = trail
        .iter()
        .filter(|a| a.action == "approve" && a.outcome == "applied")
        .count();
    assert_eq!(approvals, 1);
    let r = repo::get(&h.pool, id).await.unwrap();
    assert_eq!(r.state, State::Approved);
    h.wait_card(&ts, "buttons gone", |c| !has_buttons(&c.blocks))
        .await;
    h.assert_contract_kept();
}

#[sqlx::test]
async fn expired_approval_leaves_an_expired_card_without_buttons(pool: PgPool) {
    let h = harness_with(pool, "5s").await;
    let (id, ts) = h.awaiting_card(false).await;
    let value = button_value(&h.card(&ts).blocks, actions::APPROVE).unwrap();
    let expires_at = repo::get(&h.pool, id).await.unwrap().expires_at;
    let left = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(300)).await;
    h.click(LEAD, &ts, actions::APPROVE, &value).await;
    let r = h.wait_state(id, State::Expired).await;
    assert_eq!(r.lead_approved_by, None);
    h.wait_card(&ts, "expired card", |c| {
        !has_buttons(&c.blocks) && text_of(&c.blocks).contains("Expired")
    })
    .await;
    // A later click does nothing.
    h.click(LEAD, &ts, actions::APPROVE, &value).await;
    h.wait_response("already expired").await;
    assert_eq!(repo::get(&h.pool, id).await.unwrap().state, State::Expired);
    h.assert_contract_kept();
}

#[sqlx::test]
async fn reject_ends_the_request(pool: PgPool) {
    let h = harness(pool).await;
    let (id, ts) = h.awaiting_card(false).await;
    let value = button_value(&h.card(&ts).blocks, actions::REJECT).unwrap();
    // Only leads may reject.
    h.click(STRANGER, &ts, actions::REJECT, &value).await;
    h.wait_response("only the on-call leads").await;
    h.click(LEAD, &ts, actions::REJECT, &value).await;
    h.wait_state(id, State::Rejected).await;
    h.wait_card(&ts, "rejected card", |c| {
        !has_buttons(&c.blocks) && text_of(&c.blocks).contains(&format!("Rejected* by <@{LEAD}>"))
    })
    .await;
    h.slack
        .wait_for(
            "a thread reply about the rejection",
            Duration::from_secs(10),
            |s| {
                s.thread(&ts)
                    .iter()
                    .find(|m| m.text.contains("Rejected by"))
                    .cloned()
            },
        )
        .await;
    h.assert_contract_kept();
}

#[sqlx::test]
async fn cancel_by_the_requester_or_a_lead_only(pool: PgPool) {
    let h = harness(pool).await;
    let (id, ts) = h.awaiting_card(false).await;
    let refused = h.command(STRANGER, &format!("cancel {id}")).await;
    assert!(refused.contains("Cannot cancel"), "{refused}");
    assert_eq!(
        repo::get(&h.pool, id).await.unwrap().state,
        State::AwaitingApproval
    );
    let done = h.command(REQUESTER, &format!("cancel {id}")).await;
    assert!(done.contains("cancelled"), "{done}");
    assert_eq!(
        repo::get(&h.pool, id).await.unwrap().state,
        State::Cancelled
    );
    let again = h.command(REQUESTER, &format!("cancel {id}")).await;
    assert!(again.contains("already cancelled"), "{again}");
    let missing = h.command(REQUESTER, "cancel 999999").await;
    assert!(missing.contains("no rollback #999999"), "{missing}");
    h.wait_card(&ts, "cancelled card", |c| {
        !has_buttons(&c.blocks) && text_of(&c.blocks).contains("Cancelled")
    })
    .await;
    // The target is free again.
    let next = h.command(REQUESTER, "checkout-api").await;
    assert!(next.contains("requested"), "{next}");
    h.assert_contract_kept();
}

#[sqlx::test]
async fn slack_429_is_retried_after_retry_after(pool: PgPool) {
    let h = harness(pool).await;
    h.slack.rate_limit_next(2, 1);
    let started = Instant::now();
    let (_, ts) = h.awaiting_card(false).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let posts = h.slack.calls_to("chat.postMessage");
    let statuses: Vec<u16> = posts.iter().map(|c| c.status).collect();
    assert_eq!(&statuses[..3], &[429, 429, 200], "{statuses:?}");
    assert_eq!(h.slack.cards(CHANNEL).len(), 1, "posted exactly once");
    assert!(has_buttons(&h.card(&ts).blocks));
    h.assert_contract_kept();
}

#[sqlx::test]
async fn override_wording_and_the_card_as_incident_link(pool: PgPool) {
    let h = harness(pool).await;
    let (id, ts) = h.awaiting_card_for("checkout-api", true).await;
    let link = format!(
        "https://example.slack.com/archives/{CHANNEL}/p{}",
        ts.replace('.', "")
    );
    h.wait_card(&ts, "the card linking itself as the incident", |c| {
        text_of(&c.blocks).contains(&format!("<{link}|this card> is the incident record"))
    })
    .await;
    let card = h.card(&ts);
    assert_eq!(button_value(&card.blocks, actions::APPROVE), None);
    let value = button_value(&card.blocks, actions::APPROVE_OVERRIDE).unwrap();
    assert!(text_of(&card.blocks).contains("Approve (override correlation warning)"));
    // The plain approve action is refused for a plan that needs the override.
    h.click(LEAD, &ts, actions::APPROVE, &value).await;
    h.wait_response("override").await;
    assert_eq!(
        repo::get(&h.pool, id).await.unwrap().state,
        State::AwaitingApproval
    );
    h.click(LEAD, &ts, actions::APPROVE_OVERRIDE, &value).await;
    h.wait_state(id, State::Approved).await;
    h.assert_contract_kept();
}

#[sqlx::test]
async fn database_coupled_rollback_needs_the_dba_sign_off_too(pool: PgPool) {
    let h = harness(pool).await;
    let (id, ts) = h
        .awaiting_card_with("checkout-api 2 INC-9", false, true)
        .await;
    let card = h.card(&ts);
    assert!(text_of(&card.blocks).contains("Database-coupled service"));
    let value = button_value(&card.blocks, actions::DBA_SIGN_OFF).unwrap();
    // A lead is not the DBA group.
    h.click(LEAD, &ts, actions::DBA_SIGN_OFF, &value).await;
    h.wait_response("only the DBA group").await;
    h.click(LEAD, &ts, actions::APPROVE, &value).await;
    assert_eq!(
        repo::get(&h.pool, id).await.unwrap().state,
        State::AwaitingApproval
    );
    h.wait_card(&ts, "lead approved, DBA button left", |c| {
        button_value(&c.blocks, actions::APPROVE).is_none()
            && button_value(&c.blocks, actions::DBA_SIGN_OFF).is_some()
            && text_of(&c.blocks).contains("Awaiting DBA sign-off")
    })
    .await;
    h.click(DBA, &ts, actions::DBA_SIGN_OFF, &value).await;
    let r = h.wait_state(id, State::Approved).await;
    assert_eq!(r.dba_approved_by.as_deref(), Some(DBA));
    h.wait_card(&ts, "both sign-offs on the card", |c| {
        !has_buttons(&c.blocks) && text_of(&c.blocks).contains(&format!("<@{DBA}> (DBA)"))
    })
    .await;
    h.assert_contract_kept();
}

#[sqlx::test]
async fn a_slow_database_still_gets_a_prompt_ack_and_the_answer_follows(pool: PgPool) {
    let h = harness(pool).await;
    // Another transaction holds the table: the request's insert has to wait for it.
    let mut blocker = h.pool.begin().await.unwrap();
    sqlx::query("lock table rollback in exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let started = Instant::now();
    let (n, ack) = h
        .ack(REQUESTER, CHANNEL, "incident-response", "checkout-api 2")
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ack, handlers::PENDING_ACK);
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocker.rollback().await.unwrap();
    let answer = h.slack.answer_at(n).await;
    assert!(answer.contains("requested"), "{answer}");
    assert_eq!(h.count("rollback").await, 1);
    h.assert_contract_kept();
}

#[sqlx::test]
async fn requests_from_another_workspace_or_app_are_refused_and_nothing_recorded(pool: PgPool) {
    let h = harness(pool).await;
    let body = |from: &str, to: &str| {
        requests::command_body(
            REQUESTER,
            CHANNEL,
            "incident-response",
            "checkout-api 2",
            &h.slack.response_url(1),
        )
        .replace(from, to)
    };
    let other_team = h
        .send_command(&body(TEAM_ID, "T0OTHERWS1"), &requests::now())
        .await;
    assert!(
        other_team.contains("does not serve workspace \"T0OTHERWS1\""),
        "{other_team}"
    );
    let other_app = h
        .send_command(&body(APP_ID, "A0IMPOSTOR"), &requests::now())
        .await;
    assert!(
        other_app.contains("Slack app \"A0IMPOSTOR\""),
        "{other_app}"
    );
    let no_app = h
        .send_command(
            &body(&format!("&api_app_id={APP_ID}"), ""),
            &requests::now(),
        )
        .await;
    assert!(no_app.contains("Slack app \"\""), "{no_app}");
    assert_eq!(h.count("rollback").await, 0);

    // A click from another workspace is refused too, before any lookup or transition.
    let (id, ts) = h.awaiting_card(false).await;
    let value = button_value(&h.card(&ts).blocks, actions::APPROVE).unwrap();
    let click = requests::click_body(
        LEAD,
        CHANNEL,
        &ts,
        actions::APPROVE,
        &value,
        &h.slack.response_url(2),
    )
    .replace(TEAM_ID, "T0OTHERWS1");
    let response = h
        .send(requests::signed(
            "/slack/interactions",
            click,
            SECRET,
            &requests::now(),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    h.wait_response("does not serve workspace").await;
    assert_eq!(
        repo::get(&h.pool, id).await.unwrap().state,
        State::AwaitingApproval
    );
    let trail = repo::audit_trail(&h.pool, id).await.unwrap();
    assert!(trail.iter().all(|a| a.actor != LEAD), "{trail:?}");
    h.assert_contract_kept();
}

#[sqlx::test]
async fn a_replayed_command_is_refused_and_does_nothing_twice(pool: PgPool) {
    let h = harness(pool).await;
    let body = requests::command_body(
        REQUESTER,
        CHANNEL,
        "incident-response",
        "checkout-api 2",
        &h.slack.response_url(1),
    );
    let ts = requests::now();
    let first = h.send_command(&body, &ts).await;
    let first = h.resolved(first, "requested").await;
    assert!(first.contains("requested"), "{first}");
    let id = latest_id(&h.pool).await;
    let cancelled = h.command(REQUESTER, &format!("cancel {id}")).await;
    assert!(cancelled.contains("cancelled"), "{cancelled}");
    // The same signed bytes again, inside the signature window: once the first request is
    // cancelled, acting on it again would record a second rollback.
    let replayed = h.send_command(&body, &ts).await;
    let replayed = h.resolved(replayed, "a replay").await;
    assert!(
        replayed.contains("already received (a replay)"),
        "{replayed}"
    );
    assert_eq!(h.count("rollback").await, 1);
    // The replay store is shared through Postgres: a second replica refuses it as well.
    let other_replica = harness(h.pool.clone()).await;
    let replayed = other_replica.send_command(&body, &ts).await;
    // The body's response_url is this harness's stand-in, whichever replica answers.
    let replayed = h.resolved(replayed, "a replay").await;
    assert!(replayed.contains("a replay"), "{replayed}");
    assert_eq!(h.count("rollback").await, 1);
    h.assert_contract_kept();
}

#[sqlx::test]
async fn a_slow_user_group_lookup_still_gets_a_prompt_ack(pool: PgPool) {
    let h = harness(pool).await;
    let (id, ts) = h.awaiting_card(false).await;
    let value = button_value(&h.card(&ts).blocks, actions::APPROVE).unwrap();
    h.slack
        .slow_down("usergroups.users.list", Duration::from_millis(1500));
    // A refusal decided after the ack is sent through response_url.
    let started = Instant::now();
    h.click(STRANGER, &ts, actions::APPROVE, &value).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    h.wait_response("only the on-call leads").await;
    // The slow lookup plus a wait for the database: together past Slack's 3 s.
    let mut blocker = h.pool.begin().await.unwrap();
    sqlx::query("lock table rollback in exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let started = Instant::now();
    let status = h.click(GROUP_LEAD, &ts, actions::APPROVE, &value).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    blocker.rollback().await.unwrap();
    let r = h.wait_state(id, State::Approved).await;
    assert_eq!(r.lead_approved_by.as_deref(), Some(GROUP_LEAD));
    h.wait_card(&ts, "buttons gone after the late approval", |c| {
        !has_buttons(&c.blocks)
    })
    .await;
    h.assert_contract_kept();
}

#[sqlx::test]
async fn user_text_is_echoed_bounded_and_escaped(pool: PgPool) {
    let h = harness(pool).await;
    let answer = h.command(REQUESTER, "<!channel> please").await;
    assert!(
        answer.contains("`&lt;!channel&gt;` is not a service name"),
        "{answer}"
    );
    let long = format!("{}<@U0ADMIN01><#C0SECRET01>", "x".repeat(2900));
    let answer = h.command(REQUESTER, &format!("status {long}")).await;
    assert!(!answer.contains("<@U0ADMIN01>") && !answer.contains("<#C0SECRET01>"));
    assert!(
        answer.contains(&format!("`{}…`", "x".repeat(99))),
        "{answer}"
    );
    assert!(
        answer.chars().count() < rollback_bot::slack::command::USAGE.chars().count() + 250,
        "{} chars",
        answer.chars().count()
    );
    assert_eq!(h.count("rollback").await, 0);
    // The incident text is shown on the card, in the channel: escaped there too.
    let (_, ts) = h
        .awaiting_card_for("checkout-api 2 INC-1<!here>", false)
        .await;
    let card = text_of(&h.card(&ts).blocks);
    assert!(
        card.contains("INC-1&lt;!here&gt;") && !card.contains("<!here>"),
        "{card}"
    );
    h.assert_contract_kept();
}

#[sqlx::test]
async fn a_dba_may_reject_a_database_coupled_rollback(pool: PgPool) {
    let h = harness(pool).await;
    let (id, ts) = h
        .awaiting_card_with("checkout-api 2 INC-9", false, true)
        .await;
    let value = button_value(&h.card(&ts).blocks, actions::REJECT).unwrap();
    // The refusal names both groups for a coupled rollback ...
    h.click(STRANGER, &ts, actions::REJECT, &value).await;
    h.wait_response("only the on-call leads or the DBA group")
        .await;
    // ... and a DBA's veto is applied.
    h.click(DBA, &ts, actions::REJECT, &value).await;
    let r = h.wait_state(id, State::Rejected).await;
    assert_eq!(r.decided_by.as_deref(), Some(DBA));
    h.wait_card(&ts, "rejected by the DBA", |c| {
        !has_buttons(&c.blocks) && text_of(&c.blocks).contains(&format!("Rejected* by <@{DBA}>"))
    })
    .await;
    h.assert_contract_kept();
}

#[sqlx::test]
async fn a_dba_may_not_reject_a_rollback_without_database_coupling(pool: PgPool) {
    let h = harness(pool).await;
    let (id, ts) = h.awaiting_card(false).await;
    let value = button_value(&h.card(&ts).blocks, actions::REJECT).unwrap();
    h.click(DBA, &ts, actions::REJECT, &value).await;
    // The text names exactly who may reject this one.
    let answer = h.wait_response("Not done").await;
    assert_eq!(answer, "❌ Not done: only the on-call leads may do this.");
    assert_eq!(
        repo::get(&h.pool, id).await.unwrap().state,
        State::AwaitingApproval
    );
    let trail = repo::audit_trail(&h.pool, id).await.unwrap();
    let refused = trail.last().unwrap();
    assert_eq!(
        (
            refused.actor.as_str(),
            refused.action.as_str(),
            refused.outcome.as_str()
        ),
        (DBA, "reject", "refused")
    );
    h.assert_contract_kept();
}
