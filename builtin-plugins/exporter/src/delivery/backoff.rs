//! Exponential backoff with full jitter between delivery attempts.

use std::time::Duration;

/// The first retry waits up to this long.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// No retry waits longer than this (a receiver back from an outage is found within it).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The delay before each retry of one failing delivery: doubling from [`INITIAL_BACKOFF`]
/// up to [`MAX_BACKOFF`], each drawn uniformly from its upper half so that several
/// exporters (or workers) hitting one recovering server do not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    ceiling: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { ceiling: INITIAL_BACKOFF }
    }
}

impl Backoff {
    /// The next delay; each call doubles the ceiling up to [`MAX_BACKOFF`].
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(MAX_BACKOFF);
        let half = ceiling / 2;
        let jitter_ms = rand::random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Starts again from [`INITIAL_BACKOFF`] (after a success).
    pub fn reset(&mut self) {
        self.ceiling = INITIAL_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_and_stop_at_the_maximum() {
        let mut b = Backoff::default();
        let mut ceiling = INITIAL_BACKOFF;
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} outside [{:?}, {ceiling:?}]", ceiling / 2);
            ceiling = (ceiling * 2).min(MAX_BACKOFF);
        }
        assert!(b.next_delay() <= MAX_BACKOFF);
        b.reset();
        assert!(b.next_delay() <= INITIAL_BACKOFF);
    }
}
