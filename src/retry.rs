//! How long to wait before trying again, for every part that retries a call: the
//! worker (ReceiveMessage, DeleteMessage, delivery rounds) and the sinks
//! (attempts within a round). One curve, so that a service that is down sees
//! the same spread-out load from each of them.

use std::time::Duration;

/// Backoff between attempts: 0.5 s doubling up to 20 s, with full jitter.
pub fn backoff(attempt: u32) -> Duration {
    let cap_ms = (500u64 << attempt.min(6)).min(20_000);
    Duration::from_millis(fastrand::u64(cap_ms / 2..=cap_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt);
            assert!(d <= Duration::from_secs(20), "{attempt}: {d:?}");
            assert!(d >= Duration::from_millis(500), "{attempt}: {d:?}");
        }
        assert!(backoff(6) >= Duration::from_secs(10));
    }
}
