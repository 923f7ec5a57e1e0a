//! `tmc bench sync`: how fast placed workloads reach member clusters and
//! how fast their status comes back.
//!
//! Set-up: `--members` member clusters from `scripts/testenv.sh start`
//! (kube-apiserver, kube-controller-manager, etcd; or `--member-kubeconfig`
//! for clusters that already run), a `tmc dev` node (one raft replica, fsync
//! on, every controller), the members registered with `tmc cluster
//! register`, and a WorkloadPlacement `All` in `root`.
//!
//! 0. **Anchor**, in the same run: the same load straight into member 0
//!    (Deployments labelled `bench=direct` in a namespace of their own), from
//!    the create's response to member 0's own watch: what one of the
//!    member clusters costs by itself on this machine at this moment.
//! 1. **Down**: `--clients` tasks create `--workloads` Deployments in
//!    `root`/`default` as fast as tmc takes them. A watch per member on
//!    tmc's owner label notes when each copy first appears. Latency of a
//!    copy = its arrival at the member's watch minus the arrival of the
//!    create's response at the writer (one monotonic clock); throughput =
//!    copies / (last arrival - first create).
//! 2. **Up**: for each Deployment, a condition `BenchMarker` with a fresh
//!    message is patched into the status of its copy on member 0 (the
//!    status subresource; kube-controller-manager keeps conditions of
//!    types it does not own). Latency = its arrival in the workspace
//!    object's status, seen by a watch on tmc, minus the patch's response.
//!
//! Everything is removed at the end (the `tmc dev` data dir and member
//! clusters it started are temporary).

use super::procs::{loadavg, BoxError};
use crate::testcluster::members::TestEnv;
use crate::testcluster::{free_port, log_tail, ChildGuard};
use futures::StreamExt;
use hdrhistogram::Histogram;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Per Deployment: the marker patched downstream, and when it came back.
type Marks = HashMap<String, (String, Option<Instant>)>;

/// Sync: workloads placed onto real member clusters (started with
/// scripts/testenv.sh), workspace write → downstream copy and downstream
/// status → workspace status latencies.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Member clusters to start with scripts/testenv.sh.
    #[arg(long, default_value_t = 2)]
    pub members: usize,
    /// Use these member clusters instead of starting any (repeat the flag).
    #[arg(long)]
    pub member_kubeconfig: Vec<PathBuf>,
    /// The test-environment script.
    #[arg(long, default_value = "scripts/testenv.sh")]
    pub testenv: PathBuf,
    /// Deployments to create.
    #[arg(long, default_value_t = 200)]
    pub workloads: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Downstream writes per second per cluster (tmc's --sync-qps).
    #[arg(long, default_value_t = 200.0)]
    pub sync_qps: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Latency figures in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

fn latency(h: &Histogram<u64>) -> Latency {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Latency {
        count: h.len(),
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: h.max() as f64 / 1000.0,
    }
}

/// The result.
#[derive(Debug, Serialize)]
pub struct SyncReport {
    /// Member clusters.
    pub members: usize,
    /// Deployments created.
    pub workloads: usize,
    /// Concurrent writers.
    pub clients: usize,
    /// Copies that appeared downstream per second.
    pub applied_per_s: f64,
    /// Workspace write → copy on a member.
    pub down: Latency,
    /// The anchor: Deployments created straight on member 0 per second
    /// (create → its own watch), same clients, same run.
    pub direct_per_s: f64,
    /// The anchor's latency: create on member 0 → its watch.
    pub direct: Latency,
    /// Downstream status change → workspace status.
    pub up: Latency,
    /// /proc/loadavg before and after.
    pub loadavg: [String; 2],
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn deployments() -> ApiResource {
    ar("apps", "v1", "Deployment", "deployments")
}

async fn client(kubeconfig: &Path) -> Result<kube::Client, BoxError> {
    Ok(crate::testcluster::members::kube_client(kubeconfig).await?)
}

/// The member clusters of the run: started by the test environment's
/// script (stopped when the returned environment drops), or the given ones;
/// their kubeconfigs.
fn start_members(args: &Args) -> Result<(Option<TestEnv>, Vec<PathBuf>), BoxError> {
    if !args.member_kubeconfig.is_empty() {
        return Ok((None, args.member_kubeconfig.clone()));
    }
    let env = TestEnv::try_start_by(&args.testenv, args.members, &[])?;
    let kubeconfigs = env.kubeconfigs();
    Ok((Some(env), kubeconfigs))
}

/// Runs the benchmark.
pub async fn run(args: &Args) -> Result<SyncReport, BoxError> {
    let load_before = loadavg();
    let (_members, kubeconfigs) = start_members(args)?;
    let tmc_bin = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let log = dir.path().join("tmc-dev.log");
    let _tmc = ChildGuard::spawn(
        "tmc dev",
        Command::new(&tmc_bin)
            .arg("dev")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // The member clusters run on 127.0.0.1.
            .arg("--allow-private-member-endpoints")
            .args(["--probe-interval", "2s", "--sync-qps"])
            .arg(args.sync_qps.to_string())
            .args(["--sync-burst", &(args.sync_qps as u32).max(1).to_string()]),
        &log,
    )?;
    let admin = dir.path().join("data").join("admin.kubeconfig");
    let deadline = Instant::now() + Duration::from_secs(60);
    let tmc = loop {
        if admin.exists() {
            if let Ok(c) = client(&admin).await {
                if c.apiserver_version().await.is_ok() {
                    break c;
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!("tmc dev did not come up:\n{}", log_tail(&log, 30)).into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut members = Vec::new();
    for (i, kc) in kubeconfigs.iter().enumerate() {
        let out = Command::new(&tmc_bin)
            .args([
                "cluster",
                "register",
                &format!("member-{i}"),
                "--workspace",
                "root",
            ])
            .arg("--kubeconfig")
            .arg(kc)
            .arg("--admin-kubeconfig")
            .arg(&admin)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "tmc cluster register: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        members.push(client(kc).await?);
    }
    let placements: Api<DynamicObject> = Api::all_with(
        tmc.clone(),
        &ar(
            "tmc.kcp.io",
            "v1alpha1",
            "WorkloadPlacement",
            "workloadplacements",
        ),
    );
    let wp: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
        "metadata": {"name": "bench"},
        "spec": {"workloadSelector": {"matchLabels": {"bench": "sync"}},
                 "strategy": {"type": "All"}}
    }))?;
    placements.create(&PostParams::default(), &wp).await?;
    // Wait until the placement has chosen every member.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = serde_json::to_value(placements.get("bench").await?)?;
        let n = p["status"]["selectedClusters"]
            .as_array()
            .map_or(0, Vec::len);
        if n == members.len() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the placement chose {n} clusters: {}", p["status"]).into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The anchor: the same load straight into member 0 (its own API
    // server, controller manager and watch), in this run.
    let direct_ns = "tmc-bench-direct";
    let nss: Api<DynamicObject> =
        Api::all_with(members[0].clone(), &ar("", "v1", "Namespace", "namespaces"));
    let ns_obj: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": direct_ns}}),
    )?;
    nss.patch(
        direct_ns,
        &PatchParams::apply("tmc-bench").force(),
        &Patch::Apply(&ns_obj),
    )
    .await?;
    let (direct, direct_per_s) = create_and_wait(
        Api::namespaced_with(members[0].clone(), direct_ns, &deployments()),
        vec![Api::all_with(members[0].clone(), &deployments())],
        "bench=direct",
        args,
    )
    .await?;
    let _ = nss.delete(direct_ns, &Default::default()).await;

    // Down through tmc.
    let (down, applied_per_s) = create_and_wait(
        Api::namespaced_with(tmc.clone(), "default", &deployments()),
        members
            .iter()
            .map(|m| Api::all_with(m.clone(), &deployments()))
            .collect(),
        "tmc.kcp.io/owner,bench=sync",
        args,
    )
    .await
    .map_err(|e| format!("{e}\n{}", log_tail(&log, 30)))?;
    // Up.
    let marks: Arc<Mutex<Marks>> = Arc::default();
    let seen_up: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let up_watch = {
        let (marks, seen_up) = (marks.clone(), seen_up.clone());
        let api: Api<DynamicObject> = Api::namespaced_with(tmc.clone(), "default", &deployments());
        tokio::spawn(async move {
            let mut s = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = s.next().await {
                let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = ev else {
                    continue;
                };
                let v = serde_json::to_value(&o).expect("serializes");
                let name = o.metadata.name.clone().unwrap_or_default();
                let msg = v["status"]["conditions"].as_array().and_then(|cs| {
                    cs.iter()
                        .find(|c| c["type"] == "BenchMarker")
                        .and_then(|c| c["message"].as_str().map(str::to_string))
                });
                let mut m = marks.lock().expect("lock");
                if let (Some(msg), Some((want, None))) = (msg, m.get(&name).cloned()) {
                    if msg == want {
                        m.insert(name.clone(), (want, Some(Instant::now())));
                        seen_up.lock().expect("lock").push((name, Instant::now()));
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ns = crate::controllers::sync::mapping::downstream_namespace(
        &crate::store::Workspace::parse("root").expect("valid"),
        "default",
    );
    let member0: Api<DynamicObject> = Api::namespaced_with(members[0].clone(), &ns, &deployments());
    let mut patched: HashMap<String, Instant> = HashMap::new();
    for i in 0..args.workloads {
        let name = format!("w-{i}");
        let cur = serde_json::to_value(member0.get_status(&name).await?)?;
        let mut conds = cur["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conds.retain(|c| c["type"] != "BenchMarker");
        let mark = format!("mark-{i}-{}", uuid::Uuid::new_v4());
        conds.push(
            json!({"type": "BenchMarker", "status": "True", "reason": "Bench",
            "message": mark, "lastUpdateTime": crate::object::now(),
            "lastTransitionTime": crate::object::now()}),
        );
        marks
            .lock()
            .expect("lock")
            .insert(name.clone(), (mark, None));
        member0
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"conditions": conds}})),
            )
            .await?;
        patched.insert(name, Instant::now());
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen_up.lock().expect("lock").len() < args.workloads {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} status changes came back",
                seen_up.lock().expect("lock").len(),
                args.workloads
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    up_watch.abort();
    let mut up = Histogram::<u64>::new(3)?;
    for (name, at) in seen_up.lock().expect("lock").iter() {
        up.record(at.saturating_duration_since(patched[name]).as_micros() as u64)?;
    }
    Ok(SyncReport {
        members: members.len(),
        workloads: args.workloads,
        clients: args.clients,
        applied_per_s,
        down: latency(&down),
        direct_per_s,
        direct: latency(&direct),
        up: latency(&up),
        loadavg: [load_before, loadavg()],
    })
}

/// `args.clients` writers create `args.workloads` Deployments through
/// `create` (labelled `bench` with the value after `bench=` in
/// `selector`); the watches on `watch` (label `selector`) note each
/// object's first arrival. Returns the latency from a create's response to
/// each arrival, and arrivals per second from the first create.
async fn create_and_wait(
    create: Api<DynamicObject>,
    watch: Vec<Api<DynamicObject>>,
    selector: &str,
    args: &Args,
) -> Result<(Histogram<u64>, f64), BoxError> {
    let label = selector
        .rsplit("bench=")
        .next()
        .unwrap_or("sync")
        .to_string();
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let arrived: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let mut watches = Vec::new();
    let want = args.workloads * watch.len();
    for api in watch {
        let (arrived, selector) = (arrived.clone(), selector.to_string());
        watches.push(tokio::spawn(async move {
            let cfg = watcher::Config::default().labels(&selector);
            let mut seen = std::collections::HashSet::new();
            let mut s = watcher(api, cfg).boxed();
            while let Some(ev) = s.next().await {
                if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = ev {
                    let name = o.metadata.name.clone().unwrap_or_default();
                    if seen.insert(name.clone()) {
                        arrived.lock().expect("lock").push((name, Instant::now()));
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // watches listed
    let t0 = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..args.clients.max(1) {
        let (api, next, created, total, label) = (
            create.clone(),
            next.clone(),
            created.clone(),
            args.workloads,
            label.clone(),
        );
        writers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    return Ok::<(), kube::Error>(());
                }
                let name = format!("w-{i}");
                let d: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "labels": {"bench": label}},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                             "template": {"metadata": {"labels": {"app": name}},
                                          "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}
                }))
                .expect("valid");
                api.create(&PostParams::default(), &d).await?;
                created.lock().expect("lock").insert(name, Instant::now());
            }
        }));
    }
    for w in writers {
        w.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while arrived.lock().expect("lock").len() < want {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {want} objects arrived",
                arrived.lock().expect("lock").len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in watches {
        w.abort();
    }
    let mut h = Histogram::<u64>::new(3)?;
    let created = created.lock().expect("lock");
    let arrived = arrived.lock().expect("lock");
    for (name, at) in arrived.iter() {
        h.record(at.saturating_duration_since(created[name]).as_micros() as u64)?;
    }
    let last = arrived.iter().map(|(_, t)| *t).max().unwrap_or(t0);
    Ok((h, want as f64 / last.duration_since(t0).as_secs_f64()))
}
