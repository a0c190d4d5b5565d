use chrono::TimeZone;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

use super::*;

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, second).unwrap()
}

fn entry(id: i64, revision: &str, deployed: u32) -> HistoryEntry {
    HistoryEntry {
        id,
        revision: revision.into(),
        source: Some(json!({"repoURL": "file:///repo", "path": "app", "targetRevision": "HEAD"})),
        sources: None,
        deployed_at: Some(at(deployed)),
        deploy_started_at: Some(at(deployed)),
        initiated_by: Some(json!({"automated": true})),
    }
}

/// An Application as the API returns it (camelCase JSON).
fn app(extra: Value) -> Application {
    let mut base = json!({
        "metadata": {"name": "demo", "namespace": "argocd", "uid": "u-1", "resourceVersion": "7"},
        "spec": {
            "project": "team",
            "source": {"repoURL": "file:///repo", "path": "app", "targetRevision": "HEAD"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "demo"},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}, "syncOptions": ["CreateNamespace=true"]},
        },
        "status": {
            "history": [
                {"id": 0, "revision": "a".repeat(40), "deployedAt": "2026-11-22T10:00:00Z", "source": {"path": "app"}},
                {"id": 1, "revision": "b".repeat(40), "deployedAt": "2026-11-22T10:00:10Z", "source": {"path": "app"}},
                {"id": 2, "revision": "c".repeat(40), "deployedAt": "2026-11-22T10:00:20Z", "source": {"path": "app"}},
            ],
            "sync": {"status": "Synced", "revision": "c".repeat(40)},
            "health": {"status": "Healthy"},
        },
    });
    merge(&mut base, extra);
    serde_json::from_value(base).unwrap()
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

fn deployment(annotations: Value, labels: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "demo", "namespace": "demo", "annotations": annotations, "labels": labels},
    }))
    .unwrap()
}

#[test]
fn detection_prefers_the_setting_then_the_tracking_id_then_the_label() {
    let tracked = deployment(
        json!({TRACKING_ID_ANNOTATION: "demo:apps/Deployment:demo/demo"}),
        json!({INSTANCE_LABEL: "helm-release"}),
    );
    assert_eq!(
        detect(Some("configured"), &tracked),
        Detection::Configured {
            application: "configured".into()
        }
    );
    assert_eq!(
        detect(None, &tracked),
        Detection::TrackingId {
            application: "demo".into(),
            namespace: None
        }
    );
    assert_eq!(
        detect(
            Some("  "),
            &deployment(json!({}), json!({INSTANCE_LABEL: "web"}))
        ),
        Detection::InstanceLabel {
            application: "web".into()
        }
    );
    assert_eq!(
        detect(None, &deployment(json!({}), json!({}))),
        Detection::None
    );
}

#[test]
fn a_tracking_id_of_an_app_in_any_namespace_names_that_namespace() {
    let d = deployment(
        json!({TRACKING_ID_ANNOTATION: "team-a_web:apps/Deployment:demo/demo"}),
        json!({}),
    );
    let detection = detect(None, &d);
    assert_eq!(detection.application("argocd"), Some(("team-a", "web")));
    // Not a tracking id: ignored, not misread.
    let odd = deployment(json!({TRACKING_ID_ANNOTATION: "garbage"}), json!({}));
    assert_eq!(detect(None, &odd), Detection::None);
    assert!(
        Detection::None.describe().contains("no Argo CD marker"),
        "the plan says why it is native"
    );
}

/// An annotation copied from another Deployment (or set by hand) must not point the bot at
/// that Deployment's Application.
#[test]
fn a_tracking_id_of_another_resource_is_not_trusted() {
    for id in [
        "web:apps/Deployment:prod/web",
        "demo:apps/Deployment:other/demo",
        "demo:apps/StatefulSet:demo/demo",
        "demo:/ConfigMap:demo/demo",
    ] {
        let detection = detect(
            None,
            &deployment(json!({TRACKING_ID_ANNOTATION: id}), json!({})),
        );
        assert_eq!(
            detection,
            Detection::ForeignTrackingId {
                id: id.into(),
                expected: "apps/Deployment:demo/demo".into()
            },
            "{id}"
        );
        assert_eq!(detection.application("argocd"), None);
        assert!(
            detection.describe().contains("names another resource"),
            "{id}"
        );
    }
}

#[test]
fn the_destination_must_be_this_cluster_and_namespace() {
    let with = |destination: Value| app(json!({"spec": {"destination": destination}}));
    let here = with(json!({"server": IN_CLUSTER_SERVER, "namespace": "demo"}));
    assert_eq!(destination_mismatch(&here, "demo"), None);
    let by_name = with(json!({"server": null, "name": "in-cluster", "namespace": "demo"}));
    assert_eq!(destination_mismatch(&by_name, "demo"), None);
    let elsewhere = with(json!({"server": "https://prod-eu.example:6443", "namespace": "demo"}));
    assert!(
        destination_mismatch(&elsewhere, "demo")
            .unwrap()
            .contains("https://prod-eu.example:6443")
    );
    let other_ns = with(json!({"server": IN_CLUSTER_SERVER, "namespace": "shop"}));
    assert!(
        destination_mismatch(&other_ns, "demo")
            .unwrap()
            .contains("namespace shop, not demo")
    );
}

#[test]
fn auto_sync_is_on_when_automated_is_present_and_not_disabled() {
    assert!(auto_sync_enabled(Some(&json!({}))));
    assert!(auto_sync_enabled(Some(&json!({"prune": true}))));
    assert!(auto_sync_enabled(Some(&json!({"enabled": true}))));
    assert!(!auto_sync_enabled(Some(&json!({"enabled": false}))));
    assert!(!auto_sync_enabled(None));
    assert!(!auto_sync_enabled(Some(&Value::Null)));
}

#[test]
fn the_default_target_is_the_entry_before_the_current_one() {
    let (current, target) = select_history(&app(json!({})), None).unwrap();
    assert_eq!((current.id, target.id), (2, 1));
    let (_, target) = select_history(&app(json!({})), Some(0)).unwrap();
    assert_eq!(target.revision, "a".repeat(40));
    // A self-heal re-sync of the current revision is not "the previous deployment".
    let healed = app(json!({"status": {"history": [
        {"id": 0, "revision": "a"}, {"id": 1, "revision": "b"}, {"id": 2, "revision": "b"},
    ]}}));
    let (current, target) = select_history(&healed, None).unwrap();
    assert_eq!(
        (current.id, target.id, target.revision.as_str()),
        (2, 0, "a")
    );
}

#[test]
fn history_selection_refuses_what_it_cannot_do() {
    assert_eq!(
        select_history(&app(json!({})), Some(7)).unwrap_err(),
        "Argo CD application demo has no history ID 7; available history IDs: 0, 1, 2"
    );
    assert!(
        select_history(&app(json!({})), Some(2))
            .unwrap_err()
            .contains("deployed last: nothing to roll back")
    );
    let one = app(
        json!({"status": {"history": [{"id": 0, "revision": "x"}, {"id": 1, "revision": "x"}]}}),
    );
    assert_eq!(
        select_history(&one, None).unwrap_err(),
        "Argo CD application demo has deployed only revision x (#1 (x)): nothing earlier to roll back to"
    );
    let none = app(json!({"status": {"history": []}}));
    assert!(
        select_history(&none, None)
            .unwrap_err()
            .contains("no sync history")
    );
    let multi = app(json!({"spec": {"sources": [{"path": "a"}, {"path": "b"}]}}));
    assert!(
        select_history(&multi, None)
            .unwrap_err()
            .contains("several sources")
    );
}

#[test]
fn a_running_operation_or_a_deletion_refuses() {
    assert_eq!(refusal(&app(json!({}))), None);
    let deleting = app(json!({"metadata": {"deletionTimestamp": "2026-11-22T10:01:00Z"}}));
    assert!(refusal(&deleting).unwrap().contains("is being deleted"));
    let requested = app(json!({"operation": {"sync": {"revision": "x"}}}));
    assert!(refusal(&requested).unwrap().contains("in progress"));
    let running = app(json!({"status": {"operationState": {
        "phase": "Running", "message": "Sync operation blocked by sync window"}}}));
    assert_eq!(
        refusal(&running).unwrap(),
        "another Argo CD operation is in progress on application demo (Sync operation blocked by sync window): \
         wait for it to finish (or terminate it in Argo CD) and request the rollback again"
    );
    let finished = app(json!({"status": {"operationState": {"phase": "Succeeded"}}}));
    assert_eq!(refusal(&finished), None);
}

#[test]
fn the_replica_set_is_the_newest_one_created_before_the_next_sync() {
    let target = entry(1, "b", 10);
    let next = entry(2, "c", 20);
    let sets = [(1, Some(at(0))), (2, Some(at(9))), (3, Some(at(19)))];
    assert_eq!(replica_set_for(&target, Some(&next), &sets), Some(2));
    // The next sync's ReplicaSet created in the very second the target finished: not taken.
    let close_next = entry(2, "c", 10);
    let close = [(1, Some(at(0))), (2, Some(at(9))), (3, Some(at(10)))];
    assert_eq!(replica_set_for(&target, Some(&close_next), &close), Some(2));
    // Nothing old enough: unknown.
    assert_eq!(
        replica_set_for(&target, Some(&next), &[(5, Some(at(30)))]),
        None
    );
    let undated = HistoryEntry {
        deployed_at: None,
        ..target
    };
    assert_eq!(replica_set_for(&undated, None, &sets), None);
}

fn plan() -> ArgoCdPlan {
    let app = app(json!({}));
    let (current, target) = select_history(&app, None).unwrap();
    ArgoCdPlan::new(
        &app,
        "argocd",
        &Detection::TrackingId {
            application: "demo".into(),
            namespace: None,
        },
        current,
        target,
    )
}

#[test]
fn the_plan_binds_application_current_entry_and_target_revision() {
    let p = plan();
    assert!(p.auto_sync);
    assert_eq!(p.sync_options, Some(vec!["CreateNamespace=true".into()]));
    let fields = p.fingerprint_fields();
    assert_eq!(
        fields,
        vec![
            ("argocd-application", "argocd/demo/u-1".to_owned()),
            ("argocd-current", format!("2/{}", "c".repeat(40))),
            ("argocd-target", format!("1/{}", "b".repeat(40))),
        ]
    );
    let summary = p.summary();
    assert!(
        summary.contains("*Argo CD rollback* of application `demo`"),
        "{summary}"
    );
    assert!(summary.contains("History #2 (ccccccc)"), "{summary}");
    assert!(
        summary.contains("Auto-sync will be turned off"),
        "{summary}"
    );
}

#[test]
fn a_new_sync_or_a_recreated_application_makes_the_plan_stale() {
    let p = plan();
    assert_eq!(unchanged_since_plan(&p, &app(json!({}))), Ok(()));
    let synced = app(json!({"status": {"history": [
        {"id": 1, "revision": "b".repeat(40)},
        {"id": 2, "revision": "c".repeat(40)},
        {"id": 3, "revision": "d".repeat(40)},
    ]}}));
    let e = unchanged_since_plan(&p, &synced).unwrap_err();
    assert!(
        e.contains("synced again") && e.contains("#3 (ddddddd)"),
        "{e}"
    );
    let recreated = app(json!({"metadata": {"uid": "u-2"}}));
    assert!(
        unchanged_since_plan(&p, &recreated)
            .unwrap_err()
            .contains("re-created")
    );
    let pruned = app(json!({"status": {"history": [{"id": 2, "revision": "c".repeat(40)}]}}));
    assert!(
        unchanged_since_plan(&p, &pruned)
            .unwrap_err()
            .contains("gone or changed")
    );
}

#[test]
fn auto_sync_is_turned_off_remembering_the_policy_once() {
    let a = app(json!({}));
    let patch = disable_auto_sync_patch(&a).unwrap();
    assert_eq!(
        patch["spec"]["syncPolicy"]["automated"],
        json!({"enabled": false})
    );
    let recorded = patch["metadata"]["annotations"][PREVIOUS_POLICY_ANNOTATION]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(recorded).unwrap(),
        json!({"prune": true, "selfHeal": true})
    );
    // Already recorded by an earlier rollback: the team's policy is kept, not overwritten.
    let again = app(
        json!({"metadata": {"annotations": {PREVIOUS_POLICY_ANNOTATION: "{\"prune\":false}"}}}),
    );
    assert!(
        disable_auto_sync_patch(&again)
            .unwrap()
            .get("metadata")
            .is_none()
    );
    let off = app(json!({"spec": {"syncPolicy": {"automated": {"enabled": false}}}}));
    assert_eq!(disable_auto_sync_patch(&off), None);
}

#[test]
fn the_unlock_restores_the_recorded_policy_exactly() {
    let locked = app(json!({
        "metadata": {"annotations": {PREVIOUS_POLICY_ANNOTATION: "{\"prune\":true,\"selfHeal\":true}"}},
        "spec": {"syncPolicy": {"automated": {"enabled": false, "prune": true, "selfHeal": true}}},
    }));
    let patch = restore_auto_sync_patch(&locked).unwrap();
    assert_eq!(
        patch,
        json!({
            "metadata": {"annotations": {PREVIOUS_POLICY_ANNOTATION: null}},
            "spec": {"syncPolicy": {"automated": {"prune": true, "selfHeal": true, "enabled": null}}},
        })
    );
    let explicit = app(
        json!({"metadata": {"annotations": {PREVIOUS_POLICY_ANNOTATION: "{\"enabled\":true}"}}}),
    );
    assert_eq!(
        restore_auto_sync_patch(&explicit).unwrap()["spec"]["syncPolicy"]["automated"],
        json!({"enabled": true})
    );
    assert_eq!(restore_auto_sync_patch(&app(json!({}))), None);
}

#[test]
fn the_operation_is_argo_cds_own_rollback_guarded_and_attributed() {
    let p = plan();
    let patch = operation_patch(&p, "41", 12, "U0LEAD", "rollback #12 for INC-1");
    assert_eq!(
        patch,
        json!({
            "metadata": {"resourceVersion": "41"},
            "operation": {
                "initiatedBy": {"username": "rollback-bot (approved by U0LEAD)"},
                "info": [
                    {"name": OPERATION_INFO_NAME, "value": "12"},
                    {"name": "reason", "value": "rollback #12 for INC-1"},
                ],
                "sync": {
                    "revision": "b".repeat(40),
                    "source": {"path": "app"},
                    "prune": true,
                    "syncStrategy": {"apply": {}},
                    "syncOptions": ["CreateNamespace=true"],
                },
            },
            "status": {"operationState": null},
        })
    );
}

#[test]
fn operation_progress_follows_only_this_rollbacks_operation() {
    let ours = json!({"info": [{"name": OPERATION_INFO_NAME, "value": "12"}]});
    let theirs = json!({"info": [{"name": OPERATION_INFO_NAME, "value": "11"}]});
    assert_eq!(
        operation_progress(&app(json!({})), 12),
        OperationProgress::NotStarted
    );
    let requested = app(json!({"operation": ours}));
    assert!(matches!(
        operation_progress(&requested, 12),
        OperationProgress::Running(_)
    ));
    let done = |phase: &str, op: &Value| {
        app(
            json!({"status": {"operationState": {"phase": phase, "message": "m", "operation": op}}}),
        )
    };
    assert_eq!(
        operation_progress(&done("Succeeded", &ours), 12),
        OperationProgress::Succeeded("m".into())
    );
    assert_eq!(
        operation_progress(&done("Error", &ours), 12),
        OperationProgress::Failed {
            phase: "Error".into(),
            message: "m".into()
        }
    );
    assert_eq!(
        operation_progress(&done("Succeeded", &theirs), 12),
        OperationProgress::NotStarted
    );
}

#[test]
fn lock_windows_are_added_once_and_removed_only_for_their_application() {
    let other =
        json!({"kind": "allow", "schedule": "0 9 * * *", "duration": "8h", "applications": ["*"]});
    let window = lock_window("demo", 12, "rollback #12 of web");
    assert_eq!(window["kind"], "deny");
    assert_eq!(window["manualSync"], false);
    let added = with_lock_window(std::slice::from_ref(&other), "demo", window.clone()).unwrap();
    assert_eq!(added, vec![other.clone(), window.clone()]);
    assert_eq!(with_lock_window(&added, "demo", window.clone()), None);
    let demo2 = lock_window("demo2", 13, "rollback #13");
    let both = with_lock_window(&added, "demo2", demo2.clone()).unwrap();
    assert_eq!(
        without_lock_window(&both, "demo").unwrap(),
        vec![other.clone(), demo2]
    );
    assert_eq!(without_lock_window(&[other], "demo"), None);
}

#[test]
fn errors_say_whether_they_are_refusals_or_worth_a_retry() {
    assert!(Error::Refused("x".into()).is_refusal());
    assert!(Error::Stale("x".into()).is_refusal());
    let failed = Error::OperationFailed {
        phase: "Failed".into(),
        message: "one or more objects failed to apply".into(),
    };
    assert!(!failed.is_refusal() && !failed.is_transient());
    assert_eq!(
        failed.to_string(),
        "the Argo CD sync ended Failed: one or more objects failed to apply"
    );
    let conflict = Error::from(kube::Error::Api(Box::new(kube::core::Status {
        code: 409,
        message: "conflict".into(),
        ..Default::default()
    })));
    assert!(conflict.is_transient());
}
