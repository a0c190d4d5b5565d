//! Which PagerDuty pages a later request resolves, against a real PostgreSQL: only a later
//! successful *rollback* of the same target in the same incident, never an approved unlock
//! (which ends `succeeded` too) and never a success in another incident.

use std::time::Duration;

use rollback_bot::clients::pagerduty::Action;
use rollback_bot::db::pages;
use rollback_bot::db::rollbacks::{self as repo, NewRollback};
use serde_json::json;
use sqlx::PgPool;

fn request(incident: &str) -> NewRollback {
    NewRollback {
        service: "web".into(),
        cluster: "local".into(),
        namespace: "production".into(),
        deployment: "web".into(),
        requested_revision: None,
        incident: Some(incident.into()),
        requested_by: "U0REQUEST".into(),
        channel_id: "C0INCIDENT".into(),
        response_url: None,
        force: false,
        approval_ttl: Duration::from_secs(900),
    }
}

/// A request of `kind` in `incident` that ended in `state` (set directly: the machine's
/// path there is tested elsewhere).
async fn ended(pool: &PgPool, incident: &str, kind: &str, state: &str) -> i64 {
    let id = repo::insert(pool, &request(incident)).await.unwrap().id;
    sqlx::query(
        "update rollback set kind = $2::request_kind, state = $3::rollback_state where id = $1",
    )
    .bind(id)
    .bind(kind)
    .bind(state)
    .execute(pool)
    .await
    .unwrap();
    id
}

async fn resolvers(pool: &PgPool) -> Vec<(i64, i64)> {
    pages::open_triggers(pool)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.trigger_id, t.succeeded_id))
        .collect()
}

#[sqlx::test]
async fn only_a_later_successful_rollback_in_the_incident_resolves_a_page(pool: PgPool) {
    let failed = ended(&pool, "INC-1", "rollback", "escalated").await;
    let trigger = pages::record(
        &pool,
        failed,
        Action::Trigger,
        "rollback-bot/local/production/web",
        &json!({}),
        None,
    )
    .await
    .unwrap()
    .expect("recorded");
    let mut tx = pool.begin().await.unwrap();
    pages::mark_sent(&mut tx, trigger.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(resolvers(&pool).await, vec![], "nothing succeeded since");

    // The approved unlock of the failed rollback's lock ends `succeeded`: not a recovery.
    ended(&pool, "INC-1", "unlock", "succeeded").await;
    assert_eq!(resolvers(&pool).await, vec![], "an unlock resolves nothing");
    // A successful rollback for another incident is not this incident's recovery.
    ended(&pool, "INC-2", "rollback", "succeeded").await;
    assert_eq!(
        resolvers(&pool).await,
        vec![],
        "another incident resolves nothing"
    );

    let recovered = ended(&pool, "INC-1", "rollback", "succeeded").await;
    assert_eq!(resolvers(&pool).await, vec![(trigger.id, recovered)]);
}
