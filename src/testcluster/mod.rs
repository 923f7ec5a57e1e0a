//! One test cluster for the integration tests and the `tmc bench` load
//! generators alike: `tmc serve` replicas as real processes on loopback
//! (toydb's `tests/testcluster.rs` is the model).
//!
//! A [`Builder`] says what differs between users, a [`TestCluster`] runs
//! the replicas:
//! - **ports**: a raft and a KV port for every node of the address book
//!   (`--peers`, `--kv-peers`) and, when the replicas serve the API, an API
//!   port ([`free_port`]: below the ephemeral range, never twice);
//! - **peer security**: by default `tmc certs --nodes 1,..,N` writes the
//!   operator's directory (`tls/`: both CAs, their keys, the operator's
//!   peer certificate, the token file) and each replica runs on its own
//!   `tls/nodes/<id>` (no CA key), as an operator deploys them, serving the
//!   Kubernetes API over HTTPS; [`Builder::insecure_peers`] runs plain
//!   HTTP between the replicas and no API (the raft tests and benchmarks);
//! - **routes**: [`TestCluster::route_peer`] points one node's view of
//!   another at some other address (a fault-injecting proxy in between);
//! - **the rest**: `--tick-ms`, `--voters` and `--join`, extra flags and
//!   token-file lines, where the data goes, whether the replicas die with
//!   the process that started them.
//!
//! A [`TestCluster`] spawns, SIGKILLs, pauses (SIGSTOP) and resumes
//! (SIGCONT) replicas, keeps each one's log in `node<id>.log` (printed when
//! a test fails, or always with `TMC_DUMP_LOGS`; `TMC_NODE_LOG` sets the
//! replicas' `RUST_LOG`, default `info`), asks each for its raft status
//! and waits for an agreed leader or for the API to serve. For the tests
//! it also writes kubeconfigs with `tmc kubeconfig` (the paths users take),
//! builds kube-rs clients and raw API clients ([`ApiClient`]), reads and
//! writes the KV interface and registers member clusters;
//! [`members`] starts member clusters (real kube-apiservers) and runs
//! kubectl. Children are SIGKILLed when the cluster is dropped.
//!
//! The integration tests find the `tmc` binary next to themselves
//! ([`tmc_binary`]); the benchmarks pass their own ([`Builder::bin`]).
//!
//! Left out: more than one shard, clusters across machines, and a
//! `testing` cargo feature (the module is small and the benchmarks need
//! it in the shipped binary).

mod api;
pub mod dev;
mod http;
mod kv;
pub mod members;
pub mod pods;
mod process;
pub mod proxy;
pub mod python;

pub use http::{collect, json_or_text, request, send, tls_config, ApiClient, Target, Watch};
pub use process::{block_on, free_port, log_tail, noise, BoxError, ChildGuard};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use crate::raft::server::NO_FORWARD;

/// Controller timings that let tests see a dead member cluster in
/// seconds: probes every second, unhealthy after 4 s, a probe may take
/// 2 s, the placement catalog cached for 1 s; and member clusters on
/// 127.0.0.1 allowed (the test environment's).
pub const FAST_CONTROLLERS: &[&str] = &[
    "--allow-private-member-endpoints",
    "--probe-interval",
    "1s",
    "--heartbeat-threshold",
    "4s",
    "--probe-timeout",
    "2s",
    "--catalog-ttl",
    "1s",
];

/// The `tmc` binary next to the running one: the binary itself (`tmc
/// bench`), or the one cargo builds for integration tests (which run from
/// `target/<profile>/deps`).
pub fn tmc_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("tmc"));
    let dir = exe.parent().unwrap_or(Path::new("."));
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    dir.join(format!("tmc{}", std::env::consts::EXE_SUFFIX))
}

/// How the replicas talk to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peers {
    /// Mutual TLS with certificates from `tmc certs`, and the Kubernetes
    /// API over HTTPS.
    MutualTls,
    /// `--insecure-peers`: plain HTTP and raft frames, no API.
    Insecure,
}

/// How to start a [`TestCluster`].
#[derive(Debug, Clone)]
pub struct Builder {
    bin: PathBuf,
    nodes: u64,
    voters: Option<u64>,
    peers: Peers,
    tick_ms: Option<u64>,
    args: Vec<String>,
    tokens: String,
    base: Option<PathBuf>,
    prefix: String,
    die_with_parent: bool,
    status_timeout: Duration,
    shard: Option<String>,
    share_tls: Option<PathBuf>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            bin: tmc_binary(),
            nodes: 3,
            voters: None,
            peers: Peers::MutualTls,
            tick_ms: None,
            args: Vec::new(),
            tokens: String::new(),
            base: None,
            prefix: "tmc-shard".into(),
            die_with_parent: false,
            status_timeout: Duration::from_secs(10),
            shard: None,
            share_tls: None,
        }
    }
}

impl Builder {
    /// The `tmc` binary to run (default: [`tmc_binary`]).
    pub fn bin(mut self, bin: &Path) -> Self {
        self.bin = bin.to_path_buf();
        self
    }

    /// Nodes 1..=n are in every node's address book (default 3).
    pub fn nodes(mut self, n: u64) -> Self {
        self.nodes = n;
        self
    }

    /// Nodes 1..=n found the shard (`--voters 1,..,n`); the others can be
    /// started later with [`TestCluster::spawn_joining`]. Without it every
    /// node of the address book starts, with no `--voters`.
    pub fn voters(mut self, n: u64) -> Self {
        self.voters = Some(n);
        self
    }

    /// Plain HTTP between the replicas (`--insecure-peers`) and no API
    /// listener.
    pub fn insecure_peers(mut self) -> Self {
        self.peers = Peers::Insecure;
        self
    }

    /// `--tick-ms` (default: the replicas' own).
    pub fn tick_ms(mut self, ms: u64) -> Self {
        self.tick_ms = Some(ms);
        self
    }

    /// One more `tmc serve` flag for every node.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// More `tmc serve` flags for every node.
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// Lines (`token,user,uid,"groups"`) appended to every token file; the
    /// admin stays first.
    pub fn tokens(mut self, lines: &str) -> Self {
        self.tokens.push_str(lines);
        self
    }

    /// Where the cluster's temporary directory goes (default: the
    /// system's), and its name's prefix.
    pub fn dir_in(mut self, base: Option<&Path>, prefix: &str) -> Self {
        self.base = base.map(Path::to_path_buf);
        self.prefix = prefix.to_string();
        self
    }

    /// The replicas get `PR_SET_PDEATHSIG = SIGKILL` (see [`ChildGuard`]):
    /// for a benchmark, whose runtime threads live as long as it does.
    pub fn die_with_parent(mut self) -> Self {
        self.die_with_parent = true;
        self
    }

    /// The replicas are of shard `name` (`tmc certs --shard`, `tmc serve
    /// --shard`; default: the root shard). Give a non-root shard its
    /// `--root-shard` with [`Builder::args`].
    pub fn shard(mut self, name: &str) -> Self {
        self.shard = Some(name.to_string());
        self
    }

    /// Uses the users' CA, tokens and front proxy material of another
    /// cluster's TLS directory `dir` (shards of one deployment share
    /// them); its own peer CA and replica certificates are made anew.
    pub fn share_tls_with(mut self, dir: &Path) -> Self {
        self.share_tls = Some(dir.to_path_buf());
        self
    }

    /// How long a status probe waits for an answer (default 10 s).
    pub fn status_timeout(mut self, d: Duration) -> Self {
        self.status_timeout = d;
        self
    }

    /// Reserves ports, makes the directory and the TLS material; starts
    /// nothing (see [`TestCluster::route_peer`], then
    /// [`TestCluster::start_founders`]).
    pub fn build(self) -> Result<TestCluster, BoxError> {
        let mut b = tempfile::Builder::new();
        b.prefix(&self.prefix);
        let dir = match &self.base {
            Some(p) => b.tempdir_in(p)?,
            None => b.tempdir()?,
        };
        let ids = 1..=self.nodes;
        let mut c = TestCluster {
            nodes: BTreeMap::new(),
            raft: ids.clone().map(|id| (id, free_port())).collect(),
            kv: ids.clone().map(|id| (id, free_port())).collect(),
            api: match self.peers {
                Peers::MutualTls => ids.map(|id| (id, free_port())).collect(),
                Peers::Insecure => BTreeMap::new(),
            },
            routes: BTreeMap::new(),
            peer_tls: None,
            dir,
            opts: self,
        };
        if c.opts.peers == Peers::MutualTls {
            c.make_certs()?;
        }
        Ok(c)
    }

    /// [`Builder::build`], then starts the founding nodes and, with an API,
    /// waits until each serves it.
    pub fn start(self) -> Result<TestCluster, BoxError> {
        let mut c = self.build()?;
        c.start_founders()?;
        Ok(c)
    }
}

/// Running `tmc serve` replicas (see the [module docs](self)).
pub struct TestCluster {
    nodes: BTreeMap<u64, ChildGuard>,
    raft: BTreeMap<u64, u16>,
    kv: BTreeMap<u64, u16>,
    api: BTreeMap<u64, u16>,
    routes: BTreeMap<(u64, u64), SocketAddr>,
    peer_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    dir: tempfile::TempDir,
    opts: Builder,
}

impl TestCluster {
    /// A builder with the defaults: three nodes, mutual TLS, HTTPS API.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Three replicas without controllers (the API tests write statuses
    /// themselves; a controller would race them), each serving the API.
    /// Panics if they do not come up.
    pub fn start() -> TestCluster {
        Self::start_with(&["--no-controllers"], "")
    }

    /// Three replicas (no controllers) whose token file also holds
    /// `extra_tokens` (see [`Builder::tokens`]).
    pub fn start_with_tokens(extra_tokens: &str) -> TestCluster {
        Self::start_with(&["--no-controllers"], extra_tokens)
    }

    /// Three replicas with extra `tmc serve` flags (controllers run unless
    /// they include `--no-controllers`) and extra token-file lines.
    pub fn start_with(extra_args: &[&str], extra_tokens: &str) -> TestCluster {
        Self::builder()
            .args(extra_args)
            .tokens(extra_tokens)
            .start()
            .unwrap_or_else(|e| panic!("test cluster: {e}"))
    }

    fn tmc(&self) -> Command {
        Command::new(&self.opts.bin)
    }

    fn make_certs(&mut self) -> Result<(), BoxError> {
        let nodes = self.ids_csv(self.opts.nodes);
        if let Some(from) = &self.opts.share_tls {
            std::fs::create_dir_all(self.tls_dir())?;
            for f in [
                "ca.crt",
                "ca.key",
                "tokens.csv",
                "front-proxy-ca.crt",
                "front-proxy-ca.key",
                "front-proxy-client.crt",
                "front-proxy-client.key",
                "server.crt",
                "server.key",
            ] {
                std::fs::copy(from.join(f), self.tls_dir().join(f))?;
            }
        }
        let mut cmd = self.tmc();
        cmd.args(["certs", "--nodes", &nodes, "--dir"])
            .arg(self.tls_dir());
        if let Some(name) = &self.opts.shard {
            cmd.args(["--shard", name]);
        }
        let out = cmd.output()?;
        if !out.status.success() {
            return Err(format!("tmc certs: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        if !self.opts.tokens.is_empty() && self.opts.share_tls.is_none() {
            use std::io::Write;
            let mut files = vec![self.tls_dir().join("tokens.csv")];
            files.extend(
                self.ids()
                    .into_iter()
                    .map(|id| self.node_tls_dir(id).join("tokens.csv")),
            );
            for path in files {
                let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
                f.write_all(self.opts.tokens.as_bytes())?;
            }
        }
        let tls = crate::raft::tls::PeerTls::load(&self.tls_dir())?;
        self.peer_tls = Some(tls.client_config());
        Ok(())
    }

    fn ids_csv(&self, n: u64) -> String {
        (1..=n).map(|v| v.to_string()).collect::<Vec<_>>().join(",")
    }

    /// Starts the founding nodes ([`Builder::voters`], or every node) and,
    /// with an API, waits until each serves it.
    pub fn start_founders(&mut self) -> Result<(), BoxError> {
        let founders = self.opts.voters.unwrap_or(self.opts.nodes);
        for id in 1..=founders {
            self.spawn(id)?;
        }
        if self.opts.peers == Peers::MutualTls {
            for id in 1..=founders {
                self.wait_ready(id);
            }
        }
        Ok(())
    }

    /// Are these the replicas of the root shard ([`Builder::shard`])?
    pub fn is_root_shard(&self) -> bool {
        self.opts
            .shard
            .as_deref()
            .is_none_or(|s| s == crate::shards::ROOT)
    }

    /// Every node of the address book.
    pub fn ids(&self) -> Vec<u64> {
        (1..=self.opts.nodes).collect()
    }

    /// The cluster's directory: data, logs, TLS material, kubeconfigs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the directory after the cluster is dropped; returns its path.
    pub fn keep_dir(&mut self) -> PathBuf {
        self.dir.disable_cleanup(true);
        self.dir.path().to_path_buf()
    }

    /// The operator's TLS directory (`ca.crt`, `ca.key`, `tokens.csv`,
    /// `peer-ca.*`, the operator's `peer.crt`, ...).
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// Node `id`'s TLS directory, its `--tls-dir` and `--peer-tls-dir`.
    pub fn node_tls_dir(&self, id: u64) -> PathBuf {
        self.tls_dir().join("nodes").join(id.to_string())
    }

    /// The log file of node `id`.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    /// The data directory of node `id`.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    /// Node `id`'s raft port.
    pub fn raft_port(&self, id: u64) -> u16 {
        self.raft[&id]
    }

    /// Node `id`'s raft address, by node.
    pub fn raft_addrs(&self) -> BTreeMap<u64, SocketAddr> {
        self.raft
            .iter()
            .map(|(&id, &p)| (id, SocketAddr::from(([127, 0, 0, 1], p))))
            .collect()
    }

    /// Node `id`'s KV (internal HTTP) port.
    pub fn kv_port(&self, id: u64) -> u16 {
        self.kv[&id]
    }

    /// `127.0.0.1:PORT` of node `id`'s KV interface.
    pub fn kv_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.kv[&id])
    }

    /// `http://127.0.0.1:PORT` of node `id`'s KV interface (insecure
    /// peers).
    pub fn kv_url(&self, id: u64) -> String {
        format!("http://{}", self.kv_addr(id))
    }

    /// Node `id`'s API port.
    pub fn api_port(&self, id: u64) -> u16 {
        self.api[&id]
    }

    /// `https://127.0.0.1:PORT` of node `id`'s API.
    pub fn server(&self, id: u64) -> String {
        format!("https://127.0.0.1:{}", self.api[&id])
    }

    /// Node `from` reaches node `to`'s raft port at `addr` instead (for
    /// nodes started after this call).
    pub fn route_peer(&mut self, from: u64, to: u64, addr: SocketAddr) {
        self.routes.insert((from, to), addr);
    }

    fn peers_arg(&self, id: u64) -> String {
        self.raft
            .iter()
            .map(|(&p, &port)| match self.routes.get(&(id, p)) {
                Some(addr) => format!("{p}={addr}"),
                None => format!("{p}=127.0.0.1:{port}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn kv_peers_arg(&self) -> String {
        self.kv
            .iter()
            .map(|(i, p)| format!("{i}=127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts node `id` (a founding voter, or any node without
    /// [`Builder::voters`]).
    pub fn spawn(&mut self, id: u64) -> Result<(), BoxError> {
        self.spawn_node(id, false, None)
    }

    /// Starts node `id` with `--join`.
    pub fn spawn_joining(&mut self, id: u64) -> Result<(), BoxError> {
        self.spawn_node(id, true, None)
    }

    /// Starts node `id` with these extra `tmc serve` flags instead of the
    /// cluster's (e.g. another encryption config on one replica).
    pub fn spawn_with_args(&mut self, id: u64, extra_args: &[String]) -> Result<(), BoxError> {
        self.spawn_node(id, false, Some(extra_args))
    }

    fn spawn_node(&mut self, id: u64, join: bool, args: Option<&[String]>) -> Result<(), BoxError> {
        if self.nodes.contains_key(&id) {
            return Err(format!("node {id} already runs").into());
        }
        let mut cmd = self.tmc();
        cmd.arg("serve");
        if self.opts.peers == Peers::Insecure {
            cmd.arg("--insecure-peers");
        }
        cmd.args(["--node-id", &id.to_string()])
            .args(["--peers", &self.peers_arg(id)])
            .args(["--kv-peers", &self.kv_peers_arg()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--listen", &self.kv_addr(id)]);
        if self.opts.peers == Peers::MutualTls {
            if let Some(name) = &self.opts.shard {
                cmd.args(["--shard", name]);
            }
            cmd.args(["--api-listen", &format!("127.0.0.1:{}", self.api[&id])])
                .arg("--tls-dir")
                .arg(self.node_tls_dir(id))
                .arg("--peer-tls-dir")
                .arg(self.node_tls_dir(id));
        }
        if let Some(t) = self.opts.tick_ms {
            cmd.args(["--tick-ms", &t.to_string()]);
        }
        cmd.args(args.unwrap_or(&self.opts.args));
        if join {
            cmd.arg("--join");
        } else if let Some(v) = self.opts.voters {
            cmd.args(["--voters", &self.ids_csv(v)]);
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("TMC_NODE_LOG").unwrap_or("info".into()),
        );
        let child = ChildGuard::spawn_with(
            &format!("tmc serve node {id}"),
            &mut cmd,
            &self.log_path(id),
            self.opts.die_with_parent,
        )?;
        self.nodes.insert(id, child);
        Ok(())
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes.remove(&id) {
            c.kill();
        }
    }

    /// SIGSTOP: node `id` freezes (a long GC pause, a stalled VM); its
    /// sockets stay open.
    pub fn pause(&self, id: u64) {
        if let Some(c) = self.nodes.get(&id) {
            c.signal(libc::SIGSTOP);
        }
    }

    /// SIGCONT after [`TestCluster::pause`].
    pub fn resume(&self, id: u64) {
        if let Some(c) = self.nodes.get(&id) {
            c.signal(libc::SIGCONT);
        }
    }

    /// Whether node `id` was started and not killed since.
    pub fn is_running(&self, id: u64) -> bool {
        self.nodes.contains_key(&id)
    }

    /// Whether node `id` was started and has not exited.
    pub fn running(&mut self, id: u64) -> bool {
        self.nodes.get_mut(&id).is_some_and(|c| c.running())
    }

    /// The process id of node `id`, while it runs.
    pub fn pid(&mut self, id: u64) -> Option<u32> {
        let c = self.nodes.get_mut(&id)?;
        if c.running() {
            c.pid()
        } else {
            None
        }
    }

    /// Prints the last `n` lines of every node's log to stderr.
    pub fn dump_logs(&self, n: usize) {
        for id in self.ids() {
            eprintln!("---- node {id} log (last {n} lines) ----");
            eprintln!("{}", log_tail(&self.log_path(id), n));
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for id in self.ids() {
            self.kill(id);
        }
        if std::thread::panicking() || std::env::var_os("TMC_DUMP_LOGS").is_some() {
            self.dump_logs(60);
        }
    }
}
