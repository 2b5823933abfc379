//! Where the engine gets "now" from.
//!
//! Architecture Invariant: nothing in the engine reads the wall clock directly. The store stamps
//! `recorded_at` from a [`Clock`], so tests (and `ledgerstack serve --clock manual`) can move time
//! by hand and replay days of activity in seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::time::Timestamp;

/// A source of the current instant.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The operating system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from(chrono::Utc::now())
    }
}

/// A clock that only moves when told to; clones share the same instant.
///
/// ```
/// use engine::clock::{Clock, ManualClock};
/// use engine::time::Timestamp;
/// let clock = ManualClock::new(Timestamp::from_millis(1_000));
/// clock.advance_millis(500);
/// assert_eq!(clock.now(), Timestamp::from_millis(1_500));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    /// Shared so the server and a test (or the admin command that moves time) see one instant.
    millis: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            millis: Arc::new(AtomicI64::new(start.millis())),
        }
    }

    /// Move the clock forward by `millis` milliseconds (a negative amount is ignored: time on a
    /// manual clock never goes backwards, as on the log it feeds).
    pub fn advance_millis(&self, millis: i64) {
        if millis > 0 {
            self.millis.fetch_add(millis, Ordering::SeqCst);
        }
    }

    /// Set the clock to `to` if that is later than the current instant; returns the new instant.
    pub fn advance_to(&self, to: Timestamp) -> Timestamp {
        let previous = self.millis.fetch_max(to.millis(), Ordering::SeqCst);
        Timestamp::from_millis(previous.max(to.millis()))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_never_goes_backwards() {
        let clock = ManualClock::new(Timestamp::from_millis(10_000));
        clock.advance_millis(-5);
        assert_eq!(clock.now().millis(), 10_000);
        assert_eq!(clock.advance_to(Timestamp::from_millis(5)).millis(), 10_000);
        assert_eq!(
            clock.advance_to(Timestamp::from_millis(20_000)).millis(),
            20_000
        );
    }

    #[test]
    fn clones_share_the_instant() {
        let a = ManualClock::new(Timestamp::EPOCH);
        let b = a.clone();
        a.advance_millis(42);
        assert_eq!(b.now().millis(), 42);
    }
}
