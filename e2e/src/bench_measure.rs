//! The load generator every `courier-bench` scenario shares: a [`Target`] sends unit `i` (one
//! request, one record or one published event, carrying a fixed number of events) and says
//! whether it was acknowledged; [`drive`] sends the units either as fast as a fixed number of
//! workers can (closed loop, the maximum) or at a fixed rate (open loop), and measures
//! throughput and per-event latency.
//!
//! At a fixed rate each unit's latency runs from the moment it was *due*, not from when it was
//! sent: a target that falls behind shows its queueing in the percentiles instead of hiding it
//! (no coordinated omission). Every run is bounded in units and in time.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// What a scenario sends to.
pub trait Target: Send + Sync + 'static {
    /// Units available to send.
    fn units(&self) -> usize;
    /// Events carried by one unit.
    fn events_per_unit(&self) -> usize;
    /// Sends unit `i`; `true` once it is acknowledged as the target promises (for the proxy:
    /// every event durable).
    fn send(&self, i: usize) -> impl Future<Output = bool> + Send;
}

/// How the units are offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// `concurrency` workers, each sending its next unit as soon as the previous one is
    /// answered.
    Max {
        /// Units in flight.
        concurrency: usize,
    },
    /// Units due at a fixed rate of `events_per_sec`, at most `max_in_flight` in flight.
    Rate {
        /// Offered events per second.
        events_per_sec: f64,
        /// Units in flight at most; once reached, due units wait (and their latency grows).
        max_in_flight: usize,
    },
}

impl Load {
    /// `max` or `<rate>/s`, for tables and the CSV.
    pub fn label(&self) -> String {
        match self {
            Load::Max { .. } => "max".to_owned(),
            Load::Rate { events_per_sec, .. } => format!("{events_per_sec:.0}/s"),
        }
    }

    /// The offered rate, if fixed.
    pub fn offered(&self) -> Option<f64> {
        match self {
            Load::Max { .. } => None,
            Load::Rate { events_per_sec, .. } => Some(*events_per_sec),
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Events sent (acknowledged or not).
    pub events: u64,
    /// Events not acknowledged.
    pub errors: u64,
    /// From the first unit due to the last answer.
    pub elapsed: Duration,
    /// Per acknowledged event, microseconds.
    pub latency_us: Histogram<u64>,
}

impl Outcome {
    /// Acknowledged events per second.
    pub fn rate(&self) -> f64 {
        (self.events - self.errors) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile of the latency in milliseconds (0 when nothing was acknowledged).
    pub fn ms(&self, q: f64) -> f64 {
        if self.latency_us.is_empty() {
            return 0.0;
        }
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// 1 µs to one hour at 3 significant digits. (A histogram made with `Histogram::new` starts
/// with a tiny range that only `record` grows: `saturating_record` would clamp into it.)
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

struct Tally {
    latency_us: Histogram<u64>,
    events: u64,
    errors: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency_us: histogram(),
            events: 0,
            errors: 0,
        }
    }

    fn record(&mut self, ok: bool, latency: Duration, events: u64) {
        self.events += events;
        if ok {
            let us = u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            // Values beyond the histogram's range (hours) are clamped, not lost.
            self.latency_us.saturating_record_n(us, events);
        } else {
            self.errors += events;
        }
    }
}

/// Sends `target`'s units under `load`; stops issuing new units once all were sent or
/// `time_limit` has passed, then waits for those in flight.
pub async fn drive<T: Target>(target: Arc<T>, load: Load, time_limit: Duration) -> Outcome {
    let per_unit = target.events_per_unit().max(1) as u64;
    let units = target.units();
    let tally = Arc::new(Mutex::new(Tally::new()));
    let started = Instant::now();
    let deadline = started + time_limit;
    let mut tasks = tokio::task::JoinSet::new();
    match load {
        Load::Max { concurrency } => {
            let next = Arc::new(AtomicUsize::new(0));
            for _ in 0..concurrency.max(1) {
                let (target, next, tally) = (target.clone(), next.clone(), tally.clone());
                tasks.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= units || Instant::now() >= deadline {
                            break;
                        }
                        let t = Instant::now();
                        let ok = target.send(i).await;
                        // One shared histogram: one per worker would take ~0.3 MiB each, and
                        // there are thousands of workers for the direct producer.
                        tally
                            .lock()
                            .expect("tally")
                            .record(ok, t.elapsed(), per_unit);
                    }
                });
            }
        }
        Load::Rate {
            events_per_sec,
            max_in_flight,
        } => {
            let interval = Duration::from_secs_f64(per_unit as f64 / events_per_sec.max(1e-3));
            let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight.max(1)));
            for i in 0..units {
                let due = started + interval.mul_f64(i as f64);
                // A target that falls behind gets no more than the time limit either: what
                // was not issued by then is not counted.
                if due >= deadline || Instant::now() >= deadline {
                    break;
                }
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let (target, tally) = (target.clone(), tally.clone());
                tasks.spawn(async move {
                    let ok = target.send(i).await;
                    let latency = due.elapsed();
                    drop(permit);
                    tally.lock().expect("tally").record(ok, latency, per_unit);
                });
                // Reap finished tasks as we go so the set stays small.
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let tally = Arc::try_unwrap(tally)
        .ok()
        .expect("every task has finished")
        .into_inner()
        .expect("tally");
    Outcome {
        events: tally.events,
        errors: tally.errors,
        elapsed,
        latency_us: tally.latency_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleepy {
        units: usize,
        per_unit: usize,
    }

    impl Target for Sleepy {
        fn units(&self) -> usize {
            self.units
        }
        fn events_per_unit(&self) -> usize {
            self.per_unit
        }
        async fn send(&self, i: usize) -> bool {
            tokio::time::sleep(Duration::from_millis(2)).await;
            !i.is_multiple_of(10)
        }
    }

    #[tokio::test]
    async fn max_sends_every_unit_and_counts_failures() {
        let target = Arc::new(Sleepy {
            units: 100,
            per_unit: 3,
        });
        let o = drive(
            target,
            Load::Max { concurrency: 8 },
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(o.events, 300);
        assert_eq!(o.errors, 30);
        assert_eq!(o.latency_us.len(), 270);
        // Each send sleeps 2 ms.
        assert!(o.ms(0.5) >= 2.0, "{}", o.ms(0.5));
    }

    #[tokio::test]
    async fn rate_paces_the_units() {
        let target = Arc::new(Sleepy {
            units: 50,
            per_unit: 1,
        });
        let load = Load::Rate {
            events_per_sec: 500.0,
            max_in_flight: 16,
        };
        let o = drive(target, load, Duration::from_secs(30)).await;
        assert_eq!(o.events, 50);
        // 50 units at 500/s take about 100 ms, not the 2 ms a closed loop would.
        assert!(o.elapsed >= Duration::from_millis(95), "{:?}", o.elapsed);
    }

    #[tokio::test]
    async fn the_time_limit_stops_issuing() {
        let target = Arc::new(Sleepy {
            units: 1_000_000,
            per_unit: 1,
        });
        let o = drive(
            target,
            Load::Max { concurrency: 1 },
            Duration::from_millis(50),
        )
        .await;
        assert!(o.events < 1_000_000);
        assert!(o.elapsed < Duration::from_secs(5));
    }
}
