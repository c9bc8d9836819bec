//! A broadcast channel whose ring is made when its first receiver subscribes.
//!
//! tokio's broadcast channel allocates every slot of its ring when it is made: 1,024 slots
//! are 32 KiB, and ember has two (changes and lines), which an ember that nobody follows
//! (no adapter, no `ember ctl logs -f`) never uses. Until the first subscriber, a send is
//! dropped, as tokio's own channel drops it when no receiver is left.

use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

/// A handle to one channel: clones share it.
#[derive(Debug)]
pub struct Broadcast<T> {
    capacity: usize,
    sender: Arc<OnceLock<broadcast::Sender<T>>>,
}

impl<T> Clone for Broadcast<T> {
    fn clone(&self) -> Self {
        Broadcast {
            capacity: self.capacity,
            sender: self.sender.clone(),
        }
    }
}

impl<T: Clone> Broadcast<T> {
    /// A channel of `capacity` places (a receiver that falls further behind is told how
    /// many it missed), none of them made yet.
    pub fn new(capacity: usize) -> Broadcast<T> {
        Broadcast {
            capacity: capacity.max(1),
            sender: Arc::new(OnceLock::new()),
        }
    }

    /// A receiver of every value sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<T> {
        self.sender
            .get_or_init(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Sends `value` to every receiver; returns how many there were.
    pub fn send(&self, value: T) -> usize {
        self.sender
            .get()
            .and_then(|sender| sender.send(value).ok())
            .unwrap_or(0)
    }

    /// How many receivers there are now.
    pub fn receiver_count(&self) -> usize {
        self.sender
            .get()
            .map_or(0, |sender| sender.receiver_count())
    }

    /// Whether the ring has been made (a receiver subscribed once).
    pub fn is_made(&self) -> bool {
        self.sender.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_kept_before_the_first_subscriber_and_everything_after() {
        let channel = Broadcast::<u32>::new(4);
        let other = channel.clone();
        assert_eq!(other.send(1), 0);
        assert!(!channel.is_made() && channel.receiver_count() == 0);
        let mut first = channel.subscribe();
        assert!(other.is_made());
        assert_eq!(other.send(2), 1);
        let mut second = other.subscribe();
        assert_eq!(channel.send(3), 2);
        assert_eq!((first.try_recv(), first.try_recv()), (Ok(2), Ok(3)));
        assert_eq!(second.try_recv(), Ok(3));
        drop((first, second));
        assert_eq!((channel.send(4), channel.receiver_count()), (0, 0));
    }

    #[test]
    fn a_receiver_that_falls_behind_is_told_how_far() {
        let channel = Broadcast::<u32>::new(2);
        let mut slow = channel.subscribe();
        for n in 0..5 {
            channel.send(n);
        }
        assert_eq!(
            slow.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(3))
        );
        assert_eq!((slow.try_recv(), slow.try_recv()), (Ok(3), Ok(4)));
    }
}
