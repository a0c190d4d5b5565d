//! Who may approve or reject: on-call leads (and, for database-coupled services, the DBA
//! group), by user id in the configuration and/or by Slack user group, resolved at click time
//! with `usergroups.users.list` so a rota change applies at once.

use std::time::Duration;

use tracing::warn;

use crate::clients::slack::SlackApi;
use crate::config::Config;
use crate::domain::machine::SignOff;

/// How long a click may wait for Slack to list a user group.
pub const GROUP_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `user` belongs to the group that gives `sign_off`. A failed group lookup counts as
/// "not a member" (and is logged): an approval is never granted on an error.
pub async fn is_member(
    config: &Config,
    api: Option<&SlackApi>,
    sign_off: SignOff,
    user: &str,
) -> bool {
    let (ids, group) = match sign_off {
        SignOff::Lead => (&config.slack.lead_user_ids, &config.slack.lead_user_group),
        SignOff::Dba => (&config.slack.dba_user_ids, &config.slack.dba_user_group),
    };
    if ids.iter().any(|id| id == user) {
        return true;
    }
    let (Some(group), Some(api)) = (group, api) else {
        return false;
    };
    match tokio::time::timeout(GROUP_LOOKUP_TIMEOUT, api.usergroup_members(group)).await {
        Ok(Ok(members)) => members.iter().any(|m| m == user),
        Ok(Err(e)) => {
            warn!(error = %e, usergroup = %group, "cannot list the user group; treating the clicker as not a member");
            false
        }
        Err(_) => {
            warn!(usergroup = %group, "listing the user group timed out; treating the clicker as not a member");
            false
        }
    }
}

/// The clicker's memberships that a click's decision depends on (groups not asked about are
/// `false`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Membership {
    pub lead: bool,
    pub dba: bool,
}

/// Resolves `user`'s membership of each of `groups`, looking the user groups up concurrently
/// (each bounded by [`GROUP_LOOKUP_TIMEOUT`]).
pub async fn membership(
    config: &Config,
    api: Option<&SlackApi>,
    groups: &[SignOff],
    user: &str,
) -> Membership {
    let check = |group: SignOff| async move {
        groups.contains(&group) && is_member(config, api, group, user).await
    };
    let (lead, dba) = tokio::join!(check(SignOff::Lead), check(SignOff::Dba));
    Membership { lead, dba }
}
