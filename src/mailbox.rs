//! Bounded queues between ember's few threads and the main loop: a mutex and a condition
//! variable. std's `mpsc` would do the same, but each element type sent through it links
//! all three of its channel kinds into PID 1, about 5 KB a type.
//!
//! [`Mailbox`]: a queue between two threads that both live as long as it is used (the
//! watchdog's petter through the shutdown, a step of the shutdown).
//! [`Served`]: a queue served by a thread of its own that runs only while there is work
//! (the console's lines, the lines of rotated output files).

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

/// How long a [`Served`] queue's thread waits for more before it ends.
const LINGER: Duration = Duration::from_secs(1);

/// A bounded queue whose items a thread of its own hands to `serve`, in order and in
/// batches (all that waits at once). The thread is started by the first item and ends
/// once it has waited a second for more: not a thread for good, because while PID 1 has
/// a second thread, even one asleep, each spawn costs more (100 services came up in 62
/// ms instead of 39 when the console's writer was one).
pub struct Served<T: Send + 'static> {
    state: Mutex<Waiting<T>>,
    /// An item was queued for a thread that waits.
    more: Condvar,
    /// The thread has served all it took.
    idle: Condvar,
    limit: usize,
    name: &'static str,
    serve: fn(VecDeque<T>),
}

struct Waiting<T> {
    items: VecDeque<T>,
    /// The thread holds items it took from the queue, or has been asked to take some.
    serving: bool,
    /// A thread is running (or, in tests, stands for one that never takes anything).
    thread: bool,
}

impl<T: Send + 'static> Served<T> {
    /// A queue of at most `limit` items, served by a thread called `name`.
    pub const fn new(limit: usize, name: &'static str, serve: fn(VecDeque<T>)) -> Served<T> {
        Served {
            state: Mutex::new(Waiting {
                items: VecDeque::new(),
                serving: false,
                thread: false,
            }),
            more: Condvar::new(),
            idle: Condvar::new(),
            limit,
            name,
            serve,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` without waiting, starting the thread if none runs; gives it back
    /// when the queue is full. `at_once` may take the item instead, in the caller's
    /// thread: it is asked only while nothing queued is still to be served (so that items
    /// keep their order), and says whether it took it. When no thread can be started,
    /// what waits is served here, as it would have been without a thread at all.
    pub fn send(&'static self, item: T, at_once: impl FnOnce(&T) -> bool) -> Result<(), T> {
        let mut state = self.lock();
        if state.items.is_empty() && !state.serving && at_once(&item) {
            return Ok(());
        }
        if state.items.len() >= self.limit {
            return Err(item);
        }
        state.items.push_back(item);
        if state.thread {
            if !state.serving {
                state.serving = true;
                self.more.notify_one();
            }
            return Ok(());
        }
        let started = std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || self.run());
        if started.is_err() {
            // Under the lock, so that a sender in another thread cannot pass these.
            (self.serve)(std::mem::take(&mut state.items));
            return Ok(());
        }
        state.thread = true;
        state.serving = true;
        Ok(())
    }

    fn run(&'static self) {
        loop {
            let batch = {
                let mut state = self.lock();
                while state.items.is_empty() {
                    state.serving = false;
                    self.idle.notify_all();
                    let (next, waited) = match self.more.wait_timeout(state, LINGER) {
                        Ok(woken) => woken,
                        Err(e) => e.into_inner(),
                    };
                    state = next;
                    if waited.timed_out() && state.items.is_empty() {
                        state.thread = false;
                        return;
                    }
                }
                state.serving = true;
                std::mem::take(&mut state.items)
            };
            // A panic while serving must not end the thread with `thread` still set: no
            // item would be served again. The batch is lost; the next is served.
            let serve = self.serve;
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || serve(batch)));
        }
    }

    /// Waits, at most `limit`, until everything queued has been served: before an exit,
    /// an exec or reboot(2), which would lose it.
    pub fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
        while !state.items.is_empty() || state.serving {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = match self.idle.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// A queue that no thread serves, its items taken by [`Served::take`]: for tests of
    /// what senders do when it is full.
    #[cfg(test)]
    pub fn unserved(limit: usize) -> &'static Served<T> {
        let queue = Box::leak(Box::new(Served::new(limit, "unserved", drop)));
        queue.lock().thread = true;
        queue
    }

    /// The oldest item waiting, if any: for tests.
    #[cfg(test)]
    pub fn take(&self) -> Option<T> {
        self.lock().items.pop_front()
    }

    /// Whether a thread is running: for tests.
    #[cfg(test)]
    fn running(&self) -> bool {
        self.lock().thread
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
        assert_eq!(mailbox.recv_timeout(Duration::ZERO), Some(1));
        assert_eq!(mailbox.recv_timeout(Duration::from_millis(1)), Some(2));
        assert_eq!(mailbox.recv_timeout(Duration::from_millis(1)), None);
        let sender = mailbox.clone();
        let thread = std::thread::spawn(move || sender.try_send(4));
        assert_eq!(
            mailbox.recv_timeout(Duration::from_secs(60)),
            Some(4),
            "woken by a send from another thread"
        );
        assert_eq!(thread.join().ok(), Some(Ok(())));
    }

    static SERVED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    fn record(items: VecDeque<u32>) {
        SERVED.lock().unwrap().extend(items);
    }

    /// Served in order by a thread that ends once idle, and is started again by the next
    /// item; `at_once` is asked only while nothing waits.
    #[test]
    fn served_in_order_by_a_thread_that_ends_when_idle() {
        static QUEUE: Served<u32> = Served::new(100, "test-served", record);
        for i in 0..10 {
            assert_eq!(QUEUE.send(i, |_| false), Ok(()));
        }
        QUEUE.flush(Duration::from_secs(60));
        assert_eq!(*SERVED.lock().unwrap(), (0..10).collect::<Vec<_>>());
        assert!(QUEUE.running(), "lingers a while");
        let until = Instant::now() + Duration::from_secs(60);
        while QUEUE.running() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!QUEUE.running(), "the thread did not end once idle");
        let mut taken = Vec::new();
        assert_eq!(
            QUEUE.send(10, |i| {
                taken.push(*i);
                true
            }),
            Ok(())
        );
        assert_eq!(taken, [10], "nothing waits: taken at once");
        assert_eq!(QUEUE.send(11, |_| false), Ok(()));
        QUEUE.flush(Duration::from_secs(60));
        assert_eq!(SERVED.lock().unwrap().last(), Some(&11), "a new thread");
    }

    #[test]
    fn an_unserved_queue_is_bounded() {
        let queue = Served::unserved(2);
        assert_eq!(queue.send(1, |_| true), Ok(()), "taken at once");
        assert_eq!(queue.send(2, |_| false), Ok(()));
        assert_eq!(
            queue.send(3, |_| true),
            Ok(()),
            "not taken at once: 2 waits"
        );
        assert_eq!(queue.send(4, |_| false), Err(4), "full");
        assert_eq!(queue.take(), Some(2));
        assert_eq!(queue.take(), Some(3));
        assert_eq!(queue.take(), None);
    }
}
