//! A local stand-in for GitHub's REST API as the bot uses it, on the shared HTTP core
//! (`http_standin.rs`): `POST /repos/{owner}/{repo}/issues` and `GET
//! /repos/{owner}/{repo}/issues?labels=…&state=…`. It enforces the documented contract —
//! `Authorization: Bearer <token>` (401 `Bad credentials`), a `User-Agent` (403 without),
//! `Accept: application/vnd.github+json` and `X-GitHub-Api-Version: 2022-11-28`, a known
//! repository (404), issues enabled (410), a non-empty `title` and string `labels` (422
//! `Validation Failed`) — recording each breach as a violation. A created issue is answered
//! 201 with `number`, `html_url`, `id`, `state`. Faults (429 with `Retry-After`, down) come
//! from the core.
//!
//! Used as `support::github_standin` next to
//! `http_standin`.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use super::http_standin::{Api, Call, Incoming, Reply, StandIn};

pub const TOKEN: &str = "ghp_testTokenForTheStandIn0123456789";
pub const REPOSITORY: &str = "acme/incidents";

#[derive(Default)]
pub struct GitHub {
    issues: Mutex<Vec<Value>>,
    issues_disabled: AtomicBool,
}

pub struct GitHubStandIn {
    http: StandIn<GitHub>,
}

impl GitHubStandIn {
    pub async fn start() -> Self {
        GitHubStandIn {
            http: StandIn::start(GitHub::default()).await,
        }
    }

    /// The API base URL (for `tickets.github_api_url`).
    pub fn api_url(&self) -> String {
        self.http.url("")
    }

    pub fn http(&self) -> &StandIn<GitHub> {
        &self.http
    }

    /// The repository answers 410 while issues are disabled.
    pub fn disable_issues(&self, disabled: bool) {
        self.http
            .api()
            .issues_disabled
            .store(disabled, Ordering::SeqCst);
    }

    pub fn issues(&self) -> Vec<Value> {
        self.http.api().issues.lock().unwrap().clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.http.calls()
    }

    pub fn violations(&self) -> Vec<String> {
        self.http.violations()
    }
}

fn labels_of(issue: &Value) -> Vec<String> {
    issue["labels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["name"].as_str().map(str::to_owned))
        .collect()
}

impl GitHub {
    fn create(&self, body: &Value) -> Reply {
        let invalid = |field: &str, code: &str| {
            Reply::breach(
                422,
                json!({"message": "Validation Failed",
                       "errors": [{"resource": "Issue", "code": code, "field": field}],
                       "documentation_url": "https://docs.github.com/rest/issues/issues#create-an-issue"}),
                format!("{field}: {code}"),
            )
        };
        match body["title"].as_str() {
            Some(t) if !t.trim().is_empty() => {}
            _ => return invalid("title", "missing_field"),
        }
        if !body["body"].is_null() && !body["body"].is_string() {
            return invalid("body", "invalid");
        }
        let labels = match &body["labels"] {
            Value::Null => vec![],
            Value::Array(ls) if ls.iter().all(Value::is_string) => ls.clone(),
            _ => return invalid("labels", "invalid"),
        };
        let mut issues = self.issues.lock().unwrap();
        let number = issues.len() as u64 + 1;
        let issue = json!({
            "id": 1_000_000 + number,
            "number": number,
            "state": "open",
            "title": body["title"],
            "body": body["body"],
            "labels": labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
            "html_url": format!("https://github.com/{REPOSITORY}/issues/{number}"),
        });
        issues.push(issue.clone());
        Reply::ok(201, issue)
    }

    fn list(&self, request: &Incoming) -> Reply {
        let wanted: Vec<&str> = request
            .query
            .get("labels")
            .map(|l| l.split(',').collect())
            .unwrap_or_default();
        let state = request.query.get("state").map_or("open", String::as_str);
        let per_page = request
            .query
            .get("per_page")
            .and_then(|n| n.parse().ok())
            .unwrap_or(30usize);
        let found: Vec<Value> = self
            .issues
            .lock()
            .unwrap()
            .iter()
            .filter(|i| state == "all" || i["state"] == state)
            .filter(|i| {
                let have = labels_of(i);
                wanted.iter().all(|w| have.iter().any(|h| h == w))
            })
            .take(per_page)
            .cloned()
            .collect();
        Reply::ok(200, Value::Array(found))
    }
}

impl Api for GitHub {
    fn handle(&self, request: &Incoming) -> Reply {
        if request.header("user-agent").is_none_or(str::is_empty) {
            return Reply::breach(
                403,
                json!({"message": "Request forbidden by administrative rules. Please make sure your request has a User-Agent header"}),
                "no User-Agent",
            );
        }
        if request.header("authorization") != Some(format!("Bearer {TOKEN}").as_str()) {
            return Reply::breach(
                401,
                json!({"message": "Bad credentials"}),
                "missing or wrong bearer token",
            );
        }
        if request.header("x-github-api-version") != Some("2022-11-28") {
            return Reply::breach(
                400,
                json!({"message": "Unsupported 'X-GitHub-Api-Version'"}),
                "X-GitHub-Api-Version is not 2022-11-28",
            );
        }
        if request.header("accept") != Some("application/vnd.github+json") {
            return Reply::breach(
                415,
                json!({"message": "Unsupported Accept header"}),
                "Accept is not application/vnd.github+json",
            );
        }
        let issues_path = format!("/repos/{REPOSITORY}/issues");
        if request.path != issues_path {
            return Reply::breach(404, json!({"message": "Not Found"}), "unknown repository");
        }
        if self.issues_disabled.load(Ordering::SeqCst) {
            return Reply::ok(410, json!({"message": "Issues are disabled for this repo"}));
        }
        match request.method.as_str() {
            "POST" if request.is_json() => self.create(&request.body),
            "POST" => Reply::breach(415, json!({"message": "body must be JSON"}), "not JSON"),
            "GET" => self.list(request),
            _ => Reply::breach(404, json!({"message": "Not Found"}), "unknown method"),
        }
    }

    fn throttled(&self) -> Value {
        json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."})
    }
}
