//! A local stand-in for Jira Cloud's REST v3 as the bot uses it, on the shared HTTP core
//! (`http_standin.rs`): `POST /rest/api/3/issue` and `POST /rest/api/3/search/jql`. It
//! enforces the documented contract — `Authorization: Basic base64(<email>:<api token>)`
//! (401 otherwise), JSON bodies, `fields.project.key` of an existing project,
//! `fields.issuetype` by a known `name` or `id`, a non-empty `fields.summary` of at most 255
//! characters, `fields.description` in ADF (`{"type":"doc","version":1,"content":[…]}` with
//! non-empty text nodes; v3 rejects a plain string) and `fields.labels` without spaces — answering 400 with
//! `{"errorMessages": [], "errors": {<field>: …}}` like Jira and recording a violation. A
//! created issue is answered 201 `{id, key, self}`. The search understands the one JQL shape
//! the bot sends: `project = "<KEY>" AND labels = "<label>" …`. Faults (429 with
//! `Retry-After`, down) come from the core.
//!
//! Used as `support::jira_standin` next to
//! `http_standin`.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Mutex;

use base64::Engine as _;
use serde_json::{Value, json};

use super::http_standin::{Api, Call, Incoming, Reply, StandIn};

pub const EMAIL: &str = "rollback-bot@example.com";
pub const TOKEN: &str = "jira-api-token-for-tests";
pub const PROJECT: &str = "OPS";
const ISSUE_TYPES: [(&str, &str); 2] = [("10004", "Bug"), ("10002", "Task")];

/// A created issue.
#[derive(Debug, Clone)]
pub struct Issue {
    pub key: String,
    pub fields: Value,
}

impl Issue {
    pub fn labels(&self) -> Vec<String> {
        self.fields["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().map(str::to_owned))
            .collect()
    }

    /// Every text node of the ADF description, one per line.
    pub fn description_text(&self) -> String {
        let mut out = vec![];
        collect_text(&self.fields["description"], &mut out);
        out.join("\n")
    }
}

fn collect_text(node: &Value, out: &mut Vec<String>) {
    if let Some(text) = node["text"].as_str() {
        out.push(text.to_owned());
    }
    for child in node["content"].as_array().into_iter().flatten() {
        collect_text(child, out);
    }
}

#[derive(Default)]
pub struct Jira {
    issues: Mutex<Vec<Issue>>,
}

pub struct JiraStandIn {
    http: StandIn<Jira>,
}

impl JiraStandIn {
    pub async fn start() -> Self {
        JiraStandIn {
            http: StandIn::start(Jira::default()).await,
        }
    }

    /// The site URL (for `tickets.jira_url`).
    pub fn site(&self) -> String {
        self.http.url("")
    }

    pub fn http(&self) -> &StandIn<Jira> {
        &self.http
    }

    pub fn issues(&self) -> Vec<Issue> {
        self.http.api().issues.lock().unwrap().clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.http.calls()
    }

    pub fn violations(&self) -> Vec<String> {
        self.http.violations()
    }
}

fn bad_request(field: &str, message: &str) -> Reply {
    Reply::breach(
        400,
        json!({ "errorMessages": [], "errors": { field: message } }),
        format!("{field}: {message}"),
    )
}

fn is_adf(v: &Value) -> bool {
    v["type"] == "doc" && v["version"] == 1 && v["content"].is_array() && text_nodes_ok(v)
}

/// ADF text nodes carry a non-empty `text` (Jira rejects empty ones).
fn text_nodes_ok(node: &Value) -> bool {
    let text_ok = node["type"] != "text" || node["text"].as_str().is_some_and(|t| !t.is_empty());
    text_ok
        && node["content"]
            .as_array()
            .is_none_or(|children| children.iter().all(text_nodes_ok))
}

impl Jira {
    fn create(&self, body: &Value, site: &str) -> Reply {
        let fields = &body["fields"];
        if !fields.is_object() {
            return Reply::breach(
                400,
                json!({"errorMessages": ["'fields' is required"], "errors": {}}),
                "no fields object",
            );
        }
        if fields["project"]["key"].as_str() != Some(PROJECT) {
            return bad_request("project", "valid project is required");
        }
        let issue_type = &fields["issuetype"];
        let known = ISSUE_TYPES.iter().any(|(id, name)| {
            issue_type["id"].as_str() == Some(id) || issue_type["name"].as_str() == Some(name)
        });
        if !known {
            return bad_request("issuetype", "valid issue type is required");
        }
        match fields["summary"].as_str() {
            Some(s) if !s.trim().is_empty() && s.chars().count() <= 255 => {}
            Some(s) if s.chars().count() > 255 => {
                return bad_request("summary", "Summary must be less than 255 characters.");
            }
            _ => return bad_request("summary", "You must specify a summary of the issue."),
        }
        if !fields["description"].is_null() && !is_adf(&fields["description"]) {
            return bad_request(
                "description",
                "Operation value must be an Atlassian Document",
            );
        }
        if let Some(labels) = fields.get("labels") {
            let ok = labels.as_array().is_some_and(|ls| {
                ls.iter().all(|l| {
                    l.as_str()
                        .is_some_and(|l| !l.is_empty() && !l.contains(' '))
                })
            });
            if !ok {
                return bad_request("labels", "Labels must be strings without spaces");
            }
        }
        let mut issues = self.issues.lock().unwrap();
        let n = issues.len() + 1;
        let key = format!("{PROJECT}-{n}");
        issues.push(Issue {
            key: key.clone(),
            fields: fields.clone(),
        });
        let id = 10_000 + n;
        Reply::ok(
            201,
            json!({ "id": id.to_string(), "key": key, "self": format!("{site}/rest/api/3/issue/{id}") }),
        )
    }

    fn search(&self, body: &Value) -> Reply {
        let Some(jql) = body["jql"].as_str() else {
            return Reply::breach(
                400,
                json!({"errorMessages": ["The JQL query is required"], "errors": {}}),
                "no jql",
            );
        };
        let quoted = |after: &str| {
            jql.split_once(after)
                .and_then(|(_, rest)| rest.trim_start().strip_prefix('"'))
                .and_then(|rest| rest.split_once('"'))
                .map(|(v, _)| v.to_owned())
        };
        let (Some(project), Some(label)) = (quoted("project ="), quoted("labels =")) else {
            return Reply::breach(
                400,
                json!({"errorMessages": [format!("unsupported JQL: {jql}")], "errors": {}}),
                format!("unsupported JQL {jql:?}"),
            );
        };
        let max = body["maxResults"].as_u64().unwrap_or(50) as usize;
        let issues: Vec<Value> = self
            .issues
            .lock()
            .unwrap()
            .iter()
            .filter(|i| project == PROJECT && i.labels().contains(&label))
            .take(max)
            .map(|i| json!({ "key": i.key, "fields": { "summary": i.fields["summary"] } }))
            .collect();
        Reply::ok(200, json!({ "issues": issues, "isLast": true }))
    }
}

impl Api for Jira {
    fn handle(&self, request: &Incoming) -> Reply {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{EMAIL}:{TOKEN}"))
        );
        if request.header("authorization") != Some(expected.as_str()) {
            return Reply::breach(
                401,
                json!({"errorMessages": ["You are not authenticated. Authentication required to perform this operation."], "errors": {}}),
                "missing or wrong Basic credentials",
            );
        }
        if request.method == "POST" && !request.is_json() {
            return Reply::breach(
                415,
                json!({"errorMessages": ["Content-Type must be application/json"]}),
                "not JSON",
            );
        }
        let site = format!(
            "http://{}",
            request.header("host").unwrap_or("jira.invalid")
        );
        match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/rest/api/3/issue") => self.create(&request.body, &site),
            ("POST", "/rest/api/3/search/jql") => self.search(&request.body),
            _ => Reply::breach(
                404,
                json!({"errorMessages": ["Not found"]}),
                "unknown endpoint",
            ),
        }
    }

    fn throttled(&self) -> Value {
        json!({"errorMessages": ["Rate limit exceeded."]})
    }
}
