//! `/rollback` command text → [`Command`], with usage errors that say exactly what was wrong.
//! Pure: no configuration, no I/O (the handler checks services against the configuration).
//! Usage errors repeat the offending word bounded and escaped, never verbatim.

use super::render;

/// The usage message, shown for `/rollback help` and under every usage error.
pub const USAGE: &str = "*Usage*\n\
• `/rollback` — what rolled out recently, with a button to request each rollback\n\
• `/rollback <service> [revision] [incident] [--force]` — request a rollback (revision omitted = the previous one; incident = ticket id or URL; `--force` even while a rollout is in progress)\n\
• `/rollback history <service>` — the service's revisions\n\
• `/rollback status [id]` — active and recent rollbacks, or one in detail\n\
• `/rollback cancel <id>` — cancel a request before it executes (requester or on-call lead)\n\
• `/rollback accept <id> <reason>` — accept a recovery validation has not proven, as it stands (an on-call lead other than the requester)\n\
• `/rollback unlock <service> <fix reference>` — ask to lift the deploy lock a rollback set (an on-call lead other than you approves)\n\
• `/rollback help` — this message";

/// The longest fix reference `/rollback unlock` accepts (it is shown on the card).
const MAX_FIX_REFERENCE: usize = 300;

/// A parsed `/rollback` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    /// No argument: what rolled out recently, with a button per service.
    Recent,
    Rollback {
        service: String,
        revision: Option<i64>,
        incident: Option<String>,
        /// Roll back even though a rollout is in progress (the plan says so on the card).
        force: bool,
    },
    History {
        service: String,
    },
    Status {
        id: Option<i64>,
    },
    Cancel {
        id: i64,
    },
    /// A lead accepts rollback `id`'s recovery as it stands, for `reason`.
    Accept {
        id: i64,
        reason: String,
    },
    /// Lift the deploy lock of `service` because `fix_reference` (a PR, ticket or commit)
    /// fixes the fault.
    Unlock {
        service: String,
        fix_reference: String,
    },
}

/// What was wrong with the command text, in one sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A word of the user's text as a usage error repeats it: in backticks, bounded and escaped
/// (see [`render::echo`]).
fn quoted(word: &str) -> String {
    format!("`{}`", render::echo(word))
}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Parses the text after `/rollback`.
///
/// # Errors
/// A [`UsageError`] naming the offending argument.
pub fn parse(text: &str) -> Result<Command, UsageError> {
    let force = text.split_whitespace().any(|w| w == "--force");
    let words: Vec<&str> = text
        .split_whitespace()
        .filter(|w| *w != "--force")
        .collect();
    let command = parse_words(&words, force)?;
    if force && !matches!(command, Command::Rollback { .. }) {
        return Err(usage(
            "`--force` only applies to a rollback request: `/rollback <service> [revision] --force`",
        ));
    }
    Ok(command)
}

fn parse_words(words: &[&str], force: bool) -> Result<Command, UsageError> {
    let Some((&first, rest)) = words.split_first() else {
        if force {
            return Err(usage(
                "no service given: say which service to roll back, e.g. `/rollback checkout-api --force`",
            ));
        }
        return Ok(Command::Recent);
    };
    match first.to_ascii_lowercase().as_str() {
        "help" | "-h" | "--help" => Ok(Command::Help),
        "history" => match rest {
            [] => Err(usage(
                "`history` needs a service: `/rollback history <service>`",
            )),
            [service] => Ok(Command::History {
                service: service_name(service)?,
            }),
            [_, extra, ..] => Err(usage(format!(
                "unexpected {} after the service: `/rollback history <service>` takes one argument",
                quoted(extra)
            ))),
        },
        "status" => match rest {
            [] => Ok(Command::Status { id: None }),
            [id] => Ok(Command::Status {
                id: Some(rollback_id(id)?),
            }),
            [_, extra, ..] => Err(usage(format!(
                "unexpected {}: `/rollback status [id]` takes at most one rollback id",
                quoted(extra)
            ))),
        },
        "unlock" => match rest {
            [] | [_] => Err(usage(
                "`unlock` needs the service and the fix: `/rollback unlock <service> <fix reference>` (a PR, ticket or commit that fixes the fault)",
            )),
            [service, fix @ ..] => {
                let fix_reference = incident(&fix.join(" "));
                if fix_reference.chars().count() > MAX_FIX_REFERENCE {
                    return Err(usage(format!(
                        "the fix reference is longer than {MAX_FIX_REFERENCE} characters: give a PR, ticket or commit link"
                    )));
                }
                Ok(Command::Unlock {
                    service: service_name(service)?,
                    fix_reference,
                })
            }
        },
        "accept" => match rest {
            [] | [_] => Err(usage(
                "`accept` needs the rollback id and a reason: `/rollback accept <id> <reason>` (why the recovery may stand without a full validation)",
            )),
            [id, reason @ ..] => {
                let reason = reason.join(" ");
                if reason.chars().count() > MAX_FIX_REFERENCE {
                    return Err(usage(format!(
                        "the reason is longer than {MAX_FIX_REFERENCE} characters: say it in one sentence"
                    )));
                }
                Ok(Command::Accept {
                    id: rollback_id(id)?,
                    reason,
                })
            }
        },
        "cancel" => match rest {
            [] => Err(usage(
                "`cancel` needs the rollback id: `/rollback cancel <id>`",
            )),
            [id] => Ok(Command::Cancel {
                id: rollback_id(id)?,
            }),
            [_, extra, ..] => Err(usage(format!(
                "unexpected {}: `/rollback cancel <id>` takes one rollback id",
                quoted(extra)
            ))),
        },
        _ => {
            let service = service_name(first)?;
            let (revision, incident) = match rest {
                [] => (None, None),
                [one] if looks_numeric(one) => (Some(revision(one)?), None),
                [one] => (None, Some(incident(one))),
                [rev, inc] if looks_numeric(rev) => (Some(revision(rev)?), Some(incident(inc))),
                [other, _] => {
                    return Err(usage(format!(
                        "{} is not a revision number; the order is `/rollback <service> [revision] [incident]`",
                        quoted(other)
                    )));
                }
                [_, _, extra, ..] => {
                    return Err(usage(format!(
                        "unexpected {}: `/rollback <service> [revision] [incident]` takes at most three arguments",
                        quoted(extra)
                    )));
                }
            };
            Ok(Command::Rollback {
                service,
                revision,
                incident,
                force,
            })
        }
    }
}

fn looks_numeric(word: &str) -> bool {
    let digits = word.trim_start_matches(['r', 'R', '#']);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '-')
}

fn revision(word: &str) -> Result<i64, UsageError> {
    let digits = word.trim_start_matches(['r', 'R', '#']);
    match digits.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(usage(format!(
            "revision {} must be a positive whole number (see `/rollback history <service>`)",
            quoted(word)
        ))),
    }
}

fn rollback_id(word: &str) -> Result<i64, UsageError> {
    match word.trim_start_matches('#').parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(usage(format!(
            "{} is not a rollback id (a number like `42`, as shown on the card)",
            quoted(word)
        ))),
    }
}

fn service_name(word: &str) -> Result<String, UsageError> {
    let name = word.to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(name)
    } else {
        Err(usage(format!(
            "{} is not a service name (lowercase letters, digits and `-`)",
            quoted(word)
        )))
    }
}

/// Slack may wrap links as `<https://…|label>`; keep the URL.
fn incident(word: &str) -> String {
    let inner = word
        .strip_prefix('<')
        .and_then(|w| w.strip_suffix('>'))
        .unwrap_or(word);
    inner.split('|').next().unwrap_or(inner).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::text::closest;

    #[test]
    fn unlock_takes_a_service_and_a_fix_reference() {
        assert_eq!(
            parse("unlock checkout-api https://git.example/pr/12 hotfix"),
            Ok(Command::Unlock {
                service: "checkout-api".into(),
                fix_reference: "https://git.example/pr/12 hotfix".into(),
            })
        );
        assert!(parse("unlock checkout-api").is_err());
        assert!(parse("unlock").is_err());
        assert!(parse(&format!("unlock checkout-api {}", "x".repeat(301))).is_err());
    }

    fn rollback(service: &str, revision: Option<i64>, incident: Option<&str>) -> Command {
        Command::Rollback {
            service: service.into(),
            revision,
            incident: incident.map(Into::into),
            force: false,
        }
    }

    #[test]
    fn force_is_a_flag_of_rollback_requests_only() {
        let forced = |revision, incident: Option<&str>| Command::Rollback {
            service: "checkout-api".into(),
            revision,
            incident: incident.map(Into::into),
            force: true,
        };
        assert_eq!(parse("checkout-api --force"), Ok(forced(None, None)));
        assert_eq!(
            parse("--force checkout-api 41 INC-9"),
            Ok(forced(Some(41), Some("INC-9")))
        );
        assert_eq!(
            parse("checkout-api 41 --force INC-9"),
            Ok(forced(Some(41), Some("INC-9")))
        );
        let err = parse("history checkout-api --force").unwrap_err().0;
        assert!(
            err.contains("`--force` only applies to a rollback request"),
            "{err}"
        );
    }

    #[test]
    fn rollback_requests_parse_positionally() {
        assert_eq!(
            parse("checkout-api"),
            Ok(rollback("checkout-api", None, None))
        );
        assert_eq!(
            parse("  checkout-api   41 "),
            Ok(rollback("checkout-api", Some(41), None))
        );
        assert_eq!(
            parse("checkout-api 41 INC-1234"),
            Ok(rollback("checkout-api", Some(41), Some("INC-1234")))
        );
        assert_eq!(
            parse("checkout-api INC-1234"),
            Ok(rollback("checkout-api", None, Some("INC-1234")))
        );
        assert_eq!(
            parse("Checkout-API r41 <https://inc.example/1|INC-1>"),
            Ok(rollback(
                "checkout-api",
                Some(41),
                Some("https://inc.example/1")
            ))
        );
    }

    #[test]
    fn subcommands_parse() {
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(
            parse("history checkout-api"),
            Ok(Command::History {
                service: "checkout-api".into()
            })
        );
        assert_eq!(parse("status"), Ok(Command::Status { id: None }));
        assert_eq!(parse("status #12"), Ok(Command::Status { id: Some(12) }));
        assert_eq!(parse("cancel 7"), Ok(Command::Cancel { id: 7 }));
    }

    #[test]
    fn malformed_input_says_what_is_wrong() {
        let err = |text: &str| parse(text).unwrap_err().0;
        assert_eq!(parse(""), Ok(Command::Recent));
        assert_eq!(parse("   "), Ok(Command::Recent));
        assert!(err("--force").contains("no service given"));
        assert!(err("history").contains("needs a service"));
        assert!(err("history a b").contains("unexpected `b`"));
        assert!(err("cancel").contains("needs the rollback id"));
        assert!(err("cancel abc").contains("`abc` is not a rollback id"));
        assert!(err("status 1 2").contains("unexpected `2`"));
        assert!(err("checkout-api 0").contains("positive whole number"));
        assert!(err("checkout-api -3").contains("positive whole number"));
        assert!(err("checkout_api").contains("not a service name"));
        assert!(err("checkout-api 41 INC-1 extra").contains("unexpected `extra`"));
        assert!(err("checkout-api INC-1 41").contains("`INC-1` is not a revision number"));
    }

    #[test]
    fn usage_errors_repeat_user_text_bounded_and_escaped() {
        let err = |text: &str| parse(text).unwrap_err().0;
        let mention = err("<!channel>");
        assert!(
            mention.starts_with("`&lt;!channel&gt;` is not a service name"),
            "{mention}"
        );
        let long = format!("{}<@U0ADMIN01>", "a".repeat(3000));
        let answer = err(&format!("cancel {long}"));
        assert!(
            !answer.contains('<') && !answer.contains(&"a".repeat(100)),
            "{answer}"
        );
        assert!(
            answer.contains(&format!("`{}…`", "a".repeat(99))),
            "{answer}"
        );
    }

    #[test]
    fn closest_names_come_first() {
        let names = ["checkout-api", "payments-api", "search", "checkout-worker"];
        assert_eq!(closest("chekout-api", names)[0], "checkout-api");
        assert_eq!(closest("payments", names)[0], "payments-api");
        assert_eq!(closest("zzz", names).len(), 3);
    }
}
