//! The pure hot paths on their own (criterion): key encoding and decoding,
//! the value envelope, JSON to stored bytes and back, label and field
//! selector matching, each patch type, the placement decision over 10,000
//! clusters, and watch fan-out to 1,000 watchers. They find a regression
//! in seconds where `tmc bench` needs minutes; whole-system figures stay
//! with `tmc bench` (docs/benchmarks.md has both).
//!
//! `cargo bench --bench hot_paths` runs them; `cargo bench --no-run` (the
//! test command builds them with `--all-targets`) keeps them compiling.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tmc::api::patch::{apply_patch, PatchType};
use tmc::api::schema::GroupKind;
use tmc::controllers::schedule::{ClusterInfo, Prepared};
use tmc::object::selector::field::FieldSelector;
use tmc::object::selector::LabelSelector;
use tmc::store::codec::{self, Encoding};
use tmc::store::{Key, ObjectKey};

/// The 1.5 KB Deployment of `tmc bench store`, its key and its JSON.
fn deployment() -> (ObjectKey, Vec<u8>, Value) {
    let (key, body) = tmc::bench::store::workspace_keys(7)
        .nth(2)
        .expect("the benchmark workspace has a Deployment");
    let v = serde_json::from_slice(&body).expect("JSON");
    (key, body, v)
}

fn keys(c: &mut Criterion) {
    let (key, _, _) = deployment();
    let key = Key::from(key);
    let bytes = key.encode();
    let mut g = c.benchmark_group("key");
    g.bench_function("encode", |b| b.iter(|| black_box(&key).encode()));
    g.bench_function("decode", |b| b.iter(|| Key::decode(black_box(&bytes))));
    g.finish();
}

fn envelope(c: &mut Criterion) {
    let (key, body, _) = deployment();
    let key = Key::from(key).encode();
    let sealed = codec::encode(Encoding::Json, 41, 42, &body);
    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| codec::encode(Encoding::Json, 41, 42, black_box(&body)))
    });
    g.bench_function("decode", |b| {
        b.iter(|| codec::decode("default", &key, black_box(&sealed)))
    });
    g.finish();
}

fn json_storage(c: &mut Criterion) {
    let (_, body, obj) = deployment();
    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("object_to_stored_bytes", |b| {
        b.iter(|| tmc::api::object::encode_for_storage(black_box(&obj)))
    });
    g.bench_function("stored_bytes_to_response", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&body)).expect("JSON");
            let v = tmc::api::object::for_response(v, 42, "root:bench-7");
            serde_json::to_vec(&v).expect("serializes")
        })
    });
    g.finish();
}

fn selectors(c: &mut Criterion) {
    let (_, _, obj) = deployment();
    let labels: BTreeMap<String, String> =
        serde_json::from_value(obj["metadata"]["labels"].clone()).expect("labels");
    let mut g = c.benchmark_group("selector");
    let label = LabelSelector::parse("app=web,tier in (frontend,backend),!canary").expect("valid");
    g.bench_function("label_parse", |b| {
        b.iter(|| LabelSelector::parse(black_box("app=web,tier in (frontend,backend),!canary")))
    });
    g.bench_function("label_match", |b| {
        b.iter(|| black_box(&label).matches(black_box(&labels)))
    });
    let field =
        FieldSelector::parse("metadata.name=web,metadata.namespace!=kube-system").expect("valid");
    g.bench_function("field_match", |b| {
        b.iter(|| black_box(&field).matches(black_box(&obj)))
    });
    g.finish();
}

fn patches(c: &mut Criterion) {
    let (_, _, live) = deployment();
    let gk = GroupKind::new("apps", "Deployment");
    let image = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "registry.example.com/team-web/web:1.27.4"}]}}}});
    let cases: [(&str, PatchType, Vec<u8>); 3] = [
        ("merge", PatchType::Merge, br#"{"spec":{"replicas":5}}"#.to_vec()),
        (
            "json",
            PatchType::Json,
            br#"[{"op":"replace","path":"/spec/replicas","value":5},{"op":"add","path":"/metadata/labels/x","value":"y"}]"#
                .to_vec(),
        ),
        ("strategic", PatchType::Strategic, image.to_string().into_bytes()),
    ];
    let mut g = c.benchmark_group("patch");
    for (name, ty, body) in cases {
        g.bench_function(name, |b| {
            b.iter(|| apply_patch(&gk, black_box(&live), ty, black_box(&body)).expect("applies"))
        });
    }
    let mut applied = live.clone();
    applied["spec"]["replicas"] = json!(4);
    if let Some(m) = applied["metadata"].as_object_mut() {
        m.retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "labels"));
    }
    g.bench_function("server_side_apply", |b| {
        b.iter(|| {
            tmc::api::apply::server_side_apply(
                &gk,
                Some(black_box(&live)),
                black_box(&applied),
                "bench",
                true,
                "2026-12-07T00:00:00Z",
            )
            .expect("applies")
        })
    });
    g.finish();
}

fn placement(c: &mut Criterion) {
    let clusters: Vec<ClusterInfo> = (0..10_000)
        .map(|i| ClusterInfo {
            name: format!("cluster-{i:05}"),
            labels: [
                ("region".to_string(), format!("r{}", i % 10)),
                ("pool".to_string(), "stable".to_string()),
            ]
            .into_iter()
            .collect(),
            unschedulable: false,
            taints: Vec::new(),
            ready: true,
            unhealthy_since: None,
        })
        .collect();
    let prepared = Prepared::new(clusters);
    let spec: tmc::types::WorkloadPlacementSpec =
        serde_json::from_value(tmc::types::example_placement_spec()).expect("the example spec");
    let mut g = c.benchmark_group("placement");
    // Warm the eligible-cluster index, as a running controller has it.
    prepared.schedule("warm", &spec, &[], 0);
    let mut i = 0u64;
    g.bench_function("decide_10000_clusters", |b| {
        b.iter(|| {
            i += 1;
            prepared.schedule(&format!("root:t{i}/web"), black_box(&spec), &[], 0)
        })
    });
    g.finish();
}

/// 1,000 watches of one workspace's ConfigMaps and one writer: a write
/// committed through a real store (memory engine) and the hub until every
/// watch has the change.
fn watch_fan_out(c: &mut Criterion) {
    use tmc::api::watch::WatchHub;
    use tmc::shard::{LocalShard, Shard};
    use tmc::store::{Expectation, MemoryEngine, Prefix, Store, StoreOptions, Txn, TxnOp};
    const WATCHES: usize = 1000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let store =
        Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).expect("a store"));
    let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(store));
    let gr = tmc::store::GroupResource::new("", "configmaps").expect("valid");
    let ws = tmc::store::Workspace::parse("root:fan-out").expect("valid");
    let key = ObjectKey::namespaced(gr.clone(), ws.clone(), "default", "cm").expect("valid");
    let (hub, mut subs) = rt.block_on(async {
        let hub = WatchHub::start(shard.clone());
        let subs: Vec<_> = (0..WATCHES)
            .map(|_| hub.subscribe(Prefix::workspace(&gr, &ws)))
            .collect();
        (hub, subs)
    });
    let mut round = 0u64;
    let mut g = c.benchmark_group("watch");
    g.throughput(Throughput::Elements(WATCHES as u64));
    g.bench_function("fan_out_1000_watches", |b| {
        b.iter(|| {
            round += 1;
            let body = format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm","namespace":"default"}},"data":{{"round":"{round}"}}}}"#
            );
            rt.block_on(async {
                let op = TxnOp::put_json(key.clone(), body.into_bytes(), Expectation::Any);
                shard.write(Txn::new(vec![op])).await.expect("write");
                for s in subs.iter_mut() {
                    s.rx.recv().await.expect("a change");
                }
            })
        })
    });
    g.finish();
    drop(subs);
    drop(hub);
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = keys, envelope, json_storage, selectors, patches, placement, watch_fan_out
}
criterion_main!(hot_paths);
