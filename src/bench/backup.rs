//! `tmc bench backup`: backup, verify and restore of a shard holding N
//! workspaces, beside etcd's `etcdctl snapshot save`, `etcdutl snapshot
//! status` and `etcdutl snapshot restore` of the same keys and values, in
//! the same run.
//!
//! **tmc.** The store of a one-node shard is loaded with N workspaces of
//! `tmc bench store` (a namespace, a WorkloadPlacement and a 1.5 KB
//! Deployment each, fsync off while loading), then `tmc dev` serves it and
//! the real commands run as child processes, each timed from start to
//! exit: `tmc backup` (the server's read point, checkpoint, digest over
//! every value and gzip stream, then the client's full verify before the
//! rename), `tmc backup verify`, `tmc restore` (verify again, bump, new
//! raft state).
//!
//! **etcd.** One member (fsync on, as etcd runs), loaded with the same keys
//! (tmc's `/registry/...` keys) and the same JSON values through its gRPC
//! `KV/Txn` (300 puts per transaction, four connections), then the three
//! etcd commands. `etcdctl` and `etcdutl` come from
//! `scripts/etcd-tools.sh` (the version of the etcd server).
//!
//! The ratios are etcd's time over tmc's: above 1, tmc is faster.
//!
//! Left out: the load's own figures (`tmc bench store` measures them), a
//! three-member etcd (a snapshot is taken from one member either way).

use super::procs::{find_etcd, loadavg, BoxError, EtcdCluster};
use super::raft::EtcdGrpc;
use crate::store::{self, Engine as _, RocksOptions, StoreOptions};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Back up, verify and restore N workspaces, tmc and etcd.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Number of workspaces (3 objects each).
    #[arg(long, default_value_t = 1_000_000)]
    pub workspaces: u64,
    /// Parent of the data directories (default: the system's temporary
    /// directory); they are removed afterwards.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The etcd binary (see `tmc bench raft`).
    #[arg(long)]
    pub etcd_bin: Option<PathBuf>,
    /// Directory of etcdctl and etcdutl (default: what
    /// `scripts/etcd-tools.sh` built).
    #[arg(long)]
    pub etcd_tools: Option<PathBuf>,
    /// Skip etcd.
    #[arg(long)]
    pub no_etcd: bool,
    /// Print only the JSON report.
    #[arg(long)]
    pub json: bool,
}

/// One system's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// Loading the keys (not the benchmark's subject).
    pub load_s: f64,
    /// Taking the backup (to a verified file).
    pub backup_s: f64,
    /// Verifying it.
    pub verify_s: f64,
    /// Restoring it into an empty directory.
    pub restore_s: f64,
    /// Bytes of the backup file.
    pub backup_bytes: u64,
    /// Bytes of the live data directory.
    pub data_bytes: u64,
    /// Bytes of the restored data directory.
    pub restored_bytes: u64,
}

/// etcd's time over tmc's, per step (above 1: tmc is faster).
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Backup.
    pub backup: f64,
    /// Verify / snapshot status.
    pub verify: f64,
    /// Restore.
    pub restore: f64,
}

/// What the benchmark prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Workspaces.
    pub workspaces: u64,
    /// Keys (three per workspace).
    pub keys: u64,
    /// Bytes of the values.
    pub value_bytes: u64,
    /// tmc.
    pub tmc: Side,
    /// etcd, unless skipped.
    pub etcd: Option<Side>,
    /// etcd's version.
    pub etcd_version: Option<String>,
    /// etcd / tmc.
    pub ratio: Option<Ratios>,
    /// Load average at the start (1, 5, 15 min).
    pub loadavg_start: String,
    /// And at the end.
    pub loadavg_end: String,
}

/// Runs a command to its end; its wall time, or its stderr on failure.
fn timed(cmd: &mut Command) -> Result<f64, BoxError> {
    let t = Instant::now();
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let s = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(s)
}

fn size(p: &Path) -> u64 {
    if p.is_file() {
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    } else {
        crate::util::dir_size(p).unwrap_or(0)
    }
}

/// The keys and values of workspaces `from..to`, as stored.
fn pairs(from: u64, to: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    (from..to)
        .flat_map(super::store::workspace_keys)
        .map(|(key, body)| (store::Key::Object(key).encode(), body))
        .collect()
}

/// Loads the tmc store in `dir` (fsync off: the load is not measured
/// here); the bytes of the values.
fn load_tmc(dir: &Path, n: u64, progress: &(dyn Fn(String) + Sync)) -> Result<u64, BoxError> {
    let st = store::open_rocks(
        dir,
        &RocksOptions::default(),
        StoreOptions {
            sync: false,
            changes_retention: 1_000,
        },
    )?;
    let bytes = super::store::load(&st, n, 100, &|done| {
        if done % 50_000 == 0 {
            progress(format!("tmc: loaded {done} of {n} workspaces"));
        }
    })?;
    // The raft state of a one-node shard at what was loaded (what a
    // restore writes), so that `tmc dev` opens it.
    crate::raft::storage::reset_for_restore(
        st.engine(),
        &[1],
        st.applied_index(),
        crate::cli::restore::random_cluster_id(),
    )?;
    st.engine().flush()?;
    Ok(bytes)
}

/// Loads etcd at `url` with the same keys and values; the seconds it took.
async fn load_etcd(url: &str, n: u64, progress: &(dyn Fn(String) + Sync)) -> Result<f64, BoxError> {
    let t = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (next, url) = (next.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let mut c = EtcdGrpc::connect(&url).await.map_err(|e| e.to_string())?;
            loop {
                let from = next.fetch_add(100, std::sync::atomic::Ordering::Relaxed);
                if from >= n {
                    return Ok::<_, String>(());
                }
                let kvs = pairs(from, (from + 100).min(n));
                c.txn_put(&kvs).await?;
            }
        }));
    }
    let mut shown = 0;
    while !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let done = next.load(std::sync::atomic::Ordering::Relaxed).min(n);
        if done / 50_000 != shown {
            shown = done / 50_000;
            progress(format!("etcd: loaded {done} of {n} workspaces"));
        }
    }
    for t in tasks {
        t.await??;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Runs the benchmark; `progress` hears what it does.
pub async fn run(args: &Args, progress: &(dyn Fn(String) + Sync)) -> Result<Report, BoxError> {
    let loadavg_start = loadavg();
    let mut b = tempfile::Builder::new();
    b.prefix("tmc-bench-backup");
    let temp = match &args.dir {
        Some(d) => b.tempdir_in(d)?,
        None => b.tempdir()?,
    };
    let base = temp.path().to_path_buf();
    let n = args.workspaces;
    let tmc_bin = std::env::current_exe()?;

    // tmc: load, serve, back up, verify, restore.
    let dev_dir = base.join("tmc");
    let store_dir = crate::backup::Layout::Dev.store_dir(&dev_dir);
    let t = Instant::now();
    let value_bytes = {
        let (dir, n) = (store_dir.clone(), n);
        tokio::task::block_in_place(|| load_tmc(&dir, n, progress))?
    };
    let tmc_load_s = t.elapsed().as_secs_f64();
    progress("tmc: starting tmc dev on the loaded store".into());
    let (dev, _url) = crate::testcluster::dev::Dev::try_start(&dev_dir, &["--no-controllers"])?;
    let kubeconfig = dev_dir.join("admin.kubeconfig");
    wait_ready(&kubeconfig).await?;
    let file = base.join("tmc.tmcbackup");
    progress("tmc: tmc backup".into());
    let backup_s = timed(
        Command::new(&tmc_bin)
            .args(["backup", "--json", "--kubeconfig"])
            .arg(&kubeconfig)
            .arg("-o")
            .arg(&file),
    )?;
    let data_bytes = size(&store_dir);
    drop(dev);
    // The server's phases, from its log line (for the reader of stderr).
    let log = std::fs::read_to_string(base.join("tmc.log")).unwrap_or_default();
    if let Some(line) = log.lines().find(|l| l.contains("backup taken")) {
        eprintln!("tmc dev: {line}");
    }
    progress("tmc: tmc backup verify".into());
    let verify_s = timed(Command::new(&tmc_bin).args(["backup", "verify"]).arg(&file))?;
    let restored = base.join("tmc-restored");
    progress("tmc: tmc restore".into());
    let restore_s = timed(
        Command::new(&tmc_bin)
            .arg("restore")
            .arg(&file)
            .arg("--data-dir")
            .arg(&restored),
    )?;
    let tmc = Side {
        load_s: tmc_load_s,
        backup_s,
        verify_s,
        restore_s,
        backup_bytes: size(&file),
        data_bytes,
        restored_bytes: size(&restored),
    };
    let _ = std::fs::remove_dir_all(&restored);
    let _ = std::fs::remove_dir_all(&dev_dir);

    // etcd: the same keys, then its three commands.
    let (etcd, etcd_version) = if args.no_etcd {
        (None, None)
    } else {
        let bin = find_etcd(args.etcd_bin.as_deref())?;
        let tools = match &args.etcd_tools {
            Some(d) => d.clone(),
            None => etcd_tools()?,
        };
        let cluster = EtcdCluster::start_members(
            &bin,
            Some(&base),
            1,
            &[
                "--max-txn-ops",
                "1000",
                "--max-request-bytes",
                "33554432",
                "--quota-backend-bytes",
                "34359738368",
            ],
        )
        .await?;
        let url = cluster.client_url(0);
        progress("etcd: loading the same keys".into());
        let load_s = load_etcd(&url, n, progress).await?;
        let data_bytes = size(&cluster.data_dir(0));
        let snap = base.join("etcd.db");
        progress("etcd: etcdctl snapshot save".into());
        let backup_s = timed(
            Command::new(tools.join("etcdctl"))
                .args(["--endpoints", &url, "snapshot", "save"])
                .arg(&snap),
        )?;
        let version = cluster.version.clone();
        drop(cluster);
        progress("etcd: etcdutl snapshot status".into());
        let verify_s = timed(
            Command::new(tools.join("etcdutl"))
                .args(["snapshot", "status", "-w", "json"])
                .arg(&snap),
        )?;
        let restored = base.join("etcd-restored");
        progress("etcd: etcdutl snapshot restore".into());
        let restore_s = timed(
            Command::new(tools.join("etcdutl"))
                .args(["snapshot", "restore"])
                .arg(&snap)
                .arg("--data-dir")
                .arg(&restored)
                .args(["--bump-revision", "1000000000", "--mark-compacted"]),
        )?;
        let side = Side {
            load_s,
            backup_s,
            verify_s,
            restore_s,
            backup_bytes: size(&snap),
            data_bytes,
            restored_bytes: size(&restored),
        };
        let _ = std::fs::remove_dir_all(&restored);
        let _ = std::fs::remove_file(&snap);
        (Some(side), Some(version))
    };
    let ratio = etcd.as_ref().map(|e| Ratios {
        backup: e.backup_s / tmc.backup_s,
        verify: e.verify_s / tmc.verify_s,
        restore: e.restore_s / tmc.restore_s,
    });
    Ok(Report {
        workspaces: n,
        keys: n * 3,
        value_bytes,
        tmc,
        etcd,
        etcd_version,
        ratio,
        loadavg_start,
        loadavg_end: loadavg(),
    })
}

/// The directory `scripts/etcd-tools.sh` built etcdctl and etcdutl into
/// (it builds them on first use).
fn etcd_tools() -> Result<PathBuf, BoxError> {
    let script = crate::testcluster::members::repo_root().join("scripts/etcd-tools.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Waits until the server `kubeconfig` names answers `/readyz` with ok.
async fn wait_ready(kubeconfig: &Path) -> Result<(), BoxError> {
    let client = crate::cli::admin_client(kubeconfig).await?;
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let req = hyper::http::Request::get("/readyz").body(Vec::new())?;
        if let Ok(text) = client.request_text(req).await {
            if text.trim() == "ok" {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err("tmc dev was not ready within 120 s".into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
