//! Adaptive request concurrency: AIMD on round-trip time, in the style of Vector's ARC.
//!
//! The limit starts low and grows by one per RTT window while the destination answers
//! without backpressure and without its latency rising above the past RTT plus
//! `rtt_deviation_scale` mean deviations; backpressure (429, 503, timeouts) or such a spike
//! cuts it by `decrease_ratio`. Decisions are taken at most once per window, a window lasting
//! about one past RTT, so one slow burst of responses moves the limit once, not per response.
//!
//! Where this departs from Vector, it is to settle at the knee of a destination whose latency
//! grows with load rather than creep up to the point of 429s: only answers to requests sent
//! since the last change count, a window waits for a full round of them, deviations are
//! measured per response, and a spike becomes the new baseline only if backing off did not
//! bring latency down.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The default ceiling: SaaS APIs rarely reward more parallel requests than this.
const DEFAULT_MAX: usize = 32;

/// RTTs are compared in f64 seconds; this absorbs rounding so identical RTTs never look
/// like a spike.
const SPIKE_SLACK_SECS: f64 = 1e-6;

/// Tuning for [`AdaptiveConcurrency`]; the defaults of the last three are Vector's.
#[derive(Debug, Clone, Copy)]
pub struct ConcurrencySettings {
    /// The limit before any response has been seen.
    pub initial: usize,
    /// The ceiling the limit never exceeds.
    pub max: usize,
    /// The factor applied to the limit on backpressure or a latency spike.
    pub decrease_ratio: f64,
    /// How many mean deviations above the past RTT count as a latency spike.
    pub rtt_deviation_scale: f64,
    /// The weight of each window's RTT in the moving average of past RTTs.
    pub ewma_alpha: f64,
}

impl Default for ConcurrencySettings {
    fn default() -> Self {
        ConcurrencySettings {
            initial: 1,
            max: DEFAULT_MAX,
            decrease_ratio: 0.9,
            rtt_deviation_scale: 2.5,
            ewma_alpha: 0.4,
        }
    }
}

impl ConcurrencySettings {
    /// Replaces values that would break the algorithm (or the semaphore) with usable ones,
    /// so a bad configuration degrades instead of panicking.
    fn sanitized(self) -> Self {
        let defaults = ConcurrencySettings::default();
        let max = self.max.clamp(1, Semaphore::MAX_PERMITS);
        ConcurrencySettings {
            initial: self.initial.clamp(1, max),
            max,
            decrease_ratio: if (0.0..1.0).contains(&self.decrease_ratio) {
                self.decrease_ratio
            } else {
                defaults.decrease_ratio
            },
            rtt_deviation_scale: if self.rtt_deviation_scale.is_finite() && self.rtt_deviation_scale >= 0.0 {
                self.rtt_deviation_scale
            } else {
                defaults.rtt_deviation_scale
            },
            ewma_alpha: if self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0 {
                self.ewma_alpha
            } else {
                defaults.ewma_alpha
            },
        }
    }
}

/// How a response bears on the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The request was served (whatever the records' outcomes); its RTT is a valid sample.
    Ok,
    /// The destination pushed back: 429, 503 or a timeout.
    Backpressure,
}

/// A concurrency limit shared by every request to one destination; cheap to clone.
#[derive(Clone)]
pub struct AdaptiveConcurrency {
    inner: Arc<Shared>,
}

struct Shared {
    settings: ConcurrencySettings,
    /// Holds `limit - in_flight` permits (plus `debt`, see [`State::debt`]), so waiting on it
    /// is waiting for `in_flight < limit`.
    semaphore: Arc<Semaphore>,
    state: Mutex<State>,
}

struct State {
    limit: usize,
    in_flight: usize,
    /// Permits to retire as they come back: a decrease below the number in flight cannot
    /// take permits out of the semaphore until the requests holding them finish.
    debt: usize,
    /// Moving average of window RTTs; `None` until the first successful response.
    past: Option<RttAverage>,
    /// The RTT of the last window, if it was a latency spike.
    last_spike: Option<f64>,
    /// Bumped on every change of the limit; see [`Shared::observe`].
    epoch: u64,
    window: Window,
}

#[derive(Debug, Clone, Copy)]
struct RttAverage {
    mean: f64,
    deviation: f64,
}

impl RttAverage {
    /// Folds in a window's mean RTT and its responses' mean deviation from the past mean.
    fn update(&mut self, mean: f64, deviation: f64, alpha: f64) {
        self.deviation += alpha * (deviation - self.deviation);
        self.mean += alpha * (mean - self.mean);
    }
}

#[derive(Default)]
struct Window {
    /// `None` before the first response: the first response closes the (empty) first window.
    ends: Option<Instant>,
    rtt_total: Duration,
    /// Successful responses, whose RTTs are in `rtt_total`.
    responses: u32,
    /// Sum over successful responses of their distance from the past mean RTT, in seconds.
    deviation_total: f64,
    /// All fresh responses, backpressure included.
    signals: u32,
    backpressure: bool,
    /// Whether demand filled the limit; growing a limit nobody used would prove nothing.
    reached_limit: bool,
}

impl Window {
    /// The window's mean RTT, kept in whole nanoseconds so equal RTTs average exactly.
    fn mean_rtt(&self) -> Option<Duration> {
        (self.responses > 0).then(|| self.rtt_total / self.responses)
    }
}

impl AdaptiveConcurrency {
    /// A limiter starting at `settings.initial`.
    pub fn new(settings: ConcurrencySettings) -> Self {
        let settings = settings.sanitized();
        AdaptiveConcurrency {
            inner: Arc::new(Shared {
                settings,
                semaphore: Arc::new(Semaphore::new(settings.initial)),
                state: Mutex::new(State {
                    limit: settings.initial,
                    in_flight: 0,
                    debt: 0,
                    past: None,
                    last_spike: None,
                    epoch: 0,
                    window: Window::default(),
                }),
            }),
        }
    }

    /// Waits until fewer requests than the current limit are in flight, and takes a slot.
    pub async fn acquire(&self) -> ConcurrencyPermit {
        // The semaphore is never closed; if it were, running unlimited beats failing the run.
        let permit = Arc::clone(&self.inner.semaphore).acquire_owned().await.ok();
        let mut state = self.inner.lock();
        state.in_flight += 1;
        if state.in_flight >= state.limit {
            state.window.reached_limit = true;
        }
        let epoch = state.epoch;
        drop(state);
        ConcurrencyPermit { inner: Arc::clone(&self.inner), permit, epoch }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.inner.lock().limit
    }

    /// Requests holding a slot now.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().in_flight
    }
}

impl fmt::Debug for AdaptiveConcurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("AdaptiveConcurrency")
            .field("limit", &state.limit)
            .field("in_flight", &state.in_flight)
            .field("max", &self.inner.settings.max)
            .finish()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn observe(&self, epoch: u64, rtt: Duration, signal: Signal) {
        let now = Instant::now();
        let mut state = self.lock();
        // A request sent before the last change says nothing about the current limit: counting
        // it would raise the limit again before the last raise shows in latency, or cut twice
        // for one congestion episode (TCP takes one decrease per window for the same reason).
        if epoch != state.epoch {
            return;
        }
        match signal {
            Signal::Ok => {
                // Deviation is taken per response, not between window means: averaging a window
                // hides the jitter of single requests, and a threshold built on the smaller
                // number would read ordinary jitter as a spike.
                if let Some(past) = state.past {
                    state.window.deviation_total += (rtt.as_secs_f64() - past.mean).abs();
                }
                state.window.rtt_total = state.window.rtt_total.saturating_add(rtt);
                state.window.responses = state.window.responses.saturating_add(1);
            }
            Signal::Backpressure => state.window.backpressure = true,
        }
        state.window.signals = state.window.signals.saturating_add(1);
        // A window also waits for a full round of answers at the current limit: the first
        // answers after a raise come from requests that went out before the extra load arrived,
        // and judging on them alone raises the limit again on stale good news.
        let full_round = state.window.backpressure || state.window.signals as usize >= state.limit;
        if state.window.ends.is_some_and(|ends| now < ends || !full_round) {
            return;
        }
        self.close_window(&mut state, now, rtt);
    }

    /// Takes the window's decision, folds its RTT into the past and opens the next window.
    fn close_window(&self, state: &mut State, now: Instant, last_rtt: Duration) {
        let settings = &self.settings;
        let current = state.window.mean_rtt().map(|rtt| rtt.as_secs_f64());
        let spike = match (state.past, current) {
            (Some(past), Some(current)) => {
                current > past.mean + settings.rtt_deviation_scale * past.deviation + SPIKE_SLACK_SECS
            }
            _ => false,
        };
        // A spike is kept out of the past RTT while backing off still lowers latency (we
        // caused it); folding it in would teach the baseline to accept our own queueing, and
        // the limit would creep back up to the point of backpressure. Latency that stays up
        // despite a cut, or at a limit of 1, is the destination's new normal and is learnt.
        let learn = match (spike, current, state.last_spike) {
            (false, ..) => true,
            (true, Some(current), Some(previous)) => current >= previous || state.limit == 1,
            (true, ..) => state.limit == 1,
        };
        state.last_spike = if spike { current } else { None };
        if state.window.backpressure || spike {
            self.decrease(state);
        } else if state.past.is_some() && current.is_some() && state.window.reached_limit {
            self.increase(state);
        }
        if let (Some(current), true) = (current, learn) {
            let deviation = state.window.deviation_total / f64::from(state.window.responses.max(1));
            match state.past.as_mut() {
                Some(past) => past.update(current, deviation, settings.ewma_alpha),
                None => state.past = Some(RttAverage { mean: current, deviation: 0.0 }),
            }
        }
        // Before any successful response, the failed one's RTT is the best guess of a window.
        let length = match state.past {
            Some(past) => Duration::try_from_secs_f64(past.mean).unwrap_or(last_rtt),
            None => last_rtt,
        };
        state.window = Window {
            ends: Some(now.checked_add(length).unwrap_or(now)),
            reached_limit: state.in_flight >= state.limit,
            ..Window::default()
        };
    }

    fn increase(&self, state: &mut State) {
        if state.limit >= self.settings.max {
            return;
        }
        state.limit += 1;
        state.epoch += 1;
        if state.debt > 0 {
            state.debt -= 1;
        } else {
            self.semaphore.add_permits(1);
        }
    }

    fn decrease(&self, state: &mut State) {
        // `as` saturates (NaN becomes 0), and the ratio is below 1, so this always cuts by at least one.
        let target = ((state.limit as f64 * self.settings.decrease_ratio).floor() as usize).max(1);
        let cut = state.limit.saturating_sub(target);
        if cut == 0 {
            return;
        }
        let forgotten = self.semaphore.forget_permits(cut);
        state.debt += cut - forgotten;
        state.limit = target;
        state.epoch += 1;
    }

    fn release(&self, permit: Option<OwnedSemaphorePermit>) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        let Some(permit) = permit else { return };
        if state.debt > 0 {
            state.debt -= 1;
            permit.forget();
        } else {
            drop(state);
            drop(permit);
        }
    }
}

/// A slot for one request; report how it went with [`ConcurrencyPermit::done`].
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct ConcurrencyPermit {
    inner: Arc<Shared>,
    permit: Option<OwnedSemaphorePermit>,
    /// The limit's epoch when the slot was taken.
    epoch: u64,
}

impl ConcurrencyPermit {
    /// Feeds the request's round-trip time and outcome to the limit, then releases the slot.
    pub fn done(self, rtt: Duration, signal: Signal) {
        self.inner.observe(self.epoch, rtt, signal);
    }
}

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        self.inner.release(self.permit.take());
    }
}

impl fmt::Debug for ConcurrencyPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyPermit").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::join_all;
    use tokio::time::{advance, sleep, timeout};

    use super::*;

    fn settings(initial: usize, max: usize) -> ConcurrencySettings {
        ConcurrencySettings { initial, max, ..ConcurrencySettings::default() }
    }

    /// A destination whose latency depends on how many requests it is serving.
    struct Server {
        in_flight: AtomicUsize,
        /// (requests in flight including this one, requests answered before) -> (latency, answer)
        respond: fn(usize, usize) -> (Duration, Signal),
        answered: AtomicUsize,
        /// Spreads latencies by up to ±10%, so requests do not move in lockstep.
        jitter: Option<Mutex<fastrand::Rng>>,
    }

    impl Server {
        fn new(respond: fn(usize, usize) -> (Duration, Signal)) -> Self {
            Server { in_flight: AtomicUsize::new(0), respond, answered: AtomicUsize::new(0), jitter: None }
        }

        fn jittery(respond: fn(usize, usize) -> (Duration, Signal), seed: u64) -> Self {
            Server { jitter: Some(Mutex::new(fastrand::Rng::with_seed(seed))), ..Server::new(respond) }
        }

        async fn call(&self) -> Signal {
            let load = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            let (mut latency, signal) = (self.respond)(load, self.answered.load(Ordering::SeqCst));
            if let Some(jitter) = &self.jitter {
                latency = latency.mul_f64(0.9 + 0.2 * jitter.lock().unwrap().f64());
            }
            sleep(latency).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.answered.fetch_add(1, Ordering::SeqCst);
            signal
        }
    }

    /// Runs `total` requests through `workers` concurrent workers; returns the limit seen at
    /// each acquisition, in order.
    async fn drive(limiter: &AdaptiveConcurrency, server: &Server, workers: usize, total: usize) -> Vec<usize> {
        let issued = AtomicUsize::new(0);
        let samples = Mutex::new(Vec::with_capacity(total));
        let worker = || async {
            while issued.fetch_add(1, Ordering::SeqCst) < total {
                let permit = limiter.acquire().await;
                samples.lock().unwrap().push(limiter.limit());
                let start = Instant::now();
                let signal = server.call().await;
                permit.done(start.elapsed(), signal);
            }
        };
        join_all((0..workers).map(|_| worker())).await;
        samples.into_inner().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn starts_at_one_and_waits_at_the_limit() {
        let limiter = AdaptiveConcurrency::new(ConcurrencySettings::default());
        assert_eq!(limiter.limit(), 1);
        let permit = limiter.acquire().await;
        assert_eq!(limiter.in_flight(), 1);
        assert!(timeout(Duration::from_millis(50), limiter.acquire()).await.is_err());
        drop(permit);
        assert_eq!(limiter.in_flight(), 0);
        assert_eq!(limiter.limit(), 1, "dropping a permit does not adjust the limit");
        let _again = limiter.acquire().await;
        assert_eq!(limiter.in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn grows_to_max_while_latency_holds() {
        let limiter = AdaptiveConcurrency::new(settings(1, 10));
        let server = Server::new(|_, _| (Duration::from_millis(20), Signal::Ok));
        let samples = drive(&limiter, &server, 16, 800).await;
        assert!(samples.windows(2).all(|pair| pair[0] <= pair[1]), "a steady server never cuts the limit");
        assert!(samples.iter().all(|&limit| (1..=10).contains(&limit)));
        assert_eq!(limiter.limit(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_grow_past_demand() {
        let limiter = AdaptiveConcurrency::new(settings(1, 10));
        let server = Server::new(|_, _| (Duration::from_millis(20), Signal::Ok));
        drive(&limiter, &server, 3, 300).await;
        assert!(limiter.limit() <= 4, "limit {} with 3 workers", limiter.limit());
    }

    #[tokio::test(start_paused = true)]
    async fn backpressure_cuts_by_the_ratio_once_per_window() {
        let limiter = AdaptiveConcurrency::new(settings(10, 20));
        // The first response seeds the past RTT and opens a 10 ms window.
        limiter.acquire().await.done(Duration::from_millis(10), Signal::Ok);
        assert_eq!(limiter.limit(), 10);
        advance(Duration::from_millis(10)).await;
        limiter.acquire().await.done(Duration::from_millis(10), Signal::Backpressure);
        assert_eq!(limiter.limit(), 9);
        limiter.acquire().await.done(Duration::from_millis(10), Signal::Backpressure);
        assert_eq!(limiter.limit(), 9, "one cut per window");
        advance(Duration::from_millis(10)).await;
        limiter.acquire().await.done(Duration::from_millis(10), Signal::Backpressure);
        assert_eq!(limiter.limit(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_latency_spike_cuts_the_limit() {
        let limiter = AdaptiveConcurrency::new(settings(20, 20));
        limiter.acquire().await.done(Duration::from_millis(10), Signal::Ok);
        advance(Duration::from_millis(10)).await;
        // A window closes after a full round of answers at the current limit.
        for answered in 1..=20 {
            assert_eq!(limiter.limit(), 20, "after {answered} slow answers");
            limiter.acquire().await.done(Duration::from_millis(200), Signal::Ok);
        }
        assert_eq!(limiter.limit(), 18);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_below_in_flight_waits_for_permits_to_return() {
        let limiter = AdaptiveConcurrency::new(settings(10, 10));
        let mut held = Vec::new();
        for _ in 0..10 {
            held.push(limiter.acquire().await);
        }
        held.remove(0).done(Duration::from_millis(10), Signal::Ok);
        held.push(limiter.acquire().await);
        advance(Duration::from_millis(10)).await;
        held.remove(0).done(Duration::from_millis(10), Signal::Backpressure);
        assert_eq!((limiter.limit(), limiter.in_flight()), (9, 9));
        assert!(timeout(Duration::from_millis(50), limiter.acquire()).await.is_err(), "9 in flight at limit 9");
        drop(held.remove(0));
        assert_eq!(limiter.in_flight(), 8);
        let _next = timeout(Duration::from_millis(50), limiter.acquire()).await.expect("a slot under the limit");
        assert_eq!(limiter.in_flight(), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn stays_between_one_and_max() {
        let limiter = AdaptiveConcurrency::new(settings(1, 4));
        for _ in 0..20 {
            limiter.acquire().await.done(Duration::from_millis(5), Signal::Backpressure);
            advance(Duration::from_millis(5)).await;
            assert_eq!(limiter.limit(), 1);
        }
        let clamped = AdaptiveConcurrency::new(settings(100, 5));
        assert_eq!(clamped.limit(), 5);
        let server = Server::new(|_, _| (Duration::from_millis(5), Signal::Ok));
        let samples = drive(&clamped, &server, 20, 500).await;
        assert!(samples.iter().all(|&limit| limit == 5));
    }

    #[tokio::test(start_paused = true)]
    async fn nonsense_settings_do_not_panic() {
        let limiter = AdaptiveConcurrency::new(ConcurrencySettings {
            initial: 0,
            max: 0,
            decrease_ratio: f64::NAN,
            rtt_deviation_scale: -1.0,
            ewma_alpha: 7.0,
        });
        assert_eq!(limiter.limit(), 1);
        limiter.acquire().await.done(Duration::ZERO, Signal::Ok);
        limiter.acquire().await.done(Duration::MAX, Signal::Ok);
        limiter.acquire().await.done(Duration::MAX, Signal::Backpressure);
        assert_eq!(limiter.limit(), 1);
    }

    const SEEDS: u64 = 20;

    /// Latency climbs steeply past 8 concurrent requests; past 12 the server sheds load.
    fn saturating(load: usize, _: usize) -> (Duration, Signal) {
        match load {
            0..=8 => (Duration::from_millis(50), Signal::Ok),
            9..=12 => (Duration::from_millis(50 + 150 * (load as u64 - 8)), Signal::Ok),
            _ => (Duration::from_millis(5), Signal::Backpressure),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn converges_below_the_saturation_point() {
        // The lockstep server (no jitter) is the harsh case: every answer of a round lands at once.
        let servers =
            std::iter::once(Server::new(saturating)).chain((1..=SEEDS).map(|seed| Server::jittery(saturating, seed)));
        for (run, server) in servers.enumerate() {
            let limiter = AdaptiveConcurrency::new(settings(1, 50));
            let samples = drive(&limiter, &server, 50, 2_000).await;
            assert!(samples.iter().all(|&limit| (1..=50).contains(&limit)));
            // Warm-up: the first 400 requests, while the limit climbs from 1 to the knee.
            let settled = &samples[400..];
            let (low, high) = (settled.iter().min(), settled.iter().max());
            assert!(
                settled.iter().all(|&limit| (4..=12).contains(&limit)),
                "run {run}: settled between {low:?} and {high:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn learns_a_destination_that_became_slower() {
        // Latency jumps sixfold for reasons of its own: cutting the limit cannot bring it back,
        // so the new latency must become the baseline and the limit recover.
        let server = Server::jittery(
            |_, answered| {
                let latency = if answered < 300 { 50 } else { 300 };
                (Duration::from_millis(latency), Signal::Ok)
            },
            7,
        );
        let limiter = AdaptiveConcurrency::new(settings(1, 12));
        let samples = drive(&limiter, &server, 20, 2_000).await;
        assert!(samples.iter().all(|&limit| (1..=12).contains(&limit)));
        assert_eq!(limiter.limit(), 12);
    }
}
