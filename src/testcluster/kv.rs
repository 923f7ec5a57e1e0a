//! The KV interface and the raft status of a [`TestCluster`]'s replicas:
//! probes, waits for an agreed leader, reads and writes.

use super::{block_on, log_tail, request, BoxError, Target, TestCluster};
use crate::raft::server::StatusReport;
use rustls::pki_types::ServerName;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

impl TestCluster {
    fn kv_target(&self, id: u64) -> Target {
        Target {
            addr: self.kv_addr(id),
            tls: self.peer_tls.clone().map(|cfg| {
                let name = ServerName::try_from(crate::raft::tls::PEER_NAME).expect("a name");
                (cfg, name)
            }),
        }
    }

    /// One request to node `id`'s KV interface (with the operator's peer
    /// certificate under mutual TLS): status and body; `Err` when the node
    /// does not answer within `timeout`.
    pub async fn kv_raw(
        &self,
        method: &str,
        id: u64,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, bytes::Bytes), String> {
        request(&self.kv_target(id), method, path, headers, body, timeout).await
    }

    /// One request to node `id`'s KV interface with a JSON answer;
    /// `None` when the node does not answer (down, starting).
    pub async fn req(
        &self,
        method: &str,
        id: u64,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Option<(u16, Value)> {
        let body = body.map(String::into_bytes).unwrap_or_default();
        let (code, bytes) = self
            .kv_raw(method, id, path, headers, body, Duration::from_secs(10))
            .await
            .ok()?;
        Some((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// Node `id`'s `/status` as JSON; `None` when it does not answer.
    pub async fn status_json(&self, id: u64) -> Option<Value> {
        let t = self.opts.status_timeout;
        match self.kv_raw("GET", id, "/status", &[], Vec::new(), t).await {
            Ok((200, b)) => serde_json::from_slice(&b).ok(),
            _ => None,
        }
    }

    /// Node `id`'s `/status`; `None` when it does not answer.
    pub async fn status(&self, id: u64) -> Option<StatusReport> {
        serde_json::from_value(self.status_json(id).await?).ok()
    }

    /// One look at `ids`: the leader they all name, if one of them
    /// reports role "leader"; and what each said.
    async fn agreed_leader(&self, ids: &[u64]) -> (Option<u64>, Vec<Option<Value>>) {
        let mut seen = Vec::new();
        for &id in ids {
            seen.push(self.status_json(id).await);
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
                .is_some_and(|s| s["role"] == "leader");
            if agreed && is_leader {
                return (Some(l), seen);
            }
        }
        (None, seen)
    }

    /// Waits until every node of `ids` names the same leader, one of `ids`
    /// that reports role "leader"; panics after `within`.
    pub async fn wait_leader(&self, ids: &[u64], within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let (leader, seen) = self.agreed_leader(ids).await;
            if let Some(l) = leader {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {ids:?} within {within:?}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every replica of `ids` names the same leader, one of
    /// `ids` that reports itself leader, and every one has applied what that
    /// leader had committed when asked; returns the leader. Fails at once
    /// when a replica has exited.
    pub async fn wait_healthy(&mut self, ids: &[u64], within: Duration) -> Result<u64, BoxError> {
        let deadline = Instant::now() + within;
        loop {
            for &id in ids {
                if self.nodes.contains_key(&id) && !self.running(id) {
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

    /// The replica of `ids` that reports itself leader right now; `None`
    /// if one does not answer.
    pub async fn current_leader(&self, ids: &[u64]) -> Option<u64> {
        let mut leader = None;
        for &id in ids {
            let s = self.status(id).await?;
            if s.role == "leader" {
                leader = Some(s.id);
            }
        }
        leader
    }

    /// The leader the first answering node of `ids` names, if any.
    pub async fn some_leader(&self, ids: &[u64]) -> Option<u64> {
        for &id in ids {
            if let Some(l) = self
                .status_json(id)
                .await
                .and_then(|s| s["leader"].as_u64())
            {
                return Some(l);
            }
        }
        None
    }

    /// The hello a peer of this shard sends first on a raft connection,
    /// with the cluster id node `id` reports (see
    /// [`crate::raft::server::transport`]).
    pub fn peer_hello(&self, id: u64) -> [u8; crate::raft::server::transport::HELLO_LEN] {
        let st = self.raft_status(id).expect("node status");
        let hex = st["cluster_id"].as_str().expect("a cluster id");
        let cluster = u64::from_str_radix(hex, 16).expect("hex cluster id");
        crate::raft::server::transport::hello(cluster)
    }

    /// Node `id`'s raft status (`leader`, `role`, ...), blocking; `None`
    /// when it does not answer.
    pub fn raft_status(&self, id: u64) -> Option<Value> {
        block_on(self.status_json(id))
    }

    /// The leader every node names, itself reporting role "leader"
    /// (blocking; waits up to 30 s).
    pub fn leader(&self) -> u64 {
        self.leader_among(&self.ids())
    }

    /// The leader as seen by the running nodes `alive` (blocking; waits up
    /// to 30 s): one of them reports role "leader" and all of them name it.
    pub fn leader_among(&self, alive: &[u64]) -> u64 {
        block_on(self.wait_leader(alive, Duration::from_secs(30)))
    }

    /// The two nodes that are not the leader (at the time of asking).
    pub fn followers(&self) -> (u64, u64) {
        let l = self.leader();
        let f: Vec<u64> = self.ids().into_iter().filter(|&id| id != l).collect();
        (f[0], f[1])
    }

    /// Node `id`'s controller metrics (Prometheus text from `GET /metrics`
    /// on its KV listener), blocking; `None` when it does not answer.
    pub fn metrics(&self, id: u64) -> Option<String> {
        let r = block_on(self.kv_raw(
            "GET",
            id,
            "/metrics",
            &[],
            Vec::new(),
            Duration::from_secs(10),
        ));
        match r {
            Ok((200, b)) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        }
    }

    /// `PUT /kv/KEY` on node `id`.
    pub async fn put(&self, id: u64, key: &str, value: &str) -> Option<(u16, Value)> {
        let path = format!("/kv/{key}");
        self.req("PUT", id, &path, &[], Some(value.to_string()))
            .await
    }

    /// `GET /kv/KEY?consistency=C` on node `id`.
    pub async fn get(&self, id: u64, key: &str, consistency: &str) -> Option<(u16, Value)> {
        let path = format!("/kv/{key}?consistency={consistency}");
        self.req("GET", id, &path, &[], None).await
    }

    /// Writes through any of `ids`, following "not leader" answers and
    /// retrying unavailability until `within` (panics then); returns the
    /// revision of the acknowledged write.
    pub async fn put_acked(&self, ids: &[u64], key: &str, value: &str, within: Duration) -> u64 {
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
    /// unavailable (5xx, not answering) until `within` (panics then); the
    /// value, `None` if absent.
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
}
