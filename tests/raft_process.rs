//! Multi-process raft tests on loopback: three `tmc serve` replicas as real
//! processes, their KV interface over HTTP, faults by SIGKILL.
//!
//! Every wait is a bounded loop; children are killed when a test ends,
//! whether it passes or not (their logs are printed when it fails).

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::free_port;

const N: usize = 3;

struct Cluster {
    dir: tempfile::TempDir,
    raft: Vec<u16>,
    kv: Vec<u16>,
    children: Vec<Option<Child>>,
    http: reqwest::Client,
}

impl Cluster {
    /// Starts three replicas (ids 1..=3).
    fn start() -> Cluster {
        let mut c = Cluster {
            dir: tempfile::Builder::new()
                .prefix("tmc-raft-process")
                .tempdir()
                .unwrap(),
            raft: (0..N).map(|_| free_port()).collect(),
            kv: (0..N).map(|_| free_port()).collect(),
            children: (0..N).map(|_| None).collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        for id in 1..=N as u64 {
            c.spawn(id);
        }
        c
    }

    fn peers(ports: &[u16]) -> String {
        ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    fn spawn(&mut self, id: u64) {
        let i = (id - 1) as usize;
        assert!(self.children[i].is_none(), "node {id} already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tmc"))
            .arg("serve")
            .arg("--insecure-peers")
            .args(["--node-id", &id.to_string()])
            .args(["--peers", &Self::peers(&self.raft)])
            .args(["--kv-peers", &Self::peers(&self.kv)])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node{id}")))
            .args(["--listen", &format!("127.0.0.1:{}", self.kv[i])])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
    }

    /// SIGKILL (Child::kill sends SIGKILL on Unix) and reap.
    fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.children[(id - 1) as usize].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn url(&self, id: u64, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.kv[(id - 1) as usize])
    }

    /// One request; `None` when the node does not answer (down, starting).
    async fn req(
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

    async fn status(&self, id: u64) -> Option<Value> {
        match self.req(reqwest::Method::GET, id, "/status", None).await {
            Some((200, v)) => Some(v),
            _ => None,
        }
    }

    /// Waits until every node of `ids` names the same leader, itself one of
    /// `ids` and reporting role "leader".
    async fn wait_leader(&self, ids: &[u64], within: Duration) -> u64 {
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

    async fn put(&self, id: u64, key: &str, value: &str) -> Option<(u16, Value)> {
        self.req(
            reqwest::Method::PUT,
            id,
            &format!("/kv/{key}"),
            Some(value.to_string()),
        )
        .await
    }

    async fn get(&self, id: u64, key: &str, consistency: &str) -> Option<(u16, Value)> {
        self.req(
            reqwest::Method::GET,
            id,
            &format!("/kv/{key}?consistency={consistency}"),
            None,
        )
        .await
    }

    /// Writes through any of `ids`, following "not leader" answers and
    /// retrying unavailability until `within`; returns the revision of the
    /// acknowledged write.
    async fn put_acked(&self, ids: &[u64], key: &str, value: &str, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        let mut last = None;
        loop {
            for &id in ids {
                let r = self.put(id, key, value).await;
                if let Some((200, v)) = &r {
                    return v["revision"].as_u64().expect("revision");
                }
                if let Some((503, v)) = &r {
                    if let Some(l) = v["leader"].as_u64() {
                        if ids.contains(&l) {
                            if let Some((200, v)) = self.put(l, key, value).await {
                                return v["revision"].as_u64().expect("revision");
                            }
                        }
                    }
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

    /// A linearizable read of `key` on `id`, retried while the node is
    /// unavailable (5xx, not answering); returns the value, `None` if absent.
    async fn read_lin(&self, id: u64, key: &str, within: Duration) -> Option<String> {
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
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=N as u64 {
            self.kill(id);
        }
        if std::thread::panicking() {
            for id in 1..=N as u64 {
                let log = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("---- node {id} log (last 40 lines) ----");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

const ALL: [u64; 3] = [1, 2, 3];
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_a_write_is_read_linearizably_everywhere() {
    let c = Cluster::start();
    let leader = c.wait_leader(&ALL, WAIT).await;
    let (code, v) = c
        .put(leader, "root:t/default/a", r#"{"x":1}"#)
        .await
        .expect("leader answers");
    assert_eq!(code, 200, "{v}");
    let rev = v["revision"].as_u64().unwrap();
    assert!(rev >= 1);
    for id in ALL {
        // No retry: a linearizable read right after the acknowledgement
        // must see the write on every replica.
        let (code, v) = c
            .get(id, "root:t/default/a", "linearizable")
            .await
            .expect("node answers");
        assert_eq!(code, 200, "node {id}: {v}");
        assert_eq!(v["record"]["value"], r#"{"x":1}"#, "node {id}");
        assert_eq!(v["record"]["mod_revision"].as_u64(), Some(rev));
    }
    // A write on a follower is forwarded to the leader.
    let follower = ALL.into_iter().find(|&i| i != leader).unwrap();
    let (code, v) = c.put(follower, "root:t/default/f", "3").await.unwrap();
    assert_eq!(code, 200, "{v}");
    assert!(v["revision"].as_u64().unwrap() > rev, "{v}");
    for id in ALL {
        assert_eq!(
            c.read_lin(id, "root:t/default/f", WAIT).await.as_deref(),
            Some("3")
        );
    }
    // Without forwarding, it is refused with the leader's id and address.
    let (code, v) = {
        let resp = c
            .http
            .put(c.url(follower, "/kv/root:t/default/b"))
            .header("x-tmc-no-forward", "1")
            .body("2")
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["leader"].as_u64(), Some(leader), "{v}");
    let addr = format!("127.0.0.1:{}", c.kv[(leader - 1) as usize]);
    assert_eq!(v["leader_addr"].as_str(), Some(addr.as_str()), "{v}");
    assert!(v["error"].as_str().unwrap().contains("not leader"), "{v}");
    // A frame that fails its checksum, sent to a follower's raft port, is
    // logged and dropped; the shard goes on.
    {
        use std::io::Write;
        let body = b"not a raft message at all";
        let mut frame = Vec::new();
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&(crc32fast::hash(body) ^ 1).to_be_bytes());
        frame.extend_from_slice(body);
        let raft_port = c.raft[(follower - 1) as usize];
        let mut s = std::net::TcpStream::connect(("127.0.0.1", raft_port)).unwrap();
        s.write_all(&frame).unwrap();
        s.flush().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let log = std::fs::read_to_string(c.log_path(follower)).unwrap_or_default();
            if log.contains("checksum mismatch") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no log line for the damaged frame"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        c.read_lin(follower, "root:t/default/a", WAIT).await,
        Some(r#"{"x":1}"#.to_string())
    );
    // Delete, then the key is gone everywhere.
    let (code, _) = c
        .req(
            reqwest::Method::DELETE,
            leader,
            "/kv/root:t/default/a",
            None,
        )
        .await
        .unwrap();
    assert_eq!(code, 200);
    for id in ALL {
        assert_eq!(c.read_lin(id, "root:t/default/a", WAIT).await, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_elects_a_new_one_that_takes_writes() {
    let mut c = Cluster::start();
    let old = c.wait_leader(&ALL, WAIT).await;
    for i in 0..5 {
        c.put_acked(&ALL, &format!("root:t/default/k{i}"), &i.to_string(), WAIT)
            .await;
    }
    c.kill(old);
    let killed_at = Instant::now();
    let rest: Vec<u64> = ALL.into_iter().filter(|&i| i != old).collect();
    c.put_acked(&rest, "root:t/default/after", "1", WAIT).await;
    let failover = killed_at.elapsed();
    eprintln!("first write acknowledged {failover:?} after SIGKILL of the leader");
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    let new = c.wait_leader(&rest, WAIT).await;
    assert_ne!(new, old);
    for &id in &rest {
        for i in 0..5 {
            assert_eq!(
                c.read_lin(id, &format!("root:t/default/k{i}"), WAIT).await,
                Some(i.to_string()),
                "node {id} key k{i}"
            );
        }
        assert_eq!(
            c.read_lin(id, "root:t/default/after", WAIT).await,
            Some("1".into())
        );
    }
    // The old leader comes back as a follower and catches up.
    c.spawn(old);
    c.wait_leader(&ALL, WAIT).await;
    assert_eq!(
        c.read_lin(old, "root:t/default/after", WAIT).await,
        Some("1".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_all_three_and_restart_keeps_every_acknowledged_write() {
    let mut c = Cluster::start();
    c.wait_leader(&ALL, WAIT).await;
    let mut acked = Vec::new();
    for i in 0..30 {
        let key = format!("root:t/default/w{i}");
        c.put_acked(&ALL, &key, &format!("v{i}"), WAIT).await;
        acked.push((key, format!("v{i}")));
    }
    for id in ALL {
        c.kill(id);
    }
    for id in ALL {
        c.spawn(id);
    }
    c.wait_leader(&ALL, WAIT).await;
    for id in ALL {
        for (key, value) in &acked {
            assert_eq!(
                c.read_lin(id, key, WAIT).await.as_deref(),
                Some(value.as_str()),
                "node {id} lost {key}"
            );
        }
    }
    // And the shard still takes writes.
    c.put_acked(&ALL, "root:t/default/after-restart", "1", WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_accepts_no_write_and_serves_no_linearizable_read() {
    let mut c = Cluster::start();
    c.wait_leader(&ALL, WAIT).await;
    c.put_acked(&ALL, "root:t/default/x", "before", WAIT).await;
    // Make sure node 3 has applied the write before it is cut off.
    assert_eq!(
        c.read_lin(3, "root:t/default/x", WAIT).await,
        Some("before".into())
    );
    c.kill(1);
    c.kill(2);
    // For longer than an election timeout (plus check-quorum step-down),
    // node 3 alone must refuse every write and every linearizable read.
    let until = Instant::now() + Duration::from_secs(5);
    let mut attempts = 0;
    let mut ambiguous = false;
    while Instant::now() < until {
        let w = c.put(3, "root:t/default/x", "minority").await;
        assert!(
            !matches!(w, Some((200, _))),
            "the minority acknowledged a write: {w:?}"
        );
        // 504 (timeout, leadership lost): the outcome is unknown, as with
        // etcd: a leader cut off may have appended it to its log, and it
        // may commit once a majority is back. 502: forwarding to a dead
        // leader failed (counted as unknown too). 503: refused outright.
        match &w {
            Some((503, _)) => {}
            Some((502 | 504, _)) => ambiguous = true,
            other => panic!("unexpected answer to a minority write: {other:?}"),
        }
        let r = c.get(3, "root:t/default/x", "linearizable").await;
        assert!(
            !matches!(r, Some((200, _))),
            "the minority served a linearizable read: {r:?}"
        );
        attempts += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(attempts >= 5);
    // The errors are explicit once it knows no leader.
    let (code, v) = c.get(3, "root:t/default/x", "linearizable").await.unwrap();
    assert_eq!(code, 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no leader"), "{v}");
    // A local read may be stale and is served.
    let (code, v) = c.get(3, "root:t/default/x", "local").await.unwrap();
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["record"]["value"], "before");
    // Bring one peer back: a majority again. A refused write was never
    // applied; one with an unknown outcome may have been.
    c.spawn(1);
    c.wait_leader(&[1, 3], WAIT).await;
    let after = c.read_lin(3, "root:t/default/x", WAIT).await;
    if ambiguous {
        assert!(
            after.as_deref() == Some("before") || after.as_deref() == Some("minority"),
            "{after:?}"
        );
    } else {
        assert_eq!(after.as_deref(), Some("before"));
    }
}
