//! The one retry rule for HTTP outside the AWS SDK, as go-containerregistry's
//! `remote/transport` has one retrying transport: an answer of 429, 500, 502, 503 or
//! 504, or a request that got no answer (refused, reset, timed out), is sent again after
//! a full-jitter exponential backoff, or after the `Retry-After` the server asked for,
//! up to [`MAX_ATTEMPTS`] in all. Docker Hub and GHCR throttle, a proxy in front of a
//! registry has bad moments, and GitHub's token endpoint answers 5xx under load.
//!
//! A request whose body streams cannot be sent twice: it gets one attempt here, and the
//! caller that owns the bytes (the push of one blob) starts that blob over, under the
//! same rule ([`backoff`], [`MAX_ATTEMPTS`]). The AWS SDK's calls keep the SDK's own
//! retry (with per-quota partitions on the ECR path); this rule is the SDK standard
//! mode's, without the token bucket.

use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;

/// Attempts in all per request (and per blob whose streamed upload is cut), as for STS.
pub const MAX_ATTEMPTS: u32 = 5;
/// The longest wait between two attempts, whatever a `Retry-After` asks.
pub const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// The first wait's ceiling; each later one doubles it.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Answers worth waiting out: throttled, or the server (or a proxy) failing for now.
pub fn transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// The wait a `Retry-After` of seconds asks for, within [`MAX_BACKOFF`]. (An HTTP date
/// there is taken as no answer, and the backoff applies.)
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_BACKOFF))
}

/// Full jitter (a uniform wait up to the ceiling): up to 0.5 s after the first
/// attempt, 1 s after the second, 2 s, … within [`MAX_BACKOFF`].
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(fraction())
}

/// A random fraction in [0, 1), from the standard library's per-process random keys:
/// enough to spread waits, no generator to carry.
pub fn fraction() -> f64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What one attempt came to: an answer, or none (the connection's error).
pub type Answer = Result<reqwest::Response, reqwest::Error>;

/// Sends `request` by `attempt` (which may authorize it, count it, or fail for reasons
/// of its own, `E`) until it is answered with something other than a transient status,
/// or [`MAX_ATTEMPTS`] are spent; the last answer is returned either way, with the
/// number of attempts made. A request that cannot be cloned (a streamed body) is sent
/// once. `what` names it in the debug log of each retry.
pub async fn send<E, F, Fut>(
    mut request: reqwest::Request,
    what: &str,
    mut attempt: F,
) -> Result<(Answer, u32), E>
where
    F: FnMut(reqwest::Request) -> Fut,
    Fut: Future<Output = Result<Answer, E>>,
{
    let mut made = 1;
    loop {
        let again = (made < MAX_ATTEMPTS).then(|| request.try_clone()).flatten();
        let answer = attempt(request).await?;
        let wait = match &answer {
            Ok(response) if transient(response.status()) => {
                retry_after(response.headers()).unwrap_or_else(|| backoff(made))
            }
            Ok(_) => return Ok((answer, made)),
            Err(_) => backoff(made),
        };
        let Some(next) = again else {
            return Ok((answer, made));
        };
        match &answer {
            Ok(response) => tracing::debug!(
                "{what}: answered {}; again in {:.1} s",
                response.status(),
                wait.as_secs_f64()
            ),
            Err(e) => tracing::debug!(
                "{what}: {}; again in {:.1} s",
                crate::sdk::innermost(e),
                wait.as_secs_f64()
            ),
        }
        tokio::time::sleep(wait).await;
        request = next;
        made += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_its_ceiling_up_to_the_maximum() {
        for attempt in 1..=12 {
            let ceiling = FIRST_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(10))
                .min(MAX_BACKOFF);
            for _ in 0..50 {
                assert!(backoff(attempt) <= ceiling, "attempt {attempt}");
            }
        }
        assert_eq!(
            FIRST_BACKOFF.saturating_mul(1 << 6).min(MAX_BACKOFF),
            MAX_BACKOFF
        );
        // Full jitter: waits spread over the range rather than sit at its top.
        let waits: std::collections::BTreeSet<Duration> = (0..50).map(|_| backoff(3)).collect();
        assert!(waits.len() > 40, "{waits:?}");
    }

    #[test]
    fn retry_after_in_seconds_is_kept_within_the_maximum() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(reqwest::header::RETRY_AFTER, "3600".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_BACKOFF));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn throttling_and_passing_failures_are_transient_and_nothing_else_is() {
        for status in [429, 500, 502, 503, 504] {
            assert!(transient(StatusCode::from_u16(status).unwrap()), "{status}");
        }
        for status in [200, 201, 202, 307, 400, 401, 403, 404, 416, 501, 505] {
            assert!(
                !transient(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
    }
}
