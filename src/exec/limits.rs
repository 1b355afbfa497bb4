//! Per-model admission: a `governor` rate limiter (requests and images per minute), a shared
//! cooldown after a 429, and an adaptive cap on requests in flight (halved on 429, grown back by
//! one per success).
//!
//! The limiter runs on tokio's clock (not the wall clock governor uses by default) so that tests
//! with a paused clock are instant and deterministic; the dispatcher never blocks on it, it asks
//! `check()` and sleeps until the time it is told.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::manifest::model::Rate;

/// Requests are spaced this fraction further apart than the configured rate allows, so that
/// network jitter never lets two requests land in the same server-side minute window.
pub const SAFETY_FACTOR: f64 = 0.985;

/// Requests that may start back to back, as a share of the per-minute limit. Strict spacing
/// (a burst of one) wastes a slot whenever two requests finish within one spacing interval, which
/// costs ~7% of throughput when latency, not quota, is the bound (`-j 4`, lognormal latency).
/// Half the safety margin keeps any sliding minute under the limit: burst + 0.985·R ≤ R.
const BURST_SHARE: f64 = (1.0 - SAFETY_FACTOR) / 2.0;

/// The burst allowed under a limit of `per_minute` requests (at least one).
fn burst_for(per_minute: u32) -> NonZeroU32 {
    let burst = (f64::from(per_minute) * BURST_SHARE).floor() as u32;
    NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)
}

/// governor's clock, driven by tokio's (which tests can pause and advance).
#[derive(Debug, Clone)]
pub struct TokioClock {
    start: Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock { start: Instant::now() }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// Why a model cannot take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// Until this instant (rate limit or cooldown).
    Until(Instant),
    /// Until one of its requests in flight finishes.
    Busy,
}

#[derive(Debug)]
pub struct ModelGate {
    limiter: Option<Limiter>,
    clock: TokioClock,
    cooldown_until: Option<Instant>,
    /// Requests per minute actually enforced (after the safety factor), for messages.
    pub per_minute: Option<f64>,
    max_in_flight: usize,
    ceiling: usize,
    in_flight: usize,
}

impl ModelGate {
    pub fn new(rate: Option<Rate>, ceiling: usize) -> ModelGate {
        let clock = TokioClock::default();
        let limit = rate.and_then(|r| match (r.rpm, r.ipm) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        });
        let (limiter, per_minute) = match limit {
            Some(n) => {
                let effective = f64::from(n) * SAFETY_FACTOR;
                let period = Duration::from_secs_f64(60.0 / effective);
                let quota = Quota::with_period(period).map(|q| q.allow_burst(burst_for(n)));

                (quota.map(|q| RateLimiter::direct_with_clock(q, clock.clone())), Some(effective))
            }
            None => (None, None),
        };
        ModelGate { limiter, clock, cooldown_until: None, per_minute, max_in_flight: ceiling, ceiling, in_flight: 0 }
    }

    /// Takes a permit if a request may start now.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Blocked> {
        if let Some(until) = self.cooldown_until {
            if now < until {
                return Err(Blocked::Until(until));
            }
            self.cooldown_until = None;
        }
        if self.in_flight >= self.max_in_flight {
            return Err(Blocked::Busy);
        }
        if let Some(limiter) = &self.limiter
            && let Err(not_until) = limiter.check()
        {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(Blocked::Until(now + wait));
        }
        self.in_flight += 1;
        Ok(())
    }

    pub fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// A 429: nobody sends to this model before `delay` has passed, and fewer at once after.
    pub fn on_rate_limited(&mut self, now: Instant, delay: Duration) {
        let until = now + delay;
        if self.cooldown_until.is_none_or(|u| u < until) {
            self.cooldown_until = Some(until);
        }
        self.max_in_flight = (self.max_in_flight / 2).max(1);
    }

    pub fn on_success(&mut self) {
        if self.max_in_flight < self.ceiling {
            self.max_in_flight += 1;
        }
    }

    pub fn cooldown_until(&self) -> Option<Instant> {
        self.cooldown_until
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{Blocked, ModelGate};
    use crate::manifest::model::Rate;

    /// Admits `n` requests as fast as the gate allows (each finishing at once); when each started.
    async fn admit(gate: &mut ModelGate, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut admitted = Vec::new();
        while admitted.len() < n {
            match gate.try_acquire(Instant::now()) {
                Ok(()) => {
                    admitted.push(Instant::now() - start);
                    gate.release();
                }
                Err(Blocked::Until(t)) => tokio::time::sleep_until(t).await,
                Err(Blocked::Busy) => unreachable!(),
            }
        }
        admitted
    }

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_evenly_below_the_rate() {
        let mut gate = ModelGate::new(Some(Rate { rpm: Some(60), ipm: None }), 100);
        let admitted = admit(&mut gate, 61).await;
        // 61 requests at 60/min (less the safety margin) take just over a minute, evenly spaced.
        let last = *admitted.last().unwrap();
        assert!(last >= Duration::from_secs(60) && last < Duration::from_secs(62), "{last:?}");
        for pair in admitted.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(1000), "{:?}", pair[1] - pair[0]);
        }
        // No sliding minute ever holds more than 60.
        for (i, t) in admitted.iter().enumerate() {
            let in_window = admitted[i..].iter().filter(|u| **u - *t < Duration::from_secs(60)).count();
            assert!(in_window <= 60);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_burst_never_lets_a_sliding_minute_exceed_the_limit() {
        let mut gate = ModelGate::new(Some(Rate { rpm: Some(600), ipm: None }), 1000);
        let admitted = admit(&mut gate, 1500).await;
        // 600/min allows 4 back to back (so freed slots are not wasted), then even spacing.
        assert_eq!(admitted.iter().filter(|t| **t == Duration::ZERO).count(), 4);
        for (i, t) in admitted.iter().enumerate() {
            let in_window = admitted[i..].iter().take_while(|u| **u - *t < Duration::from_secs(60)).count();
            assert!(in_window <= 600, "{in_window} requests in the minute from {t:?}");
        }
        // Another minute further, the long-run rate is the configured one less the safety margin.
        let last = admitted.last().unwrap().as_secs_f64();
        let rate = (admitted.len() - 4) as f64 / last * 60.0;
        assert!((rate - 591.0).abs() < 1.0, "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn ipm_is_the_tighter_limit_when_lower() {
        let gate = ModelGate::new(Some(Rate { rpm: Some(100), ipm: Some(10) }), 4);
        assert!((gate.per_minute.unwrap() - 9.85).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_blocks_then_recovers_and_halves_concurrency() {
        let mut gate = ModelGate::new(None, 8);
        let now = Instant::now();
        gate.on_rate_limited(now, Duration::from_secs(26));
        assert_eq!(gate.try_acquire(now), Err(Blocked::Until(now + Duration::from_secs(26))));
        tokio::time::advance(Duration::from_secs(26)).await;
        for _ in 0..4 {
            assert!(gate.try_acquire(Instant::now()).is_ok());
        }
        assert_eq!(gate.try_acquire(Instant::now()), Err(Blocked::Busy));
        gate.release();
        gate.on_success();
        assert!(gate.try_acquire(Instant::now()).is_ok());
    }
}
