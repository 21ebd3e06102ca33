//! Quota-aware pacing: how many calls of one ECR action may be in flight at once, and
//! how long a throttled call waits before it goes again.
//!
//! ECR's request quotas are per account and region and shared by every job of the
//! organisation (UploadLayerPart 500 a second, InitiateLayerUpload and
//! CompleteLayerUpload 100, PutImage 10), so a throttle says the account is busy, not
//! that this push is wrong. Each action has its own [`Pace`]:
//! - Calls in flight start at the push's concurrency, halve on a throttle (once per
//!   round: calls admitted before the cut were sent at the old pace and say nothing
//!   new) and grow by one after [`SUCCESSES_TO_GROW`] answers in a row without one,
//!   additive increase and multiplicative decrease as TCP does.
//! - A throttled call goes again after a wait drawn as AWS's "decorrelated jitter"
//!   (each wait uniform between the first and three times the last, within a ceiling),
//!   with the first wait and the ceiling set by the action's quota: 10 and 40 calls'
//!   worth (1 s and 4 s for PutImage), never under 0.25 s and 1 s. The SDK's
//!   exponential backoff (full jitter, up to 20 s) leaves the quota idle in the end
//!   while the unlucky jobs sleep: measured with 32 jobs on PutImage's quota
//!   (`scripts/bench quota`, BENCHMARKS.md), and modelled first
//!   (`scripts/lib/quota_model.py`), which is how the ceiling was chosen.
//! - A throttle is not a failure: it is waited out as long as the push's deadline
//!   allows ([`THROTTLED_ATTEMPTS`] at most), where any other error still gets
//!   [`MAX_ATTEMPTS`], so a hundred jobs at once slow down and none fails.
//!
//! A throttle is seen by an interceptor that goes with each request ([`Watch`]), which
//! reads each attempt's answer and knows the round it was sent in; the wait is a retry
//! classifier that goes with it ([`Wait`]) and refines the SDK's verdict. With
//! `ECR_PUSH_PACE=off` there are no cuts and no waits of the pace's own (the push's
//! concurrency and the SDK's retry alone; throttles still counted), to measure the pace
//! against its absence.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecr::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_ecr::config::retry::RetryConfig;
use aws_sdk_ecr::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use aws_smithy_types::retry::ErrorKind;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Attempts per call that fail for a reason other than a throttle. Errors that are not
/// transient (access denied) are never retried.
pub const MAX_ATTEMPTS: u32 = 8;
/// The longest wait between two attempts the SDK draws (exponential backoff with
/// jitter), for errors other than a throttle.
pub const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// Attempts per call when throttled: over an hour of PutImage's waits, so in practice the
/// push's deadline ends the wait first. Not unbounded: the SDK sums a backoff per
/// possible attempt (its identity cache's timeout), which `u32::MAX` makes endless.
const THROTTLED_ATTEMPTS: u32 = 1_000;

/// Answers in a row without a throttle before one more call may be in flight: two
/// rounds at the default concurrency, so a busy account is probed gently.
const SUCCESSES_TO_GROW: usize = 8;

/// A throttled call's first wait, in calls of the action's quota: 1 s for PutImage.
const FIRST_WAIT_CALLS: u32 = 10;
/// The longest wait, likewise: 4 s for PutImage. Waits this short keep the quota busy
/// to the end; the jobs still pay in throttles, which cost the account nothing.
const LONGEST_WAIT_CALLS: u32 = 40;
/// Whatever the quota, no first wait is shorter than this, nor a longest wait than
/// [`LEAST_LONGEST_WAIT`]: a throttled part goes again with its whole body (13 MiB
/// encoded), which waits of 20 to 80 ms (UploadLayerPart's 500 a second) would send
/// several times a second.
const LEAST_FIRST_WAIT: Duration = Duration::from_millis(250);
const LEAST_LONGEST_WAIT: Duration = Duration::from_secs(1);

/// The error codes ECR throttles with (HTTP 400); a 429 is a throttle whatever its code.
const THROTTLING_CODES: [&str; 2] = ["ThrottlingException", "TooManyRequestsException"];

/// Whether an attempt's answer (its HTTP status, its error code) says the account's
/// quota was spent. Not `LimitExceededException`, which the SDK counts as a throttle
/// but ECR answers for a service limit (images per repository, a second scan a day).
fn throttled(status: Option<u16>, code: Option<&str>) -> bool {
    status == Some(429) || code.is_some_and(|c| THROTTLING_CODES.contains(&c))
}

#[derive(Debug)]
pub struct Pace {
    action: &'static str,
    /// A throttled call's first wait, and the longest.
    first_wait: Duration,
    longest_wait: Duration,
    /// False with `ECR_PUSH_PACE=off`.
    on: bool,
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
    /// `quota`: ECR's default rate for the action, calls a second per account and
    /// region; `on`: false to measure without the pace.
    pub fn new(action: &'static str, concurrency: usize, quota: u32, on: bool) -> Arc<Self> {
        let most = concurrency.max(1);
        let call = Duration::from_secs(1) / quota.max(1);
        Arc::new(Self {
            action,
            first_wait: (call * FIRST_WAIT_CALLS).max(LEAST_FIRST_WAIT),
            longest_wait: (call * LONGEST_WAIT_CALLS).max(LEAST_LONGEST_WAIT),
            on,
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

    /// An attempt sent in `round` was throttled.
    fn throttled(&self, round: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.throttles += 1;
        state.successes = 0;
        if !self.on || round != state.round {
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

    /// The wait after a throttle, given the last one (zero before the first): uniform
    /// between the first wait and three times the last (or the first), within the
    /// longest. Random from the start, so calls throttled together part.
    fn next_wait(&self, last: Duration) -> Duration {
        let high = (last.max(self.first_wait) * 3).min(self.longest_wait);
        let wait = self.first_wait
            + high
                .saturating_sub(self.first_wait)
                .mul_f64(crate::http::retry::fraction());
        wait.min(self.longest_wait)
    }

    pub fn action(&self) -> &'static str {
        self.action
    }

    /// The number of throttles seen.
    pub fn throttles(&self) -> u64 {
        self.state.lock().map(|s| s.throttles).unwrap_or_default()
    }

    /// The config override for one request: an interceptor that reports a throttle of
    /// it to this pace, and the wait before a throttled attempt goes again (throttles
    /// up to [`THROTTLED_ATTEMPTS`]; other errors [`MAX_ATTEMPTS`]). `E` is the
    /// operation's error type.
    pub fn watch<E>(self: &Arc<Self>, admitted: &Admitted<'_>) -> aws_sdk_ecr::config::Builder
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let request = Arc::new(Request {
            throttled: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            round: AtomicU64::new(admitted.round),
            last_wait: Mutex::new(Duration::ZERO),
        });
        let builder = aws_sdk_ecr::Config::builder().interceptor(Watch::<E> {
            pace: Arc::clone(self),
            request: Arc::clone(&request),
            error: std::marker::PhantomData,
        });
        if !self.on {
            return builder;
        }
        builder
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(THROTTLED_ATTEMPTS)
                    .with_max_backoff(MAX_BACKOFF),
            )
            .retry_classifier(Wait {
                pace: Arc::clone(self),
                request,
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

/// What the interceptor and the classifier of one request share.
#[derive(Debug)]
struct Request {
    /// Whether the last attempt was throttled, by [`throttled`]'s reading of its answer.
    throttled: AtomicBool,
    /// Attempts that failed for another reason the SDK would retry.
    failures: AtomicU32,
    /// The round the last attempt was sent in.
    round: AtomicU64,
    /// The last wait after a throttle; zero before the first.
    last_wait: Mutex<Duration>,
}

/// Goes with one request: tells its [`Pace`] and the request's [`Wait`] when an
/// attempt was throttled. `E` is the operation's error type, whose code says what ECR answered.
struct Watch<E> {
    pace: Arc<Pace>,
    request: Arc<Request>,
    error: std::marker::PhantomData<fn() -> E>,
}

impl<E> std::fmt::Debug for Watch<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watch({})", self.pace.action)
    }
}

impl<E> Intercept for Watch<E>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        "ecr-push pace"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.request
            .round
            .store(self.pace.round(), Ordering::Relaxed);
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let status = context.response().map(|r| r.status().as_u16());
        let code = context
            .output_or_error()
            .and_then(Result::err)
            .and_then(|e| e.as_operation_error())
            .and_then(|e| e.downcast_ref::<E>())
            .and_then(|e| e.code());
        let was = throttled(status, code);
        self.request.throttled.store(was, Ordering::Relaxed);
        if was {
            self.pace
                .throttled(self.request.round.load(Ordering::Relaxed));
        }
        Ok(())
    }
}

/// Goes with one request: refines the SDK's verdict on an attempt. A throttle goes
/// again after the pace's wait, up to [`THROTTLED_ATTEMPTS`]; any other error the SDK
/// would retry, only within [`MAX_ATTEMPTS`] attempts that failed so, however many
/// throttles came between.
#[derive(Debug)]
struct Wait {
    pace: Arc<Pace>,
    request: Arc<Request>,
}

impl ClassifyRetry for Wait {
    fn classify_retry(&self, _ctx: &InterceptorContext) -> RetryAction {
        RetryAction::NoActionIndicated
    }

    fn classify_retry_v2(&self, _ctx: &InterceptorContext, previous: &RetryAction) -> RetryAction {
        // A throttle by the pace's own reading (the SDK also counts LimitExceeded, a
        // service limit, as one; and retries no bare 429).
        if self.request.throttled.load(Ordering::Relaxed) {
            let Ok(mut last) = self.request.last_wait.lock() else {
                return RetryAction::NoActionIndicated;
            };
            *last = self.pace.next_wait(*last);
            return RetryAction::retryable_error_with_explicit_delay(
                ErrorKind::ThrottlingError,
                *last,
            );
        }
        if !previous.should_retry() {
            return RetryAction::NoActionIndicated;
        }
        // Any other error, as often as the SDK would retry it alone, throttles aside.
        let failures = self.request.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= MAX_ATTEMPTS {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "ecr-push pace wait"
    }

    fn priority(&self) -> RetryClassifierPriority {
        // After the SDK's own classifiers, whose verdict this refines.
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
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
        let pace = Pace::new("UploadLayerPart", 4, 500, true);
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
        let pace = Pace::new("InitiateLayerUpload", 2, 100, true);
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

    #[test]
    fn throttled_waits_are_decorrelated_between_the_first_and_the_longest() {
        let pace = Pace::new("PutImage", 1, 10, true);
        let (first, longest) = (Duration::from_secs(1), Duration::from_secs(4));
        let mut last = Duration::ZERO;
        let mut waits = Vec::new();
        for _ in 0..200 {
            let wait = pace.next_wait(last);
            let high = (last.max(first) * 3).min(longest);
            assert!(wait >= first && wait <= high, "{wait:?} after {last:?}");
            waits.push(wait);
            last = wait;
        }
        let firsts: Vec<Duration> = (0..20).map(|_| pace.next_wait(Duration::ZERO)).collect();
        assert!(
            firsts.iter().all(|w| *w >= first && *w <= first * 3),
            "{firsts:?}"
        );
        assert!(
            firsts.iter().any(|w| *w != firsts[0]),
            "calls throttled together part from the first wait: {firsts:?}"
        );
        assert!(
            waits.iter().any(|w| *w > Duration::from_millis(3500)),
            "waits reach towards the longest"
        );
        let mean = waits.iter().sum::<Duration>() / waits.len() as u32;
        assert!(mean > first && mean < longest, "spread between: {mean:?}");
        // The layer actions' quotas are higher, and so their waits shorter, but never
        // so short that a part's body goes again several times a second.
        let parts = Pace::new("UploadLayerPart", 4, 500, true);
        let wait = parts.next_wait(Duration::ZERO);
        assert!(wait >= Duration::from_millis(250) && wait <= Duration::from_millis(750));
        assert!(parts.next_wait(Duration::from_secs(9)) <= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn off_it_never_cuts_but_still_counts() {
        let pace = Pace::new("UploadLayerPart", 4, 500, false);
        for _ in 0..3 {
            let call = pace.admit().await;
            pace.throttled(call.round);
        }
        assert_eq!(limit(&pace), 4);
        assert_eq!(pace.throttles(), 3);
    }

    #[test]
    fn only_ecrs_throttles_are_throttles() {
        assert!(throttled(Some(400), Some("ThrottlingException")));
        assert!(throttled(Some(429), None));
        assert!(throttled(Some(400), Some("TooManyRequestsException")));
        // The SDK counts these as throttles too; ECR means a service limit by the first.
        assert!(!throttled(Some(400), Some("LimitExceededException")));
        assert!(!throttled(Some(500), None));
        assert!(!throttled(None, None));
    }

    #[test]
    fn the_wait_retries_throttles_without_a_count_and_other_errors_within_eight() {
        use aws_smithy_runtime_api::client::interceptors::context::Input;
        use aws_smithy_runtime_api::client::retries::classifiers::RetryReason;
        let request = Arc::new(Request {
            throttled: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            round: AtomicU64::new(0),
            last_wait: Mutex::new(Duration::ZERO),
        });
        let wait = Wait {
            pace: Pace::new("PutImage", 1, 10, true),
            request: Arc::clone(&request),
        };
        let ctx = InterceptorContext::new(Input::erase(()));
        let answered = RetryAction::NoActionIndicated;
        assert_eq!(wait.classify_retry_v2(&ctx, &answered), answered);
        // Throttles by the pace's reading (a bare 429 too, which the SDK does not
        // retry): each waits the pace's wait, however many.
        request.throttled.store(true, Ordering::Relaxed);
        for _ in 0..50 {
            match wait.classify_retry_v2(&ctx, &answered) {
                RetryAction::RetryIndicated(RetryReason::RetryableError {
                    kind: ErrorKind::ThrottlingError,
                    retry_after: Some(after),
                }) => assert!(
                    after >= Duration::from_secs(1) && after <= Duration::from_secs(4),
                    "{after:?}"
                ),
                other => panic!("a throttle not waited out: {other:?}"),
            }
        }
        // Anything else the SDK would retry (here a LimitExceeded, which it calls a
        // throttle): 8 attempts in all, the throttles before not counted.
        request.throttled.store(false, Ordering::Relaxed);
        let sdk_says = RetryAction::throttling_error();
        for _ in 1..MAX_ATTEMPTS {
            assert_eq!(wait.classify_retry_v2(&ctx, &sdk_says), answered);
        }
        assert_eq!(
            wait.classify_retry_v2(&ctx, &sdk_says),
            RetryAction::RetryForbidden
        );
    }
}
