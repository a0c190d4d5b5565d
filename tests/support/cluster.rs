//! Fixtures for tests against the local Kubernetes control plane started by
//! `scripts/cluster.sh up` (through `make test`): API clients for cluster-admin and for the
//! executor's ServiceAccount, a fresh namespace per test authorised for the executor, and
//! Deployments rolled through several revisions the way people deploy.
//!
//! Used as `support::cluster`. It panics when the
//! cluster's environment variables are missing: these tests never skip silently.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Container, Namespace, PodSpec, PodTemplateSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use rollback_bot::clients::k8s::{
    CHANGE_CAUSE_ANNOTATION, Clusters, RolloutStatus, rollout_status,
};

/// Name of the cluster in the executor's [`Clusters`].
pub const CLUSTER: &str = "local";
/// Replicas of fixture Deployments.
pub const REPLICAS: i32 = 3;
/// `progressDeadlineSeconds` of fixture Deployments: short, so stuck rollouts fail fast.
pub const PROGRESS_DEADLINE_SECONDS: i32 = 10;
/// Upper bound for one fixture rollout (they take a second or two on kwok).
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(90);

const ENV_ADMIN: &str = "ROLLBACK_BOT_TEST_KUBECONFIG_ADMIN";
const ENV_EXECUTOR: &str = "ROLLBACK_BOT_TEST_KUBECONFIG";
const ENV_KUBECTL: &str = "ROLLBACK_BOT_TEST_KUBECTL";

/// The image of revision `tag` of a fixture app; tag `crashloop` crash-loops (kwok stage).
pub fn image(app: &str, tag: &str) -> String {
    format!("registry.local/{app}:{tag}")
}

/// Handles to the running test cluster.
#[derive(Clone)]
pub struct TestCluster {
    admin: Client,
    executor: Client,
    admin_kubeconfig: PathBuf,
    kubectl: PathBuf,
}

/// Output of one kubectl run.
#[derive(Debug)]
pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

fn env_path(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "{var} is not set: these tests need the local Kubernetes control plane; \
             run the tests via `make test`, which starts the cluster \
             (or `scripts/cluster.sh up DIR && . DIR/env`)"
        ),
    }
}

impl TestCluster {
    /// Connects to the cluster named by the environment `scripts/cluster.sh up` wrote.
    ///
    /// # Panics
    /// When the environment is missing or a kubeconfig is unusable.
    pub async fn connect() -> Self {
        let admin_kubeconfig = env_path(ENV_ADMIN);
        let executor_kubeconfig = env_path(ENV_EXECUTOR);
        let kubectl = env_path(ENV_KUBECTL);
        let admin = Clusters::client_from_kubeconfig_file(CLUSTER, &admin_kubeconfig)
            .await
            .unwrap_or_else(|e| panic!("admin kubeconfig {}: {e}", admin_kubeconfig.display()));
        let executor = Clusters::client_from_kubeconfig_file(CLUSTER, &executor_kubeconfig)
            .await
            .unwrap_or_else(|e| {
                panic!("executor kubeconfig {}: {e}", executor_kubeconfig.display())
            });
        Self {
            admin,
            executor,
            admin_kubeconfig,
            kubectl,
        }
    }

    /// Cluster-admin client, for fixtures only.
    pub fn admin(&self) -> Client {
        self.admin.clone()
    }

    /// Client of the `rollback-bot` ServiceAccount: only config/kubernetes/base/rbac.yaml's permissions,
    /// only in namespaces made by [`TestCluster::namespace`].
    pub fn executor(&self) -> Client {
        self.executor.clone()
    }

    /// The executor's clusters: this one, named [`CLUSTER`], with the executor's credentials.
    pub fn executor_clusters(&self) -> Clusters {
        Clusters::from_client(CLUSTER, self.executor())
    }

    /// Creates a fresh namespace `<prefix>-<random>`, binds the executor's ClusterRole in it
    /// (as an operator authorising a namespace would) and waits until the namespace can
    /// take pods and the binding is in force.
    pub async fn namespace(&self, prefix: &str) -> String {
        self.create_namespace(prefix, true).await
    }

    /// Like [`TestCluster::namespace`] but without the RoleBinding: the executor may not
    /// touch anything in it.
    pub async fn unauthorised_namespace(&self, prefix: &str) -> String {
        self.create_namespace(prefix, false).await
    }

    async fn create_namespace(&self, prefix: &str, authorise: bool) -> String {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let prefix: String = prefix.chars().take(40).collect();
        let name = format!("{prefix}-{}", &suffix[..12]);
        let namespaces: Api<Namespace> = Api::all(self.admin());
        namespaces
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        if authorise {
            let bindings: Api<RoleBinding> = Api::namespaced(self.admin(), &name);
            bindings
                .create(
                    &PostParams::default(),
                    &RoleBinding {
                        metadata: ObjectMeta {
                            name: Some("rollback-bot-executor".into()),
                            ..Default::default()
                        },
                        role_ref: RoleRef {
                            api_group: Some("rbac.authorization.k8s.io".into()),
                            kind: "ClusterRole".into(),
                            name: "rollback-bot-executor".into(),
                        },
                        subjects: Some(vec![Subject {
                            kind: "ServiceAccount".into(),
                            name: "rollback-bot".into(),
                            namespace: Some("rollback-bot".into()),
                            ..Default::default()
                        }]),
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("create RoleBinding in {name}: {e}"));
        }

        // Pods are refused until the service-account controller made `default`.
        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin(), &name);
        tokio::time::timeout(
            ROLLOUT_TIMEOUT,
            await_condition(accounts, "default", |sa: Option<&ServiceAccount>| {
                sa.is_some()
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("no default ServiceAccount in {name}"))
        .unwrap_or_else(|e| panic!("watch ServiceAccount in {name}: {e}"));
        if authorise {
            self.await_executor_allowed(&name).await;
        }
        name
    }

    /// The RBAC authorizer learns about new bindings through its informer; ask the API
    /// server (as the executor) until the binding is in force.
    async fn await_executor_allowed(&self, namespace: &str) {
        let reviews: Api<SelfSubjectAccessReview> = Api::all(self.executor());
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.into()),
                    group: Some("apps".into()),
                    resource: Some("deployments".into()),
                    verb: Some("patch".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let allowed = async {
            loop {
                let answer = reviews
                    .create(&PostParams::default(), &review)
                    .await
                    .expect("SelfSubjectAccessReview");
                if answer.status.is_some_and(|s| s.allowed) {
                    return;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), allowed)
            .await
            .unwrap_or_else(|_| panic!("RoleBinding in {namespace} never took effect"));
    }

    /// Creates Deployment `name` (label `app=<name>`, [`REPLICAS`] replicas, container `app`
    /// running `image(name, tags[0])`), then rolls it through the other tags, one revision
    /// each, with change-cause `deploy <image>`, waiting for each rollout to complete.
    pub async fn fixture(&self, namespace: &str, name: &str, tags: &[&str]) -> Deployment {
        let (first, rest) = tags.split_first().expect("at least one tag");
        self.create_deployment(namespace, name, first).await;
        assert_done(&self.wait_rollout(namespace, name).await, name);
        for tag in rest {
            self.set_image(namespace, name, tag).await;
            assert_done(&self.wait_rollout(namespace, name).await, name);
        }
        self.deployments(namespace)
            .get(name)
            .await
            .expect("get fixture deployment")
    }

    /// Creates the Deployment without waiting for its rollout.
    pub async fn create_deployment(&self, namespace: &str, name: &str, tag: &str) -> Deployment {
        let labels = BTreeMap::from([("app".to_owned(), name.to_owned())]);
        let image = image(name, tag);
        let deployment = Deployment {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.clone()),
                annotations: Some(BTreeMap::from([(
                    CHANGE_CAUSE_ANNOTATION.to_owned(),
                    format!("deploy {image}"),
                )])),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(REPLICAS),
                progress_deadline_seconds: Some(PROGRESS_DEADLINE_SECONDS),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "app".into(),
                            image: Some(image),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        };
        self.deployments(namespace)
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap_or_else(|e| panic!("create deployment {namespace}/{name}: {e}"))
    }

    /// Deploys a new image (a new revision) with change-cause `deploy <image>`; does not wait.
    pub async fn set_image(&self, namespace: &str, name: &str, tag: &str) -> Deployment {
        let image = image(name, tag);
        let patch = serde_json::json!({
            "metadata": {"annotations": {CHANGE_CAUSE_ANNOTATION: format!("deploy {image}")}},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}
        });
        self.deployments(namespace)
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .unwrap_or_else(|e| panic!("set image of {namespace}/{name}: {e}"))
    }

    /// Waits (watching the Deployment) until `kubectl rollout status` would stop waiting:
    /// done or progress deadline exceeded.
    pub async fn wait_rollout(&self, namespace: &str, name: &str) -> RolloutStatus {
        let settled = |d: Option<&Deployment>| d.is_some_and(|d| !rollout_status(d).is_waiting());
        let found = tokio::time::timeout(
            ROLLOUT_TIMEOUT,
            await_condition(self.deployments(namespace), name, settled),
        )
        .await
        .unwrap_or_else(|_| {
            panic!("rollout of {namespace}/{name} did not settle within {ROLLOUT_TIMEOUT:?}")
        })
        .unwrap_or_else(|e| panic!("watch {namespace}/{name}: {e}"))
        .unwrap_or_else(|| panic!("{namespace}/{name} was deleted"));
        rollout_status(&found)
    }

    /// Admin API for Deployments in `namespace`.
    pub fn deployments(&self, namespace: &str) -> Api<Deployment> {
        Api::namespaced(self.admin(), namespace)
    }

    /// Runs the test kubectl as cluster-admin.
    /// Kills this cluster's kube-apiserver (SIGKILL) and starts it again with the same
    /// command line after `down_for`. Blocks the calling thread for that long. The new
    /// apiserver outlives the test (it is never waited for); `cluster.sh down` stops it.
    #[allow(clippy::zombie_processes)]
    pub fn restart_apiserver(&self, down_for: Duration) {
        let clusters = self
            .admin_kubeconfig
            .parent()
            .expect("the kubeconfig's directory")
            .join("kwok/clusters/");
        let pattern = format!("{}.*/kube-apiserver ", clusters.display());
        let found = std::process::Command::new("pgrep")
            .args(["-f", &pattern])
            .output()
            .expect("run pgrep");
        let pid = String::from_utf8_lossy(&found.stdout)
            .lines()
            .next()
            .unwrap_or_else(|| panic!("no kube-apiserver matching {pattern}"))
            .trim()
            .to_owned();
        let proc = PathBuf::from("/proc").join(&pid);
        let cmdline = std::fs::read(proc.join("cmdline")).expect("read cmdline");
        let cwd = std::fs::read_link(proc.join("cwd")).expect("read cwd");
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("run kill");
        assert!(killed.success());
        std::thread::sleep(down_for);
        let log = std::fs::File::create(cwd.join("kube-apiserver-restarted.log"))
            .expect("create the restarted apiserver's log");
        std::process::Command::new(&args[0])
            .args(&args[1..])
            .current_dir(&cwd)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("restart kube-apiserver");
    }

    /// `kubectl apply ARGS` (cluster admin), one at a time in this test binary: tests that
    /// apply the same cluster-wide objects (the admission policy) would otherwise race each
    /// other's create ("AlreadyExists").
    pub async fn kubectl_apply(&self, args: &[&str]) -> String {
        static APPLYING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one = APPLYING.lock().await;
        let mut full = vec!["apply"];
        full.extend_from_slice(args);
        self.kubectl_ok(&full).await
    }

    pub async fn kubectl(&self, args: &[&str]) -> KubectlOutput {
        let output = tokio::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {}: {e}", self.kubectl.display()));
        KubectlOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Gives `user` the namespace's `edit` role, as a CI pipeline or a developer would have.
    pub async fn grant_edit(&self, namespace: &str, user: &str) {
        let binding = format!("edit-{}", user.replace(['@', '.'], "-"));
        self.kubectl_ok(&[
            "-n",
            namespace,
            "create",
            "rolebinding",
            &binding,
            "--clusterrole=edit",
            &format!("--user={user}"),
        ])
        .await;
    }

    /// `kubectl set image deployment/<name> app=<image of tag>` as `user` (a re-deploy);
    /// `dry_run` asks the server to run admission only, changing nothing.
    pub async fn set_image_as(
        &self,
        user: &str,
        namespace: &str,
        name: &str,
        tag: &str,
        dry_run: bool,
    ) -> KubectlOutput {
        let image = format!("app={}", image(name, tag));
        let deployment = format!("deployment/{name}");
        let mut args = vec![
            "-n",
            namespace,
            "--as",
            user,
            "set",
            "image",
            &deployment,
            &image,
        ];
        if dry_run {
            args.push("--dry-run=server");
        }
        self.kubectl(&args).await
    }

    /// Runs the test kubectl as cluster-admin and returns stdout; panics on failure.
    pub async fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            out.success,
            "kubectl {} failed: {}{}",
            args.join(" "),
            out.stdout,
            out.stderr
        );
        out.stdout
    }
}

fn assert_done(status: &RolloutStatus, name: &str) {
    assert!(
        matches!(status, RolloutStatus::Done(_)),
        "fixture rollout of {name} did not complete: {status:?}"
    );
}
