//! Who a person can be on the sandbox page: the requester, the on-call lead, a second lead,
//! the DBA and a stranger, with the Slack user ids the bot's configuration names (the
//! defaults match `make run`'s configuration, scripts/run-local.sh).

use serde::Serialize;

/// One Slack user a person can act as.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Person {
    pub id: String,
    pub name: String,
    /// What the bot's configuration makes of them, as the page labels it.
    pub role: String,
}

impl Person {
    /// Their address in the sandbox's workspace: `riley@example.test` for Riley.
    pub fn email(&self) -> String {
        format!("{}@example.test", self.name.to_lowercase())
    }
}

/// The user ids of the demo's people.
#[derive(Debug, Clone)]
pub struct DemoIds {
    pub requester: String,
    pub lead: String,
    pub second_lead: String,
    pub dba: String,
    pub stranger: String,
}

impl Default for DemoIds {
    fn default() -> Self {
        DemoIds {
            requester: "U0LOCALREQUESTER".into(),
            lead: "U0LOCALLEAD".into(),
            second_lead: "U0LOCALLEAD2".into(),
            dba: "U0LOCALDBA".into(),
            stranger: "U0STRANGER".into(),
        }
    }
}

/// The people, in the order the picker lists them.
pub fn demo(ids: &DemoIds) -> Vec<Person> {
    let person = |id: &str, name: &str, role: &str| Person {
        id: id.to_owned(),
        name: name.to_owned(),
        role: role.to_owned(),
    };
    vec![
        person(&ids.requester, "Riley", "requester"),
        person(&ids.lead, "Lee", "on-call lead"),
        person(&ids.second_lead, "Sam", "second lead"),
        person(&ids.dba, "Dana", "DBA"),
        person(&ids.stranger, "Stranger", "not in any group"),
    ]
}
