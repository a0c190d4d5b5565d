//! The audit trail against a real PostgreSQL, as the application's own role and as a
//! superuser would attack it: TRUNCATE is refused, the application role (a member of
//! `rollback_bot_app`, owner of nothing) can append but not rewrite or unprotect the trail,
//! the hash chain stays intact under concurrent writers, and a row edited behind the
//! triggers' back is named by the verifier (library, `audit verify` and `check-config`).
//! Also the retention purge of finished plans. Each test gets its own database.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rollback_bot::db::audit::{self, Break, Verdict};
use rollback_bot::db::rollbacks::{self as repo, Change, NewRollback, Outcome};
use rollback_bot::domain::State;
use rollback_bot::domain::machine::Event;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_rollback-bot");
const REQUESTER: &str = "U0REQUESTER";
const LEAD: &str = "U0LEAD0001";
const FINGERPRINT: &str = "fp-audit-1";

fn request(deployment: &str) -> NewRollback {
    NewRollback {
        service: deployment.into(),
        cluster: "local".into(),
        namespace: "production".into(),
        deployment: deployment.into(),
        requested_revision: None,
        incident: Some("INC-7".into()),
        requested_by: REQUESTER.into(),
        channel_id: "C0INCIDENT1".into(),
        response_url: None,
        force: false,
        approval_ttl: Duration::from_secs(900),
    }
}

/// A request taken to `awaiting_approval` with `plan`, as the plan step would: two audit rows.
async fn planned(pool: &PgPool, deployment: &str, plan: &serde_json::Value) -> i64 {
    let id = repo::insert(pool, &request(deployment)).await.unwrap().id;
    let event = Event::PlanReady {
        fingerprint: FINGERPRINT.into(),
        needs_dba: false,
        needs_override: false,
    };
    let change = Change {
        plan: Some(plan),
        ..Change::by("worker:test", &event)
    };
    let applied = repo::apply(pool, id, &change).await.unwrap();
    assert!(matches!(applied.outcome, Outcome::Applied { .. }));
    id
}

async fn reject(pool: &PgPool, id: i64) {
    let event = Event::Reject {
        by: LEAD.into(),
        is_lead: true,
        is_dba: false,
    };
    let applied = repo::apply(pool, id, &Change::by(LEAD, &event))
        .await
        .unwrap();
    assert_eq!(applied.rollback.state, State::Rejected);
}

/// The URL of the test's database, as `user`.
async fn url_of(pool: &PgPool, user: Option<&str>) -> String {
    let db: String = sqlx::query_scalar("select current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let mut url = url::Url::parse(&std::env::var("DATABASE_URL").unwrap()).unwrap();
    url.set_path(&db);
    if let Some(user) = user {
        url.set_username(user).unwrap();
        url.set_password(None).unwrap();
    }
    url.to_string()
}

/// A login role that is a member of `rollback_bot_app`, as README's installation creates
/// for `serve`, connected to the test's database.
struct AppRole {
    name: String,
    pool: PgPool,
}

impl AppRole {
    async fn connect(admin: &PgPool) -> AppRole {
        let name = format!("rbt_app_test_{:08x}", rand::random::<u32>());
        sqlx::query(&format!(
            "create role {name} login in role rollback_bot_app"
        ))
        .execute(admin)
        .await
        .unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url_of(admin, Some(&name)).await)
            .await
            .unwrap();
        AppRole { name, pool }
    }

    async fn drop_role(self, admin: &PgPool) {
        self.pool.close().await;
        sqlx::query(&format!("drop role {}", self.name))
            .execute(admin)
            .await
            .unwrap();
    }
}

async fn refused(pool: &PgPool, sql: &str) -> String {
    match sqlx::query(sql).execute(pool).await {
        Ok(_) => panic!("{sql:?} was allowed"),
        Err(e) => e.to_string(),
    }
}

async fn audit_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from rollback_audit")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn intact(verdict: Verdict) -> i64 {
    match verdict {
        Verdict::Intact { rows, .. } => rows,
        Verdict::Broken(b) => panic!("chain broken: {b}"),
    }
}

#[sqlx::test]
async fn truncate_is_refused_on_the_trail_and_the_rollbacks(pool: PgPool) {
    planned(&pool, "web", &json!({})).await;
    let err = refused(&pool, "truncate rollback_audit").await;
    assert!(
        err.contains("rollback_audit is append-only (TRUNCATE refused)"),
        "{err}"
    );
    let err = refused(&pool, "truncate rollback cascade").await;
    assert!(err.contains("append-only (TRUNCATE refused)"), "{err}");
    assert_eq!(audit_rows(&pool).await, 2);
    assert_eq!(intact(audit::verify(&pool).await.unwrap()), 2);
}

#[sqlx::test]
async fn the_application_role_appends_but_cannot_rewrite_or_unprotect_the_trail(admin: PgPool) {
    let app = AppRole::connect(&admin).await;
    let pool = &app.pool;
    // Everything the bot does works as this role: requests (audited by a trigger),
    // transitions with their audit rows, reading the trail, verifying the chain.
    let id = planned(pool, "web", &json!({ "target": "web" })).await;
    reject(pool, id).await;
    assert_eq!(repo::audit_trail(pool, id).await.unwrap().len(), 3);
    assert_eq!(intact(audit::verify(pool).await.unwrap()), 3);
    assert!(!audit::connected_role_owns_trail(pool).await.unwrap());
    assert!(audit::connected_role_owns_trail(&admin).await.unwrap());

    for sql in [
        "delete from rollback_audit",
        "update rollback_audit set actor = 'U0FORGER'",
        "truncate rollback_audit",
        "update rollback_audit_chain set seq = 0",
        "delete from rollback",
    ] {
        let err = refused(pool, sql).await;
        assert!(err.contains("permission denied"), "{sql}: {err}");
    }
    for sql in [
        "alter table rollback_audit disable trigger rollback_audit_append_only",
        "alter table rollback_audit disable trigger all",
        "drop trigger rollback_audit_chain on rollback_audit",
        "alter table rollback_audit owner to current_user",
    ] {
        let err = refused(pool, sql).await;
        assert!(err.contains("must be owner"), "{sql}: {err}");
    }
    let err = refused(pool, "set session_replication_role = replica").await;
    assert!(err.contains("permission denied"), "{err}");

    assert_eq!(audit_rows(&admin).await, 3, "nothing was lost");
    assert_eq!(intact(audit::verify(&admin).await.unwrap()), 3);
    app.drop_role(&admin).await;
}

#[sqlx::test]
async fn the_chain_stays_intact_under_concurrent_writers(pool: PgPool) {
    let writers: Vec<_> = (0..40)
        .map(|n| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let id = planned(&pool, &format!("svc-{n}"), &json!({})).await;
                reject(&pool, id).await;
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(intact(audit::verify(&pool).await.unwrap()), 40 * 3);
}

/// Runs the real binary against the test's database.
fn run_bin(args: &[&str], database_url: &str, config: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap()])
        .args(args)
        .env("DATABASE_URL", database_url)
        .output()
        .expect("run rollback-bot");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Runs `statements` as a superuser with triggers off (`session_replication_role = replica`),
/// the way an attacker with full database access would bypass the append-only trigger.
async fn behind_the_triggers(pool: &PgPool, statements: &[String]) {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("set session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    for sql in statements {
        sqlx::query(sql).execute(&mut *conn).await.unwrap();
    }
    sqlx::query("reset session_replication_role")
        .execute(&mut *conn)
        .await
        .unwrap();
}

#[sqlx::test]
async fn a_row_edited_behind_the_triggers_back_is_named_by_the_verifier(pool: PgPool) {
    for n in 0..3 {
        let id = planned(&pool, &format!("svc-{n}"), &json!({})).await;
        reject(&pool, id).await;
    }
    let dir = std::env::temp_dir().join(format!("rbt-audit-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("rollback-bot.toml");
    std::fs::write(
        &config,
        "[slack]\nincident_channels = [\"C0INCIDENT1\"]\nlead_user_ids = [\"U0LEAD0001\"]\n[clusters.local]\n\
         kubeconfig = \"/nonexistent\"\n[services.web]\ncluster = \"local\"\n",
    )
    .unwrap();
    let url = url_of(&pool, None).await;
    let (code, text) = run_bin(&["audit", "verify"], &url, &config);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("audit trail intact: 9 row(s)"), "{text}");

    // A superuser bypasses the append-only trigger; the edit keeps the row's stored hash.
    let victim: i64 =
        sqlx::query_scalar("select id from rollback_audit where action = 'reject' order by id")
            .fetch_one(&pool)
            .await
            .unwrap();
    behind_the_triggers(
        &pool,
        &[format!(
            "update rollback_audit set actor = 'U0SOMEONEELSE' where id = {victim}"
        )],
    )
    .await;

    let seq: i64 = sqlx::query_scalar("select chain_seq from rollback_audit where id = $1")
        .bind(victim)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        audit::verify(&pool).await.unwrap(),
        Verdict::Broken(Break::Edited { id: victim, seq })
    );
    let named = format!("row #{victim} (chain position {seq}): its content does not match");
    let (code, text) = run_bin(&["audit", "verify"], &url, &config);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(&format!("audit trail BROKEN: {named}")),
        "{text}"
    );
    let (code, text) = run_bin(&["check-config"], &url, &config);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(&format!("FAIL  audit trail: hash chain broken at {named}")),
        "{text}"
    );

    // Removing the newest row (and so the edit's trace) leaves the head ahead of the chain.
    behind_the_triggers(
        &pool,
        &[
            format!("update rollback_audit set actor = '{LEAD}' where id = {victim}"),
            "delete from rollback_audit where chain_seq = 9".into(),
        ],
    )
    .await;
    assert_eq!(
        audit::verify(&pool).await.unwrap(),
        Verdict::Broken(Break::Head {
            head_seq: 9,
            last_seq: 8
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test]
async fn finished_plans_are_purged_after_the_retention_period(pool: PgPool) {
    let plan = json!({
        "target": { "cluster": "local", "namespace": "production", "deployment": "x" },
        "current": { "revision": 3, "images": [{ "container": "app", "image": "app:3" }] },
        "rollback_to": { "revision": 2, "images": [{ "container": "app", "image": "app:2" }] },
        "image_changes": [{ "container": "app", "from": "app:3", "to": "app:2" }],
        "rollback_to_template": { "spec": { "containers": [{ "name": "app",
            "env": [{ "name": "DB_PASSWORD", "value": "hunter2-secret" }] }] } },
    });
    let old_finished = planned(&pool, "old-finished", &plan).await;
    reject(&pool, old_finished).await;
    let recent_finished = planned(&pool, "recent-finished", &plan).await;
    reject(&pool, recent_finished).await;
    let old_waiting = planned(&pool, "old-waiting", &plan).await;
    sqlx::query("update rollback set updated_at = now() - interval '31 days' where id <> $1")
        .bind(recent_finished)
        .execute(&pool)
        .await
        .unwrap();
    let keep = Duration::from_secs(30 * 24 * 3600);

    // The periodic sweep, as `serve` runs it.
    let shutdown = CancellationToken::new();
    let sweep = tokio::spawn(rollback_bot::engine::retention::run(
        pool.clone(),
        keep,
        Duration::from_millis(50),
        shutdown.clone(),
    ));
    let mut purged = None;
    for _ in 0..200 {
        let r = repo::get(&pool, old_finished).await.unwrap();
        if r.plan
            .as_ref()
            .is_some_and(|p| p.get("purged_at").is_some())
        {
            purged = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    shutdown.cancel();
    sweep.await.unwrap();
    let purged = purged.expect("the sweep purged the old finished plan");
    let stored = purged.plan.clone().unwrap();
    assert!(!stored.to_string().contains("hunter2-secret"), "{stored}");
    assert_eq!(stored["summary"]["rollback_to"], plan["rollback_to"]);
    assert_eq!(stored["summary"]["image_changes"], plan["image_changes"]);
    assert_eq!(purged.plan_fingerprint.as_deref(), Some(FINGERPRINT));
    assert_eq!(purged.state, State::Rejected);

    let trail = repo::audit_trail(&pool, old_finished).await.unwrap();
    let audit = trail.last().unwrap();
    assert_eq!(
        (audit.action.as_str(), audit.actor.as_str()),
        ("purge_plan", "system")
    );
    assert_eq!(audit.detail["fingerprint"], FINGERPRINT);
    assert_eq!(
        trail.iter().filter(|a| a.action == "purge_plan").count(),
        1,
        "purged once, however often the sweep ran"
    );

    // Recent or unfinished rollbacks keep their plans.
    for id in [recent_finished, old_waiting] {
        assert_eq!(repo::get(&pool, id).await.unwrap().plan, Some(plan.clone()));
    }
    assert!(
        repo::purge_finished_plans(&pool, keep)
            .await
            .unwrap()
            .is_empty()
    );
    intact(audit::verify(&pool).await.unwrap());
}
