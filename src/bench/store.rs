//! `tmc bench store`: load N workspaces × 3 objects into one node's store,
//! then measure one-workspace lists and a paginated scan of one resource
//! across all workspaces.
//!
//! Each workspace `root:bench-{i}` gets what a tenant typically has first: a
//! namespace, a WorkloadPlacement and a realistic Deployment of about 1.5 KB.
//! Objects are committed in transactions of `batch` workspaces with fsync on,
//! as the raft apply loop will commit group-committed entries.

use crate::store::{
    self, Engine as _, Expectation, GroupResource, ListOptions, ObjectKey, Prefix, RocksOptions,
    StoreOptions, Txn, TxnOp, Workspace,
};
use crate::util;
use hdrhistogram::Histogram;
use rand::Rng;
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Load N workspaces × 3 objects into one node's store and measure.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Number of workspaces.
    #[arg(long, default_value_t = 100_000)]
    pub workspaces: u64,
    /// Workspaces per transaction.
    #[arg(long, default_value_t = 100)]
    pub batch: u64,
    /// Random one-workspace lists to time.
    #[arg(long, default_value_t = 20_000)]
    pub list_samples: u64,
    /// Page size of the all-workspaces scan.
    #[arg(long, default_value_t = 500)]
    pub scan_page: usize,
    /// Revisions of change history to keep.
    #[arg(long, default_value_t = 1_000)]
    pub changes_retention: u64,
    /// Block cache in MiB.
    #[arg(long, default_value_t = 128)]
    pub block_cache_mib: usize,
    /// Directory for the data (default: a fresh temporary directory,
    /// removed afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print only the JSON report (no progress bar).
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// The benchmark's parameters.
    pub fn config(&self) -> StoreBenchConfig {
        StoreBenchConfig {
            workspaces: self.workspaces,
            batch: self.batch,
            list_samples: self.list_samples,
            scan_page: self.scan_page,
            changes_retention: self.changes_retention,
            rocks: RocksOptions {
                block_cache_bytes: self.block_cache_mib << 20,
                ..RocksOptions::default()
            },
        }
    }
}

/// Parameters of the store benchmark.
#[derive(Debug, Clone)]
pub struct StoreBenchConfig {
    /// Number of workspaces to load.
    pub workspaces: u64,
    /// Workspaces per transaction.
    pub batch: u64,
    /// Random one-workspace lists to time.
    pub list_samples: u64,
    /// Page size of the all-workspaces scan.
    pub scan_page: usize,
    /// Revisions of change history to keep.
    pub changes_retention: u64,
    /// RocksDB tuning (block cache, memtables).
    pub rocks: RocksOptions,
}

/// The figures `tmc bench store` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StoreBenchReport {
    /// Workspaces loaded.
    pub workspaces: u64,
    /// Objects loaded (3 per workspace).
    pub objects: u64,
    /// Bytes of JSON bodies written.
    pub body_bytes: u64,
    /// Loading rate.
    pub objects_per_s: f64,
    /// Wall time of the load.
    pub load_s: f64,
    /// Size of the RocksDB directory after a flush.
    pub disk_bytes: u64,
    /// Peak resident set size of the process.
    pub peak_rss_bytes: u64,
    /// Median time to list the Deployments of one random workspace.
    pub list_workspace_p50_us: f64,
    /// 99th percentile of the same.
    pub list_workspace_p99_us: f64,
    /// Time to page through the Deployments of every workspace.
    pub scan_resource_all_workspaces_s: f64,
    /// Deployments seen by that scan (must equal `workspaces`).
    pub scan_items: u64,
    /// Block cache size used.
    pub block_cache_bytes: usize,
}

/// One object to load: resource, namespace, name and JSON body.
pub type BenchObject = (GroupResource, Option<&'static str>, &'static str, Vec<u8>);

/// Builds the three objects of workspace `i`.
pub fn workspace_objects(i: u64) -> (Workspace, [BenchObject; 3]) {
    let ws = Workspace::parse(&format!("root:bench-{i}")).expect("valid workspace");
    let uid = |n: u64| format!("{:08x}-0000-4000-8000-{:012x}", i as u32, n);
    let ns = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "team-web", "uid": uid(1), "labels": {"team": "web", "kubernetes.io/metadata.name": "team-web"},
                      "annotations": {"kcp.io/cluster": ws.as_str()}, "creationTimestamp": "2026-11-26T00:00:00Z"},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}
    });
    let placement = json!({
        "apiVersion": "tmc.kcp.io/v1alpha1", "kind": "WorkloadPlacement",
        "metadata": {"name": "web-eu", "uid": uid(2), "generation": 1, "creationTimestamp": "2026-11-26T00:00:00Z",
                      "annotations": {"kcp.io/cluster": ws.as_str()}},
        "spec": crate::types::example_placement_spec()
    });
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "team-web", "uid": uid(3), "generation": 1,
            "creationTimestamp": "2026-11-26T00:00:00Z",
            "labels": {"app": "web", "tier": "frontend", "team": "web", "app.kubernetes.io/version": "1.27.3"},
            "annotations": {"kcp.io/cluster": ws.as_str(), "deployment.kubernetes.io/revision": "1",
                            "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\",\"namespace\":\"team-web\"}}"}
        },
        "spec": {
            "replicas": 3, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "frontend"}},
                "spec": {
                    "serviceAccountName": "web", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always", "schedulerName": "default-scheduler",
                    "containers": [{
                        "name": "web", "image": "registry.example.com/team-web/web:1.27.3", "imagePullPolicy": "IfNotPresent",
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "env": [{"name": "LOG_LEVEL", "value": "info"},
                                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "web-db", "key": "password"}}}],
                        "envFrom": [{"configMapRef": {"name": "web-config"}}],
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                        "livenessProbe": {"httpGet": {"path": "/livez", "port": "http", "scheme": "HTTP"}, "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/web", "readOnly": true}],
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}}],
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "fsGroup": 10001}
                }
            }
        },
        "status": {}
    });
    let gr = |g: &str, r: &str| GroupResource::new(g, r).expect("valid group-resource");
    (
        ws,
        [
            (
                gr("", "namespaces"),
                None,
                "team-web",
                serde_json::to_vec(&ns).expect("json"),
            ),
            (
                gr("tmc.kcp.io", "workloadplacements"),
                None,
                "web-eu",
                serde_json::to_vec(&placement).expect("json"),
            ),
            (
                gr("apps", "deployments"),
                Some("team-web"),
                "web",
                serde_json::to_vec(&deploy).expect("json"),
            ),
        ],
    )
}

/// The store keys and JSON bodies of workspace `i`'s objects
/// ([`workspace_objects`]).
pub fn workspace_keys(i: u64) -> impl Iterator<Item = (ObjectKey, Vec<u8>)> {
    let (ws, objs) = workspace_objects(i);
    objs.into_iter().map(move |(gr, ns, name, body)| {
        let key = ObjectKey::with_rule(gr, ws.clone(), ns, name, store::NameRule::DnsSubdomain)
            .expect("the benchmark's names are valid");
        (key, body)
    })
}

/// Loads workspaces `0..n` ([`workspace_objects`]) into `st`, `batch`
/// workspaces per transaction (one thread builds them, this one commits);
/// `progress` hears the number loaded. Returns the bytes of the bodies.
pub fn load<E: store::Engine>(
    st: &store::Store<E>,
    n: u64,
    batch: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> store::Result<u64> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Txn, u64)>(4);
    let batch = batch.max(1);
    let mut body_bytes = 0u64;
    std::thread::scope(|s| -> store::Result<()> {
        s.spawn(move || {
            let mut i = 0;
            while i < n {
                let end = (i + batch).min(n);
                let mut ops = Vec::with_capacity(((end - i) * 3) as usize);
                let mut bytes = 0u64;
                for (key, body) in (i..end).flat_map(workspace_keys) {
                    bytes += body.len() as u64;
                    ops.push(TxnOp::put_json(key, body, Expectation::Absent));
                }
                if tx.send((Txn::new(ops), bytes)).is_err() {
                    return;
                }
                i = end;
            }
        });
        let mut loaded = 0;
        for (txn, bytes) in rx {
            loaded += txn.ops.len() as u64 / 3;
            body_bytes += bytes;
            st.commit(txn)?;
            progress(loaded);
        }
        Ok(())
    })?;
    Ok(body_bytes)
}

/// Runs the benchmark in `dir` (which should be empty) and returns its
/// figures; `progress` is called with the number of workspaces loaded.
pub fn run(
    dir: &Path,
    cfg: &StoreBenchConfig,
    progress: &(dyn Fn(u64) + Sync),
) -> store::Result<StoreBenchReport> {
    let st = store::open_rocks(
        dir,
        &cfg.rocks,
        StoreOptions {
            sync: true,
            changes_retention: cfg.changes_retention,
        },
    )?;
    let deployments = GroupResource::new("apps", "deployments").expect("valid");
    let (n, batch) = (cfg.workspaces, cfg.batch.max(1));
    let start = Instant::now();
    let body_bytes = load(&st, n, batch, progress)?;
    let load_s = start.elapsed().as_secs_f64();
    st.engine().flush()?;
    let disk_bytes = util::dir_size(dir).map_err(store::Error::engine)?;

    // One-workspace lists at random.
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut rng = rand::rng();
    for _ in 0..cfg.list_samples {
        let w = rng.random_range(0..n.max(1));
        let ws = Workspace::parse(&format!("root:bench-{w}")).expect("valid");
        let t = Instant::now();
        let page = st.list(
            &Prefix::workspace(&deployments, &ws),
            &ListOptions::default(),
        )?;
        let us = t.elapsed().as_nanos() as u64;
        if page.items.len() != 1 {
            return Err(store::Error::engine(format!(
                "workspace {ws} lists {} deployments, expected 1",
                page.items.len()
            )));
        }
        hist.record(us.max(1)).expect("in range");
    }

    // All workspaces of one resource, page by page.
    let t = Instant::now();
    let mut scan_items = 0u64;
    let mut opts = ListOptions {
        limit: cfg.scan_page,
        ..Default::default()
    };
    loop {
        let page = st.list(&Prefix::resource(&deployments), &opts)?;
        scan_items += page.items.len() as u64;
        match page.continue_token {
            Some(c) => opts.continue_token = Some(c),
            None => break,
        }
    }
    let scan_s = t.elapsed().as_secs_f64();

    Ok(StoreBenchReport {
        workspaces: n,
        objects: n * 3,
        body_bytes,
        objects_per_s: (n * 3) as f64 / load_s,
        load_s,
        disk_bytes,
        peak_rss_bytes: util::peak_rss_bytes().unwrap_or(0),
        list_workspace_p50_us: hist.value_at_quantile(0.50) as f64 / 1000.0,
        list_workspace_p99_us: hist.value_at_quantile(0.99) as f64 / 1000.0,
        scan_resource_all_workspaces_s: scan_s,
        scan_items,
        block_cache_bytes: cfg.rocks.block_cache_bytes,
    })
}
