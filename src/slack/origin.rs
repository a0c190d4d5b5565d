//! Whether a command or click comes from the workspace and the Slack app this bot serves
//! (`slack.team_id`, `slack.app_id`). The signing secret proves a request came from *an*
//! installation of the app; these checks pin it to one workspace and one app, so an app
//! installed in a second workspace (or an org-wide install) cannot drive production from there.
//! An unset key is not checked (`serve` warns at start-up). Pure: no I/O.

use crate::config::Slack;

/// Why a request was refused; the text is the user's answer and the log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Foreign {
    #[error("this bot does not serve workspace {got:?} (it serves {expected})")]
    Team { got: String, expected: String },
    #[error("this request is for Slack app {got:?}, not this bot's app {expected}")]
    App { got: String, expected: String },
}

/// Checks the request's `team_id` and `api_app_id` against the configuration. `app_id` is
/// `None` only where the transport itself vouches for the app (Socket Mode: the socket was
/// opened with this app's own token and its command payloads carry no app id); over HTTP a
/// missing app id is passed as an empty string and refused when `slack.app_id` is set.
///
/// # Errors
/// [`Foreign`] naming what did not match.
pub fn check(config: &Slack, team_id: &str, app_id: Option<&str>) -> Result<(), Foreign> {
    if let Some(expected) = &config.team_id
        && team_id != expected
    {
        return Err(Foreign::Team {
            got: team_id.to_owned(),
            expected: expected.clone(),
        });
    }
    if let (Some(expected), Some(got)) = (&config.app_id, app_id)
        && got != expected
    {
        return Err(Foreign::App {
            got: got.to_owned(),
            expected: expected.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned() -> Slack {
        Slack {
            team_id: Some("T0001".into()),
            app_id: Some("A0ROLLBACK".into()),
            ..Slack::default()
        }
    }

    #[test]
    fn the_configured_workspace_and_app_pass() {
        assert_eq!(check(&pinned(), "T0001", Some("A0ROLLBACK")), Ok(()));
        // Socket Mode: the app is the one whose token opened the socket.
        assert_eq!(check(&pinned(), "T0001", None), Ok(()));
    }

    #[test]
    fn another_workspace_or_app_is_refused() {
        assert!(matches!(
            check(&pinned(), "T0OTHER", Some("A0ROLLBACK")),
            Err(Foreign::Team { .. })
        ));
        assert!(matches!(
            check(&pinned(), "T0001", Some("A0OTHER")),
            Err(Foreign::App { .. })
        ));
        // Over HTTP a request without an app id does not pass a pinned app.
        assert!(matches!(
            check(&pinned(), "T0001", Some("")),
            Err(Foreign::App { .. })
        ));
    }

    #[test]
    fn unset_keys_are_not_checked() {
        assert_eq!(check(&Slack::default(), "T0ANY", Some("A0ANY")), Ok(()));
    }
}
