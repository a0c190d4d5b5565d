//! Property tests (fuzzing with proptest) of everything that parses untrusted or hand-written
//! input: slash-command text, the pieces of an interaction payload, Slack's request signature,
//! and the configuration file. Every target must never panic, and must accept exactly what it
//! should. The normal test run tries proptest's default 256 cases per property;
//! `scripts/fuzz.sh` runs a long bounded session (PROPTEST_CASES) and docs/reliability.md
//! records the result.

use proptest::prelude::*;
use rollback_bot::config::Config;
use rollback_bot::slack::actions::{self, Action};
use rollback_bot::slack::command::{self, Command};
use rollback_bot::slack::handlers::SlashCommand;
use rollback_bot::slack::signature::{self, MAX_AGE_SECS, SignatureError};

fn service() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9-]{0,40}"
        .prop_filter("not a sub-command", |s| {
            !matches!(
                s.as_str(),
                "help" | "history" | "status" | "cancel" | "unlock" | "accept"
            )
        })
        .prop_filter("not numeric-looking", |s| {
            !s.trim_start_matches(['r', 'R', '#'])
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-')
        })
}

/// Whitespace as people (and Slack clients) type it between words.
fn gap() -> impl Strategy<Value = String> {
    "[ \t\n]{1,3}"
}

// ---- slash-command text ----------------------------------------------------------------

proptest! {
    #[test]
    fn command_parsing_never_panics(text in any::<String>()) {
        let _ = command::parse(&text);
    }

    #[test]
    fn command_parsing_never_panics_on_command_like_text(
        words in proptest::collection::vec(
            prop_oneof![
                Just("help".to_string()), Just("history".to_string()),
                Just("status".to_string()), Just("cancel".to_string()),
                Just("--force".to_string()), "#?-?[0-9]{1,25}", "r[0-9]{1,20}",
                "<https?://[a-z./]{0,20}\\|[a-z]{0,5}>", "[a-zA-Z0-9_-]{1,70}", "\\PC{1,8}",
            ],
            0..6,
        ),
        gaps in proptest::collection::vec(gap(), 6),
    ) {
        let text: String = words.iter().zip(&gaps).map(|(w, g)| format!("{w}{g}")).collect();
        if let Ok(Command::Rollback { service, revision, .. }) = command::parse(&text) {
            prop_assert!(!service.is_empty() && service.len() <= 63);
            prop_assert!(service.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            prop_assert!(revision.is_none_or(|r| r > 0));
        }
    }

    #[test]
    fn a_well_formed_request_parses_to_what_was_typed(
        svc in service(),
        revision in proptest::option::of(1..i64::MAX),
        incident in proptest::option::of("INC-[0-9]{1,6}"),
        force_at in proptest::option::of(0usize..4),
        gaps in proptest::collection::vec(gap(), 5),
    ) {
        let mut words = vec![svc.clone()];
        words.extend(revision.map(|r| r.to_string()));
        words.extend(incident.clone());
        if let Some(at) = force_at {
            words.insert(at.min(words.len()), "--force".into());
        }
        let text: String = words.iter().zip(&gaps).map(|(w, g)| format!("{g}{w}")).collect();
        let parsed = command::parse(&text);
        // An incident alone (no revision) must not look like a revision: `INC-…` never does.
        prop_assert_eq!(
            parsed,
            Ok(Command::Rollback { service: svc, revision, incident, force: force_at.is_some() })
        );
    }
}

// ---- interaction payloads and slash-command forms --------------------------------------

proptest! {
    #[test]
    fn button_values_round_trip_and_junk_is_refused(
        id in 1..i64::MAX,
        fingerprint in "[0-9a-f]{1,64}",
        junk in any::<String>(),
    ) {
        let value = actions::value(id, &fingerprint);
        prop_assert_eq!(actions::parse_value(&value), Some((id, fingerprint.as_str())));
        if let Some((id, fp)) = actions::parse_value(&junk) {
            prop_assert!(id > 0 && !fp.is_empty());
            let (prefix, rest) = junk.split_once(':').unwrap();
            prop_assert_eq!((prefix.parse::<i64>(), rest), (Ok(id), fp));
        }
        let _ = Action::from_id(&junk);
    }

    #[test]
    fn interaction_bodies_never_panic_the_parsers(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        // What the HTTP handlers do with a signed body before any I/O.
        let _ = serde_urlencoded::from_bytes::<SlashCommand>(&body);
        let form = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body);
        if let Ok(pairs) = form {
            for (_, v) in pairs {
                if let Ok(payload) = serde_json::from_str::<serde_json::Value>(&v) {
                    let action = &payload["actions"][0];
                    let _ = action["action_id"].as_str().and_then(Action::from_id);
                    let _ = action["value"].as_str().and_then(actions::parse_value);
                }
            }
        }
    }

    #[test]
    fn slash_command_forms_decode_what_slack_sends(
        text in any::<String>(),
        user in "U[A-Z0-9]{8,10}",
        channel in "C[A-Z0-9]{8,10}",
    ) {
        let body = serde_urlencoded::to_string([
            ("command", "/rollback"), ("text", &text), ("user_id", &user), ("channel_id", &channel),
        ]).unwrap();
        let cmd = serde_urlencoded::from_bytes::<SlashCommand>(body.as_bytes()).unwrap();
        prop_assert_eq!((cmd.text, cmd.user_id, cmd.channel_id), (text, user, channel));
    }
}

// ---- request signatures -----------------------------------------------------------------

proptest! {
    #[test]
    fn signatures_verify_exactly_the_signed_request(
        secret in "[ -~]{1,64}",
        body in proptest::collection::vec(any::<u8>(), 0..300),
        sent in 1_000_000_000i64..4_000_000_000,
        skew in -MAX_AGE_SECS..=MAX_AGE_SECS,
        flip in any::<(usize, u8)>(),
    ) {
        let ts = sent.to_string();
        let sig = signature::sign(&secret, &ts, &body);
        prop_assert_eq!(signature::verify(Some(&secret), Some(&ts), Some(&sig), &body, sent + skew), Ok(()));
        if !body.is_empty() && flip.1 != 0 {
            let mut tampered = body.clone();
            let at = flip.0 % tampered.len();
            tampered[at] ^= flip.1;
            prop_assert_eq!(
                signature::verify(Some(&secret), Some(&ts), Some(&sig), &tampered, sent + skew),
                Err(SignatureError::Mismatch)
            );
        }
        let late = sent + MAX_AGE_SECS + 1 + skew.abs();
        prop_assert!(matches!(
            signature::verify(Some(&secret), Some(&ts), Some(&sig), &body, late),
            Err(SignatureError::Stale(_))
        ));
    }

    #[test]
    fn arbitrary_headers_never_panic_and_never_pass(
        ts in proptest::option::of(any::<String>()),
        sig in proptest::option::of(prop_oneof![any::<String>(), "v0=[0-9a-f]{0,70}"]),
        secret in proptest::option::of(any::<String>()),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        now in 0i64..4_000_000_000,
    ) {
        let verdict = signature::verify(secret.as_deref(), ts.as_deref(), sig.as_deref(), &body, now);
        if verdict.is_ok() {
            // Only the real signature passes (a random one matching is 2^-256 unlikely).
            let (secret, ts, sig) = (secret.unwrap(), ts.unwrap(), sig.unwrap());
            prop_assert_eq!(sig, signature::sign(&secret, &ts, &body));
        }
    }
}

// ---- configuration ----------------------------------------------------------------------

/// One TOML line from the file's vocabulary, with values of the right and the wrong kinds.
fn config_line() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("[slack]"),
        Just("[server]"),
        Just("[timeouts]"),
        Just("[engine]"),
        Just("[retention]"),
        Just("[clusters.local]"),
        Just("[services.web]"),
        Just("[services.Orders]"),
        Just("lead_user_ids ="),
        Just("dba_user_ids ="),
        Just("dba_user_group ="),
        Just("incident_channels ="),
        Just("database_coupled ="),
        Just("cluster ="),
        Just("namespace ="),
        Just("deployment ="),
        Just("listen ="),
        Just("transport ="),
        Just("approval_expiry ="),
        Just("lease ="),
        Just("workers ="),
        Just("plan_days ="),
        Just("max_connections ="),
        Just("slack_api_url ="),
    ];
    let value = prop_oneof![
        Just("\"local\"".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("[\"U0LEAD0001\"]".to_string()),
        Just("[]".to_string()),
        Just("\"0s\"".to_string()),
        Just("\"90s\"".to_string()),
        Just("\"S0DBA\"".to_string()),
        Just("\"socket_mode\"".to_string()),
        Just("\"127.0.0.1:99999\"".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "\"[ -~]{0,20}\"",
        "[ -~]{0,12}",
    ];
    (key, value).prop_map(|(k, v)| {
        if k.starts_with('[') {
            k.to_string()
        } else {
            format!("{k} {v}")
        }
    })
}

proptest! {
    #[test]
    fn config_parsing_and_validation_never_panic(text in any::<String>()) {
        if let Ok(config) = Config::parse(&text, "fuzz.toml") {
            let _ = config.validate("fuzz.toml");
        }
    }

    #[test]
    fn config_like_text_is_accepted_or_refused_with_the_file_named(
        lines in proptest::collection::vec(config_line(), 0..24),
    ) {
        let text = lines.join("\n");
        let checked = Config::parse(&text, "fuzz.toml").and_then(|c| c.validate("fuzz.toml").map(|()| c));
        match checked {
            Err(e) => prop_assert!(e.to_string().starts_with("fuzz.toml: "), "{}", e),
            Ok(config) => {
                // Whatever passes keeps the promises the rest of the bot relies on.
                prop_assert!(!config.services.is_empty());
                prop_assert!(config.services.values().all(|s| config.clusters.contains_key(&s.cluster)));
                prop_assert!(config.services.values().all(|s| !s.database_coupled || config.has_dba()));
                prop_assert!(config.retention.plan_days > 0 && config.engine.workers > 0);
            }
        }
    }

    #[test]
    fn a_database_coupled_service_is_valid_exactly_when_a_dba_is_configured(
        services in proptest::collection::btree_map("[a-z][a-z0-9-]{0,10}[a-z0-9]", any::<bool>(), 1..5),
        dba_ids in any::<bool>(),
        dba_group in any::<bool>(),
    ) {
        let mut text = String::from("[slack]\nincident_channels = [\"C0INCIDENT1\"]\nlead_user_ids = [\"U0LEAD0001\"]\n");
        if dba_ids { text.push_str("dba_user_ids = [\"U0DBA00001\"]\n"); }
        if dba_group { text.push_str("dba_user_group = \"S0DBA\"\n"); }
        text.push_str("[clusters.local]\n");
        for (name, coupled) in &services {
            text.push_str(&format!("[services.{name}]\ncluster = \"local\"\ndatabase_coupled = {coupled}\n"));
        }
        let config = Config::parse(&text, "t.toml").unwrap();
        let coupled = services.iter().find(|(_, c)| **c).map(|(n, _)| n);
        match (config.validate("t.toml"), coupled) {
            (Ok(()), None) => {}
            (Ok(()), Some(_)) => prop_assert!(dba_ids || dba_group),
            (Err(e), Some(name)) => {
                prop_assert!(!dba_ids && !dba_group);
                prop_assert_eq!(
                    e.to_string(),
                    format!("t.toml: services.{name}.database_coupled: needs a DBA: set slack.dba_user_ids or slack.dba_user_group")
                );
            }
            (Err(e), None) => prop_assert!(false, "refused a config without coupled services: {}", e),
        }
    }
}

// ---- untrusted text: Slack mrkdwn and GitHub Markdown ---------------------------------

/// Text as it comes from outside the bot (annotations, termination messages and log tails,
/// incident text, fix references), with every markup trick mixed in.
fn untrusted_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("<!channel>".to_string()),
            Just("<!here>".to_string()),
            Just("<!everyone>".to_string()),
            Just("<@U0LEAD0001>".to_string()),
            Just("<#C0INCIDENT1>".to_string()),
            Just("<!subteam^S0ONCALL01>".to_string()),
            Just("<https://evil.example|click>".to_string()),
            Just("[x](https://evil.example)".to_string()),
            Just("![i](https://evil.example/p.png)".to_string()),
            Just("<img src=x onerror=alert(1)>".to_string()),
            Just("@octocat".to_string()),
            Just("@org/team".to_string()),
            Just("&lt;!channel&gt;".to_string()),
            Just("\\".to_string()),
            "[`*_~|#!&<>\\[\\]\\\\@\n]{1,4}",
            "\\PC{0,12}",
        ],
        0..10,
    )
    .prop_map(|parts| parts.concat())
}

/// The characters that start GitHub Markdown markup inside a line.
const MARKDOWN_MARKUP: &[char] = &[
    '\\', '`', '*', '_', '[', ']', '#', '!', '|', '<', '>', '~', '&',
];

proptest! {
    #[test]
    fn untrusted_text_never_becomes_slack_markup(text in untrusted_text()) {
        let shown = rollback_bot::support::text::escape(&text);
        // No `<…>` (mentions, channel links, links) can form without `<` and `>`, and an
        // escaped `&` cannot start an entity that turns into one.
        prop_assert!(!shown.contains('<') && !shown.contains('>'), "{}", shown);
        let unescaped = shown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
        prop_assert_eq!(unescaped, text, "shown as typed");
    }

    #[test]
    fn untrusted_text_never_becomes_markdown_markup(text in untrusted_text()) {
        let shown = rollback_bot::support::text::escape_markdown(&text);
        prop_assert!(!shown.contains('\n') && !shown.contains('\r'), "{:?}", shown);
        // Every markup character is escaped by a backslash that is not itself escaped, and
        // every `@` is broken by a zero-width space; undoing that gives the text back.
        let mut typed = String::new();
        let mut chars = shown.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let next = chars.next();
                    prop_assert!(next.is_some_and(|n| MARKDOWN_MARKUP.contains(&n)), "{:?}", shown);
                    typed.extend(next);
                }
                '@' => {
                    prop_assert_eq!(chars.next(), Some('\u{200B}'), "{:?}", shown);
                    typed.push('@');
                }
                c => {
                    prop_assert!(!MARKDOWN_MARKUP.contains(&c), "unescaped {:?} in {:?}", c, shown);
                    typed.push(c);
                }
            }
        }
        let expected: String = text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
        prop_assert_eq!(typed, expected);
    }
}
