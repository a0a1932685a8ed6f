//! Request budgets shared by every sync that uses one destination account: GCRA via `governor`.
//!
//! # How a quota maps to GCRA
//!
//! Vendors state limits as "`n` requests per `per`" and count them in fixed windows whose
//! start we do not know, so the only safe reading is "at most `n` in *any* window of length
//! `per`". GCRA with emission interval `T` and burst `b` admits `b` requests at once and then
//! one per `T`, so a half-open window of length `per` can hold `b + ceil(per / T) - 1`
//! requests. The obvious quota (`T = per / n`, `b = n`) therefore lets `2n - 1` through in
//! the window that straddles the first burst. Strictness needs `b + per / T - 1 <= n`, so we
//! pace at `T = per / (n - b + 1)` (rounded up) with a small burst `b = max(1, n / 20)`:
//! every window holds at most `n`, the long-run rate is `(n - b + 1) / n >= 95%` of the
//! quota, and the burst soaks up timer lateness that a burst of one would lose for good.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::ops::Add;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::{sleep_until, Instant};

/// One part in this many of a quota may go out at once; the rest is paced (see the module docs).
const BURST_DIVISOR: u32 = 20;

/// Periods are capped here so GCRA's nanosecond arithmetic cannot overflow; no run lasts this long.
const MAX_PERIOD: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// A vendor's request quota: at most `requests` in any `per` (e.g. 190 per 10 s, 250,000 per day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Requests allowed per period.
    pub requests: u32,
    /// The period.
    pub per: Duration,
}

/// The request budget of one destination account; cheap to clone, clones share the budget.
#[derive(Clone)]
pub struct RateBudget {
    inner: Arc<Budget>,
}

/// Budgets by account key and normalized limits.
type Registry = HashMap<(String, Vec<RateLimit>), RateBudget>;

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

struct Budget {
    /// The valid limits, shortest period first.
    limits: Vec<RateLimit>,
    /// One limiter per limit, in the same order.
    limiters: Vec<Limiter>,
    /// Callers take slots one at a time, so a slot charged to one limiter is never left
    /// waiting on another while someone else races past (see [`RateBudget::until_ready`]).
    turn: tokio::sync::Mutex<()>,
    paused_until: Mutex<Option<Instant>>,
}

impl RateBudget {
    /// A budget enforcing every limit together. Limits with zero requests or a zero period are ignored.
    pub fn new(limits: &[RateLimit]) -> Self {
        RateBudget::from_normalized(normalize(limits))
    }

    /// The process-wide budget for an account: the same key and limits always give the same
    /// budget, so concurrent syncs to one account draw on one quota. Budgets live as long as
    /// the process, so a sync that starts right after another still sees its predecessor's sends.
    pub fn shared(account_key: &str, limits: &[RateLimit]) -> Self {
        static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
        let limits = normalize(limits);
        let mut registry = REGISTRY.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
        registry
            .entry((account_key.to_string(), limits.clone()))
            .or_insert_with(|| RateBudget::from_normalized(limits))
            .clone()
    }

    fn from_normalized(limits: Vec<RateLimit>) -> Self {
        let limiters = limits
            .iter()
            .filter_map(|&limit| quota_for(limit))
            .map(|quota| RateLimiter::direct_with_clock(quota, TokioClock))
            .collect();
        RateBudget {
            inner: Arc::new(Budget {
                limits,
                limiters,
                turn: tokio::sync::Mutex::new(()),
                paused_until: Mutex::new(None),
            }),
        }
    }

    /// The limits this budget enforces, shortest period first.
    pub fn limits(&self) -> &[RateLimit] {
        &self.inner.limits
    }

    /// Waits until a request may be sent under every limit and after any pause, and takes that
    /// slot. Send right away: the quota holds for sends made when this returns.
    pub async fn until_ready(&self) {
        let _turn = self.inner.turn.lock().await;
        'wait: loop {
            if let Some(until) = self.paused_until() {
                if until > Instant::now() {
                    sleep_until(until).await;
                    continue;
                }
            }
            // A slot already charged to one limit goes stale while we wait on another: sending
            // later than it was charged could overfill a later window. So after any wait every
            // limit is charged afresh. The stale slots are merely wasted, which costs throughput
            // only when two limits bind at nearly the same rate.
            for limiter in &self.inner.limiters {
                if let Err(not_until) = limiter.check() {
                    sleep_until(not_until.earliest_possible().0).await;
                    continue 'wait;
                }
            }
            return;
        }
    }

    /// Makes every user of the budget wait `wait` from now (a 429's `Retry-After`); an
    /// existing longer pause is kept.
    pub fn pause_for(&self, wait: Duration) {
        let now = Instant::now();
        let Some(until) = now.checked_add(wait).or_else(|| now.checked_add(MAX_PERIOD)) else { return };
        let mut paused = self.inner.paused_until.lock().unwrap_or_else(PoisonError::into_inner);
        *paused = Some(paused.map_or(until, |current| current.max(until)));
    }

    /// Feeds a tool's rate-limit headers (such as `X-HubSpot-RateLimit-Remaining` and
    /// `-Interval-Milliseconds`): with nothing remaining, everyone waits for the reset.
    pub fn observe_remaining(&self, remaining: u64, resets_in: Duration) {
        if remaining == 0 {
            self.pause_for(resets_in);
        }
    }

    fn paused_until(&self) -> Option<Instant> {
        *self.inner.paused_until.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for RateBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateBudget")
            .field("limits", &self.inner.limits)
            .field("paused_until", &self.paused_until())
            .finish()
    }
}

/// Drops limits that allow nothing meaningful, orders them shortest period first and removes
/// duplicates, so equal sets of limits compare equal in the registry.
fn normalize(limits: &[RateLimit]) -> Vec<RateLimit> {
    let mut limits: Vec<RateLimit> = limits
        .iter()
        .filter(|limit| limit.requests > 0 && !limit.per.is_zero())
        .map(|&limit| RateLimit { per: limit.per.min(MAX_PERIOD), ..limit })
        .collect();
    limits.sort_by_key(|limit| (limit.per, limit.requests));
    limits.dedup();
    limits
}

/// The strict GCRA quota for a limit (see the module docs).
fn quota_for(limit: RateLimit) -> Option<Quota> {
    let requests = limit.requests;
    let burst = (requests / BURST_DIVISOR).max(1);
    let paced = u128::from(requests - burst + 1);
    // Rounded up: a period even a nanosecond short would fit one request too many into a window.
    let period = limit.per.min(MAX_PERIOD).as_nanos().div_ceil(paced);
    let period = Duration::from_nanos(u64::try_from(period).unwrap_or(u64::MAX));
    Some(Quota::with_period(period)?.allow_burst(NonZeroU32::new(burst)?))
}

/// Governor's clock on tokio's time, so budgets sleep on tokio timers and follow
/// `tokio::time::pause` in tests.
#[derive(Debug, Clone, Copy, Default)]
struct TokioClock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct TokioInstant(Instant);

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

impl Add<Nanos> for TokioInstant {
    type Output = TokioInstant;

    fn add(self, offset: Nanos) -> TokioInstant {
        // Overflow would need an instant centuries away; staying put beats panicking.
        TokioInstant(self.0.checked_add(Duration::from(offset)).unwrap_or(self.0))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        let nanos = self.0.saturating_duration_since(earlier.0).as_nanos();
        Nanos::from(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        self.0.checked_sub(Duration::from(duration)).map_or(*self, TokioInstant)
    }
}

#[cfg(test)]
mod tests {
    use futures::future::join_all;

    use super::*;

    fn limit(requests: u32, per_ms: u64) -> RateLimit {
        RateLimit { requests, per: Duration::from_millis(per_ms) }
    }

    /// Sends as fast as the budgets allow from `tasks` concurrent tasks for `span`; returns
    /// the send times, sorted.
    async fn record_sends(budgets: &[RateBudget], span: Duration) -> Vec<Instant> {
        let end = Instant::now() + span;
        let sends = Mutex::new(Vec::new());
        join_all(budgets.iter().map(|budget| async {
            loop {
                budget.until_ready().await;
                let now = Instant::now();
                if now >= end {
                    break;
                }
                sends.lock().unwrap().push(now);
            }
        }))
        .await;
        let mut sends = sends.into_inner().unwrap();
        sends.sort();
        sends
    }

    /// The most sends in any half-open window `[t, t + per)`.
    fn busiest_window(sends: &[Instant], per: Duration) -> usize {
        let mut end = 0;
        let mut busiest = 0;
        for (start, &at) in sends.iter().enumerate() {
            while end < sends.len() && sends[end] < at + per {
                end += 1;
            }
            busiest = busiest.max(end - start);
        }
        busiest
    }

    const LIMITS: [(u32, u64); 7] =
        [(20, 200), (190, 10_000), (7, 1_000), (100, 1_000), (1, 50), (1_000, 60_000), (40, 100)];

    #[tokio::test(start_paused = true)]
    async fn quota_holds_in_every_sliding_window() {
        for (requests, per_ms) in LIMITS {
            let budget = RateBudget::new(&[limit(requests, per_ms)]);
            let per = Duration::from_millis(per_ms);
            let sends = record_sends(&[budget.clone(), budget.clone(), budget.clone(), budget], per * 6).await;
            let busiest = busiest_window(&sends, per);
            assert!(busiest <= requests as usize, "{requests} per {per_ms} ms: {busiest} in one window");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn long_run_throughput_is_at_least_90_percent() {
        for (requests, per_ms) in LIMITS {
            let budget = RateBudget::new(&[limit(requests, per_ms)]);
            let per = Duration::from_millis(per_ms);
            let sends = record_sends(&[budget.clone(), budget], per * 8).await;
            let ceiling = f64::from(requests) * 8.0;
            assert!(
                sends.len() as f64 >= 0.9 * ceiling,
                "{requests} per {per_ms} ms: {} of {ceiling} in 8 periods",
                sends.len()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_burst_goes_out_at_once() {
        let budget = RateBudget::new(&[limit(100, 1_000)]);
        let start = Instant::now();
        for _ in 0..5 {
            budget.until_ready().await;
        }
        assert_eq!(Instant::now(), start);
        budget.until_ready().await;
        assert!(Instant::now() > start);
    }

    #[tokio::test(start_paused = true)]
    async fn every_limit_is_enforced_together() {
        let limits = [limit(20, 1_000), limit(5, 100)];
        let budget = RateBudget::new(&limits);
        assert_eq!(budget.limits(), &[limit(5, 100), limit(20, 1_000)]);
        let sends = record_sends(&[budget.clone(), budget.clone(), budget], Duration::from_secs(3)).await;
        assert!(busiest_window(&sends, Duration::from_millis(100)) <= 5);
        assert!(busiest_window(&sends, Duration::from_secs(1)) <= 20);
        assert!(sends.len() >= 54, "{} sends in 3 s under 20/s", sends.len());
    }

    #[tokio::test(start_paused = true)]
    async fn shared_budgets_are_one_per_account() {
        let limits = [limit(20, 200)];
        let tasks = (0..3).map(|_| RateBudget::shared("test-account-shared", &limits)).collect::<Vec<_>>();
        assert!(tasks.windows(2).all(|pair| Arc::ptr_eq(&pair[0].inner, &pair[1].inner)));
        let duplicated = RateBudget::shared("test-account-shared", &[limit(20, 200), limit(20, 200)]);
        assert!(Arc::ptr_eq(&duplicated.inner, &tasks[0].inner));
        let other = RateBudget::shared("test-account-other", &limits);
        assert!(!Arc::ptr_eq(&other.inner, &tasks[0].inner));
        let sends = record_sends(&tasks, Duration::from_secs(2)).await;
        assert!(busiest_window(&sends, Duration::from_millis(200)) <= 20);
    }

    #[tokio::test(start_paused = true)]
    async fn pause_for_delays_every_user_and_never_shortens() {
        let budget = RateBudget::new(&[limit(1_000, 1_000)]);
        let start = Instant::now();
        budget.pause_for(Duration::from_secs(2));
        budget.pause_for(Duration::from_secs(1));
        let users = (0..3).map(|_| budget.clone()).collect::<Vec<_>>();
        let ready = join_all(users.iter().map(|budget| async {
            budget.until_ready().await;
            Instant::now()
        }))
        .await;
        assert!(ready.iter().all(|&at| at >= start + Duration::from_secs(2)), "{ready:?}");
        budget.pause_for(Duration::from_millis(500));
        budget.until_ready().await;
        assert!(Instant::now() >= start + Duration::from_millis(2_500));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_remaining_pauses_until_the_reset() {
        let budget = RateBudget::new(&[limit(1_000, 1_000)]);
        let start = Instant::now();
        budget.observe_remaining(3, Duration::from_secs(5));
        budget.until_ready().await;
        assert_eq!(Instant::now(), start);
        budget.observe_remaining(0, Duration::from_millis(1_500));
        budget.until_ready().await;
        assert!(Instant::now() >= start + Duration::from_millis(1_500));
    }

    #[tokio::test(start_paused = true)]
    async fn meaningless_limits_are_ignored() {
        let budget = RateBudget::new(&[limit(0, 1_000), RateLimit { requests: 5, per: Duration::ZERO }]);
        assert!(budget.limits().is_empty());
        let start = Instant::now();
        for _ in 0..100 {
            budget.until_ready().await;
        }
        assert_eq!(Instant::now(), start);
        let huge = RateBudget::new(&[RateLimit { requests: u32::MAX, per: Duration::MAX }]);
        huge.until_ready().await;
    }
}
