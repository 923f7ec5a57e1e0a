//! `tmc bench placement`: the WorkloadPlacement controller's decisions at
//! scale, through the controller's own code over a real RocksDB store.
//!
//! Loads `clusters` Ready ClusterRegistrations into one location workspace
//! (`root:compute`, labels `tier` prod/dev and `zone` z0..z9) and
//! `placements` WorkloadPlacements, ten per tenant workspace, half Single
//! and half Spread-3 over `zone`, all selecting `tier=prod`, each already
//! carrying the controller's finalizer (as after its first pass), so that
//! every reconcile timed is a decision. Then the
//! controller's start-up path runs as on a new leader: the feed's scan
//! queues every placement key into a [`WorkQueue`], and `workers` workers
//! take keys and run [`PlacementController::reconcile_key`]: read the
//! placement and its previous decision from the store, the location's
//! clusters from the shared catalog, decide, and write decision and
//! status in one compare-and-swap transaction. Each reconcile is timed.
//!
//! The store is a [`LocalShard`] (the store without raft) with RocksDB,
//! unsynced by default (`--sync` to fsync every write), so the figures are
//! the controller's and the store's, not the disk's or raft's.

use crate::controllers::feed;
use crate::controllers::keys::QueueKey;
use crate::controllers::placement::{PlacementController, PlacementOptions};
use crate::controllers::queue::WorkQueue;
use crate::shard::{LocalShard, Shard};
use crate::store::{
    self, Expectation, GroupResource, ObjectKey, RocksEngine, RocksOptions, Store, StoreOptions,
    Txn, TxnOp, Workspace,
};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// WorkloadPlacement decisions through the placement controller over
/// a RocksDB store: decisions/s, latency per decision, peak RSS.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// ClusterRegistrations in the location workspace.
    #[arg(long, default_value_t = 10_000)]
    pub clusters: usize,
    /// WorkloadPlacements (ten per tenant workspace).
    #[arg(long, default_value_t = 1_000_000)]
    pub placements: usize,
    /// Concurrent workers (default: one per core of a 2-core machine; more
    /// only queue for the CPU and inflate the latency per decision).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// fsync every write.
    #[arg(long)]
    pub sync: bool,
    /// Parent directory of the store (default: the system's temporary directory).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Print only the JSON report.
    #[arg(long)]
    pub json: bool,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct PlacementReport {
    /// Clusters in the location.
    pub clusters: usize,
    /// Placements decided.
    pub placements: usize,
    /// Workers.
    pub workers: usize,
    /// Whether writes were fsynced.
    pub sync: bool,
    /// Seconds to load clusters and placements.
    pub load_secs: f64,
    /// Seconds from the start of the scan to the last decision.
    pub decide_secs: f64,
    /// Decisions per second.
    pub decisions_per_sec: f64,
    /// Reconcile latency percentiles, microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest.
    pub max_us: u64,
    /// Placements bound to at least one cluster (read back from the store).
    pub bound: usize,
    /// Reconciles that returned an error.
    pub errors: u64,
    /// The decision alone (`Prepared::schedule` on the cached catalog, no
    /// store access), over `decision_samples` placements: p50, µs.
    pub decision_only_p50_us: u64,
    /// p99 of the decision alone, µs.
    pub decision_only_p99_us: u64,
    /// Decisions timed alone.
    pub decision_samples: usize,
    /// Peak resident set size of the process, MiB.
    pub peak_rss_mib: f64,
}

const LOCATION: &str = "root:compute";
const PER_WORKSPACE: usize = 10;

fn gr(group: &str, resource: &str) -> GroupResource {
    GroupResource::new(group, resource).expect("valid")
}

fn put(key: ObjectKey, v: serde_json::Value) -> TxnOp {
    TxnOp::put_json(key, serde_json::to_vec(&v).expect("json"), Expectation::Any)
}

fn load(st: &Store<RocksEngine>, args: &Args, progress: &dyn Fn(&str)) -> store::Result<()> {
    let root = Workspace::parse("root").expect("root");
    let location = Workspace::parse(LOCATION).expect("path");
    let now = crate::object::now();
    st.commit(Txn::new(vec![put(
        ObjectKey::cluster_scoped(gr("tenancy.kcp.io", "workspaces"), root.clone(), "compute")
            .expect("key"),
        json!({"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
               "metadata": {"name": "compute", "uid": uuid::Uuid::new_v4().to_string(),
                            "creationTimestamp": now, "generation": 1},
               "spec": {}, "status": {"phase": "Ready"}}),
    )]))?;
    let regs = crate::controllers::cluster::resource();
    for chunk in (0..args.clusters).collect::<Vec<_>>().chunks(1000) {
        let ops = chunk
            .iter()
            .map(|i| {
                let name = format!("cluster-{i:05}");
                put(
                    ObjectKey::cluster_scoped(regs.clone(), location.clone(), &name).expect("key"),
                    json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "ClusterRegistration",
                       "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(),
                                    "creationTimestamp": now, "generation": 1,
                                    "labels": {"tier": if i % 2 == 0 { "prod" } else { "dev" },
                                               "zone": format!("z{}", i % 10)}},
                       "spec": {"apiEndpoint": format!("https://10.0.{}.{}:6443", i / 250, i % 250),
                                "credentialsSecretRef": {"namespace": "tmc-system", "name": name}},
                       "status": {"conditions": [
                           {"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                            "lastTransitionTime": now}],
                           "kubernetesVersion": "v1.34.4"}}),
                )
            })
            .collect();
        st.commit(Txn::new(ops))?;
    }
    progress(&format!("{} clusters loaded", args.clusters));
    let wps = crate::controllers::placement::resource();
    let mut ops = Vec::with_capacity(1000);
    let author = crate::authz::author::author_value(&crate::authz::User::new(
        "admin",
        "",
        &[crate::authz::MASTERS],
    ));
    for i in 0..args.placements {
        let ws = Workspace::parse(&format!("root:t{}", i / PER_WORKSPACE)).expect("path");
        let name = format!("p{}", i % PER_WORKSPACE);
        let strategy = if i % 2 == 0 {
            json!({"type": "Single"})
        } else {
            json!({"type": "Spread", "clusters": 3, "topologyKey": "zone"})
        };
        ops.push(put(
            ObjectKey::cluster_scoped(wps.clone(), ws, &name).expect("key"),
            json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
                   "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(),
                                "creationTimestamp": now, "generation": 1,
                                "finalizers": [crate::controllers::placement::FINALIZER],
                                // As the API records it: the admin wrote the spec.
                                "annotations": {crate::authz::author::AUTHOR_ANNOTATION: &author}},
                   "spec": {"locationWorkspace": LOCATION,
                            "clusterSelector": {"matchLabels": {"tier": "prod"}},
                            "strategy": strategy}}),
        ));
        if ops.len() == 1000 {
            st.commit(Txn::new(std::mem::take(&mut ops)))?;
        }
        if i % 100_000 == 99_999 {
            progress(&format!("{} placements loaded", i + 1));
        }
    }
    if !ops.is_empty() {
        st.commit(Txn::new(ops))?;
    }
    Ok(())
}

/// Runs the benchmark.
pub async fn run(
    args: &Args,
    progress: &dyn Fn(&str),
) -> Result<PlacementReport, Box<dyn std::error::Error + Send + Sync>> {
    let mut b = tempfile::Builder::new();
    b.prefix("tmc-bench-placement");
    let tmp = match &args.dir {
        Some(d) => b.tempdir_in(d)?,
        None => b.tempdir()?,
    };
    let engine = RocksEngine::open(&tmp.path().join("db"), &RocksOptions::default())?;
    let st = Arc::new(Store::open(
        engine,
        StoreOptions {
            sync: args.sync,
            changes_retention: 10_000,
        },
    )?);
    let t0 = Instant::now();
    load(&st, args, progress)?;
    let load_secs = t0.elapsed().as_secs_f64();
    let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st.clone()));
    let ctrl = Arc::new(PlacementController::new(
        shard.clone(),
        PlacementOptions {
            catalog_ttl: Duration::from_secs(3600),
            workers: args.workers,
        },
    ));
    let queue: WorkQueue<QueueKey> = WorkQueue::new();
    let t1 = Instant::now();
    let gr = crate::controllers::placement::resource();
    feed::scan(&*shard, &gr, &mut |k| queue.add(feed::queue_key(&k)))?;
    progress(&format!("{} keys queued; deciding", queue.len()));
    queue.shut_down(); // drain what is queued, then stop
    let mut tasks = Vec::new();
    for _ in 0..args.workers.max(1) {
        let (q, c) = (queue.clone(), ctrl.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
            let mut errors = 0u64;
            while let Some(key) = q.get().await {
                let t = Instant::now();
                let r = c.reconcile_key(&key).await;
                h.record(t.elapsed().as_micros() as u64).expect("in range");
                if r.is_err() {
                    errors += 1;
                }
                q.done(&key);
            }
            (h, errors)
        }));
    }
    let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await?;
        hist.add(h)?;
        errors += e;
    }
    let decide_secs = t1.elapsed().as_secs_f64();
    // Read the decisions back: every placement has one.
    let mut bound = 0;
    let mut opts = store::ListOptions {
        limit: 10_000,
        ..Default::default()
    };
    for t in 0..args.placements.div_ceil(PER_WORKSPACE) {
        let ws = Workspace::parse(&format!("root:t{t}"))?;
        let page = shard.list(&store::Prefix::placements(&ws), &opts)?;
        bound += page
            .items
            .iter()
            .filter_map(|r| crate::controllers::placement::PlacementState::decode(&r.value))
            .filter(|s| !s.clusters.is_empty())
            .count();
        opts.continue_token = None;
    }
    // The decision alone, on one thread, to tell it from the store and
    // the CPU contention of the workers.
    let catalog = crate::controllers::placement::Catalog::new(Duration::from_secs(3600));
    let prepared = catalog.get(&*shard, &Workspace::parse(LOCATION)?)?;
    let samples = args.placements.min(100_000);
    let mut alone = hdrhistogram::Histogram::<u64>::new(3)?;
    let specs: Vec<crate::types::WorkloadPlacementSpec> = [
        json!({"type": "Single"}),
        json!({"type": "Spread", "clusters": 3, "topologyKey": "zone"}),
    ]
    .into_iter()
    .map(|strategy| {
        serde_json::from_value(json!({"locationWorkspace": LOCATION,
            "clusterSelector": {"matchLabels": {"tier": "prod"}}, "strategy": strategy}))
    })
    .collect::<Result<_, _>>()?;
    let now = crate::controllers::objects::unix_now();
    for i in 0..samples {
        let id = format!("root:t{}|p{}", i / PER_WORKSPACE, i % PER_WORKSPACE);
        let t = Instant::now();
        let d = prepared.schedule(&id, &specs[i % 2], &[], now);
        alone.record(t.elapsed().as_nanos() as u64 / 1000)?;
        std::hint::black_box(d);
    }
    Ok(PlacementReport {
        decision_only_p50_us: alone.value_at_quantile(0.5),
        decision_only_p99_us: alone.value_at_quantile(0.99),
        decision_samples: samples,
        clusters: args.clusters,
        placements: args.placements,
        workers: args.workers,
        sync: args.sync,
        load_secs,
        decide_secs,
        decisions_per_sec: hist.len() as f64 / decide_secs,
        p50_us: hist.value_at_quantile(0.5),
        p90_us: hist.value_at_quantile(0.9),
        p99_us: hist.value_at_quantile(0.99),
        p999_us: hist.value_at_quantile(0.999),
        max_us: hist.max(),
        bound,
        errors,
        peak_rss_mib: crate::util::peak_rss_bytes().unwrap_or(0) as f64 / (1 << 20) as f64,
    })
}
