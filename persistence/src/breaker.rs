//! A circuit breaker around a shared service (MongoDB, Redis): after [`FAILURES_TO_OPEN`]
//! consecutive calls that found the service unavailable it opens, and calls fail at once
//! instead of each waiting out the client's timeouts; after a jittered delay growing from
//! [`OPEN_MIN`] to [`OPEN_MAX`] one call is let through to probe the service (half-open),
//! and its success closes the breaker. A thin wrapper over failsafe, so that every user
//! shares one policy.

use failsafe::backoff::{self, EqualJittered};
use failsafe::failure_policy::{self, ConsecutiveFailures};
use std::time::Duration;

/// Consecutive unavailable calls that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 3;
/// Shortest time the breaker stays open, jittered down to half (failsafe counts whole
/// seconds: from 1 s, the first half would round to nothing).
pub const OPEN_MIN: Duration = Duration::from_secs(2);
/// Longest time the breaker stays open.
pub const OPEN_MAX: Duration = Duration::from_secs(10);

/// The breaker. Clones share one state.
#[derive(Clone, Debug)]
pub struct Breaker(failsafe::StateMachine<ConsecutiveFailures<EqualJittered>, ()>);

impl Default for Breaker {
    fn default() -> Self {
        Breaker::new()
    }
}

impl Breaker {
    /// A closed breaker with the shared policy.
    pub fn new() -> Breaker {
        let policy = failure_policy::consecutive_failures(
            FAILURES_TO_OPEN,
            backoff::equal_jittered(OPEN_MIN, OPEN_MAX),
        );
        Breaker(failsafe::Config::new().failure_policy(policy).build())
    }

    /// Whether a call may go through now (closed, or half-open for a probe).
    pub fn permits(&self) -> bool {
        self.0.is_call_permitted()
    }

    /// Records a call's outcome: `available` is false when it found the service down
    /// (not when the service refused the request).
    pub fn record(&self, available: bool) {
        if available {
            self.0.on_success();
        } else {
            self.0.on_error();
        }
    }

    /// Whether the breaker is open (calls are being refused).
    pub fn is_open(&self) -> bool {
        !self.permits()
    }

    /// Runs `op` if the breaker permits it, recording whether it found the service
    /// available (`unavailable` tells from its error); else `Err(refused())` at once.
    pub async fn call<T, E>(
        &self,
        op: impl Future<Output = Result<T, E>>,
        unavailable: impl FnOnce(&E) -> bool,
        refused: impl FnOnce() -> E,
    ) -> Result<T, E> {
        if !self.permits() {
            return Err(refused());
        }
        let result = op.await;
        self.record(!result.as_ref().is_err_and(unavailable));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_consecutive_unavailable_calls() {
        let breaker = Breaker::new();
        for _ in 0..FAILURES_TO_OPEN {
            assert!(breaker.permits());
            breaker.record(false);
        }
        assert!(!breaker.permits());
        let shared = breaker.clone();
        assert!(shared.is_open(), "clones share the state");
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = Breaker::new();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            breaker.record(false);
        }
        breaker.record(true);
        breaker.record(false);
        assert!(breaker.permits());
    }
}
