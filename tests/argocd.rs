//! The GitOps path end to end: a Deployment deployed by a real Argo CD (application-controller
//! and repo-server v3.6.1, `scripts/argocd.sh`) from a local git repository, rolled back with
//! `/rollback` through the Slack stand-in, the real handlers, the engine and the Kubernetes
//! steps, with the bot's ServiceAccount token (config/kubernetes/base and the Argo CD RBAC).
//! Also the refusals (operation in progress, unknown history ID, Application being deleted,
//! stale plan) and the RBAC the bot gets in Argo CD's namespace. Needs `make test`.

mod support;
use in_process::{CHANNEL, InProcessBot, WAIT};
use support::{argocd, cluster, in_process};

use std::sync::Arc;
use std::time::{Duration, Instant};

use argocd::{DEPLOYMENT, GitOps};
use rollback_bot::clients::k8s::argocd::{Application, WINDOW_PREFIX};
use rollback_bot::config::Config;
use rollback_bot::db::rollbacks::{self as repo};
use rollback_bot::domain::State;
use rollback_bot::slack::actions;
use serde_json::{Value, json};
use slack_sandbox::web_api as slack_standin;
use slack_standin::SlackStandIn;
use slack_standin::requests::button_value;
use sqlx::PgPool;

const SECRET: &str = "argocd-signing-secret";
const TOKEN: &str = "xoxb-argocd";
const REQUESTER: &str = "U0REQUEST01";
const LEAD: &str = "U0LEAD00001";
/// A second on-call lead: approves the unlock the first one requested.
const LEAD2: &str = "U0LEAD00002";

async fn bot(pool: PgPool, gitops: &GitOps) -> InProcessBot {
    bot_for(pool, &gitops.cluster, &gitops.namespace).await
}

/// The bot knowing service `web` = Deployment `web` in `namespace`.
async fn bot_for(pool: PgPool, cluster: &cluster::TestCluster, namespace: &str) -> InProcessBot {
    let slack = SlackStandIn::start(TOKEN).await;
    let text = format!(
        r#"
        [server]
        slack_api_url = "{}"
        [slack]
        incident_channels = ["{CHANNEL}"]
        lead_user_ids = ["{LEAD}", "{LEAD2}"]
        [timeouts]
        verification = "60s"
        [clusters.local]
        argocd_namespace = "{}"
        [services.web]
        cluster = "local"
        namespace = "{}"
        "#,
        slack.api_url(),
        argocd::NAMESPACE,
        namespace
    );
    let config = Arc::new(Config::parse(&text, "argocd").unwrap());
    config.validate("argocd").unwrap();
    in_process::start(&pool, config, cluster, &slack, (TOKEN, SECRET), "argocd")
}

/// The waits only the GitOps tests need.
impl InProcessBot {
    /// The newest card whose text contains `marker` and that has an Approve button:
    /// (rollback id, ts, button value, card text).
    async fn card_to_approve(&self, marker: &str) -> (i64, String, String, String) {
        // A refused or failed plan shows no button: say why instead of waiting for one.
        let newest: i64 = sqlx::query_scalar("select max(id) from rollback")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let r = repo::get(&self.pool, newest).await.unwrap();
            if r.state == State::AwaitingApproval {
                break;
            }
            assert!(
                Instant::now() < deadline && !r.state.is_terminal(),
                "rollback #{newest} is {}: {:?}",
                r.state,
                r.last_error
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (ts, value, text) = self
            .slack
            .wait_for("a card with its Approve button", WAIT, |s| {
                s.cards(CHANNEL).into_iter().rev().find_map(|c| {
                    let text = serde_json::to_string(&c.blocks).unwrap();
                    let value = button_value(&c.blocks, actions::APPROVE)?;
                    text.contains(marker).then(|| (c.ts.clone(), value, text))
                })
            })
            .await;
        let id = value.split(':').next().unwrap().parse().unwrap();
        (id, ts, value, text)
    }

    /// `/rollback <text>`: the request is refused; returns the reason.
    async fn refused(&self, text: &str) -> String {
        let ack = self.command(REQUESTER, text).await;
        let id: i64 = sqlx::query_scalar("select max(id) from rollback")
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("no rollback after {ack:?}: {e}"));
        let done = self.settled(id).await;
        assert_eq!(done.state, State::Refused, "{:?}", done.last_error);
        done.last_error.unwrap_or_default()
    }
}

fn automated(app: &Application) -> Value {
    app.automated().cloned().unwrap_or(Value::Null)
}

fn ms(from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) -> i64 {
    (to - from).num_milliseconds()
}

/// Done means: an Application auto-synced to a bad commit → `/rollback` → approve → Argo CD
/// syncs the previous revision → the Deployment runs the good image, auto-sync is off and a
/// deny window exists (a new commit is not deployed); the approved unlock restores auto-sync,
/// which deploys the fix. Then the same rollback by hand (`kubectl patch`) for the benchmark.
#[sqlx::test]
async fn an_argo_cd_application_is_rolled_back_through_argo_cd_and_unlocked(pool: PgPool) {
    let mut g = GitOps::new("argocd-e2e", &["1.0.0", "1.1.0", "2.0.0"]).await;
    let bot = bot(pool, &g).await;
    let good_sha = g.releases[1].1.clone();

    let ack = bot.command(REQUESTER, "web INC-12").await;
    assert!(ack.contains("requested"), "{ack}");
    let history = g.application().await.status.history;
    let current_id = history.last().unwrap().id;
    let good_id = history
        .iter()
        .rev()
        .find(|h| h.revision == good_sha)
        .unwrap()
        .id;
    let (id, ts, value, card) = bot.card_to_approve("Argo CD rollback").await;
    for part in [
        format!("application `{}`", g.app),
        "argocd.argoproj.io/tracking-id".to_owned(),
        format!("History #{current_id}"),
        format!("*#{good_id} ({})*", &good_sha[..7]),
        "Auto-sync will be turned off".to_owned(),
    ] {
        assert!(
            card.contains(&part),
            "{part:?} missing from the card: {card}"
        );
    }
    let planned = repo::get(&bot.pool, id).await.unwrap();
    let plan = planned.plan.clone().unwrap();
    assert!(
        plan["path"].as_str().unwrap().starts_with("Argo CD: "),
        "{plan}"
    );
    assert_eq!(plan["argocd"]["target"]["revision"], json!(good_sha));

    bot.click(LEAD, &ts, actions::APPROVE, &value).await;
    let done = bot.settled(id).await;
    assert_eq!(done.state, State::Succeeded, "{:?}", done.last_error);
    assert_eq!(g.image().await, cluster::image(DEPLOYMENT, "1.1.0"));
    let app = g.application().await;
    assert!(!app.auto_sync());
    assert_eq!(automated(&app)["prune"], json!(true), "prune/selfHeal kept");
    let last = app.status.history.last().unwrap();
    assert_eq!(last.revision, good_sha);
    let by = last.initiated_by.clone().unwrap()["username"].clone();
    assert!(
        by.as_str()
            .is_some_and(|u| u.contains("rollback-bot") && u.contains(LEAD)),
        "{by}"
    );
    let windows = g.sync_windows().await;
    assert_eq!(windows.len(), 1, "{windows:?}");
    assert_eq!(windows[0]["kind"], "deny");
    assert_eq!(windows[0]["applications"], json!([g.app]));
    assert!(
        windows[0]["description"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{WINDOW_PREFIX} {} #{id}", g.app))
    );

    // One run's numbers for README: approval → operation requested, approval → verified.
    let approved_at = done.approved_at.unwrap();
    let requested: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(done.steps["execute"]["argocd"]["operation_requested_at"].clone())
            .unwrap();
    let verified: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(done.steps["verify"]["at"].clone()).unwrap();
    let bot_ms = ms(approved_at, verified);
    eprintln!(
        "benchmark: approve → Argo CD operation requested {} ms, approve → verified {bot_ms} ms",
        ms(approved_at, requested)
    );

    // Locked: a new commit is noticed (OutOfSync) but not deployed.
    g.commit("2.0.1");
    let fix_sha = g.releases[3].1.clone();
    g.refresh().await;
    g.wait_app("the fix noticed", |a| {
        a.status.sync.as_ref().and_then(|s| s.revision.as_deref()) == Some(fix_sha.as_str())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(g.image().await, cluster::image(DEPLOYMENT, "1.1.0"));

    // The approved unlock lifts the window and restores the previous policy.
    let ack = bot
        .command(LEAD, "unlock web https://git.example/pr/12")
        .await;
    assert!(ack.contains("Unlock #"), "{ack}");
    let (unlock_id, unlock_ts, unlock_value, unlock_card) = bot.card_to_approve("Unlock #").await;
    assert!(
        unlock_card.contains(&format!(
            "removes the deny sync window of `{}` and restores its auto-sync policy",
            g.app
        )),
        "{unlock_card}"
    );
    // Another lead approves: the requester may not.
    bot.click(LEAD2, &unlock_ts, actions::APPROVE, &unlock_value)
        .await;
    let unlocked = bot.settled(unlock_id).await;
    assert_eq!(
        unlocked.state,
        State::Succeeded,
        "{:?}",
        unlocked.last_error
    );
    let app = g.application().await;
    assert!(app.auto_sync());
    assert_eq!(automated(&app), json!({"prune": true, "selfHeal": true}));
    assert!(g.sync_windows().await.is_empty());
    g.wait_image("2.0.1").await;

    // The same rollback by hand, as the runbook's GitOps section does it with kubectl.
    let hand = Instant::now();
    let app = g.application().await;
    let current = app.status.history.last().unwrap().revision.clone();
    let target = app
        .status
        .history
        .iter()
        .rev()
        .find(|h| h.revision != current)
        .unwrap()
        .clone();
    let kubectl = |patch: Value| {
        let g = &g;
        async move {
            g.cluster
                .kubectl_ok(&[
                    "-n",
                    argocd::NAMESPACE,
                    "patch",
                    "application",
                    &g.app,
                    "--type",
                    "merge",
                    "-p",
                    &patch.to_string(),
                ])
                .await
        }
    };
    kubectl(json!({"spec": {"syncPolicy": {"automated": {"enabled": false}}}})).await;
    kubectl(json!({"operation": {
        "initiatedBy": {"username": "oncall"},
        "sync": {"revision": target.revision, "source": target.source, "prune": true, "syncStrategy": {"apply": {}}},
    }}))
    .await;
    let tag = &g
        .releases
        .iter()
        .find(|(_, sha)| *sha == target.revision)
        .unwrap()
        .0;
    g.wait_image(tag).await;
    let hand_ms = hand.elapsed().as_millis();
    eprintln!(
        "benchmark: by hand (kubectl patch ×2 → rolled out) {hand_ms} ms; bot/by hand = {:.2}",
        bot_ms as f64 / hand_ms as f64
    );
}

/// An operation Argo CD is running (here: a manual sync held by a deny window) refuses the
/// plan: the bot never queues behind or replaces someone else's operation.
#[sqlx::test]
async fn a_running_argo_cd_operation_refuses_the_rollback(pool: PgPool) {
    let g = GitOps::new("argocd-busy", &["1.0.0", "1.1.0", "2.0.0"]).await;
    let bot = bot(pool, &g).await;
    let windows = json!({"spec": {"syncWindows": [{
        "kind": "deny", "schedule": "* * * * *", "duration": "1h",
        "applications": [g.app], "manualSync": false, "description": "change freeze",
    }]}});
    g.projects()
        .patch(
            &g.project,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(windows),
        )
        .await
        .unwrap();
    // The controller learns about the window through its project informer: a sync requested
    // before that goes through (to the revision already deployed, changing nothing); ask
    // again until one is held.
    let blocked = |a: &Application| {
        a.status.operation_state.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.message
                    .as_deref()
                    .is_some_and(|m| m.contains("blocked by sync window"))
        })
    };
    loop {
        g.patch_app(json!({"operation": {
            "initiatedBy": {"username": "oncall"},
            "sync": {"revision": g.releases[2].1, "prune": true},
        }}))
        .await;
        let app = g
            .wait_app("the sync held or done", |a| {
                a.operation.is_none() || blocked(a)
            })
            .await;
        if blocked(&app) {
            break;
        }
    }

    let reason = bot.refused("web INC-13").await;
    assert!(
        reason.contains("another Argo CD operation is in progress")
            && reason.contains("blocked by sync window"),
        "{reason}"
    );
    assert_eq!(g.image().await, cluster::image(DEPLOYMENT, "2.0.0"));
    assert!(g.application().await.auto_sync());
}

/// `/rollback web <N>` takes an Argo CD history ID; an unknown one is refused with the IDs
/// that exist.
#[sqlx::test]
async fn an_unknown_history_id_is_refused_with_the_available_ones(pool: PgPool) {
    let g = GitOps::new("argocd-unknown", &["1.0.0", "1.1.0", "2.0.0"]).await;
    let bot = bot(pool, &g).await;
    let ids: Vec<String> = g
        .application()
        .await
        .status
        .history
        .iter()
        .map(|h| h.id.to_string())
        .collect();
    let reason = bot.refused("web 99 INC-14").await;
    assert_eq!(
        reason,
        format!(
            "Argo CD application {} has no history ID 99; available history IDs: {}",
            g.app,
            ids.join(", ")
        )
    );
    assert_eq!(g.image().await, cluster::image(DEPLOYMENT, "2.0.0"));
}

/// An Application being deleted is not asked to sync anything, and its Deployment is not
/// undone natively either.
#[sqlx::test]
async fn an_application_being_deleted_refuses_the_rollback(pool: PgPool) {
    let g = GitOps::new("argocd-deleting", &["1.0.0", "1.1.0", "2.0.0"]).await;
    let bot = bot(pool, &g).await;
    const HOLD: &str = "rollback-bot.io/test-hold";
    g.delete_held(HOLD).await;
    let reason = bot.refused("web INC-15").await;
    assert_eq!(
        reason,
        format!(
            "Argo CD application {} is being deleted: nothing to roll back through it",
            g.app
        )
    );
    assert_eq!(g.image().await, cluster::image(DEPLOYMENT, "2.0.0"));
    g.patch_app(json!({"metadata": {"finalizers": null}})).await;
}

/// A sync between the plan and its execution (a new release) makes the approved plan stale:
/// nothing is changed, not even auto-sync, and the rollback fails saying why.
#[sqlx::test]
async fn a_sync_after_the_plan_makes_it_stale(pool: PgPool) {
    let mut g = GitOps::new("argocd-stale", &["1.0.0", "1.1.0", "2.0.0"]).await;
    let bot = bot(pool, &g).await;
    bot.command(REQUESTER, "web INC-16").await;
    let (id, ts, value, _) = bot.card_to_approve("Argo CD rollback").await;
    g.release("2.0.1").await;

    bot.click(LEAD, &ts, actions::APPROVE, &value).await;
    let done = bot.settled(id).await;
    assert_eq!(done.state, State::Escalated);
    let reason = done.steps["execute"]["refusal"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("synced again since the plan was made"),
        "{:?}",
        done.steps["execute"]
    );
    assert_eq!(g.image().await, cluster::image(DEPLOYMENT, "2.0.1"));
    let app = g.application().await;
    assert!(app.auto_sync());
    assert!(
        app.metadata
            .annotations
            .unwrap_or_default()
            .keys()
            .all(|k| !k.starts_with("rollback-bot.io/"))
    );
    assert!(g.sync_windows().await.is_empty());
}

/// The bot's ServiceAccount may do exactly what the GitOps path needs in Argo CD's
/// namespace (config/kubernetes/argocd/rbac.yaml, applied by scripts/argocd.sh): read and
/// patch Applications and AppProjects, nothing else, and nothing in other namespaces.
#[tokio::test]
async fn the_service_account_may_read_and_patch_applications_and_projects_only() {
    argocd::ensure_running();
    // With the ServiceAccount's own token (the executor kubeconfig), not impersonation.
    let can_i = |verb: &'static str, resource: &'static str, namespace: &'static str| async move {
        let out = tokio::process::Command::new(std::env::var("ROLLBACK_BOT_TEST_KUBECTL").unwrap())
            .arg("--kubeconfig")
            .arg(std::env::var("ROLLBACK_BOT_TEST_KUBECONFIG").unwrap())
            .args(["auth", "can-i", verb, resource, "-n", namespace])
            .output()
            .await
            .unwrap();
        match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => true,
            "no" => false,
            other => panic!(
                "kubectl auth can-i said {other:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    };
    for (verb, resource) in [
        ("get", "applications.argoproj.io"),
        ("patch", "applications.argoproj.io"),
        ("get", "appprojects.argoproj.io"),
        ("patch", "appprojects.argoproj.io"),
    ] {
        assert!(can_i(verb, resource, "argocd").await, "{verb} {resource}");
        assert!(
            !can_i(verb, resource, "default").await,
            "{verb} {resource} elsewhere"
        );
    }
    for (verb, resource) in [
        ("create", "applications.argoproj.io"),
        ("delete", "applications.argoproj.io"),
        ("update", "applications.argoproj.io"),
        ("list", "applications.argoproj.io"),
        ("create", "appprojects.argoproj.io"),
        ("delete", "appprojects.argoproj.io"),
        ("get", "secrets"),
        ("list", "configmaps"),
    ] {
        assert!(
            !can_i(verb, resource, "argocd").await,
            "{verb} {resource} allowed"
        );
    }
}

/// Argo CD's tracking annotation on a Deployment whose Application does not exist: a native
/// undo would be reverted by whatever applied it, so the plan is refused. The instance label
/// alone (Helm sets it too) naming no Application keeps the native path, and the plan says why.
#[sqlx::test]
async fn a_missing_application_is_never_bypassed_silently(pool: PgPool) {
    argocd::ensure_running();
    let cluster = cluster::TestCluster::connect().await;
    let namespace = cluster.namespace("argocd-ghost").await;
    cluster
        .fixture(&namespace, DEPLOYMENT, &["1.0.0", "1.1.0", "2.0.0"])
        .await;
    let bot = bot_for(pool, &cluster, &namespace).await;
    let annotate = |meta: Value| {
        let cluster = cluster.clone();
        let namespace = namespace.clone();
        async move {
            cluster
                .deployments(&namespace)
                .patch(
                    DEPLOYMENT,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({ "metadata": meta })),
                )
                .await
                .unwrap();
        }
    };
    annotate(json!({"annotations": {
        "argocd.argoproj.io/tracking-id": format!("ghost:apps/Deployment:{namespace}/web")
    }}))
    .await;
    let reason = bot.refused("web INC-17").await;
    assert!(
        reason.contains("is managed by Argo CD")
            && reason.contains("application ghost does not exist in namespace argocd")
            && reason.contains("refusing a native rollback"),
        "{reason}"
    );
    assert_eq!(
        cluster
            .deployments(&namespace)
            .get(DEPLOYMENT)
            .await
            .unwrap()
            .metadata
            .annotations
            .unwrap()["deployment.kubernetes.io/revision"],
        "3",
        "nothing was rolled back"
    );

    // A tracking annotation copied from another Deployment (or forged) names that one: it
    // must not point the bot at the other Deployment's Application.
    annotate(json!({"annotations": {
        "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:payments/checkout"
    }}))
    .await;
    let reason = bot.refused("web INC-19").await;
    assert!(
        reason.contains("names another resource than this deployment")
            && reason.contains(&format!("apps/Deployment:{namespace}/{DEPLOYMENT}"))
            && reason.contains("refusing"),
        "{reason}"
    );

    annotate(json!({
        "annotations": {"argocd.argoproj.io/tracking-id": null},
        "labels": {"app.kubernetes.io/instance": "ghost"},
    }))
    .await;
    bot.command(REQUESTER, "web INC-18").await;
    let (id, _, _, card) = bot.card_to_approve("Rollback").await;
    assert!(!card.contains("Argo CD rollback"), "{card}");
    let plan = repo::get(&bot.pool, id).await.unwrap().plan.unwrap();
    assert_eq!(
        plan["path"],
        json!(format!(
            "native rollout undo: its app.kubernetes.io/instance label is ghost, but no Argo CD \
             application of that name deploys to namespace {namespace}"
        ))
    );
    assert!(plan.get("argocd").is_none(), "{plan}");
}

/// Runbook: nothing is left half-done. A run of the execute step that turned auto-sync off
/// and then crashed (before Argo CD was asked to sync) leaves the Application with auto-sync
/// off and the recorded policy; when the resumed run is refused (here: the approval has grown
/// too old), auto-sync is given back, since no rollback and so no lock follows.
#[sqlx::test]
async fn auto_sync_is_restored_after_a_crash_then_a_refusal(pool: PgPool) {
    use rollback_bot::clients::k8s::Executor;
    use rollback_bot::clients::k8s::argocd::disable_auto_sync_patch;
    use rollback_bot::domain::Step;
    use rollback_bot::engine::{StepOutcome, StepRunner};
    use rollback_bot::steps::KubernetesSteps;

    let g = GitOps::new("argocd-crash-refusal", &["1.0.0", "1.1.0", "2.0.0"]).await;
    let bot = bot(pool, &g).await;
    bot.command(REQUESTER, "web INC-20").await;
    let (id, _, _, _) = bot.card_to_approve("Argo CD rollback").await;
    // What the crashed run did: auto-sync off, its policy recorded on the Application.
    let off = disable_auto_sync_patch(&g.application().await).expect("auto-sync was on");
    g.patch_app(off).await;
    assert!(!g.application().await.auto_sync());

    // The resumed run, for an approval given long ago: refused.
    let mut approved = repo::get(&bot.pool, id).await.unwrap();
    approved.lead_approved_by = Some(LEAD.into());
    approved.approved_at = Some(chrono::Utc::now() - chrono::Duration::hours(3));
    let config = Arc::new(Config::default());
    let steps = KubernetesSteps::new(
        Arc::new(Executor::new(g.cluster.executor_clusters())),
        config,
    );
    match steps.run(Step::Execute, &approved).await {
        StepOutcome::Finished { detail, .. } => assert!(
            detail["refusal"]
                .as_str()
                .unwrap_or_default()
                .contains("approval"),
            "{detail}"
        ),
        other => panic!("the stale execution was not refused: {other:?}"),
    }
    let app = g.application().await;
    assert!(app.auto_sync(), "auto-sync stays off with no lock");
    assert!(
        app.metadata
            .annotations
            .unwrap_or_default()
            .keys()
            .all(|k| !k.starts_with("rollback-bot.io/")),
        "the recorded policy is consumed"
    );
    assert!(g.sync_windows().await.is_empty());
}
