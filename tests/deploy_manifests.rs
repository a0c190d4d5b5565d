//! The manifests under `config/kubernetes/` on the local control plane: the kustomize base
//! and its example overlay render with kubectl's kustomize, are accepted by the API server
//! (server-side dry run, then applied), the bot's Deployment rolls out, and its
//! ServiceAccount can do exactly what the executor needs in an authorised namespace and
//! nothing more.

mod support;
use support::cluster;

use cluster::TestCluster;

const BOT: &str = "system:serviceaccount:rollback-bot:rollback-bot";

fn manifest(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

async fn can_i(cluster: &TestCluster, verb: &str, resource: &str, namespace: &str) -> bool {
    let out = cluster
        .kubectl(&[
            "auth", "can-i", verb, resource, "-n", namespace, "--as", BOT,
        ])
        .await;
    match out.stdout.trim() {
        "yes" => true,
        "no" => false,
        other => panic!("kubectl auth can-i said {other:?}: {}", out.stderr),
    }
}

#[tokio::test]
async fn manifests_apply_and_grant_the_executor_exactly_its_permissions() {
    let cluster = TestCluster::connect().await;
    // The namespace the example overlay's RoleBinding authorises.
    let created = cluster
        .kubectl(&["create", "namespace", "production"])
        .await;
    assert!(
        created.success || created.stderr.contains("AlreadyExists"),
        "{}",
        created.stderr
    );

    let overlay = manifest("config/kubernetes/overlays/example");
    let rendered = cluster.kubectl_ok(&["kustomize", &overlay]).await;
    for kind in [
        "kind: Namespace",
        "kind: ServiceAccount",
        "kind: ClusterRole",
        "kind: ConfigMap",
        "kind: Deployment",
        "kind: Service",
        "kind: RoleBinding",
        "kind: Secret",
        "kind: ValidatingAdmissionPolicy",
        "kind: ValidatingAdmissionPolicyBinding",
    ] {
        assert!(rendered.contains(kind), "{kind} missing from:\n{rendered}");
    }
    cluster
        .kubectl_apply(&["--dry-run=server", "-k", &overlay])
        .await;
    let applied = cluster.kubectl_apply(&["-k", &overlay]).await;
    for object in [
        "deployment.apps/rollback-bot",
        "service/rollback-bot",
        "configmap/rollback-bot",
        "secret/rollback-bot",
        "rolebinding.rbac.authorization.k8s.io/rollback-bot-executor",
    ] {
        assert!(
            applied.contains(object),
            "{object} missing from:\n{applied}"
        );
    }
    let status = cluster
        .kubectl_ok(&[
            "-n",
            "rollback-bot",
            "rollout",
            "status",
            "deployment/rollback-bot",
            "--timeout=90s",
        ])
        .await;
    assert!(status.contains("successfully rolled out"), "{status}");
    let replicas = cluster
        .kubectl_ok(&[
            "-n",
            "rollback-bot",
            "get",
            "deployment/rollback-bot",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ])
        .await;
    assert_eq!(replicas, "2");

    for (verb, resource) in [
        ("get", "deployments"),
        ("list", "deployments"),
        ("watch", "deployments"),
        ("patch", "deployments"),
        ("list", "replicasets"),
        ("list", "pods"),
        ("watch", "pods"),
        ("list", "events"),
        ("get", "namespaces"),
        // Cluster-wide and read-only: is the deploy lock enforced?
        (
            "get",
            "validatingadmissionpolicies.admissionregistration.k8s.io",
        ),
        (
            "list",
            "validatingadmissionpolicybindings.admissionregistration.k8s.io",
        ),
    ] {
        assert!(
            can_i(&cluster, verb, resource, "production").await,
            "the executor needs {verb} {resource}"
        );
    }
    for (verb, resource, namespace) in [
        ("create", "deployments", "production"),
        ("delete", "deployments", "production"),
        ("update", "deployments", "production"),
        ("delete", "pods", "production"),
        ("get", "secrets", "production"),
        ("patch", "replicasets", "production"),
        ("patch", "deployments", "default"),
        ("list", "pods", "kube-system"),
        ("get", "namespaces", "default"),
        (
            "update",
            "validatingadmissionpolicies.admissionregistration.k8s.io",
            "production",
        ),
        (
            "delete",
            "validatingadmissionpolicybindings.admissionregistration.k8s.io",
            "production",
        ),
    ] {
        assert!(
            !can_i(&cluster, verb, resource, namespace).await,
            "the executor must not {verb} {resource} in {namespace}"
        );
    }
}

/// The deploy lock's admission policy and binding (config/kubernetes/base/deploy-lock.yaml) are accepted by the API
/// server: a server-side dry run, then applied. tests/deploy_lock.rs tests what they enforce.
#[tokio::test]
async fn the_deploy_lock_admission_policy_applies() {
    let cluster = TestCluster::connect().await;
    let policy = manifest("config/kubernetes/base/deploy-lock.yaml");
    cluster
        .kubectl_apply(&["--dry-run=server", "-f", &policy])
        .await;
    let applied = cluster.kubectl_apply(&["-f", &policy]).await;
    for object in [
        "validatingadmissionpolicy.admissionregistration.k8s.io/rollback-bot-deploy-lock",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/rollback-bot-deploy-lock",
    ] {
        assert!(
            applied.contains(object),
            "{object} missing from:\n{applied}"
        );
    }
    // The API server type-checks the CEL asynchronously; wait for its verdict.
    let get = [
        "get",
        "validatingadmissionpolicy",
        "rollback-bot-deploy-lock",
        "-o",
        "jsonpath={.metadata.generation} {.status.observedGeneration} {.status.typeChecking}",
    ];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let checked = loop {
        let out = cluster.kubectl_ok(&get).await;
        let mut parts = out.splitn(3, ' ');
        let (generation, observed) = (parts.next(), parts.next());
        if generation.is_some() && generation == observed {
            break parts.next().unwrap_or("").to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the policy was never type-checked: {out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        !checked.contains("expressionWarnings"),
        "the policy's CEL has type warnings: {checked}"
    );
}
