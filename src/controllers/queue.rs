//! A typed work queue with client-go's semantics and its default controller
//! rate limiter.
//!
//! - **De-duplication.** An item waiting in the queue is there once, however
//!   often it is added. An item being processed is not handed out again
//!   until [`WorkQueue::done`]; if it was added meanwhile, `done` puts it
//!   back, so no change is lost and no key is reconciled twice at once.
//! - **Delays.** [`WorkQueue::add_after`] adds an item once its delay has
//!   passed (one timer task and a heap, as client-go's delaying queue).
//! - **Rate limiting.** [`WorkQueue::add_rate_limited`] asks the
//!   [`RateLimiter`] for the delay: by default the maximum of a per-item
//!   exponential backoff (5 ms doubling to 1000 s) and an overall token
//!   bucket (10 qps, burst 100), exactly client-go's
//!   `DefaultControllerRateLimiter`. [`WorkQueue::forget`] resets an item's
//!   backoff after a success.
//! - **Shutdown.** [`WorkQueue::shut_down`] refuses new items and lets
//!   workers drain what is queued; [`WorkQueue::get`] then returns `None`.
//!   [`WorkQueue::shut_down_with_drain`] also waits for items in processing.
//!
//! Time is tokio's, so tests run with paused time.
//!
//! # Implementation caveats
//! - Metrics (depth, adds, retries) are counted here and exported by the
//!   controller runtime ([`super::runtime::Metrics`], `/metrics`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Decides how long an item waits before it is retried.
pub trait RateLimiter<T>: Send + Sync {
    /// The delay before `item` may be processed again; counts a retry.
    fn when(&self, item: &T) -> Duration;
    /// Forgets `item`'s history (after a success).
    fn forget(&self, item: &T);
    /// How often `item` has been retried since it was last forgotten.
    fn num_requeues(&self, item: &T) -> u32;
}

/// Per-item exponential backoff: `base * 2^failures`, at most `max`.
pub struct ExponentialBackoff<T> {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<T, u32>>,
}

impl<T: Eq + Hash + Clone> ExponentialBackoff<T> {
    /// A backoff from `base` doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        ExponentialBackoff {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }
}

fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Eq + Hash + Clone + Send> RateLimiter<T> for ExponentialBackoff<T> {
    fn when(&self, item: &T) -> Duration {
        let mut f = lock(&self.failures);
        let n = f.entry(item.clone()).or_insert(0);
        let exp = *n;
        *n = n.saturating_add(1);
        // 2^exp overflows long before it matters: cap the exponent.
        let factor = 1u64.checked_shl(exp.min(62)).unwrap_or(u64::MAX);
        let nanos = (self.base.as_nanos() as u64).saturating_mul(factor);
        Duration::from_nanos(nanos).min(self.max)
    }

    fn forget(&self, item: &T) {
        lock(&self.failures).remove(item);
    }

    fn num_requeues(&self, item: &T) -> u32 {
        lock(&self.failures).get(item).copied().unwrap_or(0)
    }
}

/// An overall token bucket: `qps` tokens a second, at most `burst` saved.
/// Each retry takes a token; without one it waits until one is due.
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(qps: f64, burst: u32) -> Self {
        TokenBucket {
            qps,
            burst: burst as f64,
            state: Mutex::new((burst as f64, Instant::now())),
        }
    }
}

impl<T> RateLimiter<T> for TokenBucket {
    fn when(&self, _item: &T) -> Duration {
        let mut s = lock(&self.state);
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.qps).min(self.burst);
        s.1 = now;
        s.0 -= 1.0;
        if s.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.0 / self.qps)
        }
    }

    fn forget(&self, _item: &T) {}

    fn num_requeues(&self, _item: &T) -> u32 {
        0
    }
}

/// The longest delay of several limiters.
pub struct MaxOf<T>(pub Vec<Box<dyn RateLimiter<T>>>);

impl<T> RateLimiter<T> for MaxOf<T> {
    fn when(&self, item: &T) -> Duration {
        self.0
            .iter()
            .map(|l| l.when(item))
            .max()
            .unwrap_or_default()
    }

    fn forget(&self, item: &T) {
        self.0.iter().for_each(|l| l.forget(item));
    }

    fn num_requeues(&self, item: &T) -> u32 {
        self.0
            .iter()
            .map(|l| l.num_requeues(item))
            .max()
            .unwrap_or(0)
    }
}

/// client-go's `DefaultControllerRateLimiter`: per-item backoff from 5 ms
/// to 1000 s, and 10 qps with a burst of 100 overall.
pub fn default_controller_rate_limiter<T: Eq + Hash + Clone + Send + 'static>() -> MaxOf<T> {
    MaxOf(vec![
        Box::new(ExponentialBackoff::new(
            Duration::from_millis(5),
            Duration::from_secs(1000),
        )),
        Box::new(TokenBucket::new(10.0, 100)),
    ])
}

/// Counters of a queue, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Items added (including duplicates that were merged).
    pub adds: u64,
    /// Items re-added through the rate limiter.
    pub retries: u64,
}

struct State<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    waiting: BinaryHeap<Reverse<(Instant, u64, T)>>,
    /// The one deadline of each delayed item (client-go's
    /// `waitingEntryByData`): a later `add_after` of an item already
    /// waiting is merged into the earlier one.
    deadlines: HashMap<T, Instant>,
    seq: u64,
    shutting_down: bool,
    stats: QueueStats,
}

/// Capacity a drained queue keeps; above it, the memory of a burst (a
/// start-up scan queues every key of the shard) is given back once the
/// queue is empty, so the queue's memory follows what is queued now, not
/// the largest burst it ever held (tests/controllers_memory.rs).
const KEEP_CAPACITY: usize = 1024;

impl<T: Eq + Hash> State<T> {
    fn release_burst_capacity(&mut self) {
        if self.queue.capacity() > KEEP_CAPACITY {
            self.queue.shrink_to(KEEP_CAPACITY);
        }
        if self.dirty.capacity() > KEEP_CAPACITY {
            let keep = self.dirty.len().max(KEEP_CAPACITY);
            self.dirty.shrink_to(keep);
        }
    }
}

struct Inner<T> {
    state: Mutex<State<T>>,
    /// Wakes workers blocked in `get`.
    ready: Notify,
    /// Wakes the timer when an earlier deadline arrives or on shutdown.
    timer: Notify,
    /// Wakes `shut_down_with_drain` when processing empties.
    drained: Notify,
    limiter: Box<dyn RateLimiter<T>>,
}

/// A de-duplicating, delaying, rate-limited work queue. Its timer task
/// runs until [`WorkQueue::shut_down`].
pub struct WorkQueue<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Eq + Hash + Clone + Ord + Send + 'static> WorkQueue<T> {
    /// A queue with client-go's default controller rate limiter. Must be
    /// called inside a tokio runtime (it starts the timer task).
    pub fn new() -> Self {
        Self::with_rate_limiter(Box::new(default_controller_rate_limiter()))
    }

    /// A queue with the given rate limiter.
    pub fn with_rate_limiter(limiter: Box<dyn RateLimiter<T>>) -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                waiting: BinaryHeap::new(),
                deadlines: HashMap::new(),
                seq: 0,
                shutting_down: false,
                stats: QueueStats::default(),
            }),
            ready: Notify::new(),
            timer: Notify::new(),
            drained: Notify::new(),
            limiter,
        });
        tokio::spawn(timer(inner.clone()));
        WorkQueue { inner }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.inner.state)
    }

    /// Adds an item now (merged with a waiting duplicate).
    pub fn add(&self, item: T) {
        let mut s = self.state();
        if s.shutting_down {
            return;
        }
        s.stats.adds += 1;
        if !s.dirty.insert(item.clone()) {
            return;
        }
        if s.processing.contains(&item) {
            return; // `done` re-queues it.
        }
        s.queue.push_back(item);
        drop(s);
        self.inner.ready.notify_one();
    }

    /// Adds an item once `delay` has passed.
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let mut s = self.state();
        if s.shutting_down {
            return;
        }
        let at = Instant::now() + delay;
        if s.deadlines.get(&item).is_some_and(|&d| d <= at) {
            return; // Already waiting, for no longer.
        }
        s.deadlines.insert(item.clone(), at);
        s.seq += 1;
        let seq = s.seq;
        s.waiting.push(Reverse((at, seq, item)));
        drop(s);
        self.inner.timer.notify_one();
    }

    /// Adds an item after the rate limiter's delay (a retry).
    pub fn add_rate_limited(&self, item: T) {
        let delay = self.inner.limiter.when(&item);
        self.state().stats.retries += 1;
        self.add_after(item, delay);
    }

    /// Resets an item's backoff (after it was processed successfully).
    pub fn forget(&self, item: &T) {
        self.inner.limiter.forget(item);
    }

    /// How often an item has been retried since it was last forgotten.
    pub fn num_requeues(&self, item: &T) -> u32 {
        self.inner.limiter.num_requeues(item)
    }

    /// Waits for the next item; `None` once the queue is shut down and
    /// drained. The caller must call [`WorkQueue::done`] with it.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.inner.ready.notified();
            {
                let mut s = self.state();
                if let Some(item) = s.queue.pop_front() {
                    s.dirty.remove(&item);
                    s.processing.insert(item.clone());
                    if s.queue.is_empty() {
                        s.release_burst_capacity();
                    }
                    return Some(item);
                }
                if s.shutting_down {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks an item processed; re-queues it if it was added meanwhile.
    pub fn done(&self, item: &T) {
        let mut s = self.state();
        s.processing.remove(item);
        if s.dirty.contains(item) {
            s.queue.push_back(item.clone());
            drop(s);
            self.inner.ready.notify_one();
        } else if s.processing.is_empty() {
            drop(s);
            self.inner.drained.notify_waiters();
        }
    }

    /// Items waiting to be handed out (not counting delayed ones).
    pub fn len(&self) -> usize {
        self.state().queue.len()
    }

    /// True when no item waits to be handed out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters for metrics.
    pub fn stats(&self) -> QueueStats {
        self.state().stats
    }

    /// Refuses new items; workers drain the queue, then `get` gives `None`.
    pub fn shut_down(&self) {
        let mut s = self.state();
        s.shutting_down = true;
        s.waiting.clear();
        s.deadlines.clear();
        drop(s);
        self.inner.ready.notify_waiters();
        self.inner.timer.notify_one();
    }

    /// Shuts down and waits until every handed-out item is done.
    pub async fn shut_down_with_drain(&self) {
        self.shut_down();
        loop {
            let drained = self.inner.drained.notified();
            if self.state().processing.is_empty() {
                return;
            }
            drained.await;
        }
    }

    /// True after [`WorkQueue::shut_down`].
    pub fn shutting_down(&self) -> bool {
        self.state().shutting_down
    }
}

impl<T: Eq + Hash + Clone + Ord + Send + 'static> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Moves delayed items into the queue when they are due; ends when the
/// queue shuts down.
async fn timer<T: Eq + Hash + Clone + Ord + Send + 'static>(inner: Arc<Inner<T>>) {
    let queue = WorkQueue { inner };
    loop {
        let notified = queue.inner.timer.notified();
        let next = {
            let mut s = queue.state();
            if s.shutting_down {
                return;
            }
            let now = Instant::now();
            let mut due = vec![];
            while s
                .waiting
                .peek()
                .is_some_and(|Reverse((at, _, _))| *at <= now)
            {
                let Reverse((at, _, item)) = s.waiting.pop().expect("peeked");
                // An entry superseded by an earlier deadline is dropped.
                if s.deadlines.get(&item) == Some(&at) {
                    s.deadlines.remove(&item);
                    due.push(item);
                }
            }
            let next = s.waiting.peek().map(|Reverse((at, _, _))| *at);
            if s.waiting.is_empty() && s.waiting.capacity() > KEEP_CAPACITY {
                s.waiting.shrink_to(KEEP_CAPACITY);
                let keep = s.deadlines.len().max(KEEP_CAPACITY);
                s.deadlines.shrink_to(keep);
            }
            drop(s);
            for item in due {
                queue.add(item);
            }
            next
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = notified => {}
                }
            }
            None => notified.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn adds_are_deduplicated_and_processing_items_are_held_back() {
        let q: WorkQueue<String> = WorkQueue::new();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.len(), 2);
        let a = q.get().await.unwrap();
        assert_eq!(a, "a");
        // Added again while processing: not handed out twice at once.
        q.add("a".into());
        assert_eq!(q.get().await.unwrap(), "b");
        assert!(q.is_empty(), "a waits for done");
        q.done(&a);
        assert_eq!(q.len(), 1, "done re-queues the item added meanwhile");
        assert_eq!(q.get().await.unwrap(), "a");
        q.done(&"a".to_string());
        q.done(&"b".to_string());
        assert!(q.is_empty());
        assert_eq!(q.stats().adds, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_waits_for_its_delay() {
        let q: WorkQueue<u32> = WorkQueue::new();
        q.add_after(1, ms(100));
        q.add_after(2, ms(50));
        tokio::time::sleep(ms(49)).await;
        assert!(q.is_empty());
        tokio::time::sleep(ms(2)).await;
        assert_eq!(q.get().await, Some(2));
        assert!(q.is_empty());
        let t = Instant::now();
        assert_eq!(q.get().await, Some(1));
        assert!(t.elapsed() >= ms(49), "1 came at its time, not before");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_item_keeps_its_earliest_deadline_only() {
        let q: WorkQueue<u32> = WorkQueue::new();
        q.add_after(1, ms(100));
        q.add_after(1, ms(300)); // later: merged into the first
        q.add_after(1, ms(50)); // earlier: replaces it
        tokio::time::sleep(ms(60)).await;
        assert_eq!(q.get().await, Some(1));
        q.done(&1);
        tokio::time::sleep(ms(400)).await;
        assert!(q.is_empty(), "the superseded deadlines added nothing");
        assert_eq!(q.stats().adds, 1);
    }

    #[test]
    fn exponential_backoff_doubles_and_caps_and_forgets() {
        let b = ExponentialBackoff::new(ms(5), Duration::from_secs(1000));
        let delays: Vec<_> = (0..5).map(|_| b.when(&"k")).collect();
        assert_eq!(delays, vec![ms(5), ms(10), ms(20), ms(40), ms(80)]);
        assert_eq!(b.num_requeues(&"k"), 5);
        for _ in 0..100 {
            b.when(&"k");
        }
        assert_eq!(b.when(&"k"), Duration::from_secs(1000));
        assert_eq!(b.when(&"other"), ms(5), "per item");
        b.forget(&"k");
        assert_eq!(b.num_requeues(&"k"), 0);
        assert_eq!(b.when(&"k"), ms(5));
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_allows_a_burst_of_100_then_10_per_second() {
        let t = TokenBucket::new(10.0, 100);
        for i in 0..100 {
            assert_eq!(
                RateLimiter::<u32>::when(&t, &i),
                Duration::ZERO,
                "token {i}"
            );
        }
        assert_eq!(RateLimiter::<u32>::when(&t, &100), ms(100));
        assert_eq!(RateLimiter::<u32>::when(&t, &101), ms(200));
        tokio::time::advance(Duration::from_secs(1)).await;
        // 10 tokens refilled, 2 were owed.
        let d = RateLimiter::<u32>::when(&t, &102);
        assert_eq!(d, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_adds_use_the_longer_delay() {
        let q: WorkQueue<u32> = WorkQueue::new();
        q.add_rate_limited(7);
        assert_eq!(q.num_requeues(&7), 1);
        tokio::time::sleep(ms(4)).await;
        assert!(q.is_empty(), "5 ms backoff");
        tokio::time::sleep(ms(2)).await;
        assert_eq!(q.get().await, Some(7));
        q.done(&7);
        q.add_rate_limited(7);
        tokio::time::sleep(ms(9)).await;
        assert!(q.is_empty(), "10 ms on the second retry");
        tokio::time::sleep(ms(2)).await;
        assert_eq!(q.len(), 1);
        q.forget(&7);
        assert_eq!(q.num_requeues(&7), 0);
        assert_eq!(q.stats().retries, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drained_queue_gives_back_the_memory_of_a_burst() {
        let q: WorkQueue<u32> = WorkQueue::new();
        for i in 0..100_000 {
            q.add(i);
        }
        assert!(q.state().dirty.capacity() >= 100_000);
        for _ in 0..100_000 {
            let i = q.get().await.unwrap();
            q.done(&i);
        }
        let s = q.state();
        assert!(
            s.queue.capacity() <= KEEP_CAPACITY,
            "{}",
            s.queue.capacity()
        );
        assert!(
            s.dirty.capacity() <= 2 * KEEP_CAPACITY,
            "{}",
            s.dirty.capacity()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_drains_then_ends() {
        let q: WorkQueue<u32> = WorkQueue::new();
        q.add(1);
        q.add(2);
        q.add_after(3, ms(10));
        let first = q.get().await.unwrap();
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.shut_down_with_drain().await })
        };
        tokio::task::yield_now().await;
        assert!(q.shutting_down());
        q.add(4);
        assert_eq!(q.get().await, Some(2), "queued items are still handed out");
        assert_eq!(
            q.get().await,
            None,
            "then the queue ends; delayed and new items are dropped"
        );
        assert!(!waiter.is_finished(), "drain waits for items in processing");
        q.done(&first);
        q.done(&2);
        waiter.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_worker_wakes_on_add_and_on_shutdown() {
        let q: WorkQueue<u32> = WorkQueue::new();
        let worker = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut seen = vec![];
                while let Some(i) = q.get().await {
                    seen.push(i);
                    q.done(&i);
                }
                seen
            })
        };
        tokio::task::yield_now().await;
        q.add(1);
        tokio::time::sleep(ms(1)).await;
        q.add(2);
        tokio::time::sleep(ms(1)).await;
        q.shut_down();
        assert_eq!(worker.await.unwrap(), vec![1, 2]);
    }
}
