//! Per-service event rate limits (`limits.service_events_per_sec`): a token bucket per
//! service (GCRA, from the `governor` crate), refilled at the rate and holding one second's
//! worth, so a service may burst up to its per-second rate. An event over the limit is
//! refused with 429 and the time until the service may send again as `Retry-After`.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// The limiters of every service seen recently.
#[derive(Debug)]
pub struct ServiceLimits {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl ServiceLimits {
    /// Limits of `per_sec` events a second per service; `None` for 0 (no limit).
    pub fn new(per_sec: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_sec)?;
        Some(Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate)),
            clock: DefaultClock::default(),
        })
    }

    /// Takes one event of `service`; `Err(wait)` when it is over its limit.
    pub fn check(&self, service: &str) -> Result<(), Duration> {
        // The key is cloned only for a service the limiter has not seen yet.
        self.limiter
            .check_key(&service.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets services whose bucket is full again (idle ones), so the map stays as small as
    /// the set of services active in the last second.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_rate_then_refusals_with_a_wait() {
        let limits = ServiceLimits::new(5).unwrap();
        for _ in 0..5 {
            assert!(limits.check("billing").is_ok());
        }
        let wait = limits.check("billing").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        assert!(
            limits.check("shipping").is_ok(),
            "services are limited apart"
        );
        assert!(ServiceLimits::new(0).is_none());
    }
}
