//! `tmc serve`: one raft replica of a shard. The flags become
//! [`ReplicaOptions`] (peers, founding voters, peer TLS, log compaction)
//! and [`Replica`] does the rest.

use super::replica::ReplicaArgs;
use super::BoxError;
use crate::raft::server::{join, parse_peers, ServerConfig};
use crate::raft::tls::{PeerId, PeerTls};
use crate::raft::NodeConfig;
use crate::replica::{ApiOptions, Replica, ReplicaOptions};
use crate::store::{RocksEngine, RocksOptions};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Run one raft replica of a shard: raft peers over TCP on the address
/// --peers gives this node, the internal KV interface (HTTP, JSON) on
/// --listen. Or, as a pod of a StatefulSet, with --pod-name: everything
/// follows from the pod's name (see `deploy/` and docs/deploy.md).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// This replica's id (as in --peers).
    #[arg(long, required_unless_present = "pod_name")]
    pub node_id: Option<u64>,
    /// Raft address of every replica that is or may become a member:
    /// `1=127.0.0.1:7001,2=...,3=...` (host names are resolved at every
    /// connection attempt).
    #[arg(long, required_unless_present = "pod_name")]
    pub peers: Option<String>,
    /// KV (HTTP) address of every voter, for "not leader" answers:
    /// `1=127.0.0.1:8001,...`.
    #[arg(long, default_value = "")]
    pub kv_peers: String,
    /// Where the replica keeps its data (RocksDB).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address of the KV interface.
    #[arg(long, required_unless_present = "pod_name")]
    pub listen: Option<String>,
    /// Milliseconds per logical raft tick (elections after 10-20 ticks).
    #[arg(long, default_value_t = 100)]
    pub tick_ms: u64,
    /// Serve the Kubernetes API (HTTPS) on this address.
    #[arg(long)]
    pub api_listen: Option<String>,
    /// Directory with server.crt, server.key and tokens.csv (see
    /// `tmc certs`); required with --api-listen.
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// The founding voters, used only when the data directory is empty:
    /// `1,2,3` (default: every node of --peers). --peers may name more
    /// nodes, to be added later with `tmc member add`.
    #[arg(long, conflicts_with = "join")]
    pub voters: Option<String>,
    /// Join an existing shard: start with no configuration and wait for
    /// the leader (after `tmc member add --id THIS`) to send a snapshot.
    #[arg(long)]
    pub join: bool,
    /// Compact the raft log when it holds more applied entries than this;
    /// followers behind the compacted log catch up by snapshot.
    #[arg(long, default_value_t = 10_000)]
    pub log_compact_threshold: u64,
    /// Revisions of history the change log keeps for watches and
    /// lists at an older resourceVersion; older ones get 410 Gone.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub changes_retention: u64,
    /// kube-apiserver's EncryptionConfiguration file: Secrets are stored
    /// encrypted with its AES-GCM keys (re-read when it changes).
    /// Without it Secrets are stored in clear.
    #[arg(long)]
    pub encryption_config: Option<PathBuf>,
    /// Mutual TLS between replicas: `peer-ca.crt`, and this replica's
    /// `peer.crt` and `peer.key` naming --node-id (`tmc certs --nodes`
    /// writes them into D/nodes/ID). A peer without a certificate of
    /// the peer CA is refused. Required, unless --insecure-peers.
    #[arg(long)]
    pub peer_tls_dir: Option<PathBuf>,
    /// Talk plain TCP between replicas, without authentication or
    /// encryption (anyone who reaches the raft port can read the log
    /// and disrupt the shard). For tests and benchmarks on loopback.
    #[arg(long, conflicts_with = "peer_tls_dir")]
    pub insecure_peers: bool,
    /// The shard this replica is of. The shard without --root-shard is
    /// the root shard: it hosts `root` and the shard registry.
    #[arg(long, default_value = crate::shards::ROOT)]
    pub shard: String,
    /// The shard's labels, for workspaces' `spec.location.selector`:
    /// `region=eu,tier=gold`.
    #[arg(long, default_value = "")]
    pub shard_labels: String,
    /// The URL of the shard's API for the proxy and the other shards (a
    /// Service over its replicas). Default: the leader's own --api-listen
    /// address, registered by each new leader.
    #[arg(long, default_value = "")]
    pub shard_url: String,
    /// The root shard's API (comma-separated URLs, tried in order), for a
    /// shard that is not the root shard.
    #[arg(long, value_delimiter = ',')]
    pub root_shard: Vec<String>,
    /// Serve Prometheus metrics (`/metrics`, plain HTTP) on this address:
    /// raft, the store, the API's requests, the controllers.
    #[arg(long)]
    pub metrics_listen: Option<String>,
    #[command(flatten)]
    pub pod: PodArgs,
    #[command(flatten)]
    pub replica: ReplicaArgs,
}

/// A replica as a pod of a StatefulSet: its node id, peers, addresses and
/// TLS directory follow from the pod's name, and it founds, rejoins or
/// joins its shard by itself ([`crate::raft::server::join`]).
#[derive(clap::Args, Debug)]
pub struct PodArgs {
    /// The pod's name, `<statefulset>-<ordinal>` (the downward API's
    /// metadata.name): node id = ordinal + 1; the peers are the other
    /// ordinals' DNS names under --peer-domain.
    #[arg(long, requires = "peer_domain", conflicts_with_all = ["node_id", "peers", "kv_peers", "listen", "voters", "join", "api_listen"])]
    pub pod_name: Option<String>,
    /// The DNS domain of the StatefulSet's headless Service
    /// (`<service>.<namespace>.svc`): replica N is
    /// `<statefulset>-<N-1>.<domain>`.
    #[arg(long, requires = "pod_name")]
    pub peer_domain: Option<String>,
    /// The address to listen on (the pod's IP).
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: std::net::IpAddr,
    /// The raft port of every replica.
    #[arg(long, default_value_t = 7001)]
    pub raft_port: u16,
    /// The internal (KV, membership, status) port of every replica.
    #[arg(long, default_value_t = 7002)]
    pub internal_port: u16,
    /// The Kubernetes API's port.
    #[arg(long, default_value_t = 6443)]
    pub api_port: u16,
    /// The ordinals below this found the shard together (on empty disks,
    /// when no leader exists); the others join it.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub founding_replicas: u64,
    /// The most replicas the shard may grow to (the peers dialled when
    /// raft has something for them).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=99))]
    pub max_replicas: u64,
}

/// What a pod replica decides after reading its disk and asking its peers.
struct Pod {
    id: u64,
    founders: Vec<u64>,
    others: Vec<u64>,
}

/// `(statefulset, ordinal)` of a pod name `<statefulset>-<ordinal>`.
pub fn parse_pod_name(name: &str) -> Result<(&str, u64), String> {
    let bad =
        || format!("--pod-name {name:?} is not <statefulset>-<ordinal> (a StatefulSet pod's name)");
    let (set, ordinal) = name.rsplit_once('-').ok_or_else(bad)?;
    if set.is_empty() || ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let ordinal = ordinal.parse::<u64>().map_err(|_| bad())?;
    Ok((set, ordinal))
}

impl Args {
    /// Runs the replica until SIGTERM or Ctrl-C.
    pub fn run(mut self) -> Result<(), BoxError> {
        peer_security(self.peer_tls_dir.is_some(), self.insecure_peers)?;
        let pod = self.resolve_pod()?;
        let mut options = self.options()?;
        super::runtime()?.block_on(async move {
            let Some(pod) = pod else {
                return Replica::start(options).await?.run().await;
            };
            let fwd = crate::raft::server::Forwarder::new(
                pod.id,
                options.server.kv_peers.clone(),
                options.server.tls.clone(),
            );
            let empty = {
                let engine = RocksEngine::open(&options.store_dir, &RocksOptions::default())?;
                crate::raft::LogStore::open(engine)?.is_empty()
            };
            let start = join::decide(&fwd, pod.id, empty, &pod.founders, &pod.others).await?;
            tracing::info!(node = pod.id, ?start, "pod replica");
            options.node.voters = match &start {
                join::Start::Found(voters) => voters.clone(),
                join::Start::Join => Vec::new(),
                join::Start::Open => pod.founders.clone(),
            };
            let replica = Replica::start(options).await?;
            let raft = replica.raft();
            if start == join::Start::Open {
                join::check_removed(&raft, &fwd, &pod.others).await?;
            }
            tokio::spawn(join::join(raft, fwd, pod.others));
            replica.run().await
        })
    }

    /// With --pod-name: fills in the node id, the peers, the addresses and
    /// the TLS directories from the pod's name and returns what the start
    /// decides on.
    fn resolve_pod(&mut self) -> Result<Option<Pod>, BoxError> {
        let Some(name) = &self.pod.pod_name else {
            return Ok(None);
        };
        let p = &self.pod;
        let (set, ordinal) = parse_pod_name(name)?;
        let id = ordinal + 1;
        if id > p.max_replicas {
            return Err(format!(
                "pod {name} is ordinal {ordinal}, beyond --max-replicas {}: raise it on every replica first",
                p.max_replicas
            )
            .into());
        }
        let domain = p.peer_domain.as_deref().unwrap_or_default();
        let host = |n: u64| format!("{set}-{}.{domain}", n - 1);
        let list = |port: u16| {
            (1..=p.max_replicas)
                .map(|n| format!("{n}={}:{port}", host(n)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let bind = |port: u16| std::net::SocketAddr::new(p.bind_address, port).to_string();
        self.node_id = Some(id);
        self.peers = Some(list(p.raft_port));
        self.kv_peers = list(p.internal_port);
        self.listen = Some(bind(p.internal_port));
        self.api_listen = Some(bind(p.api_port));
        let own = |d: &PathBuf| PathBuf::from(d.to_string_lossy().replace("{id}", &id.to_string()));
        self.tls_dir = self.tls_dir.as_ref().map(own);
        self.peer_tls_dir = self.peer_tls_dir.as_ref().map(own);
        let founders: Vec<u64> = (1..=p.founding_replicas.min(p.max_replicas)).collect();
        let others = (1..=p.max_replicas).filter(|&n| n != id).collect();
        Ok(Some(Pod {
            id,
            founders,
            others,
        }))
    }

    /// The replica's options: the flags checked against each other.
    pub fn options(self) -> Result<ReplicaOptions, BoxError> {
        let node_id = self.node_id.ok_or("--node-id is required")?;
        let listen = self.listen.clone().ok_or("--listen is required")?;
        let raft_peers = parse_peers(self.peers.as_deref().unwrap_or_default())?;
        let Some(own) = raft_peers.get(&node_id) else {
            return Err(format!("--peers does not name node {node_id}").into());
        };
        let raft_listen: SocketAddr = match self.pod.pod_name {
            Some(_) => SocketAddr::new(self.pod.bind_address, self.pod.raft_port),
            None => own.parse().map_err(|e| {
                format!("the raft address of node {node_id} (this node listens on it) must be IP:port, not {own:?}: {e}")
            })?,
        };
        let mut kv_peers = parse_peers(&self.kv_peers)?;
        kv_peers.entry(node_id).or_insert_with(|| listen.clone());
        std::fs::create_dir_all(&self.data_dir)?;
        let voters = self.founding_voters(&raft_peers)?;
        let mut node = NodeConfig::new(node_id, voters);
        node.log_compact_threshold = self.log_compact_threshold;
        node.changes_retention = Some(self.changes_retention);
        node.snapshot_dir = Some(self.data_dir.join("snapshots"));
        node.cluster_id = crate::raft::cluster_id_for(&self.shard);
        let shard = crate::shards::Config {
            name: self.shard.clone(),
            labels: crate::shards::parse_labels(&self.shard_labels)
                .map_err(|e| format!("--shard-labels: {e}"))?,
            url: self.shard_url.clone(),
            root: self.root_shard.clone(),
        };
        let shard_identity = match &self.tls_dir {
            Some(dir) => shard_identity(dir, &self.shard)?,
            None => None,
        };
        let api = match self.api_listen {
            Some(listen) => Some(ApiOptions {
                listen,
                tls_dir: self.tls_dir.ok_or("--api-listen needs --tls-dir")?,
                limits: self.replica.api_limits.limits(),
            }),
            None => None,
        };
        Ok(ReplicaOptions {
            store_dir: self.data_dir.join("data"),
            server: ServerConfig {
                id: node_id,
                peers: raft_peers,
                listen: Some(raft_listen),
                kv_peers,
                tick: Duration::from_millis(self.tick_ms.max(1)),
                tls: match &self.peer_tls_dir {
                    Some(dir) => Some(own_peer_tls(dir, node_id)?),
                    None => None,
                },
                data_dir: Some(self.data_dir.clone()),
            },
            node,
            encryption_config: self.encryption_config,
            controllers: self.replica.controllers.options(),
            api,
            internal_listen: Some(listen),
            metrics_listen: self.metrics_listen,
            shard,
            shard_identity,
        })
    }

    /// The voters to found the shard with: none with --join, --voters
    /// when given, else every node of --peers.
    fn founding_voters(&self, raft_peers: &BTreeMap<u64, String>) -> Result<Vec<u64>, BoxError> {
        if self.join {
            return Ok(Vec::new());
        }
        let Some(list) = &self.voters else {
            return Ok(raft_peers.keys().copied().collect());
        };
        let voters = list
            .split(',')
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("bad node id {v:?} in --voters"))
            })
            .collect::<Result<Vec<u64>, String>>()?;
        if let Some(v) = voters.iter().find(|v| !raft_peers.contains_key(v)) {
            return Err(format!("--voters names node {v}, which --peers does not").into());
        }
        if voters.is_empty() {
            return Err("--voters is empty (use --join to join an existing shard)".into());
        }
        Ok(voters)
    }
}

/// The shard identity in `dir` (`shard.crt`, `shard.key`), which must be
/// shard `name`'s; none when absent (the shard then neither registers nor
/// places workspaces on others).
fn shard_identity(
    dir: &std::path::Path,
    name: &str,
) -> Result<Option<crate::shards::IdentityPem>, BoxError> {
    let files = crate::api::tls::TlsFiles::new(dir);
    if !files.shard_cert().exists() {
        tracing::warn!(
            dir = %dir.display(),
            "no shard.crt: this shard does not register itself or reach other shards \
             (`tmc certs --shard NAME` writes it)"
        );
        return Ok(None);
    }
    let want = format!("{}{name}", crate::authz::SHARD_USER_PREFIX);
    let cn = crate::api::tls::read_certs(&files.shard_cert())?
        .first()
        .and_then(|c| crate::api::authn::subject_of(c))
        .map(|(cn, _)| cn);
    if cn.as_deref() != Some(want.as_str()) {
        return Err(format!(
            "{} is the identity of {:?}, not of shard {name:?} (--shard): \
             `tmc certs --shard {name}` writes the right one",
            files.shard_cert().display(),
            cn.unwrap_or_default()
        )
        .into());
    }
    Ok(Some((
        std::fs::read(files.shard_cert())?,
        std::fs::read(files.shard_key())?,
    )))
}

/// The peer TLS material in `dir`, which must be node `node_id`'s.
fn own_peer_tls(dir: &std::path::Path, node_id: u64) -> Result<Arc<PeerTls>, BoxError> {
    let tls = PeerTls::load(dir)?;
    if tls.identity() != PeerId::Node(node_id) {
        return Err(format!(
            "{}/peer.crt is the certificate of {}, not of node {node_id}: \
             use the directory `tmc certs --nodes {node_id}` wrote for it",
            dir.display(),
            tls.identity()
        )
        .into());
    }
    Ok(tls)
}

/// Replicas authenticate each other with mutual TLS unless the operator
/// says otherwise: `tmc serve` refuses to start with neither
/// `--peer-tls-dir` nor `--insecure-peers`, and warns with the latter.
fn peer_security(tls: bool, insecure: bool) -> Result<(), BoxError> {
    match (tls, insecure) {
        (true, _) => Ok(()),
        (false, true) => {
            tracing::warn!(
                "--insecure-peers: replicas talk plain TCP, unauthenticated and unencrypted; \
                 anyone who can reach the raft port can read every write and disrupt the shard"
            );
            Ok(())
        }
        (false, false) => Err(
            "tmc serve needs --peer-tls-dir DIR (mutual TLS between replicas; \
             `tmc certs --dir D --nodes ...` writes each replica's D/nodes/ID with peer-ca.crt, \
             peer.crt and peer.key), or --insecure-peers to talk plain TCP between replicas \
             (tests and benchmarks only)"
                .into(),
        ),
    }
}
