//! Clusters of the benchmarks, on loopback: a three-replica `tmc serve`
//! shard (the harness of [`crate::testcluster`], which the integration
//! tests use too) and a three-member etcd cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use crate::testcluster::BoxError;
use crate::testcluster::{free_port, log_tail, ChildGuard, TestCluster};

/// `/proc/loadavg`'s first three fields (1, 5 and 15 minute load averages):
/// these machines are shared, and the figures mean little without it.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// An HTTP/1.1 client for the KV interface: keep-alive, no proxy, no
/// Nagle, a timeout per request.
pub fn kv_client(timeout: Duration) -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(2)))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()?)
}

/// Starts a shard of three `tmc serve` replicas of `bin` (ids 1..=3) on
/// loopback with `--tick-ms tick_ms` and plain HTTP between them, their
/// data under a fresh temporary directory in `base` (or the system's),
/// fsync on (the replicas' default); they die with the benchmark.
pub fn tmc_shard(bin: &Path, base: Option<&Path>, tick_ms: u64) -> Result<TestCluster, BoxError> {
    TestCluster::builder()
        .bin(bin)
        .insecure_peers()
        .tick_ms(tick_ms)
        .dir_in(base, "tmc-bench-shard")
        .die_with_parent()
        .status_timeout(Duration::from_secs(2))
        .start()
}

/// A three-member etcd cluster on loopback, fsync on (etcd's default), data
/// in a temporary directory.
pub struct EtcdCluster {
    // The members die before their directory goes (fields drop in order).
    members: Vec<ChildGuard>,
    dir: tempfile::TempDir,
    client: Vec<u16>,
    /// etcd's version, as its `/version` endpoint says.
    pub version: String,
}

/// The etcd binary: `explicit`, else `$TESTENV_ETCD`, else the one that
/// `scripts/testenv.sh build` left under `~/.cache/tmc/testenv/*/bin`,
/// else `etcd` on `PATH`.
pub fn find_etcd(explicit: Option<&Path>) -> Result<PathBuf, BoxError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("--etcd-bin {}: no such file", p.display()).into())
        };
    }
    if let Some(p) = std::env::var_os("TESTENV_ETCD").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("$TESTENV_ETCD {}: no such file", p.display()).into())
        };
    }
    let cache = std::env::var_os("TMC_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tmc")));
    if let Some(cache) = cache {
        if let Ok(rd) = std::fs::read_dir(cache.join("testenv")) {
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin/etcd"))
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            if let Some(p) = found.pop() {
                return Ok(p);
            }
        }
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("etcd").is_file() {
            return Ok(dir.join("etcd"));
        }
    }
    Err("no etcd binary: build one with `bash scripts/testenv.sh build`, or pass --etcd-bin".into())
}

impl EtcdCluster {
    /// Starts three members of `bin` and waits until they have a leader.
    pub async fn start(bin: &Path, base: Option<&Path>) -> Result<EtcdCluster, BoxError> {
        Self::start_members(bin, base, 3, &[]).await
    }

    /// Starts `n` members of `bin` with `extra` flags each and waits until
    /// they have a leader.
    pub async fn start_members(
        bin: &Path,
        base: Option<&Path>,
        n: usize,
        extra: &[&str],
    ) -> Result<EtcdCluster, BoxError> {
        let mut b = tempfile::Builder::new();
        b.prefix("tmc-bench-etcd");
        let dir = match base {
            Some(p) => b.tempdir_in(p)?,
            None => b.tempdir()?,
        };
        let client: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let peer: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let initial = (0..n)
            .map(|i| format!("e{}=http://127.0.0.1:{}", i + 1, peer[i]))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("e{}", i + 1);
            let mut cmd = Command::new(bin);
            cmd.args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.path().join(&name))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{}", client[i]),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{}", client[i]),
                ])
                .args([
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{}", peer[i]),
                ])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{}", peer[i]),
                ])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "tmc-bench"])
                .args(["--quota-backend-bytes", "4294967296"])
                .args(["--log-level", "warn"])
                .args(extra);
            members.push(ChildGuard::spawn(
                &format!("etcd {name}"),
                &mut cmd,
                &dir.path().join(format!("{name}.log")),
            )?);
        }
        let mut c = EtcdCluster {
            dir,
            client,
            members,
            version: String::new(),
        };
        c.version = c.wait_healthy(Duration::from_secs(30)).await?;
        Ok(c)
    }

    /// Data directory of member `i` (0-based).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("e{}", i + 1))
    }

    /// Client URL of member `i` (0-based).
    pub fn client_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.client[i])
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.client.len()
    }

    /// Whether the cluster has no members (never, once started).
    pub fn is_empty(&self) -> bool {
        self.client.is_empty()
    }

    /// Maintenance.Status of member `i` through etcd's JSON gateway:
    /// (member id, leader id, version).
    pub async fn status(
        &self,
        http: &reqwest::Client,
        i: usize,
    ) -> Result<(u64, u64, String), BoxError> {
        let v: serde_json::Value = http
            .post(format!("{}/v3/maintenance/status", self.client_url(i)))
            .body("{}")
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let num = |x: &serde_json::Value| -> u64 {
            x.as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| x.as_u64())
                .unwrap_or(0)
        };
        Ok((
            num(&v["header"]["member_id"]),
            num(&v["leader"]),
            v["version"].as_str().unwrap_or("").to_string(),
        ))
    }

    /// Waits until every member answers and names the same leader; returns
    /// etcd's version.
    async fn wait_healthy(&mut self, within: Duration) -> Result<String, BoxError> {
        let http = kv_client(Duration::from_secs(2))?;
        let deadline = Instant::now() + within;
        loop {
            for (i, m) in self.members.iter_mut().enumerate() {
                if !m.running() {
                    return Err(format!(
                        "etcd member e{} exited; its log ends with:\n{}",
                        i + 1,
                        log_tail(&self.dir.path().join(format!("e{}.log", i + 1)), 30)
                    )
                    .into());
                }
            }
            let mut leaders = Vec::new();
            let mut version = String::new();
            let mut err = None;
            for i in 0..self.len() {
                match self.status(&http, i).await {
                    Ok((_, l, v)) => {
                        leaders.push(l);
                        version = v;
                    }
                    Err(e) => err = Some(e.to_string()),
                }
            }
            if err.is_none() && leaders[0] != 0 && leaders.iter().all(|&l| l == leaders[0]) {
                return Ok(version);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "etcd cluster not healthy within {within:?}: leaders {leaders:?}, last error {err:?}; logs in {}",
                    self.dir.path().display()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index of the member that is leader.
    pub async fn leader_index(&self) -> Result<usize, BoxError> {
        let http = kv_client(Duration::from_secs(2))?;
        for i in 0..self.len() {
            let (me, leader, _) = self.status(&http, i).await?;
            if me == leader {
                return Ok(i);
            }
        }
        Err("no etcd member reports itself leader".into())
    }
}
