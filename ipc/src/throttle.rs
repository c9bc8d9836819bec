//! A token bucket for what must not flood: log lines copied from a chatty service, refusals
//! logged for a client that retries in a loop. It counts what it held back, so the next
//! line let through can say how much was not.

use std::time::Instant;

/// Lets through `rate` events a second on average, `burst` at once; counts the rest.
#[derive(Debug, Clone)]
pub struct RateLimit {
    rate: u64,
    burst: u64,
    /// Thousandths of an event: refilled by elapsed milliseconds × rate, without floats.
    level: u64,
    last: Instant,
    held_back: u64,
    /// When a count of what was held back was last handed out: at most once a second, or
    /// a steady flood had a note beside nearly every line let through.
    told: Option<Instant>,
}

/// How often an admitted event carries the count of what was held back.
const TELL_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What [`RateLimit::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Let it through; `held_back` were not let through since the last one that was.
    Yes {
        held_back: u64,
    },
    No,
}

impl RateLimit {
    /// Full at first: a burst goes through at once.
    pub fn new(rate: u64, burst: u64, now: Instant) -> RateLimit {
        RateLimit {
            rate,
            burst,
            level: burst.saturating_mul(1000),
            last: now,
            held_back: 0,
            told: None,
        }
    }

    pub fn admit(&mut self, now: Instant) -> Admit {
        let ms = now.saturating_duration_since(self.last).as_millis();
        let ms = u64::try_from(ms).unwrap_or(u64::MAX);
        // Only the whole milliseconds counted: the rest counts at the next event. (Moved
        // to `now`, events less than a millisecond apart each counted 0 ms, and a steady
        // flood never refilled the bucket.)
        self.last = self
            .last
            .checked_add(std::time::Duration::from_millis(ms))
            .filter(|last| *last <= now)
            .unwrap_or(now);
        self.level = self
            .level
            .saturating_add(ms.saturating_mul(self.rate))
            .min(self.burst.saturating_mul(1000));
        if self.level >= 1000 {
            self.level -= 1000;
            let recently = self
                .told
                .is_some_and(|told| now.saturating_duration_since(told) < TELL_EVERY);
            if self.held_back == 0 || recently {
                // Kept for a later one (or for `take_held_back`).
                return Admit::Yes { held_back: 0 };
            }
            self.told = Some(now);
            Admit::Yes {
                held_back: std::mem::take(&mut self.held_back),
            }
        } else {
            self.held_back = self.held_back.saturating_add(1);
            Admit::No
        }
    }

    /// Counts one held back by something else (a wider limit after this one let it through).
    pub fn hold_back(&mut self) {
        self.held_back = self.held_back.saturating_add(1);
    }

    /// What was held back and not yet told (by an admitted event); zeroes the count.
    pub fn take_held_back(&mut self) -> u64 {
        std::mem::take(&mut self.held_back)
    }

    /// Whether some were held back and not yet told.
    pub fn holds_back(&self) -> bool {
        self.held_back > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Found by a hostile review: under a steady flood nearly every line let through
    /// came with its own "N were held back" note, more than a serial console carries.
    #[test]
    fn a_steady_flood_is_told_at_most_once_a_second_and_nothing_is_lost() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10, 1, start);
        let (mut told, mut counted, mut admitted) = (0, 0, 0);
        // 100 a second for 3 s: 10 a second let through, each after about 9 held back.
        for i in 0..300 {
            if let Admit::Yes { held_back } = limit.admit(start + Duration::from_millis(i * 10)) {
                admitted += 1;
                if held_back > 0 {
                    told += 1;
                    counted += held_back;
                }
            }
        }
        assert!(told <= 3, "told {told} times");
        assert_eq!(counted + limit.take_held_back() + admitted, 300);
    }

    /// Found with a service that crash-loops (its restarts' lines are limited so too):
    /// events less than a millisecond apart each counted 0 ms of refill, so under a flood
    /// faster than one a millisecond nothing was let through again until it paused.
    #[test]
    fn events_less_than_a_millisecond_apart_still_refill_it() {
        let start = Instant::now();
        let mut limit = RateLimit::new(1, 1, start);
        assert_eq!(limit.admit(start), Admit::Yes { held_back: 0 });
        // 4,000 events a second for 3 s: one let through a second, after the first.
        let admitted = (1..12_000)
            .filter(|i| {
                let at = start + Duration::from_micros(i * 250);
                matches!(limit.admit(at), Admit::Yes { .. })
            })
            .count();
        assert_eq!(admitted, 2);
    }

    #[test]
    fn a_burst_then_the_rate_and_a_count_of_the_rest() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10, 5, start);
        let admitted = (0..20)
            .filter(|_| matches!(limit.admit(start), Admit::Yes { .. }))
            .count();
        assert_eq!(admitted, 5);
        // 15 held back; a tenth of a second later one more goes, and says so.
        assert_eq!(
            limit.admit(start + Duration::from_millis(100)),
            Admit::Yes { held_back: 15 }
        );
        assert_eq!(limit.admit(start + Duration::from_millis(100)), Admit::No);
        assert_eq!(limit.take_held_back(), 1);
        // Refilled to the burst, not beyond, however long it was quiet.
        let later = start + Duration::from_secs(3600);
        let admitted = (0..20)
            .filter(|_| matches!(limit.admit(later), Admit::Yes { .. }))
            .count();
        assert_eq!(admitted, 5);
    }
}
