//! A DBA sign-off nobody may give: a Deployment annotated as database-coupled while the
//! configuration names no DBA. The plan step (real engine, real Postgres, real control plane)
//! refuses the request with the reason instead of creating an approval that can never complete.
//! (A service coupled in the configuration without a DBA is refused at start-up: config.rs.)

mod support;
use support::cluster;

use std::sync::Arc;
use std::time::Duration;

use cluster::TestCluster;
use rollback_bot::clients::k8s::{DATABASE_COUPLED_ANNOTATION, Executor};
use rollback_bot::config::Config;
use rollback_bot::db::rollbacks::{self as repo, NewRollback};
use rollback_bot::domain::State;
use rollback_bot::engine::{Engine, EngineConfig};
use rollback_bot::steps::{KubernetesSteps, NO_DBA_CONFIGURED};
use sqlx::PgPool;

fn config(namespace: &str, slack_extra: &str) -> Arc<Config> {
    let text = format!(
        r#"
        [slack]
        incident_channels = ["C0INCIDENT1"]
        lead_user_ids = ["U0LEAD0001"]
        {slack_extra}
        [clusters.local]
        [services.web]
        cluster = "local"
        namespace = "{namespace}"
        "#
    );
    let config = Config::parse(&text, "dba-test").unwrap();
    config.validate("dba-test").unwrap();
    Arc::new(config)
}

/// Requests a rollback of `web` and lets one worker run the plan step.
async fn plan_once(pool: &PgPool, cluster: &TestCluster, config: Arc<Config>) -> repo::Rollback {
    let service = config.service("web").unwrap();
    let rollback = repo::insert(
        pool,
        &NewRollback {
            service: "web".into(),
            cluster: "local".into(),
            namespace: service.namespace.into(),
            deployment: "web".into(),
            requested_revision: None,
            incident: Some("INC-9".into()),
            requested_by: "U0REQUESTER".into(),
            channel_id: "C0INCIDENT1".into(),
            response_url: None,
            force: false,
            approval_ttl: Duration::from_secs(900),
        },
    )
    .await
    .unwrap();
    let executor = Arc::new(Executor::new(cluster.executor_clusters()));
    let steps = KubernetesSteps::new(executor, config);
    let engine = Engine::new(pool.clone(), Arc::new(steps), EngineConfig::default());
    assert!(
        engine.run_once("dba-test").await.unwrap(),
        "nothing was due"
    );
    repo::get(pool, rollback.id).await.unwrap()
}

#[sqlx::test]
async fn an_annotated_deployment_without_a_configured_dba_is_refused_at_plan_time(pool: PgPool) {
    let cluster = TestCluster::connect().await;
    let ns = cluster.namespace("dba").await;
    cluster.fixture(&ns, "web", &["1.0.0", "1.1.0"]).await;
    cluster
        .kubectl_ok(&[
            "-n",
            &ns,
            "annotate",
            "deployment/web",
            &format!("{DATABASE_COUPLED_ANNOTATION}=true"),
        ])
        .await;

    let refused = plan_once(&pool, &cluster, config(&ns, "")).await;
    assert_eq!(refused.state, State::Refused, "{:?}", refused.last_error);
    assert_eq!(refused.last_error.as_deref(), Some(NO_DBA_CONFIGURED));
    assert!(refused.plan.is_none(), "no approval card without a plan");
    let trail = repo::audit_trail(&pool, refused.id).await.unwrap();
    assert_eq!(trail.last().unwrap().action, "plan_refused");

    // With a DBA group configured the same Deployment gets a plan that waits for the DBA.
    let planned = plan_once(
        &pool,
        &cluster,
        config(&ns, "dba_user_group = \"S0DBAGROUP\""),
    )
    .await;
    assert_eq!(
        planned.state,
        State::AwaitingApproval,
        "{:?}",
        planned.last_error
    );
    assert!(planned.needs_dba);
}
