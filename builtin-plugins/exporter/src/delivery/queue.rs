//! The bounded queue between the pipeline thread and the sender threads.

use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use super::Item;

/// How often a waiting push checks whether to give up.
pub const GIVE_UP_POLL: Duration = Duration::from_millis(100);

struct State {
    items: VecDeque<Item>,
    /// No more pushes: senders drain what is left and end.
    closed: bool,
    /// Stop now: senders give up retrying and return what they hold.
    aborted: bool,
    /// Items taken by senders and not yet settled.
    in_flight: usize,
}

/// A bounded FIFO of records with blocking push (back-pressure) and batch pop.
pub struct BoundedQueue {
    capacity: usize,
    state: Mutex<State>,
    not_empty: Condvar,
    not_full: Condvar,
    /// Signalled when an item settles or the queue is aborted (stop waits on it).
    settled: Condvar,
}

/// What [`BoundedQueue::push`] did with an item.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// The item is queued.
    Queued,
    /// The queue was full (and the caller did not want to wait) or closed: the item is returned.
    Refused(Item),
}

impl BoundedQueue {
    /// A queue holding at most `capacity` (≥ 1) items.
    pub fn new(capacity: usize) -> BoundedQueue {
        BoundedQueue {
            capacity: capacity.max(1),
            state: Mutex::new(State { items: VecDeque::new(), closed: false, aborted: false, in_flight: 0 }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            settled: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A sender that panicked holding the lock left consistent data (plain pushes/pops).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`; when full, waits for room if `wait`, else refuses it.
    pub fn push(&self, item: Item, wait: bool) -> Pushed {
        self.push_unless(item, wait, &|| false)
    }

    /// As [`BoundedQueue::push`], but a waiting push gives up and refuses the item once
    /// `give_up` returns true (checked every [`GIVE_UP_POLL`]): a stop must not wait for a
    /// receiver that is down.
    pub fn push_unless(&self, item: Item, wait: bool, give_up: &dyn Fn() -> bool) -> Pushed {
        let mut s = self.lock();
        while s.items.len() >= self.capacity && wait && !s.closed && !s.aborted {
            if give_up() {
                break;
            }
            s = match self.not_full.wait_timeout(s, GIVE_UP_POLL) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        if s.closed || s.aborted || s.items.len() >= self.capacity {
            return Pushed::Refused(item);
        }
        s.items.push_back(item);
        drop(s);
        self.not_empty.notify_one();
        Pushed::Queued
    }

    /// Takes up to `max_items` items totalling at most `max_bytes` (always at least one),
    /// waiting for the first; `None` once the queue is closed and empty, or aborted.
    pub fn pop_batch(&self, max_items: usize, max_bytes: usize) -> Option<Vec<Item>> {
        let mut s = self.lock();
        while s.items.is_empty() && !s.closed && !s.aborted {
            s = self.not_empty.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.aborted || s.items.is_empty() {
            return None;
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(front) = s.items.front() {
            if !batch.is_empty() && (batch.len() >= max_items || bytes + front.body.len() > max_bytes) {
                break;
            }
            bytes += front.body.len();
            batch.extend(s.items.pop_front());
        }
        s.in_flight += batch.len();
        drop(s);
        self.not_full.notify_all();
        Some(batch)
    }

    /// Marks `n` taken items as settled (delivered, failed or handed back).
    pub fn settle(&self, n: usize) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(n);
        drop(s);
        self.settled.notify_all();
    }

    /// Items queued (not yet taken by a sender).
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses further pushes; senders drain the rest and end.
    pub fn close(&self) {
        self.lock().closed = true;
        self.not_empty.notify_all();
        self.not_full.notify_all();
    }

    /// Stops the senders' retries and wakes every waiter; returns the items still queued.
    pub fn abort(&self) -> Vec<Item> {
        let mut s = self.lock();
        s.aborted = true;
        let left: Vec<Item> = s.items.drain(..).collect();
        drop(s);
        self.not_empty.notify_all();
        self.not_full.notify_all();
        self.settled.notify_all();
        left
    }

    /// True once [`abort`](Self::abort) was called.
    pub fn aborted(&self) -> bool {
        self.lock().aborted
    }

    /// Sleeps for `delay` unless the queue is aborted first; returns false when aborted.
    pub fn sleep_unless_aborted(&self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        let mut s = self.lock();
        while !s.aborted {
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            s = self.settled.wait_timeout(s, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        false
    }

    /// Waits until nothing is queued or in flight, up to `deadline`; true when drained.
    pub fn wait_drained(&self, deadline: Instant) -> bool {
        let mut s = self.lock();
        loop {
            if s.items.is_empty() && s.in_flight == 0 {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || s.aborted {
                return false;
            }
            s = self.settled.wait_timeout(s, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, thread};

    use super::*;

    fn item(n: u8) -> Item {
        Item { id: Some(n.to_string()), body: vec![n; 10] }
    }

    #[test]
    fn full_queue_refuses_without_waiting_and_blocks_until_room_with_waiting() {
        let q = Arc::new(BoundedQueue::new(2));
        assert_eq!(q.push(item(1), false), Pushed::Queued);
        assert_eq!(q.push(item(2), false), Pushed::Queued);
        assert_eq!(q.push(item(3), false), Pushed::Refused(item(3)));
        let q2 = Arc::clone(&q);
        let pusher = thread::spawn(move || q2.push(item(4), true));
        thread::sleep(Duration::from_millis(50));
        assert!(!pusher.is_finished(), "a blocking push into a full queue must wait");
        let batch = q.pop_batch(1, usize::MAX).expect("batch");
        assert_eq!(batch, vec![item(1)]);
        assert_eq!(pusher.join().expect("join"), Pushed::Queued);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_waiting_push_gives_up_when_asked() {
        let q = Arc::new(BoundedQueue::new(1));
        assert_eq!(q.push(item(1), false), Pushed::Queued);
        let give_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (q2, flag) = (Arc::clone(&q), Arc::clone(&give_up));
        let pusher =
            thread::spawn(move || q2.push_unless(item(2), true, &|| flag.load(std::sync::atomic::Ordering::SeqCst)));
        thread::sleep(Duration::from_millis(250));
        assert!(!pusher.is_finished(), "it waits until asked to give up");
        give_up.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(pusher.join().expect("join"), Pushed::Refused(item(2)));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn batches_respect_item_and_byte_limits_but_take_at_least_one() {
        let q = BoundedQueue::new(10);
        for n in 0..5 {
            q.push(item(n), false);
        }
        assert_eq!(q.pop_batch(2, usize::MAX).expect("b").len(), 2);
        assert_eq!(q.pop_batch(10, 25).expect("b").len(), 2, "10-byte items, 25-byte limit");
        assert_eq!(q.pop_batch(10, 1).expect("b").len(), 1, "an item larger than the limit still goes");
        assert!(!q.wait_drained(Instant::now()), "5 items in flight");
        q.settle(5);
        assert!(q.wait_drained(Instant::now()));
        q.close();
        assert!(q.pop_batch(10, 100).is_none());
        assert_eq!(q.push(item(9), true), Pushed::Refused(item(9)), "closed queue refuses");
    }

    #[test]
    fn abort_wakes_a_blocked_pusher_and_a_sleeping_sender() {
        let q = Arc::new(BoundedQueue::new(1));
        q.push(item(1), false);
        let (q2, q3) = (Arc::clone(&q), Arc::clone(&q));
        let pusher = thread::spawn(move || q2.push(item(2), true));
        let sleeper = thread::spawn(move || q3.sleep_unless_aborted(Duration::from_secs(60)));
        thread::sleep(Duration::from_millis(50));
        assert_eq!(q.abort(), vec![item(1)]);
        assert_eq!(pusher.join().expect("join"), Pushed::Refused(item(2)));
        assert!(!sleeper.join().expect("join"));
    }
}
