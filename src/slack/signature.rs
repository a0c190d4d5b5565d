//! Slack's v0 request signature: `v0=` + hex(HMAC-SHA256(signing secret, `v0:{ts}:{raw body}`)),
//! compared in constant time, with a five-minute replay window around the receiver's clock.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Requests older (or further in the future) than this are refused as replays.
pub const MAX_AGE_SECS: i64 = 5 * 60;

pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
pub const SIGNATURE_HEADER: &str = "x-slack-signature";

/// Why a request was refused. The texts go to the log, never to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("timestamp header is not a number")]
    BadTimestamp,
    #[error("timestamp is {0}s away from now (more than 5 minutes): replay refused")]
    Stale(i64),
    #[error("signature is not of the form v0=<hex>")]
    Malformed,
    #[error("signature does not match the body")]
    Mismatch,
    #[error("no signing secret is configured (SLACK_SIGNING_SECRET)")]
    NoSecret,
}

/// `v0=<hex>` for `body` sent at `timestamp` (what Slack puts in `X-Slack-Signature`).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// Checks the headers' signature over the raw `body`, `now` being Unix seconds.
///
/// # Errors
/// Every way the request can fail to be Slack's; see [`SignatureError`].
pub fn verify(
    secret: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let secret = secret
        .filter(|s| !s.is_empty())
        .ok_or(SignatureError::NoSecret)?;
    let timestamp = timestamp.ok_or(SignatureError::Missing(TIMESTAMP_HEADER))?;
    let signature = signature.ok_or(SignatureError::Missing(SIGNATURE_HEADER))?;
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let skew = now.saturating_sub(sent);
    if skew.abs() > MAX_AGE_SECS {
        return Err(SignatureError::Stale(skew));
    }
    let hex_part = signature
        .strip_prefix("v0=")
        .ok_or(SignatureError::Malformed)?;
    let given = hex::decode(hex_part).map_err(|_| SignatureError::Malformed)?;
    // `verify_slice` compares in constant time.
    mac(secret, timestamp, body)
        .verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &[u8] = b"token=x&team_id=T1&command=%2Frollback&text=checkout-api";

    #[test]
    fn a_correct_signature_verifies() {
        let sig = sign(SECRET, "1700000000", BODY);
        assert!(sig.starts_with("v0=") && sig.len() == 3 + 64);
        assert_eq!(
            verify(
                Some(SECRET),
                Some("1700000000"),
                Some(&sig),
                BODY,
                1_700_000_100
            ),
            Ok(())
        );
    }

    #[test]
    fn slacks_documented_example_verifies() {
        // From Slack's "Verifying requests from Slack".
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            verify(
                Some(SECRET),
                Some("1531420618"),
                Some("v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"),
                body,
                1_531_420_618,
            ),
            Ok(())
        );
    }

    #[test]
    fn tampering_staleness_and_missing_parts_are_refused() {
        let sig = sign(SECRET, "1700000000", BODY);
        let now = 1_700_000_000;
        let check = |s: Option<&str>, ts: Option<&str>, sig: Option<&str>, body: &[u8], now| {
            verify(s, ts, sig, body, now).unwrap_err()
        };
        assert_eq!(
            check(Some(SECRET), Some("1700000000"), Some(&sig), b"x", now),
            SignatureError::Mismatch
        );
        assert_eq!(
            check(Some("other"), Some("1700000000"), Some(&sig), BODY, now),
            SignatureError::Mismatch
        );
        assert_eq!(
            check(
                Some(SECRET),
                Some("1700000000"),
                Some(&sig),
                BODY,
                now + 301
            ),
            SignatureError::Stale(301)
        );
        assert_eq!(
            check(
                Some(SECRET),
                Some("1700000000"),
                Some(&sig),
                BODY,
                now - 301
            ),
            SignatureError::Stale(-301)
        );
        assert_eq!(
            check(Some(SECRET), None, Some(&sig), BODY, now),
            SignatureError::Missing(TIMESTAMP_HEADER)
        );
        assert_eq!(
            check(Some(SECRET), Some("1700000000"), None, BODY, now),
            SignatureError::Missing(SIGNATURE_HEADER)
        );
        assert_eq!(
            check(Some(SECRET), Some("soon"), Some(&sig), BODY, now),
            SignatureError::BadTimestamp
        );
        assert_eq!(
            check(Some(SECRET), Some("1700000000"), Some("v1=abc"), BODY, now),
            SignatureError::Malformed
        );
        assert_eq!(
            check(None, Some("1700000000"), Some(&sig), BODY, now),
            SignatureError::NoSecret
        );
    }
}
