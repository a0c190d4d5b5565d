//! Slack's Web API rate limits as the sandbox enforces them (pure logic): a token bucket per
//! method, and for `chat.postMessage` per method and channel. Slack publishes tiers as calls
//! per minute and allows short bursts; `chat.postMessage` is about one message per second per
//! channel. Over the limit Slack answers 429 with `Retry-After` in whole seconds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How many calls may come at once, and how fast the allowance refills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub burst: f64,
    pub per_second: f64,
}

impl Limit {
    /// A Web API tier: `per_minute` calls a minute, all of them allowed in a burst.
    pub const fn tier(per_minute: f64) -> Limit {
        Limit {
            burst: per_minute,
            per_second: per_minute / 60.0,
        }
    }
}

/// Which limit a method has, and whether it counts per channel.
fn limit_of(method: &str) -> Option<(Limit, bool)> {
    // "Special" tier: one message a second per channel, with short bursts.
    const POST_MESSAGE: Limit = Limit {
        burst: 5.0,
        per_second: 1.0,
    };
    match method {
        "chat.postMessage" => Some((POST_MESSAGE, true)),
        "chat.update" | "conversations.history" | "conversations.replies" => {
            Some((Limit::tier(50.0), false))
        }
        "apps.connections.open" => Some((Limit::tier(50.0), false)),
        "usergroups.users.list" => Some((Limit::tier(20.0), false)),
        "chat.getPermalink" => Some((Limit::tier(100.0), false)),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of one workspace.
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: HashMap<(String, String), Bucket>,
}

impl RateLimits {
    /// Slack's documented limits for the methods the bot calls.
    pub fn slack() -> Self {
        RateLimits::default()
    }

    /// Takes one call of `method` (about `channel`) at `now`, or says how long to wait.
    ///
    /// # Errors
    /// The `Retry-After` when the call is over the limit (it is not counted then).
    pub fn check(&mut self, method: &str, channel: &str, now: Instant) -> Result<(), Duration> {
        let Some((limit, per_channel)) = limit_of(method) else {
            return Ok(());
        };
        let key = (
            method.to_owned(),
            if per_channel { channel } else { "" }.to_owned(),
        );
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: limit.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(limit.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / limit.per_second;
        Err(Duration::from_secs_f64(wait.ceil()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_message_allows_a_burst_then_one_a_second_per_channel() {
        let mut limits = RateLimits::slack();
        let t0 = Instant::now();
        for n in 0..5 {
            assert_eq!(limits.check("chat.postMessage", "C1", t0), Ok(()), "{n}");
        }
        assert_eq!(
            limits.check("chat.postMessage", "C1", t0),
            Err(Duration::from_secs(1))
        );
        // Another channel has its own allowance.
        assert_eq!(limits.check("chat.postMessage", "C2", t0), Ok(()));
        // A second later one more message fits, not two.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(limits.check("chat.postMessage", "C1", t1), Ok(()));
        assert!(limits.check("chat.postMessage", "C1", t1).is_err());
    }

    #[test]
    fn tier_three_counts_per_method_across_channels() {
        let mut limits = RateLimits::slack();
        let t0 = Instant::now();
        for n in 0..50 {
            let channel = format!("C{n}");
            assert_eq!(limits.check("chat.update", &channel, t0), Ok(()));
        }
        // The allowance refills at 50 a minute: the next call waits 1.2 s, so 2 s.
        assert_eq!(
            limits.check("chat.update", "C0", t0),
            Err(Duration::from_secs(2))
        );
        assert_eq!(
            limits.check("chat.update", "C0", t0 + Duration::from_millis(1200)),
            Ok(())
        );
    }

    #[test]
    fn methods_without_a_published_limit_are_not_limited() {
        let mut limits = RateLimits::slack();
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limits.check("auth.test", "", t0), Ok(()));
        }
    }
}
