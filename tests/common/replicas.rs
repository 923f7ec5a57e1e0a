//! A shard of real `tmc serve` processes on loopback, optionally behind the
//! fault-injecting proxy ([`super::faultnet`]), for multi-process tests.
//!
//! Every node of the address book gets a raft port and a KV port up front;
//! the first `voters` nodes found the shard, the others can be started
//! later with `--join`. Children are SIGKILLed when the shard is dropped;
//! if the test is failing (or `TMC_DUMP_LOGS` is set), the tail of each
//! node's log is printed.
#![allow(dead_code)]

use super::faultnet::FaultNet;
use super::free_port;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start the shard.
#[derive(Debug, Clone)]
pub struct ShardOptions {
    /// Nodes 1..=voters found the shard.
    pub voters: u64,
    /// Nodes 1..=book are in every node's address book.
    pub book: u64,
    /// Put the fault-injecting proxy on every peer link.
    pub faults: bool,
    /// Seed of the proxy's random drops.
    pub seed: u64,
    /// `--tick-ms`.
    pub tick_ms: u64,
    /// More `tmc serve` arguments for every node.
    pub extra: Vec<String>,
}

impl Default for ShardOptions {
    fn default() -> Self {
        ShardOptions {
            voters: 3,
            book: 3,
            faults: false,
            seed: 0,
            tick_ms: 100,
            extra: Vec::new(),
        }
    }
}

pub struct Shard {
    pub dir: tempfile::TempDir,
    pub opts: ShardOptions,
    pub raft: BTreeMap<u64, SocketAddr>,
    pub kv: BTreeMap<u64, u16>,
    pub net: Option<FaultNet>,
    children: BTreeMap<u64, Child>,
    pub http: reqwest::Client,
}

impl Shard {
    /// Starts the founding voters. Must run inside a tokio runtime.
    pub async fn start(opts: ShardOptions) -> Shard {
        let raft: BTreeMap<u64, SocketAddr> = (1..=opts.book)
            .map(|id| (id, format!("127.0.0.1:{}", free_port()).parse().unwrap()))
            .collect();
        let kv = (1..=opts.book).map(|id| (id, free_port())).collect();
        let net = if opts.faults {
            Some(FaultNet::start(&raft, opts.seed).await)
        } else {
            None
        };
        let mut s = Shard {
            dir: tempfile::Builder::new()
                .prefix("tmc-shard")
                .tempdir()
                .unwrap(),
            opts,
            raft,
            kv,
            net,
            children: BTreeMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        for id in 1..=s.opts.voters {
            s.spawn(id);
        }
        s
    }

    pub fn net(&self) -> &FaultNet {
        self.net.as_ref().expect("shard started with faults")
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    fn peers_arg(&self, id: u64) -> String {
        match &self.net {
            Some(net) => net.peers_arg(id, &self.raft),
            None => self
                .raft
                .iter()
                .map(|(i, a)| format!("{i}={a}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    fn kv_peers_arg(&self) -> String {
        self.kv
            .iter()
            .map(|(i, p)| format!("{i}=127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn kv_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.kv[&id])
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.children.contains_key(&id)
    }

    /// Starts node `id` (a founding voter, or a joining one with `join`).
    fn spawn_with(&mut self, id: u64, join: bool) {
        assert!(!self.children.contains_key(&id), "node {id} already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .unwrap();
        let voters = (1..=self.opts.voters)
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tmc"));
        cmd.arg("serve")
            .arg("--insecure-peers")
            .args(["--node-id", &id.to_string()])
            .args(["--peers", &self.peers_arg(id)])
            .args(["--kv-peers", &self.kv_peers_arg()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--listen", &self.kv_addr(id)])
            .args(["--tick-ms", &self.opts.tick_ms.to_string()])
            .args(&self.opts.extra);
        if join {
            cmd.arg("--join");
        } else {
            cmd.args(["--voters", &voters]);
        }
        let child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.insert(id, child);
    }

    pub fn spawn(&mut self, id: u64) {
        self.spawn_with(id, false)
    }

    pub fn spawn_joining(&mut self, id: u64) {
        self.spawn_with(id, true)
    }

    /// SIGKILL (Child::kill sends SIGKILL on Unix) and reap.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.children.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process freezes (a long GC pause, a stalled VM); its
    /// sockets stay open.
    pub fn pause(&self, id: u64) {
        if let Some(c) = self.children.get(&id) {
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGSTOP) };
        }
    }

    /// SIGCONT after [`Shard::pause`].
    pub fn resume(&self, id: u64) {
        if let Some(c) = self.children.get(&id) {
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGCONT) };
        }
    }

    pub fn url(&self, id: u64, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.kv[&id])
    }

    /// One request; `None` when the node does not answer.
    pub async fn req(
        &self,
        method: reqwest::Method,
        id: u64,
        path: &str,
        body: Option<String>,
    ) -> Option<(u16, Value)> {
        let mut r = self.http.request(method, self.url(id, path));
        if let Some(b) = body {
            r = r.body(b);
        }
        let resp = r.send().await.ok()?;
        let status = resp.status().as_u16();
        let json = resp.json::<Value>().await.unwrap_or(Value::Null);
        Some((status, json))
    }

    pub async fn status(&self, id: u64) -> Option<Value> {
        match self.req(reqwest::Method::GET, id, "/status", None).await {
            Some((200, v)) => Some(v),
            _ => None,
        }
    }

    /// Waits until every node of `ids` names the same leader, one of `ids`
    /// that reports role "leader".
    pub async fn wait_leader(&self, ids: &[u64], within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let mut seen = Vec::new();
            for &id in ids {
                seen.push(self.status(id).await);
            }
            let leaders: Vec<Option<u64>> = seen
                .iter()
                .map(|s| s.as_ref().and_then(|s| s["leader"].as_u64()))
                .collect();
            if let Some(Some(l)) = leaders.first() {
                let l = *l;
                let agreed = leaders.iter().all(|x| *x == Some(l));
                let is_leader = ids
                    .iter()
                    .position(|&i| i == l)
                    .and_then(|p| seen[p].as_ref())
                    .map(|s| s["role"] == "leader")
                    .unwrap_or(false);
                if agreed && is_leader {
                    return l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {ids:?} within {within:?}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader some running node of `ids` reports, if any.
    pub async fn some_leader(&self, ids: &[u64]) -> Option<u64> {
        for &id in ids {
            if let Some(s) = self.status(id).await {
                if let Some(l) = s["leader"].as_u64() {
                    return Some(l);
                }
            }
        }
        None
    }

    pub async fn put(&self, id: u64, key: &str, value: &str) -> Option<(u16, Value)> {
        self.req(
            reqwest::Method::PUT,
            id,
            &format!("/kv/{key}"),
            Some(value.to_string()),
        )
        .await
    }

    pub async fn get(&self, id: u64, key: &str, consistency: &str) -> Option<(u16, Value)> {
        self.req(
            reqwest::Method::GET,
            id,
            &format!("/kv/{key}?consistency={consistency}"),
            None,
        )
        .await
    }

    /// Writes through any of `ids` until acknowledged; the revision.
    pub async fn put_acked(&self, ids: &[u64], key: &str, value: &str, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        let mut last = None;
        loop {
            for &id in ids {
                let r = self.put(id, key, value).await;
                if let Some((200, v)) = &r {
                    return v["revision"].as_u64().expect("revision");
                }
                last = r;
            }
            assert!(
                Instant::now() < deadline,
                "write of {key} not acknowledged by {ids:?} within {within:?}; last answer {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A linearizable read of `key` on `id`, retried while unavailable.
    pub async fn read_lin(&self, id: u64, key: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let r = self.get(id, key, "linearizable").await;
            match &r {
                Some((200, v)) => {
                    return Some(v["record"]["value"].as_str().expect("value").to_string())
                }
                Some((404, _)) => return None,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "linearizable read of {key} on node {id} failed within {within:?}: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Prints the last `n` lines of every node's log to stderr.
    pub fn dump_logs(&self, n: usize) {
        for id in self.kv.keys() {
            let log = std::fs::read_to_string(self.log_path(*id)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(n).collect();
            eprintln!("---- node {id} log (last {n} lines) ----");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.children.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
        if std::thread::panicking() || std::env::var_os("TMC_DUMP_LOGS").is_some() {
            self.dump_logs(40);
        }
    }
}
