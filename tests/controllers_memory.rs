//! The controllers hold no per-workspace watch or cache: the placement
//! controller's memory stays flat while 100,000 workspaces, each with a
//! WorkloadPlacement, are added and decided (issue 7).
//!
//! The controller runs through `controllers::runtime::run` (feed, queue,
//! workers, catalog) over a `LocalShard` on a real RocksDB store in a
//! temporary directory. A counting global allocator measures the live
//! bytes of the Rust heap: controllers, queues, feeds, caches, the store's
//! Rust side. RocksDB's own C++ allocations (block cache, memtables) do
//! not go through it, so they do not blur the figure.
//!
//! Workspaces are added in batches of 5,000 (large store transactions);
//! after each batch the test waits until the controller has decided every
//! new placement (its `/tmc/placements` state exists and names a cluster)
//! and its queue is quiet, then samples live bytes. Growth from 10,000 to
//! 100,000 workspaces must stay under [`BOUND`]; a cache of even 100 bytes
//! per workspace would add 9 MB. Two controls show the test can fail: the
//! data written over the same span is many times the bound, and a
//! 100-bytes-per-workspace map built in the test moves the counter by more
//! than the bound.
//!
//! The garbage collector likewise (issue 18): 40,000 workspaces, each with
//! a kept owner and its dependant and a second owner deleted (Background
//! in half of them, Foreground in the other half) with two dependants;
//! the collector, reading the dependants index and its work items from
//! the store, deletes the dependants; its live bytes stay flat from 5,000
//! to 40,000 workspaces although every object and reference it handled
//! is still in the store or went through it. (The two tests take a lock:
//! the counter is process-wide.)

use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tmc::controllers::placement::{PlacementController, PlacementOptions, PlacementState};
use tmc::controllers::runtime::{self, Controller, Metrics};
use tmc::shard::{LocalShard, Shard};
use tmc::store::{
    Expectation, GroupResource, Key, ObjectKey, RocksEngine, RocksOptions, Store, StoreOptions,
    Txn, TxnOp, Workspace,
};

/// Live bytes allocated through the Rust allocator.
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting live bytes.
struct Counting;

// SAFETY: every call is forwarded unchanged to `System`; the counter is
// only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// One measuring test at a time: the counter is process-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Allowed growth of live bytes from 10,000 to 100,000 workspaces.
const BOUND: isize = 1 << 20;
const TOTAL: usize = 100_000;
const BATCH: usize = 5_000;
/// Workspaces per store transaction (two objects each).
const PER_TXN: usize = 2_500;
const SAMPLES: [usize; 4] = [10_000, 25_000, 50_000, 100_000];
const LOCATION: &str = "root:compute";

fn gr(group: &str, resource: &str) -> GroupResource {
    GroupResource::new(group, resource).unwrap()
}

fn put(key: ObjectKey, v: serde_json::Value, written: &mut usize) -> TxnOp {
    let bytes = serde_json::to_vec(&v).unwrap();
    *written += bytes.len();
    TxnOp::put_json(key, bytes, Expectation::Absent)
}

fn workspace(name: &str, written: &mut usize) -> TxnOp {
    let root = Workspace::parse("root").unwrap();
    put(
        ObjectKey::cluster_scoped(gr("tenancy.kcp.io", "workspaces"), root, name).unwrap(),
        json!({"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace",
               "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(),
                            "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 1},
               "spec": {}, "status": {"phase": "Ready"}}),
        written,
    )
}

fn tenant(i: usize) -> Workspace {
    Workspace::parse(&format!("root:t{i}")).unwrap()
}

/// The reconciles counted so far, from the controller's metrics.
fn reconciles(m: &Metrics) -> u64 {
    m.render()
        .lines()
        .find_map(|l| {
            l.strip_prefix("tmc_controller_reconciles_total{controller=\"workloadplacement\"} ")
        })
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_controller_memory_stays_flat_over_100000_workspaces() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = RocksEngine::open(&dir.path().join("db"), &RocksOptions::default()).unwrap();
    let st = Arc::new(
        Store::open(
            engine,
            StoreOptions {
                sync: false,
                changes_retention: 10_000,
            },
        )
        .unwrap(),
    );
    let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st.clone()));
    let mut written = 0usize;

    // The location workspace with three Ready clusters.
    let location = Workspace::parse(LOCATION).unwrap();
    let mut ops = vec![workspace("compute", &mut written)];
    for i in 0..3 {
        let name = format!("cluster-{i}");
        ops.push(put(
            ObjectKey::cluster_scoped(
                tmc::controllers::cluster::resource(),
                location.clone(),
                &name,
            )
            .unwrap(),
            json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "ClusterRegistration",
                   "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(),
                                "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 1,
                                "labels": {"zone": format!("z{i}")}},
                   "spec": {"apiEndpoint": format!("https://10.0.0.{i}:6443"),
                            "credentialsSecretRef": {"namespace": "tmc-system", "name": name}},
                   "status": {"conditions": [
                       {"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
            &mut written,
        ));
    }
    shard.write(Txn::new(ops)).await.unwrap();

    let ctrl: Arc<dyn Controller> = Arc::new(PlacementController::new(
        shard.clone(),
        PlacementOptions {
            catalog_ttl: Duration::from_secs(3600),
            workers: 2,
        },
    ));
    let metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(runtime::run(
        shard.clone(),
        vec![ctrl],
        metrics.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));

    let placements = tmc::controllers::placement::resource();
    let started = Instant::now();
    let mut decided = 0usize;
    let mut samples: Vec<(usize, isize, usize)> = Vec::new();
    while decided < TOTAL {
        let from = decided;
        for chunk in (from..from + BATCH).step_by(PER_TXN) {
            let mut ops = Vec::with_capacity(2 * PER_TXN);
            for i in chunk..chunk + PER_TXN {
                ops.push(workspace(&format!("t{i}"), &mut written));
                let strategy = if i % 2 == 0 {
                    json!({"type": "Single"})
                } else {
                    json!({"type": "Spread", "clusters": 2, "topologyKey": "zone"})
                };
                ops.push(put(
                    ObjectKey::cluster_scoped(placements.clone(), tenant(i), "web").unwrap(),
                    json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
                           "metadata": {"name": "web", "uid": uuid::Uuid::new_v4().to_string(),
                                        "creationTimestamp": "2026-01-01T00:00:00Z",
                                        "generation": 1,
                                        // As the API records it: the admin wrote the spec.
                                        "annotations": {"tmc.kcp.io/author":
                                            "{\"username\":\"admin\",\"groups\":[\"system:masters\"]}"}},
                           "spec": {"locationWorkspace": LOCATION, "strategy": strategy}}),
                    &mut written,
                ));
            }
            shard.write(Txn::new(ops)).await.unwrap();
        }
        // Wait until the controller decided every new placement.
        let deadline = Instant::now() + Duration::from_secs(120);
        while decided < from + BATCH {
            let key = Key::placement(tenant(decided), "web").unwrap();
            match shard.get(&key).unwrap() {
                Some(rec) => {
                    let s = PlacementState::decode(&rec.value).expect("a placement state");
                    assert!(!s.clusters.is_empty(), "t{decided} is bound: {s:?}");
                    decided += 1;
                }
                None => {
                    assert!(
                        Instant::now() < deadline,
                        "placement of t{decided} not decided within 120 s"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        // ...and its queue is quiet (its own status writes come back
        // through the feed once more).
        let mut last = reconciles(&metrics);
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = reconciles(&metrics);
            if now == last {
                break;
            }
            last = now;
        }
        if SAMPLES.contains(&decided) {
            let bytes = live();
            eprintln!(
                "{decided} workspaces decided after {:.1} s: {bytes} live bytes, {written} bytes written",
                started.elapsed().as_secs_f64()
            );
            samples.push((decided, bytes, written));
        }
    }
    stop_tx.send(()).unwrap();
    run.await.unwrap();

    let (_, at_10k, written_10k) = samples[0];
    let (_, at_100k, written_100k) = *samples.last().unwrap();
    let growth = at_100k - at_10k;
    let data = (written_100k - written_10k) as isize;
    eprintln!("growth 10k -> 100k: {growth} bytes (bound {BOUND}); data written meanwhile: {data} bytes; samples {samples:?}");

    // Control 1: the data the controller read, decided and wrote over the
    // span is many times the bound: keeping any of it per workspace fails.
    assert!(
        data > 20 * BOUND,
        "data written {data} is not large next to the bound"
    );
    // Control 2: the counter sees a per-workspace cache of 100 bytes.
    let before = live();
    let cache: HashMap<usize, [u8; 84]> = (0..90_000).map(|i| (i, [0u8; 84])).collect();
    let cache_bytes = live() - before;
    drop(cache);
    assert!(
        cache_bytes > BOUND,
        "a 100-byte-per-workspace cache counts {cache_bytes} bytes, under the bound"
    );

    assert!(
        growth < BOUND,
        "controller memory grew by {growth} bytes from 10,000 to 100,000 workspaces \
         (bound {BOUND}; samples {samples:?})"
    );
}

const GC_TOTAL: usize = 40_000;
const GC_BATCH: usize = 5_000;
const GC_PER_TXN: usize = 1_000;
const GC_SAMPLES: [usize; 4] = [5_000, 10_000, 20_000, 40_000];

fn configmap(ws: &Workspace, name: &str) -> ObjectKey {
    ObjectKey::namespaced(gr("", "configmaps"), ws.clone(), "default", name).unwrap()
}

/// A ConfigMap named `name` with a fresh uid owned by `owners` (name, uid).
fn cm_obj(name: &str, owners: &[(&str, &str)]) -> (String, serde_json::Value) {
    let uid = uuid::Uuid::new_v4().to_string();
    let refs: Vec<serde_json::Value> = owners
        .iter()
        .map(|(n, u)| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": n, "uid": u,
                              "blockOwnerDeletion": true})
        })
        .collect();
    let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": name, "namespace": "default", "uid": uid,
                                    "creationTimestamp": "2026-01-01T00:00:00Z"},
                       "data": {"payload": "x".repeat(200)}});
    if !refs.is_empty() {
        v["metadata"]["ownerReferences"] = json!(refs);
    }
    (uid, v)
}

/// The create of `obj` at `key` with its index operations, as the API
/// writes it.
fn create(key: ObjectKey, obj: &serde_json::Value, written: &mut usize) -> Vec<TxnOp> {
    let mut ops = tmc::owners::index_ops(&key, None, Some(obj));
    ops.push(put(key, obj.clone(), written));
    ops
}

fn gc_reconciles_quiet(shard: &dyn Shard) -> bool {
    let opts = tmc::store::ListOptions {
        limit: 1,
        ..Default::default()
    };
    shard
        .list(&tmc::store::Prefix::gc_work(), &opts)
        .unwrap()
        .items
        .is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collector_memory_stays_flat_over_40000_workspaces() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let engine = RocksEngine::open(&dir.path().join("db"), &RocksOptions::default()).unwrap();
    let st = Arc::new(
        Store::open(
            engine,
            StoreOptions {
                sync: false,
                changes_retention: 10_000,
            },
        )
        .unwrap(),
    );
    let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st.clone()));
    let gc: Arc<dyn Controller> = Arc::new(tmc::controllers::gc::GarbageCollector::new(vec![
        tmc::controllers::gc::Kind {
            group: String::new(),
            kind: "ConfigMap".into(),
            resource: gr("", "configmaps"),
            namespaced: true,
        },
    ]));
    let metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(runtime::run(shard.clone(), vec![gc], metrics, async move {
        let _ = stop_rx.await;
    }));

    let started = Instant::now();
    let mut written = 0usize;
    let mut done = 0usize;
    let mut samples: Vec<(usize, isize, usize)> = Vec::new();
    while done < GC_TOTAL {
        let from = done;
        for chunk in (from..from + GC_BATCH).step_by(GC_PER_TXN) {
            // Owners and dependants.
            let mut ops = Vec::new();
            for i in chunk..chunk + GC_PER_TXN {
                let w = tenant(i);
                let (keep_uid, keep) = cm_obj("keep", &[]);
                let (_, kept) = cm_obj("kept", &[("keep", &keep_uid)]);
                let (gone_uid, gone) = cm_obj("gone", &[]);
                let (_, d1) = cm_obj("d1", &[("gone", &gone_uid)]);
                let (_, d2) = cm_obj("d2", &[("gone", &gone_uid), ("elsewhere", "no-such-uid")]);
                for (name, obj) in [
                    ("keep", keep),
                    ("kept", kept),
                    ("gone", gone),
                    ("d1", d1),
                    ("d2", d2),
                ] {
                    ops.extend(create(configmap(&w, name), &obj, &mut written));
                }
            }
            shard.write(Txn::new(ops)).await.unwrap();
            // The owners deleted, as a DELETE does it.
            let mut ops = Vec::new();
            for i in chunk..chunk + GC_PER_TXN {
                let key = configmap(&tenant(i), "gone");
                let rec = shard.get(&Key::from(key.clone())).unwrap().unwrap();
                let obj: serde_json::Value = serde_json::from_slice(&rec.value).unwrap();
                let policy = if i % 2 == 0 {
                    tmc::owners::Policy::Background
                } else {
                    tmc::owners::Policy::Foreground
                };
                ops.extend(
                    tmc::owners::deletion(&key, &rec, &obj, Some(policy))
                        .unwrap()
                        .ops,
                );
            }
            shard.write(Txn::new(ops)).await.unwrap();
        }
        // Wait until the collector has no work left.
        let deadline = Instant::now() + Duration::from_secs(300);
        while !gc_reconciles_quiet(&*shard) {
            assert!(
                Instant::now() < deadline,
                "the collector did not finish within 300 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for i in from..from + GC_BATCH {
            let w = tenant(i);
            for name in ["gone", "d1", "d2"] {
                assert!(
                    shard
                        .get(&Key::from(configmap(&w, name)))
                        .unwrap()
                        .is_none(),
                    "{w}: {name} was not collected"
                );
            }
            for name in ["keep", "kept"] {
                assert!(
                    shard
                        .get(&Key::from(configmap(&w, name)))
                        .unwrap()
                        .is_some(),
                    "{w}: {name} was collected"
                );
            }
        }
        done += GC_BATCH;
        if GC_SAMPLES.contains(&done) {
            // Let the last pass end.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let bytes = live();
            eprintln!(
                "{done} workspaces collected after {:.1} s: {bytes} live bytes, {written} bytes written",
                started.elapsed().as_secs_f64()
            );
            samples.push((done, bytes, written));
        }
    }
    stop_tx.send(()).unwrap();
    run.await.unwrap();

    let (_, first, written_first) = samples[0];
    let (_, last, written_last) = *samples.last().unwrap();
    let growth = last - first;
    let data = (written_last - written_first) as isize;
    eprintln!("growth 5k -> 40k: {growth} bytes (bound {BOUND}); data written meanwhile: {data} bytes; samples {samples:?}");
    // Control: the objects the collector went through over the span are
    // many times the bound.
    assert!(
        data > 20 * BOUND,
        "data written {data} is not large next to the bound"
    );
    assert!(
        growth < BOUND,
        "garbage collector memory grew by {growth} bytes from 5,000 to 40,000 workspaces \
         (bound {BOUND}; samples {samples:?})"
    );
}
