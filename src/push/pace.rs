//! Quota-aware pacing: how many calls of one ECR action may be in flight at once.
//!
//! ECR's request quotas are per account and region and shared by every job of the
//! organisation (UploadLayerPart 500 a second, InitiateLayerUpload and
//! CompleteLayerUpload 100, PutImage 10), so a throttle says the account is busy, not
//! that this push is wrong. Each action has its own [`Pace`]: it starts at the push's
//! concurrency, halves on a throttle (once per round: calls admitted before the cut
//! were sent at the old pace and say nothing new) and grows by one after
//! [`SUCCESSES_TO_GROW`] answers in a row without one, additive increase and
//! multiplicative decrease as TCP does. The throttled call itself is retried by the
//! SDK with jittered backoff, on that action only.
//!
//! A throttle is seen by an interceptor that goes with each request ([`Watch`]) and
//! knows the round it was admitted in.

use std::sync::{Arc, Mutex};

use aws_sdk_ecr::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_ecr::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::box_error::BoxError;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Answers in a row without a throttle before one more call may be in flight: two
/// rounds at the default concurrency, so a busy account is probed gently.
const SUCCESSES_TO_GROW: usize = 8;

/// The error codes ECR throttles with (HTTP 400); a 429 is a throttle whatever its code.
const THROTTLING_CODES: [&str; 2] = ["ThrottlingException", "TooManyRequestsException"];

#[derive(Debug)]
pub struct Pace {
    action: &'static str,
    permits: Semaphore,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Calls that may be in flight at once now.
    limit: usize,
    /// The push's concurrency: never more than this.
    most: usize,
    /// Answers without a throttle since the limit last changed.
    successes: usize,
    /// Permits to retire as they come back, after a cut.
    owed: usize,
    /// Bumped at each cut.
    round: u64,
    /// Throttles seen, for the report.
    throttles: u64,
}

/// A call admitted: in flight until this is dropped.
pub struct Admitted<'a> {
    pace: &'a Pace,
    permit: Option<SemaphorePermit<'a>>,
    round: u64,
}

impl Pace {
    pub fn new(action: &'static str, concurrency: usize) -> Arc<Self> {
        let most = concurrency.max(1);
        Arc::new(Self {
            action,
            permits: Semaphore::new(most),
            state: Mutex::new(State {
                limit: most,
                most,
                successes: 0,
                owed: 0,
                round: 0,
                throttles: 0,
            }),
        })
    }

    /// Waits until one more call may be in flight.
    pub async fn admit(&self) -> Admitted<'_> {
        // The semaphore is never closed, so acquiring fails never; if it did, the call
        // would go unpaced rather than not at all.
        let permit = self.permits.acquire().await.ok();
        Admitted {
            pace: self,
            permit,
            round: self.round(),
        }
    }

    fn round(&self) -> u64 {
        self.state.lock().map(|s| s.round).unwrap_or_default()
    }

    /// A call admitted in `round` was throttled.
    fn throttled(&self, round: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.throttles += 1;
        state.successes = 0;
        if round != state.round {
            return;
        }
        let limit = (state.limit / 2).max(1);
        if limit == state.limit {
            return;
        }
        state.owed += state.limit - limit;
        state.limit = limit;
        state.round += 1;
        tracing::info!(
            "{} throttled by ECR (the account's quota is shared): at most {limit} at once from now on",
            self.action
        );
    }

    pub fn action(&self) -> &'static str {
        self.action
    }

    /// The number of throttles seen.
    pub fn throttles(&self) -> u64 {
        self.state.lock().map(|s| s.throttles).unwrap_or_default()
    }

    /// The config override for one request: an interceptor that reports a throttle of
    /// it to this pace. `E` is the operation's error type.
    pub fn watch<E>(self: &Arc<Self>, admitted: &Admitted<'_>) -> aws_sdk_ecr::config::Builder
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        aws_sdk_ecr::Config::builder().interceptor(Watch::<E> {
            pace: Arc::clone(self),
            round: admitted.round,
            error: std::marker::PhantomData,
        })
    }
}

impl Admitted<'_> {
    /// The call was answered, after retries if any: one step towards one more.
    pub fn succeeded(self) {
        let Ok(mut state) = self.pace.state.lock() else {
            return;
        };
        state.successes += 1;
        if state.successes < SUCCESSES_TO_GROW || state.limit >= state.most {
            return;
        }
        state.successes = 0;
        state.limit += 1;
        if state.owed > 0 {
            // A permit still out from before the cut stays instead of being retired.
            state.owed -= 1;
        } else {
            self.pace.permits.add_permits(1);
        }
        tracing::debug!(
            "{}: at most {} at once from now on",
            self.pace.action,
            state.limit
        );
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        if let Ok(mut state) = self.pace.state.lock()
            && state.owed > 0
        {
            state.owed -= 1;
            permit.forget();
        }
    }
}

/// Goes with one request: tells its [`Pace`] when an attempt was throttled. `E` is the
/// operation's error type, whose code says what ECR answered.
struct Watch<E> {
    pace: Arc<Pace>,
    round: u64,
    error: std::marker::PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for Watch<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watch({}, round {})", self.pace.action, self.round)
    }
}

impl<E> Intercept for Watch<E>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        "ecr-push pace"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let too_many = context
            .response()
            .is_some_and(|r| r.status().as_u16() == 429);
        let code = context
            .output_or_error()
            .and_then(Result::err)
            .and_then(|e| e.as_operation_error())
            .and_then(|e| e.downcast_ref::<E>())
            .and_then(|e| e.code());
        if too_many || code.is_some_and(|c| THROTTLING_CODES.contains(&c)) {
            self.pace.throttled(self.round);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(pace: &Pace) -> usize {
        pace.state.lock().unwrap().limit
    }

    #[tokio::test]
    async fn a_throttle_halves_once_per_round() {
        let pace = Pace::new("UploadLayerPart", 4);
        let calls: Vec<_> = [(); 4].iter().map(|_| pace.admit()).collect();
        let mut admitted = Vec::new();
        for call in calls {
            admitted.push(call.await);
        }
        // Two calls of the same round throttled: one cut.
        pace.throttled(admitted[0].round);
        pace.throttled(admitted[1].round);
        assert_eq!(limit(&pace), 2);
        assert_eq!(pace.throttles(), 2);
        // The permits of the old round are retired as they come back…
        admitted.truncate(2);
        assert_eq!(pace.permits.available_permits(), 0);
        drop(admitted);
        assert_eq!(pace.permits.available_permits(), 2);
        // …and a throttle in the new round cuts again, to one, never to zero.
        let call = pace.admit().await;
        pace.throttled(call.round);
        assert_eq!(limit(&pace), 1);
        let call2 = pace.admit().await;
        pace.throttled(call2.round);
        assert_eq!(limit(&pace), 1);
        drop((call, call2));
        assert_eq!(pace.permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn answers_in_a_row_grow_it_back_to_the_concurrency() {
        let pace = Pace::new("InitiateLayerUpload", 2);
        let first = pace.admit().await;
        pace.throttled(first.round);
        drop(first);
        assert_eq!(limit(&pace), 1);
        for _ in 0..SUCCESSES_TO_GROW - 1 {
            pace.admit().await.succeeded();
        }
        assert_eq!(limit(&pace), 1);
        pace.admit().await.succeeded();
        assert_eq!(limit(&pace), 2);
        assert_eq!(pace.permits.available_permits(), 2);
        for _ in 0..3 * SUCCESSES_TO_GROW {
            pace.admit().await.succeeded();
        }
        assert_eq!(limit(&pace), 2, "never past the concurrency");
        assert_eq!(pace.permits.available_permits(), 2);
    }
}
