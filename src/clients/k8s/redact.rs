//! Redaction of secret-looking values in pod templates before they are shown on a card or
//! stored with a plan.
//!
//! A plan is kept in Postgres and rendered in Slack, where far more people can read it than
//! can read the Deployment. Env values are never shown (only variable names are), and
//! `command` / `args` entries that look like credentials are masked: values of flags or
//! `KEY=value` pairs whose name suggests a secret, passwords in URLs, and long opaque tokens.
//! Execution never uses a redacted template: it binds to the template's hash instead.

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};

/// What a masked value is replaced with.
pub const REDACTED: &str = "‹redacted›";

/// Parts of a name that mark its value as a secret.
const SECRET_NAME_PARTS: [&str; 11] = [
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api-key",
    "api_key",
    "credential",
    "private-key",
    "private_key",
    "access-key",
];

/// A copy of `template` without env values and with secret-looking command/args masked.
pub fn template(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut redacted = template.clone();
    if let Some(spec) = redacted.spec.as_mut() {
        spec.containers.iter_mut().for_each(container);
        spec.init_containers
            .iter_mut()
            .flatten()
            .for_each(container);
    }
    redacted
}

fn container(c: &mut Container) {
    for var in c.env.iter_mut().flatten() {
        if var.value.is_some() {
            var.value = Some(REDACTED.to_owned());
        }
    }
    for list in [c.command.as_mut(), c.args.as_mut()].into_iter().flatten() {
        *list = args(list);
    }
}

/// `args` with secret-looking entries masked (see the module doc).
pub fn args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut previous_names_secret = false;
    for arg in args {
        let masked = if previous_names_secret && !arg.starts_with('-') {
            REDACTED.to_owned()
        } else {
            words(arg)
        };
        previous_names_secret = is_secret_flag(arg);
        out.push(masked);
    }
    out
}

/// A line of text from the cluster (a container's log line) with secret-looking words
/// masked as in [`args`].
pub fn line(text: &str) -> String {
    words(text)
}

/// One argument, which may be a whole shell line (`sh -c "…"`): each word masked alone.
fn words(arg: &str) -> String {
    if !arg.contains(char::is_whitespace) {
        return word(arg);
    }
    let mut previous_names_secret = false;
    arg.split(' ')
        .map(|w| {
            let masked = if previous_names_secret && !w.is_empty() && !w.starts_with('-') {
                REDACTED.to_owned()
            } else {
                word(w)
            };
            previous_names_secret = is_secret_flag(w);
            masked
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn word(w: &str) -> String {
    if let Some((name, value)) = w.split_once('=')
        && !value.is_empty()
        && names_secret(name)
    {
        return format!("{name}={REDACTED}");
    }
    if let Some(masked) = url_password(w) {
        return masked;
    }
    if looks_like_token(w) {
        return REDACTED.to_owned();
    }
    w.to_owned()
}

/// `--password` or `--api-token` alone: the next argument is its value.
fn is_secret_flag(arg: &str) -> bool {
    arg.starts_with('-') && !arg.contains('=') && names_secret(arg)
}

fn names_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAME_PARTS.iter().any(|part| name.contains(part))
}

/// `scheme://user:password@host…` with the password masked.
fn url_password(w: &str) -> Option<String> {
    let (scheme, rest) = w.split_once("://")?;
    let (userinfo, host) = rest.split_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| format!("{scheme}://{user}:{REDACTED}@{host}"))
}

/// A long opaque string of token characters with letters and digits mixed: an API key, a
/// JWT, a base64 secret. Paths, flags and ordinary words are left alone.
fn looks_like_token(w: &str) -> bool {
    w.len() >= 32
        && !w.starts_with(['-', '/', '.'])
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=_-.".contains(c))
        && w.chars().any(|c| c.is_ascii_digit())
        && w.chars().any(|c| c.is_ascii_alphabetic())
        && !w.contains("://")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, PodSpec, SecretKeySelector};

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn secret_flags_pairs_urls_and_tokens_are_masked() {
        let masked = args(&strings(&[
            "--password",
            "hunter2",
            "--db-password=hunter3",
            "API_TOKEN=abc",
            "postgres://app:s3cret@db:5432/app",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc123",
            "--port=8080",
            "--log-level",
            "debug",
            "/usr/local/bin/server-with-a-rather-long-path-name-1234",
        ]));
        assert_eq!(
            masked,
            strings(&[
                "--password",
                REDACTED,
                "--db-password=‹redacted›",
                "API_TOKEN=‹redacted›",
                "postgres://app:‹redacted›@db:5432/app",
                REDACTED,
                "--port=8080",
                "--log-level",
                "debug",
                "/usr/local/bin/server-with-a-rather-long-path-name-1234",
            ])
        );
    }

    #[test]
    fn shell_lines_are_masked_word_by_word() {
        let masked = args(&strings(&["sh", "-c", "exec app --token abc123 --verbose"]));
        assert_eq!(masked[2], "exec app --token ‹redacted› --verbose");
    }

    #[test]
    fn env_values_are_dropped_but_references_kept() {
        let t = PodTemplateSpec {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    env: Some(vec![
                        EnvVar {
                            name: "DB_URL".into(),
                            value: Some("postgres://u:p@h/db".into()),
                            ..Default::default()
                        },
                        EnvVar {
                            name: "KEY".into(),
                            value_from: Some(EnvVarSource {
                                secret_key_ref: Some(SecretKeySelector {
                                    name: "s".into(),
                                    key: "k".into(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    ]),
                    args: Some(strings(&["--secret=x"])),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = template(&t);
        let c = &r.spec.as_ref().unwrap().containers[0];
        let env = c.env.as_ref().unwrap();
        assert_eq!(env[0].value.as_deref(), Some(REDACTED));
        assert!(env[1].value.is_none() && env[1].value_from.is_some());
        assert_eq!(c.args.as_ref().unwrap()[0], "--secret=‹redacted›");
        assert!(!serde_json::to_string(&r).unwrap().contains("postgres://"));
    }
}
