//! Child processes of the benchmarks: a guard that kills its process on drop
//! (and, through `PR_SET_PDEATHSIG`, when the benchmark process dies), a
//! three-replica `tmc serve` shard and a three-member etcd cluster, all on
//! loopback.

use crate::raft::server::StatusReport;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Errors of the benchmarks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A free TCP port on 127.0.0.1 (bound, then released: a small race that
/// a benchmark can live with).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A child process that is SIGKILLed and reaped when the guard drops.
///
/// The child also gets `PR_SET_PDEATHSIG = SIGKILL`, so that it dies with the
/// benchmark even when the benchmark itself is killed. The kernel ties that
/// signal to the *thread* that spawned the child: spawn only from the main
/// thread or a tokio worker (which live as long as the benchmark), never from
/// `spawn_blocking`.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed, stdout discarded and stderr appended
    /// to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<ChildGuard, BoxError> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork
        // and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(ChildGuard {
            name: name.to_string(),
            child: Some(child),
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the child still runs (not exited).
    pub fn running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) | None => false,
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            tracing::debug!(name = %self.name, "killed");
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `/proc/loadavg`'s first three fields (1, 5 and 15 minute load averages):
/// these machines are shared, and the figures mean little without it.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn peers(ports: &[u16]) -> String {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

/// A shard of three `tmc serve` replicas (ids 1..=3) on loopback, each with
/// its data in a temporary directory (fsync on: the replicas' default).
pub struct TmcShard {
    // Fields drop in order: the replicas die before their directory goes
    // (a replica still running would write into it again).
    nodes: Vec<Option<ChildGuard>>,
    dir: tempfile::TempDir,
    bin: PathBuf,
    tick_ms: u64,
    raft: Vec<u16>,
    kv: Vec<u16>,
    /// Client for `/status` probes.
    http: reqwest::Client,
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

impl TmcShard {
    /// Starts three replicas of `bin` (`tmc serve`) with `--tick-ms tick_ms`
    /// under a fresh temporary directory in `base` (or the system's).
    pub fn start(bin: &Path, base: Option<&Path>, tick_ms: u64) -> Result<TmcShard, BoxError> {
        let mut b = tempfile::Builder::new();
        b.prefix("tmc-bench-shard");
        let dir = match base {
            Some(p) => b.tempdir_in(p)?,
            None => b.tempdir()?,
        };
        let mut shard = TmcShard {
            dir,
            bin: bin.to_path_buf(),
            tick_ms,
            raft: (0..3).map(|_| free_port()).collect::<Result<_, _>>()?,
            kv: (0..3).map(|_| free_port()).collect::<Result<_, _>>()?,
            nodes: (0..3).map(|_| None).collect(),
            http: kv_client(Duration::from_secs(2))?,
        };
        for id in 1..=3 {
            shard.spawn(id)?;
        }
        Ok(shard)
    }

    /// Keeps the data directory and logs after the shard is dropped;
    /// returns its path.
    pub fn keep_dir(&mut self) -> PathBuf {
        self.dir.disable_cleanup(true);
        self.dir.path().to_path_buf()
    }

    /// The replicas' ids.
    pub fn ids(&self) -> Vec<u64> {
        (1..=self.nodes.len() as u64).collect()
    }

    /// The log file of replica `id`.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    /// Starts replica `id` (again, after [`TmcShard::kill`]).
    pub fn spawn(&mut self, id: u64) -> Result<(), BoxError> {
        let i = (id - 1) as usize;
        if self.nodes[i].is_some() {
            return Err(format!("node {id} already runs").into());
        }
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--insecure-peers")
            .args(["--node-id", &id.to_string()])
            .args(["--peers", &peers(&self.raft)])
            .args(["--kv-peers", &peers(&self.kv)])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node{id}")))
            .args(["--listen", &self.kv_addr(id)])
            .args(["--tick-ms", &self.tick_ms.to_string()])
            .env("RUST_LOG", "info");
        self.nodes[i] = Some(ChildGuard::spawn(
            &format!("tmc serve node {id}"),
            &mut cmd,
            &self.log_path(id),
        )?);
        Ok(())
    }

    /// SIGKILLs replica `id` and reaps it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes[(id - 1) as usize].take() {
            c.kill();
        }
    }

    /// Whether replica `id` was started and has not exited.
    pub fn running(&mut self, id: u64) -> bool {
        self.nodes[(id - 1) as usize]
            .as_mut()
            .map(|c| c.running())
            .unwrap_or(false)
    }

    /// `127.0.0.1:PORT` of replica `id`'s KV interface.
    pub fn kv_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.kv[(id - 1) as usize])
    }

    /// `http://127.0.0.1:PORT` of replica `id`'s KV interface.
    pub fn kv_url(&self, id: u64) -> String {
        format!("http://{}", self.kv_addr(id))
    }

    /// Replica `id`'s `/status`, `None` if it does not answer.
    pub async fn status(&self, id: u64) -> Option<StatusReport> {
        let r = self
            .http
            .get(format!("{}/status", self.kv_url(id)))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json::<StatusReport>().await.ok()
    }

    /// Waits until every replica of `ids` names the same leader, one of
    /// `ids` that reports itself leader, and every one has applied what that
    /// leader had committed when asked; returns the leader.
    pub async fn wait_healthy(&mut self, ids: &[u64], within: Duration) -> Result<u64, BoxError> {
        let deadline = Instant::now() + within;
        loop {
            for &id in ids {
                if self.nodes[(id - 1) as usize].is_some() && !self.running(id) {
                    return Err(format!(
                        "tmc serve node {id} exited; its log ends with:\n{}",
                        log_tail(&self.log_path(id), 30)
                    )
                    .into());
                }
            }
            let mut seen = BTreeMap::new();
            for &id in ids {
                seen.insert(id, self.status(id).await);
            }
            let leader = seen.values().next().and_then(|s| s.as_ref()?.leader);
            if let Some(l) = leader {
                let agreed = seen
                    .values()
                    .all(|s| s.as_ref().and_then(|s| s.leader) == Some(l));
                let lead = seen.get(&l).and_then(|s| s.as_ref());
                if agreed {
                    if let Some(ls) = lead.filter(|s| s.role == "leader") {
                        let caught_up = seen
                            .values()
                            .all(|s| s.as_ref().is_some_and(|s| s.applied >= ls.commit));
                        if caught_up {
                            return Ok(l);
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the tmc shard {ids:?} did not become healthy within {within:?}; last status {seen:?}; \
                     logs in {}",
                    self.dir.path().display()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The leader as the replicas of `ids` see it right now, if they agree.
    pub async fn leader(&self, ids: &[u64]) -> Option<u64> {
        let mut leader = None;
        for &id in ids {
            let s = self.status(id).await?;
            if s.role == "leader" {
                leader = Some(s.id);
            }
        }
        leader
    }
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
        let mut b = tempfile::Builder::new();
        b.prefix("tmc-bench-etcd");
        let dir = match base {
            Some(p) => b.tempdir_in(p)?,
            None => b.tempdir()?,
        };
        let client: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
        let peer: Vec<u16> = (0..3).map(|_| free_port()).collect::<Result<_, _>>()?;
        let initial = (0..3)
            .map(|i| format!("e{}=http://127.0.0.1:{}", i + 1, peer[i]))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for i in 0..3 {
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
                .args(["--log-level", "warn"]);
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
