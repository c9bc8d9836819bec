//! What was held back from ember's log and not yet counted there: a service's lines over
//! their limit ([`feed`](super::feed)), its restarts in a crash loop
//! ([`restarts`](super::restarts)). Each is counted with the next line logged for that
//! service, at most once a second; when nothing more comes, the count is told here,
//! after a quiet second, so that a flood or a loop that ends in silence still gets its
//! "N ... were not logged". One set and one timer for both, armed only while something is
//! held back: no wakeup otherwise.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long after the first thing held back its count is told, if nothing said it before.
pub(super) const TELL_AFTER: Duration = Duration::from_secs(1);

/// What was held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Held {
    Lines,
    Restarts,
    /// Not a count: a service's STATUS= that waits for its turn (see `status_said`).
    Status,
}

/// The services with something held back, and when to look at them.
#[derive(Debug, Default)]
pub(super) struct Untold {
    pending: BTreeSet<(Held, Arc<str>)>,
    due: Option<Instant>,
}

impl Untold {
    /// Remembers to count what `name` held back, a second from now at the latest.
    pub(super) fn add(&mut self, held: Held, name: Arc<str>, now: Instant) {
        self.pending.insert((held, name));
        self.due.get_or_insert(now + TELL_AFTER);
    }

    /// When to look again; `None` (no timer) when nothing is held back.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Everything held back, for a round of telling; what is not told yet is put back
    /// with [`Untold::again`].
    pub(super) fn take(&mut self) -> BTreeSet<(Held, Arc<str>)> {
        self.due = None;
        std::mem::take(&mut self.pending)
    }

    /// Puts back what could not be told yet, to be looked at `at`.
    pub(super) fn again(&mut self, held: Held, name: Arc<str>, at: Instant) {
        self.pending.insert((held, name));
        self.due = Some(self.due.map_or(at, |due| due.min(at)));
    }
}

impl super::Runtime {
    /// Tells every count that is due; what must wait is put back.
    pub(super) fn tell_held_back(&mut self) {
        let now = Instant::now();
        for (held, name) in self.untold.take() {
            let wait = match held {
                Held::Lines => self.tell_lines_held_back(&name, now),
                Held::Restarts => self.tell_restarts_held_back(&name, now),
                Held::Status => {
                    self.tell_status_waiting(&name);
                    None
                }
            };
            if let Some(at) = wait {
                self.untold.again(held, name, at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_timer_armed_only_while_something_is_held_back() {
        let now = Instant::now();
        let mut untold = Untold::default();
        assert_eq!(untold.due(), None);
        untold.add(Held::Lines, "a".into(), now);
        // A later addition does not push the first one's time back.
        untold.add(Held::Restarts, "a".into(), now + TELL_AFTER / 2);
        untold.add(Held::Lines, "a".into(), now + TELL_AFTER / 2);
        assert_eq!(untold.due(), Some(now + TELL_AFTER));
        let round = untold.take();
        assert_eq!(round.len(), 2);
        assert_eq!(untold.due(), None);
        // Put back at different times: the earliest is when to look.
        untold.again(Held::Restarts, "a".into(), now + 3 * TELL_AFTER);
        untold.again(Held::Lines, "b".into(), now + 2 * TELL_AFTER);
        assert_eq!(untold.due(), Some(now + 2 * TELL_AFTER));
        assert_eq!(untold.take().len(), 2);
    }
}
