//! The controller runtime: controllers run on the shard's raft leader only.
//!
//! [`run`] follows [`Shard::leadership`], a signal the raft event loop
//! pushes whenever the node's role changes (no polling). When this
//! node becomes leader it waits for a [`Shard::barrier`] — local state then
//! holds every committed write — and starts a *term*: per controller a
//! fresh [`WorkQueue`], the [`feed`] of its resource (a scan of local
//! state, then the change log), any extra tasks the controller starts
//! (e.g. a feed of a related resource), and its workers. When leadership
//! is lost the term stops at once: queues shut down and every task is
//! aborted. A write cut off mid-flight is harmless: every write is a
//! compare-and-swap on the revision that was read, and the next leader
//! starts from the replicated state with a scan.
//!
//! A reconcile answers as kube-runtime's do: an [`Action`] on success
//! ([`Action::requeue`] after a time, or [`Action::await_change`]: the feed
//! brings the key back when something changes), or an [`Error`] (typed,
//! see [`super::error`]). Workers follow client-go's loop
//! (`processNextWorkItem`): `get`, reconcile, then `forget` and, for a
//! requeue, `add_after` on success, or `add_rate_limited` on error (any
//! variant: backoff per key), and `done`. A reconcile that panics is
//! caught where it runs ([`guard`]): the worker goes on with its next item
//! as a restarted one would, the key is re-queued like an error (with
//! backoff) and `done`, so it is neither lost nor stuck as "processing",
//! and `tmc_controller_panics_total` counts it. Controller code must not
//! panic on stored data; this is the net under that rule.
//!
//! Metrics per controller (labels `controller`), in Prometheus text
//! format from [`Metrics::render`] (served on `/metrics` of `tmc serve`'s
//! KV listener): `tmc_controller_queue_depth`, `tmc_controller_adds_total`,
//! `tmc_controller_retries_total`, `tmc_controller_reconciles_total`,
//! `tmc_controller_errors_total`, `tmc_controller_panics_total`,
//! `tmc_controller_reconcile_duration_seconds` (histogram), and
//! `tmc_controller_leader` (1 while a term runs).

use super::error::Error;
use super::feed;
use super::keys::QueueKey;
use super::queue::{QueueStats, WorkQueue};
use crate::shard::{BoxFuture, Shard};
use crate::store::GroupResource;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a reconcile that succeeded asks for next (kube-runtime's
/// `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile the key again after `after`, even if nothing changes.
    pub fn requeue(after: Duration) -> Action {
        Action {
            requeue_after: Some(after),
        }
    }

    /// Nothing more to do until the key's data changes (the feed queues it
    /// then).
    pub fn await_change() -> Action {
        Action {
            requeue_after: None,
        }
    }

    /// The requeue asked for, if any.
    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

/// A controller the runtime can run.
pub trait Controller: Send + Sync + 'static {
    /// Name, for logs and metrics.
    fn name(&self) -> &'static str;
    /// The resource whose keys the runtime's feed queues (a scan of it
    /// across the shard's workspaces at each term's start, then its
    /// changes: [`feed::run`]); `None` when the controller feeds its queue
    /// itself from [`Controller::start_term`] (the lifecycle controller
    /// queues only terminating namespaces and workspaces, not every one).
    fn resource(&self) -> Option<GroupResource>;
    /// Concurrent workers.
    fn workers(&self) -> usize {
        2
    }
    /// Called at the start of each term, before the feed: drop per-term
    /// state and return extra tasks to run for the term (aborted at its end).
    fn start_term(
        self: Arc<Self>,
        _shard: Arc<dyn Shard>,
        _queue: WorkQueue<QueueKey>,
    ) -> Vec<BoxFuture<'static, ()>> {
        Vec::new()
    }
    /// Reconciles one key: what to do next, or why it failed (the key is
    /// then re-queued with backoff).
    fn reconcile<'a>(&'a self, key: &'a QueueKey) -> BoxFuture<'a, Result<Action, Error>>;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    controller: String,
}

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    cluster: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

/// Metrics of every controller of one process.
pub struct Metrics {
    registry: Registry,
    depth: Family<Labels, Gauge>,
    adds: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    reconciles: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    panics: Family<Labels, Counter>,
    duration: HistogramFamily,
    leader: Gauge,
    synced: Family<SyncLabels, Counter>,
    sync_duration: Family<ClusterLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty set of metrics.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let depth = Family::<Labels, Gauge>::default();
        let adds = Family::<Labels, Counter>::default();
        let retries = Family::<Labels, Counter>::default();
        let reconciles = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        let panics = Family::<Labels, Counter>::default();
        let duration: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 20)));
        let leader = Gauge::default();
        let synced = Family::<SyncLabels, Counter>::default();
        let sync_duration: Family<ClusterLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 20)));
        registry.register(
            "tmc_sync_items",
            "Sync work items per member cluster (\"ok\" or \"error\", retried)",
            synced.clone(),
        );
        registry.register(
            "tmc_sync_item_duration_seconds",
            "Time per sync work item, per member cluster",
            sync_duration.clone(),
        );
        registry.register(
            "tmc_controller_queue_depth",
            "Items waiting in the work queue",
            depth.clone(),
        );
        registry.register(
            "tmc_controller_adds",
            "Items added to the work queue",
            adds.clone(),
        );
        registry.register(
            "tmc_controller_retries",
            "Items re-added through the rate limiter",
            retries.clone(),
        );
        registry.register(
            "tmc_controller_reconciles",
            "Reconciles run",
            reconciles.clone(),
        );
        registry.register(
            "tmc_controller_errors",
            "Reconciles that failed",
            errors.clone(),
        );
        registry.register(
            "tmc_controller_panics",
            "Reconciles (or sync work items) that panicked; their keys were re-queued",
            panics.clone(),
        );
        registry.register(
            "tmc_controller_reconcile_duration_seconds",
            "Time per reconcile",
            duration.clone(),
        );
        registry.register(
            "tmc_controller_leader",
            "1 while this node's controllers run (it leads the shard)",
            leader.clone(),
        );
        Metrics {
            registry,
            depth,
            adds,
            retries,
            reconciles,
            errors,
            panics,
            duration,
            leader,
            synced,
            sync_duration,
        }
    }

    /// Counts one sync work item of member cluster `cluster`.
    pub fn record_sync(&self, cluster: &str, ok: bool, took: std::time::Duration) {
        let result = if ok { "ok" } else { "error" };
        self.synced
            .get_or_create(&SyncLabels {
                cluster: cluster.to_string(),
                result,
            })
            .inc();
        self.sync_duration
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Appends the metrics to `out` in Prometheus text format, without the
    /// closing `# EOF` (for an exposition of several registries).
    pub fn encode_into(&self, out: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::text::encode_registry(out, &self.registry)
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry)
            .expect("writing to a String cannot fail");
        s
    }

    /// Counts a panic of `controller`'s work.
    pub fn record_panic(&self, controller: &str) {
        self.panics.get_or_create(&Self::labels(controller)).inc();
    }

    fn labels(name: &str) -> Labels {
        Labels {
            controller: name.to_string(),
        }
    }

    fn sample_queue(&self, name: &str, queue: &WorkQueue<QueueKey>, last: &mut QueueStats) {
        let l = Self::labels(name);
        let s = queue.stats();
        self.depth.get_or_create(&l).set(queue.len() as i64);
        self.adds
            .get_or_create(&l)
            .inc_by(s.adds.saturating_sub(last.adds));
        self.retries
            .get_or_create(&l)
            .inc_by(s.retries.saturating_sub(last.retries));
        *last = s;
    }
}

/// One term's running controllers.
struct Term {
    queues: Vec<WorkQueue<QueueKey>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Term {
    fn start(
        shard: &Arc<dyn Shard>,
        controllers: &[Arc<dyn Controller>],
        metrics: &Arc<Metrics>,
    ) -> Term {
        let mut term = Term {
            queues: Vec::new(),
            tasks: Vec::new(),
        };
        for c in controllers {
            let queue: WorkQueue<QueueKey> = WorkQueue::new();
            for t in c.clone().start_term(shard.clone(), queue.clone()) {
                term.tasks.push(tokio::spawn(t));
            }
            let name = c.name();
            if let Some(gr) = c.resource() {
                let (sh, q) = (shard.clone(), queue.clone());
                term.tasks.push(tokio::spawn(async move {
                    if let Err(e) = feed::run(sh, gr, q).await {
                        tracing::error!(controller = name, error = %e, "the change feed stopped");
                    }
                }));
            }
            let (m, q) = (metrics.clone(), queue.clone());
            term.tasks.push(tokio::spawn(async move {
                let mut last = QueueStats::default();
                while !q.shutting_down() {
                    m.sample_queue(name, &q, &mut last);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }));
            for _ in 0..c.workers().max(1) {
                let (c, q, m) = (c.clone(), queue.clone(), metrics.clone());
                term.tasks.push(tokio::spawn(worker(c, q, m)));
            }
            term.queues.push(queue);
        }
        term
    }

    fn stop(self) {
        for q in &self.queues {
            q.shut_down();
        }
        for t in self.tasks {
            t.abort();
        }
    }
}

async fn worker(c: Arc<dyn Controller>, queue: WorkQueue<QueueKey>, metrics: Arc<Metrics>) {
    let labels = Metrics::labels(c.name());
    while let Some(key) = queue.get().await {
        let t0 = Instant::now();
        let result = match guard(c.reconcile(&key)).await {
            Ok(r) => r,
            Err(panic) => {
                metrics.record_panic(c.name());
                tracing::error!(controller = c.name(), key = %key, panic = %panic,
                    "reconcile panicked; the key is re-queued");
                Err(Error::Panicked(panic))
            }
        };
        metrics
            .duration
            .get_or_create(&labels)
            .observe(t0.elapsed().as_secs_f64());
        metrics.reconciles.get_or_create(&labels).inc();
        match result {
            Ok(action) => {
                queue.forget(&key);
                if let Some(d) = action.requeue_after() {
                    queue.add_after(key.clone(), d);
                }
            }
            Err(e) => {
                metrics.errors.get_or_create(&labels).inc();
                tracing::warn!(controller = c.name(), key = %key, error = %e, "reconcile failed; retrying");
                queue.add_rate_limited(key.clone());
            }
        }
        queue.done(&key);
    }
}

/// Runs `fut`, catching a panic in it: `Err` with the panic's message.
/// A worker loop that guards each item survives a panicking one.
pub async fn guard<T>(fut: impl std::future::Future<Output = T>) -> Result<T, String> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|p| {
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string())
        })
}

/// Runs `controllers` whenever this node leads the shard, until `stop`
/// resolves (see the module docs).
pub async fn run(
    shard: Arc<dyn Shard>,
    controllers: Vec<Arc<dyn Controller>>,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut leadership = shard.leadership();
    loop {
        // Follower: wait until raft says this node leads.
        while !*leadership.borrow_and_update() {
            tokio::select! {
                _ = &mut stop => return,
                changed = leadership.changed() => {
                    if changed.is_err() {
                        // The raft loop is gone: this node leads no more.
                        stop.await;
                        return;
                    }
                }
            }
        }
        // Local state must hold every committed write before the scan.
        let barrier = tokio::select! {
            _ = &mut stop => return,
            b = shard.barrier() => b,
        };
        if let Err(e) = barrier {
            tracing::debug!(error = %e, "barrier before starting controllers failed; retrying");
            tokio::time::sleep(BARRIER_RETRY).await;
            continue;
        }
        if leadership.has_changed().unwrap_or(true) {
            continue; // The role moved during the barrier: look again.
        }
        tracing::info!(
            controllers = controllers.len(),
            "leading the shard: starting controllers"
        );
        let term = Term::start(&shard, &controllers, &metrics);
        metrics.leader.set(1);
        let stopping = loop {
            tokio::select! {
                _ = &mut stop => break true,
                changed = leadership.changed() => {
                    if changed.is_err() || !*leadership.borrow_and_update() {
                        break false;
                    }
                }
            }
        };
        term.stop();
        metrics.leader.set(0);
        if stopping {
            return;
        }
        tracing::info!("lost leadership of the shard: controllers stopped");
    }
}

/// Pause before retrying a failed barrier.
const BARRIER_RETRY: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    fn placements() -> GroupResource {
        GroupResource::new("tmc.kcp.io", "workloadplacements").unwrap()
    }
    use crate::shard::{LocalShard, ShardError};
    use crate::store::{
        Expectation, Key, MemoryEngine, ObjectKey, Store, StoreOptions, Txn, TxnOp, Workspace,
    };
    use std::sync::Mutex;

    struct Recorder {
        seen: Mutex<Vec<String>>,
    }

    impl Controller for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn resource(&self) -> Option<GroupResource> {
            Some(placements())
        }
        fn reconcile<'a>(&'a self, key: &'a QueueKey) -> BoxFuture<'a, Result<Action, Error>> {
            Box::pin(async move {
                let mut seen = self.seen.lock().unwrap();
                seen.push(key.to_string());
                if key.name == "flaky" && seen.iter().filter(|k| k.ends_with("flaky")).count() < 3 {
                    return Err(Error::NotReady("not yet".into()));
                }
                Ok(Action::await_change())
            })
        }
    }

    /// A local shard whose leadership the test moves, as raft's event
    /// loop would.
    struct Led {
        inner: LocalShard<MemoryEngine>,
        leader: tokio::sync::watch::Sender<bool>,
    }

    impl Shard for Led {
        fn write(&self, txn: Txn) -> BoxFuture<'_, Result<crate::store::Committed, ShardError>> {
            self.inner.write(txn)
        }
        fn barrier(&self) -> BoxFuture<'_, Result<u64, ShardError>> {
            self.inner.barrier()
        }
        fn get(&self, key: &Key) -> Result<Option<crate::store::Record>, ShardError> {
            self.inner.get(key)
        }
        fn list(
            &self,
            prefix: &crate::store::Prefix,
            opts: &crate::store::ListOptions,
        ) -> Result<crate::store::ListPage, ShardError> {
            self.inner.list(prefix, opts)
        }
        fn changes_since(
            &self,
            after: u64,
            limit: usize,
        ) -> Result<Vec<crate::store::Change>, ShardError> {
            self.inner.changes_since(after, limit)
        }
        fn revision(&self) -> u64 {
            self.inner.revision()
        }
        fn compacted_revision(&self) -> u64 {
            self.inner.compacted_revision()
        }
        fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
            self.inner.subscribe()
        }
        fn workspace_ranges(
            &self,
            ws: &crate::store::Workspace,
        ) -> Result<Vec<crate::store::Prefix>, ShardError> {
            self.inner.workspace_ranges(ws)
        }
        fn leadership(&self) -> tokio::sync::watch::Receiver<bool> {
            self.leader.subscribe()
        }
    }

    /// Runs the tasks that are ready, without letting (paused) time move.
    async fn settle() {
        for _ in 0..200 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn terms_start_and_stop_on_the_pushed_leadership_signal_with_no_delay() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard = Arc::new(Led {
            inner: LocalShard::new(st),
            leader: tokio::sync::watch::Sender::new(false),
        });
        let rec = Arc::new(Recorder {
            seen: Mutex::new(vec![]),
        });
        let k = ObjectKey::cluster_scoped(placements(), Workspace::parse("root:a").unwrap(), "x")
            .unwrap();
        let put = Txn::new(vec![TxnOp::put_json(k, b"{}".to_vec(), Expectation::Any)]);
        shard.write(put).await.unwrap();
        let metrics = Arc::new(Metrics::new());
        let leader_gauge = |m: &Metrics| m.render().lines().any(|l| l == "tmc_controller_leader 1");
        tokio::spawn(run(
            shard.clone() as Arc<dyn Shard>,
            vec![rec.clone() as Arc<dyn Controller>],
            metrics.clone(),
            std::future::pending(),
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(
            rec.seen.lock().unwrap().is_empty(),
            "a follower runs nothing"
        );
        assert!(!leader_gauge(&metrics));
        let t0 = tokio::time::Instant::now();
        shard.leader.send_replace(true);
        settle().await;
        assert_eq!(*rec.seen.lock().unwrap(), ["root:a|x"], "the term's scan");
        assert!(leader_gauge(&metrics));
        shard.leader.send_replace(false);
        settle().await;
        assert!(!leader_gauge(&metrics), "the term stopped");
        assert_eq!(
            tokio::time::Instant::now(),
            t0,
            "both moves took effect with no time passing: pushed, not polled"
        );
        // Leading again: a new term scans again.
        shard.leader.send_replace(true);
        settle().await;
        assert_eq!(rec.seen.lock().unwrap().len(), 2);
        assert!(leader_gauge(&metrics));
    }

    /// Panics on its first two reconciles of `boom`.
    struct Boom {
        seen: Mutex<Vec<String>>,
    }

    impl Controller for Boom {
        fn name(&self) -> &'static str {
            "boom"
        }
        fn resource(&self) -> Option<GroupResource> {
            Some(placements())
        }
        fn workers(&self) -> usize {
            1 // a dead worker would be the whole controller
        }
        fn reconcile<'a>(&'a self, key: &'a QueueKey) -> BoxFuture<'a, Result<Action, Error>> {
            Box::pin(async move {
                let n = {
                    let mut seen = self.seen.lock().unwrap();
                    seen.push(key.name.clone());
                    seen.iter().filter(|k| **k == key.name).count()
                };
                if key.name == "boom" && n <= 2 {
                    panic!("deliberate panic number {n}");
                }
                Ok(Action::await_change())
            })
        }
    }

    #[tokio::test]
    async fn a_panicking_reconcile_is_requeued_counted_and_its_worker_goes_on() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st));
        let boom = Arc::new(Boom {
            seen: Mutex::new(vec![]),
        });
        for name in ["boom", "fine"] {
            let k =
                ObjectKey::cluster_scoped(placements(), Workspace::parse("root:a").unwrap(), name)
                    .unwrap();
            let put = Txn::new(vec![TxnOp::put_json(k, b"{}".to_vec(), Expectation::Any)]);
            shard.write(put).await.unwrap();
        }
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(run(
            shard.clone(),
            vec![boom.clone() as Arc<dyn Controller>],
            metrics.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = boom.seen.lock().unwrap().clone();
            let booms = seen.iter().filter(|k| *k == "boom").count();
            if booms >= 3 && seen.iter().any(|k| k == "fine") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the panicking key must come back and the one worker must go on: seen only {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let text = metrics.render();
        assert!(
            text.contains("tmc_controller_panics_total{controller=\"boom\"} 2"),
            "{text}"
        );
        tx.send(()).unwrap();
        run.await.unwrap();
    }

    #[tokio::test]
    async fn controllers_see_existing_and_new_objects_and_count_errors() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st));
        let rec = Arc::new(Recorder {
            seen: Mutex::new(vec![]),
        });
        let put = |name: &str| {
            let k =
                ObjectKey::cluster_scoped(placements(), Workspace::parse("root:a").unwrap(), name)
                    .unwrap();
            Txn::new(vec![TxnOp::put_json(k, b"{}".to_vec(), Expectation::Any)])
        };
        shard.write(put("before")).await.unwrap();
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(run(
            shard.clone(),
            vec![rec.clone() as Arc<dyn Controller>],
            metrics.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        shard.write(put("flaky")).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = rec.seen.lock().unwrap().clone();
            if seen.iter().filter(|k| k.ends_with("flaky")).count() >= 3
                && seen.contains(&"root:a|before".to_string())
            {
                break;
            }
            assert!(Instant::now() < deadline, "seen only {seen:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let text = metrics.render();
        assert!(
            text.contains("tmc_controller_errors_total{controller=\"recorder\"} 2"),
            "{text}"
        );
        // (Whole lines: the HELP text of the gauge starts with "1 while".)
        assert!(
            text.lines().any(|l| l == "tmc_controller_leader 1"),
            "{text}"
        );
        tx.send(()).unwrap();
        run.await.unwrap();
        assert!(metrics
            .render()
            .lines()
            .any(|l| l == "tmc_controller_leader 0"));
    }
}
