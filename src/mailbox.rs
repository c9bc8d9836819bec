//! A bounded queue between ember's few threads (the log file writer, the watchdog's
//! petter through the shutdown) and the main loop: a mutex and a condition variable.
//! std's `mpsc` would do the same, but each element type sent through it links all three
//! of its channel kinds into PID 1, about 5 KB a type.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct Mailbox<T> {
    items: Mutex<VecDeque<T>>,
    arrived: Condvar,
    limit: usize,
}

impl<T> Mailbox<T> {
    /// A queue of at most `limit` items.
    pub fn new(limit: usize) -> Mailbox<T> {
        Mailbox {
            items: Mutex::new(VecDeque::new()),
            arrived: Condvar::new(),
            limit,
        }
    }

    /// A panic while the lock was held leaves the queue as it was: still usable.
    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` without waiting; gives it back when the queue is full.
    pub fn try_send(&self, item: T) -> Result<(), T> {
        let mut items = self.lock();
        if items.len() >= self.limit {
            return Err(item);
        }
        items.push_back(item);
        drop(items);
        self.arrived.notify_one();
        Ok(())
    }

    /// The next item, waiting for one as long as it takes.
    pub fn recv(&self) -> T {
        let mut items = self.lock();
        loop {
            if let Some(item) = items.pop_front() {
                return item;
            }
            items = self.arrived.wait(items).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The next item, or `None` once `timeout` has passed without one.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<T> {
        let until = Instant::now() + timeout;
        let mut items = self.lock();
        loop {
            if let Some(item) = items.pop_front() {
                return Some(item);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            items = self
                .arrived
                .wait_timeout(items, left)
                .map(|(items, _)| items)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn bounded_in_order_and_waits() {
        let mailbox = Arc::new(Mailbox::new(2));
        assert_eq!(mailbox.try_send(1), Ok(()));
        assert_eq!(mailbox.try_send(2), Ok(()));
        assert_eq!(mailbox.try_send(3), Err(3), "full");
        assert_eq!(mailbox.recv(), 1);
        assert_eq!(mailbox.recv_timeout(Duration::from_millis(1)), Some(2));
        assert_eq!(mailbox.recv_timeout(Duration::from_millis(1)), None);
        let sender = mailbox.clone();
        let thread = std::thread::spawn(move || sender.try_send(4));
        assert_eq!(mailbox.recv(), 4, "woken by a send from another thread");
        assert_eq!(thread.join().ok(), Some(Ok(())));
    }
}
