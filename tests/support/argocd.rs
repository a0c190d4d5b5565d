//! A real Argo CD (application-controller + repo-server) for the GitOps tests: started once
//! per test binary by `scripts/argocd.sh up` in the cluster's directory (it builds the binary
//! on first use and is a no-op when already running), and per test an AppProject, a local
//! `file://` git repository with the demo app's manifests and an auto-synced Application.
//! "Releasing" a version is a commit plus the refresh annotation a webhook would set.
//!
//! Used as `support::argocd` next to `cluster`.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use rollback_bot::clients::k8s::argocd::Application;
use serde_json::{Value, json};

use super::cluster::{self, TestCluster};

/// Argo CD's namespace in the test cluster.
pub const NAMESPACE: &str = "argocd";
/// The demo Deployment's name and the container's name.
pub const DEPLOYMENT: &str = "web";
/// Bound for Argo CD to notice and sync a release.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(90);

/// Starts Argo CD against the test cluster unless it runs already.
///
/// # Panics
/// When the script fails (its output says why).
pub fn ensure_running() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let admin = std::env::var("ROLLBACK_BOT_TEST_KUBECONFIG_ADMIN").expect(
            "ROLLBACK_BOT_TEST_KUBECONFIG_ADMIN is not set: run the tests with `make test`",
        );
        let dir = Path::new(&admin).parent().expect("the cluster's directory");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/argocd.sh");
        let status = Command::new("bash")
            .arg(script)
            .arg("up")
            .arg(dir)
            .status()
            .expect("run scripts/argocd.sh");
        assert!(status.success(), "scripts/argocd.sh up failed: {status}");
    });
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind))
}

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One test's GitOps set-up: namespace `namespace` (authorised for the bot) holding
/// Deployment `web`, deployed by Application `app` of project `project` from `repo`.
pub struct GitOps {
    pub cluster: TestCluster,
    pub namespace: String,
    pub app: String,
    pub project: String,
    pub repo: PathBuf,
    /// Commit SHA of each release, in order.
    pub releases: Vec<(String, String)>,
}

impl Drop for GitOps {
    /// Removes the Application (without cascading: no finalizer) and the project, so that
    /// Argo CD does not keep refreshing from a deleted repository, then the repository.
    fn drop(&mut self) {
        if let (Ok(kubectl), Ok(kubeconfig)) = (
            std::env::var("ROLLBACK_BOT_TEST_KUBECTL"),
            std::env::var("ROLLBACK_BOT_TEST_KUBECONFIG_ADMIN"),
        ) {
            let _ = Command::new(kubectl)
                .args([
                    "--kubeconfig",
                    &kubeconfig,
                    "-n",
                    NAMESPACE,
                    "delete",
                    "--wait=false",
                ])
                .arg(format!("applications.argoproj.io/{}", self.app))
                .arg(format!("appprojects.argoproj.io/{}", self.project))
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.repo);
    }
}

impl GitOps {
    /// Argo CD running, a fresh namespace, project and repository, and an auto-synced
    /// (prune, self-heal) Application that deployed `tags` one release after the other.
    pub async fn new(prefix: &str, tags: &[&str]) -> GitOps {
        ensure_running();
        let cluster = TestCluster::connect().await;
        let namespace = cluster.namespace(prefix).await;
        let repo = std::env::temp_dir().join(format!("rbt-gitops-{namespace}"));
        std::fs::create_dir_all(repo.join("app")).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["config", "user.email", "dev@example.test"]);
        git(&repo, &["config", "user.name", "Developer"]);
        let mut gitops = GitOps {
            cluster,
            app: format!("{namespace}-web"),
            project: namespace.clone(),
            namespace,
            repo,
            releases: Vec::new(),
        };
        gitops.commit(tags[0]);
        gitops.create_project().await;
        gitops.create_application().await;
        gitops.wait_deployed(0).await;
        for tag in &tags[1..] {
            gitops.release(tag).await;
        }
        gitops
    }

    /// Commits the manifests for image tag `tag`; returns the SHA.
    pub fn commit(&mut self, tag: &str) -> String {
        let manifest = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": DEPLOYMENT, "namespace": self.namespace, "labels": {"app": DEPLOYMENT}},
            "spec": {
                "replicas": cluster::REPLICAS,
                "selector": {"matchLabels": {"app": DEPLOYMENT}},
                "template": {
                    "metadata": {"labels": {"app": DEPLOYMENT}},
                    "spec": {"containers": [{"name": "app", "image": cluster::image(DEPLOYMENT, tag)}]},
                },
            },
        });
        std::fs::write(
            self.repo.join("app/deployment.json"),
            serde_json::to_string_pretty(&manifest).unwrap(),
        )
        .unwrap();
        git(&self.repo, &["add", "-A"]);
        git(&self.repo, &["commit", "-qm", &format!("release {tag}")]);
        let sha = git(&self.repo, &["rev-parse", "HEAD"]);
        self.releases.push((tag.to_owned(), sha.clone()));
        sha
    }

    /// Commits `tag`, tells Argo CD (as a webhook would) and waits until it is deployed.
    /// Waits a second first: history times have a resolution of one second.
    pub async fn release(&mut self, tag: &str) {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        self.commit(tag);
        self.refresh().await;
        self.wait_deployed(self.releases.len() - 1).await;
    }

    /// The refresh annotation a git webhook sets.
    pub async fn refresh(&self) {
        self.patch_app(
            json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}),
        )
        .await;
    }

    pub fn apps(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.cluster.admin(), NAMESPACE, &resource("Application"))
    }

    pub fn projects(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.cluster.admin(), NAMESPACE, &resource("AppProject"))
    }

    async fn create_project(&self) {
        let project: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AppProject",
            "metadata": {"name": self.project, "namespace": NAMESPACE},
            "spec": {
                "sourceRepos": ["*"],
                "destinations": [{"server": "https://kubernetes.default.svc", "namespace": self.namespace}],
            },
        }))
        .unwrap();
        self.projects()
            .create(&PostParams::default(), &project)
            .await
            .expect("create AppProject");
    }

    async fn create_application(&self) {
        let app: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": self.app, "namespace": NAMESPACE},
            "spec": {
                "project": self.project,
                "source": {"repoURL": format!("file://{}", self.repo.display()), "targetRevision": "HEAD", "path": "app"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": self.namespace},
                "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
            },
        }))
        .unwrap();
        self.apps()
            .create(&PostParams::default(), &app)
            .await
            .expect("create Application");
    }

    pub async fn patch_app(&self, patch: Value) {
        self.apps()
            .patch(&self.app, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("patch Application");
    }

    /// The Application as the bot reads it.
    pub async fn application(&self) -> Application {
        let object = self.apps().get(&self.app).await.expect("get Application");
        serde_json::from_value(serde_json::to_value(object).unwrap()).unwrap()
    }

    /// The project's `spec.syncWindows`.
    pub async fn sync_windows(&self) -> Vec<Value> {
        let project = self.projects().get(&self.project).await.unwrap();
        project.data["spec"]["syncWindows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls the Application until `done` holds.
    pub async fn wait_app(&self, what: &str, done: impl Fn(&Application) -> bool) -> Application {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        loop {
            let app = self.application().await;
            if done(&app) {
                return app;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {SYNC_TIMEOUT:?}; status: {:?}",
                app.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until release `index` is Argo CD's newest history entry and the Deployment
    /// runs it, rolled out.
    pub async fn wait_deployed(&self, index: usize) {
        let (tag, sha) = self.releases[index].clone();
        // Argo CD often follows a sync with a self-heal re-sync of the same revision: wait
        // until the Application has been quiet (no operation, same history) for a while, or a
        // request right after would find an operation in progress.
        let settled = |app: &Application| {
            app.status.history.last().is_some_and(|h| h.revision == sha)
                && rollback_bot::clients::k8s::argocd::refusal(app).is_none()
        };
        let mut before = self
            .wait_app(&format!("release {tag} synced"), settled)
            .await;
        loop {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let now = self
                .wait_app(&format!("release {tag} settled"), settled)
                .await;
            if now.status.history.len() == before.status.history.len() {
                break;
            }
            before = now;
        }
        self.wait_image(&tag).await;
    }

    /// Waits until the Deployment runs `tag`, rolled out.
    pub async fn wait_image(&self, tag: &str) {
        let deadline = Instant::now() + SYNC_TIMEOUT;
        loop {
            let status = self.cluster.wait_rollout(&self.namespace, DEPLOYMENT).await;
            if self.image().await == cluster::image(DEPLOYMENT, tag) && !status.is_waiting() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "deployment never ran {tag}: {}",
                self.image().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The Deployment's image now.
    pub async fn image(&self) -> String {
        let d = self
            .cluster
            .deployments(&self.namespace)
            .get(DEPLOYMENT)
            .await
            .unwrap();
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    }

    /// Deletes the Application while finalizer `hold` keeps it (deletion pending).
    pub async fn delete_held(&self, hold: &str) {
        self.patch_app(json!({"metadata": {"finalizers": [hold]}}))
            .await;
        self.apps()
            .delete(&self.app, &DeleteParams::default())
            .await
            .expect("delete Application");
    }
}
