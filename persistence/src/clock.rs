//! The time the in-process stores read: the system's monotonic clock, or a manual one that
//! only moves when told (the cluster simulator's virtual time, which makes every run
//! replayable from its seed). The Redis stores read the server's clock, not this.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of `Instant`s. Clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
}

#[derive(Debug)]
struct Manual {
    start: Instant,
    elapsed_ns: AtomicU64,
}

impl Clock {
    /// The system's monotonic clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that reads `start` until [`Clock::advance`] or [`Clock::set`] moves it.
    pub fn manual(start: Instant) -> Clock {
        Clock {
            manual: Some(Arc::new(Manual {
                start,
                elapsed_ns: AtomicU64::new(0),
            })),
        }
    }

    /// Now.
    pub fn now(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(m) => m.start + Duration::from_nanos(m.elapsed_ns.load(Ordering::Acquire)),
        }
    }

    /// Moves a manual clock on by `by` (a system clock ignores it).
    pub fn advance(&self, by: Duration) {
        if let Some(m) = &self.manual {
            let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
            m.elapsed_ns.fetch_add(by, Ordering::AcqRel);
        }
    }

    /// Sets a manual clock to `at`, if that is later than now (time never goes back; a
    /// system clock ignores it).
    pub fn set(&self, at: Instant) {
        if let Some(m) = &self.manual {
            let elapsed =
                u64::try_from(at.saturating_duration_since(m.start).as_nanos()).unwrap_or(u64::MAX);
            m.elapsed_ns.fetch_max(elapsed, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_forward_and_only_when_told() {
        let start = Instant::now();
        let clock = Clock::manual(start);
        let shared = clock.clone();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(2));
        assert_eq!(shared.now(), start + Duration::from_secs(2));
        clock.set(start + Duration::from_secs(1));
        assert_eq!(clock.now(), start + Duration::from_secs(2), "never back");
        clock.set(start + Duration::from_secs(5));
        assert_eq!(clock.now(), start + Duration::from_secs(5));
        assert!(Clock::system().now() >= start);
    }
}
