//! The ClusterRegistration controller: TMC's SyncTarget heartbeat
//! (`pkg/reconciler/workload/heartbeat` in kcp ≤ v0.11), with tmc probing
//! the cluster itself instead of a syncer reporting in.
//!
//! Each registration is reconciled every probe interval (default 10 s):
//! - **credentials**: the Secret named by `spec.credentialsSecretRef`, in
//!   the registration's workspace, holds a `kubeconfig` (its server is
//!   replaced by `spec.apiEndpoint`), or a `token` and a `ca.crt`. A
//!   missing or unusable Secret, or a cluster answering 401/403, sets
//!   `CredentialsValid` False with a reason and a message saying what to fix;
//! - **probe**: `GET /version` and a list of nodes, with kube-rs, within a
//!   timeout. Success sets `lastHeartbeatTime`, `kubernetesVersion`,
//!   `capacity` and `allocatable` (summed over nodes) and
//!   `HeartbeatHealthy` True. After the threshold (default 40 s) without a
//!   good probe, `HeartbeatHealthy` goes False (`HeartbeatTimeout`), with
//!   the last error in the message;
//! - **Ready** is True when both are True, else False with the reason of
//!   the first that is not. Its transition time is when the cluster became
//!   unhealthy: the placement controller's grace period counts from it.
//!
//! At most `probe_concurrency` clusters are probed at once (a semaphore);
//! the first probe of a term of a cluster probed before falls at a point
//! of the interval given by a hash of its key, so a new leader does not
//! probe 10,000 clusters in one burst. The finalizer `tmc.kcp.io/cluster`
//! holds a deleted registration until no placement decision names it.
//!
//! Credentials and endpoints are checked by [`super::member`]: inline
//! credentials only (an `exec` plugin, a `tokenFile` or any other file
//! path gives `CredentialsValid` False, `UnsupportedCredential`, and
//! nothing is run or read); no loopback, link-local or own address
//! unless the shard runs with `--allow-private-member-endpoints`
//! (`EndpointNotAllowed`). Clients are cached per registration and
//! rebuilt when the Secret or the endpoint changes. Status is written only when it changed (a heartbeat
//! changes it every probe, as kcp's syncer heartbeat did).
//!
//! Left out: the syncer's own heartbeat (issue 8), per-resource API
//! discovery of the cluster (kcp's APIResourceImports), and watching the
//! Secret (a Secret change is picked up at the next probe).

use super::error::{Error, Result};
use super::finalizer::{conflict_awaits_change, finalizer, Cleanup};
use super::keys::QueueKey;
use super::member::{self, EndpointPolicy, EndpointRefused};
use super::objects::{self, is_true, set_condition, unix_now, Stored};
use super::quantity::Sums;
use super::runtime::{Action, Controller};
use crate::shard::{BoxFuture, Shard};
use crate::store::{GroupResource, Key, ListOptions, ObjectKey, Prefix, Txn, Workspace};
use crate::types::{ClusterRegistration, ClusterRegistrationStatus};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The resource this controller reconciles.
pub fn resource() -> GroupResource {
    GroupResource::new(crate::types::GROUP, "clusterregistrations").expect("valid")
}

/// The finalizer the controller keeps on every ClusterRegistration: the
/// registration goes only when no placement decision names it.
pub const FINALIZER: &str = "tmc.kcp.io/cluster";

/// How often a deleting registration looks again for placements that
/// still name it.
const DELETION_RECHECK: Duration = Duration::from_secs(1);

/// Condition types.
pub const READY: &str = "Ready";
/// The heartbeat condition.
pub const HEARTBEAT_HEALTHY: &str = "HeartbeatHealthy";
/// The credentials condition.
pub const CREDENTIALS_VALID: &str = "CredentialsValid";

/// Timing of the controller.
#[derive(Debug, Clone, Copy)]
pub struct ClusterOptions {
    /// Time between probes of one cluster.
    pub probe_interval: Duration,
    /// Time without a good probe before the cluster is unhealthy.
    pub heartbeat_threshold: Duration,
    /// Time one probe may take.
    pub probe_timeout: Duration,
    /// Clusters probed at once, at most.
    pub probe_concurrency: usize,
    /// Which member endpoints may be connected to.
    pub endpoints: EndpointPolicy,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            probe_interval: Duration::from_secs(10),
            heartbeat_threshold: Duration::from_secs(40),
            probe_timeout: Duration::from_secs(5),
            probe_concurrency: 64,
            endpoints: EndpointPolicy::default(),
        }
    }
}

/// The controller.
pub struct ClusterController {
    shard: Arc<dyn Shard>,
    opts: ClusterOptions,
    /// Client per registration, with what it was built from.
    clients: Mutex<HashMap<QueueKey, (String, kube::Client)>>,
    /// The revision of each registration's last status write by this
    /// term, and when: the change it causes comes back through the feed,
    /// and must not start a second probe loop.
    written: Mutex<HashMap<QueueKey, (u64, std::time::Instant)>>,
    /// Registrations seen this term (their first probe is placed).
    seen: Mutex<HashSet<QueueKey>>,
    /// Permits for probes: `probe_concurrency` at once.
    probes: tokio::sync::Semaphore,
}

impl ClusterController {
    /// A controller over `shard`.
    pub fn new(shard: Arc<dyn Shard>, opts: ClusterOptions) -> Self {
        ClusterController {
            shard,
            opts,
            clients: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashSet::new()),
            probes: tokio::sync::Semaphore::new(opts.probe_concurrency.max(1)),
        }
    }
}

pub use super::member::CredentialsError;

/// What one probe found.
struct Probe {
    version: String,
    capacity: BTreeMap<String, String>,
    allocatable: BTreeMap<String, String>,
}

enum ProbeError {
    /// The cluster refused the credentials.
    Unauthorized(String),
    /// The endpoint resolves to an address the shard may not connect to.
    Refused(String),
    /// Anything else: unreachable, timeout, server error.
    Failed(String),
}

impl ClusterController {
    /// The client for `reg`, built from its Secret (or the cached one).
    fn client(
        &self,
        key: &QueueKey,
        reg: &Stored<ClusterRegistration>,
    ) -> Result<kube::Client, CredentialsError> {
        let (fingerprint, creds) = member::load(&*self.shard, &key.workspace, &reg.obj.spec)?;
        if let Some((f, c)) = self
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            if *f == fingerprint {
                return Ok(c.clone());
            }
        }
        let client = creds.client(self.opts.probe_timeout, self.opts.endpoints)?;
        self.clients
            .lock()
            .expect("lock")
            .insert(key.clone(), (fingerprint, client.clone()));
        Ok(client)
    }

    async fn probe(&self, client: kube::Client) -> Result<Probe, ProbeError> {
        let classify = |e: kube::Error| match &e {
            kube::Error::Api(s) if s.code == 401 || s.code == 403 => {
                ProbeError::Unauthorized(format!("{} {}: {}", s.code, s.reason, s.message))
            }
            _ => match EndpointRefused::find(&e) {
                Some(r) => ProbeError::Refused(r.to_string()),
                None => ProbeError::Failed(e.to_string()),
            },
        };
        let work = async {
            let version = client.apiserver_version().await.map_err(classify)?;
            let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
            let mut capacity = Sums::default();
            let mut allocatable = Sums::default();
            let mut lp = kube::api::ListParams::default().limit(500);
            loop {
                let page = nodes.list(&lp).await.map_err(classify)?;
                for n in &page.items {
                    let Some(st) = &n.status else { continue };
                    for (k, q) in st.capacity.iter().flatten() {
                        capacity.add(k, &q.0);
                    }
                    for (k, q) in st.allocatable.iter().flatten() {
                        allocatable.add(k, &q.0);
                    }
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(c) => lp = lp.continue_token(&c),
                    None => break,
                }
            }
            Ok(Probe {
                version: version.git_version,
                capacity: capacity.render(),
                allocatable: allocatable.render(),
            })
        };
        match tokio::time::timeout(self.opts.probe_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Failed(format!(
                "no answer within {:?}",
                self.opts.probe_timeout
            ))),
        }
    }

    /// Drops what this term keeps of `key` (client, last write, seen).
    fn forget(&self, key: &QueueKey) {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    async fn reconcile_key(&self, key: &QueueKey) -> Result<Action> {
        let okey = ObjectKey::cluster_scoped(resource(), key.workspace.clone(), &key.name)?;
        let Some(reg) = objects::read::<ClusterRegistration>(&*self.shard, &okey)? else {
            self.forget(key);
            return Ok(Action::await_change());
        };
        // Every write of this controller records what it saw: a lost
        // compare-and-swap waits for the change that beat it (the feed
        // brings the key back).
        conflict_awaits_change(
            finalizer(
                &*self.shard,
                FINALIZER,
                &reg,
                || self.probe_and_record(key, &reg),
                || self.cleanup(key),
            )
            .await,
        )
    }

    /// Probes the member cluster of `reg` and records what it found.
    async fn probe_and_record(
        &self,
        key: &QueueKey,
        reg: &Stored<ClusterRegistration>,
    ) -> Result<Action> {
        if let Some((rev, at)) = self
            .written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            let early = self.opts.probe_interval.mul_f64(0.9);
            if *rev == reg.revision && at.elapsed() < early {
                // The change of our own write: the next probe is already
                // due at the end of the interval.
                return Ok(Action::requeue(
                    self.opts.probe_interval - at.elapsed().min(early),
                ));
            }
        }
        let now = unix_now();
        let first = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        if first && reg.obj.status.last_heartbeat_time.is_some() {
            // A new term (failover, restart) finds every cluster at once:
            // spread their first probes over the interval. A cluster
            // never probed yet goes first, at once.
            let delay = first_probe_delay(key, self.opts.probe_interval);
            if !delay.is_zero() {
                return Ok(Action::requeue(delay));
            }
        }
        let mut status = reg.obj.status.clone();
        let endpoint = reg.obj.spec.api_endpoint.clone();
        let permit = self
            .probes
            .acquire()
            .await
            .map_err(|_| Error::NotReady("the probe permits are closed".into()))?;
        let probe_failed: Option<String> = match self.client(key, reg) {
            Err(e) => {
                set_condition(
                    &mut status.conditions,
                    CREDENTIALS_VALID,
                    "False",
                    e.reason,
                    e.message.clone(),
                    now,
                );
                Some(e.message)
            }
            Ok(client) => match self.probe(client).await {
                Ok(p) => {
                    set_condition(
                        &mut status.conditions,
                        CREDENTIALS_VALID,
                        "True",
                        "Accepted",
                        "",
                        now,
                    );
                    set_condition(
                        &mut status.conditions,
                        HEARTBEAT_HEALTHY,
                        "True",
                        "HeartbeatReceived",
                        format!("{endpoint} answered the probe"),
                        now,
                    );
                    status.last_heartbeat_time = Some(objects::time(now));
                    status.kubernetes_version = p.version;
                    status.capacity = p.capacity;
                    status.allocatable = p.allocatable;
                    None
                }
                Err(ProbeError::Unauthorized(m)) => {
                    let r = &reg.obj.spec.credentials_secret_ref;
                    let msg = format!(
                        "{endpoint} refused the credentials in Secret {}/{} ({m}); update the \
                         Secret with a kubeconfig or token that may get /version and list nodes",
                        r.namespace, r.name
                    );
                    set_condition(
                        &mut status.conditions,
                        CREDENTIALS_VALID,
                        "False",
                        "Unauthorized",
                        msg.clone(),
                        now,
                    );
                    Some(msg)
                }
                Err(ProbeError::Refused(m)) => {
                    set_condition(
                        &mut status.conditions,
                        CREDENTIALS_VALID,
                        "False",
                        member::ENDPOINT_NOT_ALLOWED,
                        m.clone(),
                        now,
                    );
                    Some(m)
                }
                Err(ProbeError::Failed(m)) => Some(format!("probing {endpoint} failed: {m}")),
            },
        };
        if let Some(err) = probe_failed {
            self.heartbeat_missed(reg, &mut status, &err, now);
        }
        drop(permit);
        set_ready(&mut status, now);
        for c in status.conditions.iter_mut() {
            c.observed_generation = reg.obj.metadata.generation;
        }
        if let Some(op) = objects::status_write(reg, &status)? {
            let c = self.shard.write(Txn::new(vec![op])).await?;
            self.written
                .lock()
                .expect("lock")
                .insert(key.clone(), (c.revision, std::time::Instant::now()));
        }
        Ok(Action::requeue(self.opts.probe_interval))
    }

    /// A registration being deleted: no more probes; the placement
    /// controller's registration feed has seen the deletion (a deleting
    /// registration is no cluster to schedule on) and requeued the
    /// placements of its location, which choose again. The finalizer is
    /// removed once no placement decision names the cluster.
    async fn cleanup(&self, key: &QueueKey) -> Result<Cleanup> {
        self.forget(key);
        if let Some(p) = placement_naming(&*self.shard, &key.workspace, &key.name)? {
            tracing::debug!(cluster = %key, placement = %p, "deleting cluster still chosen; waiting");
            return Ok(Cleanup::Wait(Action::requeue(DELETION_RECHECK)));
        }
        Ok(Cleanup::Done(Vec::new()))
    }

    fn heartbeat_missed(
        &self,
        reg: &Stored<ClusterRegistration>,
        status: &mut ClusterRegistrationStatus,
        err: &str,
        now: i64,
    ) {
        let since = status
            .last_heartbeat_time
            .as_ref()
            .or(reg.obj.metadata.creation_timestamp.as_ref())
            .map(objects::secs)
            .unwrap_or(now);
        let threshold = self.opts.heartbeat_threshold.as_secs() as i64;
        if now - since >= threshold {
            let last = match &status.last_heartbeat_time {
                Some(t) => format!("the last good probe was at {}", t.0),
                None => "no probe has succeeded yet".to_string(),
            };
            set_condition(
                &mut status.conditions,
                HEARTBEAT_HEALTHY,
                "False",
                "HeartbeatTimeout",
                format!(
                    "{last}, more than {threshold}s ago; {err}. Check that the cluster's API \
                     server is running and reachable from the tmc shard"
                ),
                now,
            );
        } else if objects::condition(&status.conditions, HEARTBEAT_HEALTHY).is_none() {
            set_condition(
                &mut status.conditions,
                HEARTBEAT_HEALTHY,
                "Unknown",
                "Probing",
                err.to_string(),
                now,
            );
        }
    }
}

/// Where in the probe interval the first probe of `key` in a term falls:
/// spread evenly by a hash of the key, the same on every node.
fn first_probe_delay(key: &QueueKey, interval: Duration) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

/// The first placement whose decision names cluster `name` of `location`
/// (through the `/tmc/placements-by-location` index; stops at the first).
pub fn placement_naming(
    shard: &dyn Shard,
    location: &Workspace,
    name: &str,
) -> Result<Option<QueueKey>> {
    let prefix = Prefix::placements_at(location);
    let mut opts = ListOptions {
        limit: 1000,
        ..Default::default()
    };
    loop {
        let page = shard.list(&prefix, &opts)?;
        for r in &page.items {
            let Some(Key::PlacementAt {
                workspace, name: p, ..
            }) = Key::decode(&r.key)
            else {
                continue;
            };
            let skey = Key::placement(workspace.clone(), &p)?;
            let Some(rec) = shard.get(&skey)? else {
                continue;
            };
            let Some(state) = super::placement::PlacementState::decode(&rec.value) else {
                continue;
            };
            if state.location == location.as_str() && state.clusters.iter().any(|c| c == name) {
                return Ok(Some(QueueKey::new(workspace, None, &p)));
            }
        }
        match page.continue_token {
            Some(t) => opts.continue_token = Some(t),
            None => return Ok(None),
        }
    }
}

fn set_ready(status: &mut ClusterRegistrationStatus, now: i64) {
    let conds = &status.conditions;
    // A condition that is False explains more than one not known yet.
    let types = [CREDENTIALS_VALID, HEARTBEAT_HEALTHY];
    let is_false = |t: &&&str| objects::condition(conds, t).is_some_and(|c| c.status == "False");
    let not_true = types
        .iter()
        .find(is_false)
        .or_else(|| types.iter().find(|t| !is_true(conds, t)))
        .copied();
    match not_true {
        None => set_condition(
            &mut status.conditions,
            READY,
            "True",
            "Ready",
            "credentials accepted and heartbeat healthy",
            now,
        ),
        Some(t) => {
            let (reason, message) = match objects::condition(conds, t) {
                Some(c) => (c.reason.clone(), format!("{t}: {}", c.message)),
                None => ("Probing".to_string(), format!("{t} not known yet")),
            };
            set_condition(
                &mut status.conditions,
                READY,
                "False",
                &reason,
                message,
                now,
            )
        }
    }
}

impl Controller for ClusterController {
    fn name(&self) -> &'static str {
        "clusterregistration"
    }
    fn resource(&self) -> Option<GroupResource> {
        Some(resource())
    }
    fn workers(&self) -> usize {
        // More workers than probe permits: a registration waiting for a
        // permit does not hold up deletions or Secret errors.
        self.opts.probe_concurrency.max(1) + 4
    }
    fn start_term(
        self: Arc<Self>,
        _shard: Arc<dyn Shard>,
        _queue: super::queue::WorkQueue<QueueKey>,
    ) -> Vec<BoxFuture<'static, ()>> {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        Vec::new()
    }
    fn reconcile<'a>(&'a self, key: &'a QueueKey) -> BoxFuture<'a, Result<Action>> {
        Box::pin(self.reconcile_key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::LocalShard;
    use crate::store::{Expectation, MemoryEngine, Store, StoreOptions, TxnOp};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_deleted_registration_stays_while_a_decision_names_it() {
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st));
        let loc = Workspace::parse("root:compute").unwrap();
        let tenant = Workspace::parse("root:t").unwrap();
        let rkey = ObjectKey::cluster_scoped(resource(), loc.clone(), "east").unwrap();
        let reg = json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "ClusterRegistration",
            "metadata": {"name": "east", "uid": "u", "generation": 1,
                         "finalizers": [FINALIZER], "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"apiEndpoint": "https://127.0.0.1:1",
                     "credentialsSecretRef": {"namespace": "tmc-system", "name": "x"}}});
        let state = super::super::placement::PlacementState {
            uid: "p".into(),
            location: loc.to_string(),
            clusters: vec!["east".into()],
        };
        let skey = Key::placement(tenant.clone(), "web").unwrap();
        let ops = vec![
            TxnOp::put_json(
                rkey.clone(),
                serde_json::to_vec(&reg).unwrap(),
                Expectation::Any,
            ),
            TxnOp::put_bincode(skey.clone(), state.encode(), Expectation::Any),
            TxnOp::put_bincode(
                Key::placement_at(loc.clone(), tenant, "web").unwrap(),
                vec![],
                Expectation::Any,
            ),
        ];
        shard.write(Txn::new(ops)).await.unwrap();
        let c = ClusterController::new(shard.clone(), ClusterOptions::default());
        let key = QueueKey::new(loc, None, "east");
        assert_eq!(
            c.reconcile_key(&key).await.unwrap(),
            Action::requeue(DELETION_RECHECK),
            "root:t|web still names it: wait"
        );
        assert!(shard.get(&rkey.clone().into()).unwrap().is_some());
        // The placement chose again (elsewhere): the registration goes.
        let moved = super::super::placement::PlacementState {
            clusters: vec!["west".into()],
            ..state
        };
        let op = TxnOp::put_bincode(skey, moved.encode(), Expectation::Any);
        shard.write(Txn::new(vec![op])).await.unwrap();
        assert_eq!(c.reconcile_key(&key).await.unwrap(), Action::await_change());
        assert!(shard.get(&rkey.into()).unwrap().is_none(), "finalized");
    }

    #[test]
    fn first_probes_of_a_term_spread_evenly_over_the_interval() {
        let interval = Duration::from_secs(10);
        let mut per_second = [0usize; 10];
        for i in 0..10_000 {
            let key = QueueKey::new(
                Workspace::parse("root:compute").unwrap(),
                None,
                &format!("c{i}"),
            );
            let d = first_probe_delay(&key, interval);
            assert!(d < interval);
            assert_eq!(d, first_probe_delay(&key, interval), "stable");
            per_second[d.as_secs() as usize] += 1;
        }
        assert!(
            per_second.iter().all(|&n| (850..1150).contains(&n)),
            "about 1,000 first probes a second: {per_second:?}"
        );
    }

    /// A cluster whose API server takes 300 ms to fail every request:
    /// the probes of registrations pointing at it overlap unless limited.
    /// Counts requests in flight and their peak.
    async fn slow_cluster() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (open, peak, total) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (o, p, t) = (open.clone(), peak.clone(), total.clone());
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let (o, p, t) = (o.clone(), p.clone(), t.clone());
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
                              Content-Length: 2\r\nConnection: close\r\n\r\n{}",
                        )
                        .await;
                    o.fetch_sub(1, Ordering::SeqCst);
                    t.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (url, peak, total)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_probe_concurrency_clusters_are_probed_at_once() {
        let (url, peak, total) = slow_cluster().await;
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st));
        let ws = Workspace::parse("root:compute").unwrap();
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {url}\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    \
             cluster: c\n    user: u\ncurrent-context: c\n"
        );
        let secret = {
            use base64::Engine;
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "creds", "namespace": "tmc-system", "uid": "s"},
                   "data": {"kubeconfig": base64::engine::general_purpose::STANDARD.encode(&kubeconfig)}})
        };
        let mut ops = vec![TxnOp::put_json(
            ObjectKey::namespaced(
                GroupResource::new("", "secrets").unwrap(),
                ws.clone(),
                "tmc-system",
                "creds",
            )
            .unwrap(),
            serde_json::to_vec(&secret).unwrap(),
            Expectation::Any,
        )];
        const CLUSTERS: usize = 24;
        for i in 0..CLUSTERS {
            let name = format!("c{i}");
            let reg = json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "ClusterRegistration",
                "metadata": {"name": name, "uid": format!("u{i}"), "generation": 1,
                             "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"apiEndpoint": url,
                         "credentialsSecretRef": {"namespace": "tmc-system", "name": "creds"}}});
            ops.push(TxnOp::put_json(
                ObjectKey::cluster_scoped(resource(), ws.clone(), &name).unwrap(),
                serde_json::to_vec(&reg).unwrap(),
                Expectation::Any,
            ));
        }
        shard.write(Txn::new(ops)).await.unwrap();
        let ctrl = Arc::new(ClusterController::new(
            shard.clone(),
            ClusterOptions {
                probe_interval: Duration::from_secs(600),
                heartbeat_threshold: Duration::from_secs(600),
                probe_timeout: Duration::from_secs(5),
                probe_concurrency: 4,
                // The slow cluster listens on 127.0.0.1.
                endpoints: EndpointPolicy {
                    allow_private: true,
                },
            },
        ));
        assert!(ctrl.workers() > 4, "more workers than permits");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(super::super::runtime::run(
            shard.clone(),
            vec![ctrl as Arc<dyn super::super::runtime::Controller>],
            Arc::new(super::super::runtime::Metrics::new()),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while total.load(Ordering::SeqCst) < CLUSTERS {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {CLUSTERS} probes answered",
                total.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop_tx.send(()).unwrap();
        run.await.unwrap();
        assert_eq!(
            peak.load(Ordering::SeqCst),
            4,
            "probes in flight at once: the limit, and reached (8 workers without it)"
        );
    }

    /// Issue 13: without `--allow-private-member-endpoints` a registration
    /// pointing at loopback (by address, or by a name that resolves there)
    /// or at the cloud metadata address is refused, and the shard never
    /// connects.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loopback_and_metadata_endpoints_are_refused_by_address_and_by_name() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                a.fetch_add(1, Ordering::SeqCst);
            }
        });
        let st = Arc::new(Store::open(MemoryEngine::new(), StoreOptions::default()).unwrap());
        let shard: Arc<dyn Shard> = Arc::new(LocalShard::new(st));
        let ws = Workspace::parse("root:compute").unwrap();
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    \
             cluster: c\n    user: u\ncurrent-context: c\n"
        );
        let secret = {
            use base64::Engine;
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "creds", "namespace": "tmc-system", "uid": "s"},
                   "data": {"kubeconfig": base64::engine::general_purpose::STANDARD.encode(&kubeconfig)}})
        };
        let mut ops = vec![TxnOp::put_json(
            ObjectKey::namespaced(
                GroupResource::new("", "secrets").unwrap(),
                ws.clone(),
                "tmc-system",
                "creds",
            )
            .unwrap(),
            serde_json::to_vec(&secret).unwrap(),
            Expectation::Any,
        )];
        let endpoints = [
            ("by-address", format!("http://127.0.0.1:{port}")),
            ("by-name", format!("http://localhost:{port}")),
            ("metadata", "http://169.254.169.254".to_string()),
        ];
        for (name, url) in &endpoints {
            let reg = json!({"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "ClusterRegistration",
                "metadata": {"name": name, "uid": format!("u-{name}"), "generation": 1},
                "spec": {"apiEndpoint": url,
                         "credentialsSecretRef": {"namespace": "tmc-system", "name": "creds"}}});
            ops.push(TxnOp::put_json(
                ObjectKey::cluster_scoped(resource(), ws.clone(), name).unwrap(),
                serde_json::to_vec(&reg).unwrap(),
                Expectation::Any,
            ));
        }
        shard.write(Txn::new(ops)).await.unwrap();
        let c = ClusterController::new(
            shard.clone(),
            ClusterOptions {
                probe_timeout: Duration::from_secs(2),
                ..Default::default()
            },
        );
        for (name, _) in &endpoints {
            let key = QueueKey::new(ws.clone(), None, name);
            c.reconcile_key(&key).await.unwrap(); // the finalizer
            c.reconcile_key(&key).await.unwrap(); // the probe
            let okey = ObjectKey::cluster_scoped(resource(), ws.clone(), name).unwrap();
            let reg = objects::read::<ClusterRegistration>(&*shard, &okey)
                .unwrap()
                .unwrap();
            let cond = objects::condition(&reg.obj.status.conditions, CREDENTIALS_VALID)
                .unwrap_or_else(|| panic!("{name}: {:?}", reg.obj.status));
            assert_eq!(
                (cond.status.as_str(), cond.reason.as_str()),
                ("False", member::ENDPOINT_NOT_ALLOWED),
                "{name}: {}",
                cond.message
            );
            assert!(
                cond.message.contains("--allow-private-member-endpoints"),
                "{}",
                cond.message
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "the shard connected");
    }

    #[test]
    fn ready_follows_credentials_and_heartbeat() {
        let mut st = ClusterRegistrationStatus::default();
        set_ready(&mut st, 10);
        assert!(!is_true(&st.conditions, READY));
        set_condition(
            &mut st.conditions,
            CREDENTIALS_VALID,
            "True",
            "Accepted",
            "",
            10,
        );
        set_condition(
            &mut st.conditions,
            HEARTBEAT_HEALTHY,
            "True",
            "HeartbeatReceived",
            "",
            10,
        );
        set_ready(&mut st, 11);
        assert!(is_true(&st.conditions, READY));
        set_condition(
            &mut st.conditions,
            HEARTBEAT_HEALTHY,
            "False",
            "HeartbeatTimeout",
            "down",
            20,
        );
        set_ready(&mut st, 20);
        let r = objects::condition(&st.conditions, READY).unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "HeartbeatTimeout")
        );
        assert_eq!(objects::secs(&r.last_transition_time), 20);
    }
}
