//! One replica of a shard, wired: the store and the raft node, the data
//! shard the API and the controllers see (Secrets encrypted at rest), the
//! Kubernetes API with its readiness, the controllers and their metrics,
//! and the internal KV interface. `tmc dev` (a one-node shard, API only)
//! and `tmc serve` (a replica of a three-node shard) both start one
//! through [`Replica::start`]; what differs between them is only the
//! [`ReplicaOptions`] they fill in (see `src/cli/dev.rs` and
//! `src/cli/serve.rs`).
//!
//! The order of [`Replica::start`]: open RocksDB (a data directory in use
//! by another process fails here, before any port is taken); start the
//! raft node (it binds the raft port of `--peers`, if any); wrap it in the
//! [`EncryptedShard`] when an encryption config is given; bind and start
//! the Kubernetes API; start the controllers (the lifecycle controller,
//! which deletes namespaces and workspaces, always, `--no-controllers` or
//! not: see [`crate::controllers::lifecycle`]); bind the internal KV
//! interface (with `/metrics` of the controllers). [`Replica::run`] then
//! serves until Ctrl-C.
//!
//! `/readyz` of the API answers ok when the raft node does (it knows a
//! leader and has applied what is committed) and root's `default`
//! namespace has been written (retried every 300 ms until a leader takes
//! the write).
//!
//! On SIGTERM or Ctrl-C [`Replica::run`] stops gracefully (readiness
//! off, leadership handed over, the API drained; see there).
//!
//! Left out: stopping the raft node and the controllers themselves (the
//! process exits; every acknowledged write is fsynced, and RocksDB's WAL
//! makes the rest safe).

use crate::api::limits::{InFlight, Limits};
use crate::api::{handlers::ObjectApi, server::ApiServer, tls, watch::WatchHub};
use crate::controllers::lifecycle;
use crate::encryption::EncryptedShard;
use crate::raft::server::metrics::RaftMetrics;
use crate::raft::server::{self, RaftShard, ServerConfig};
use crate::raft::NodeConfig;
use crate::shard::Shard;
use crate::store::{RocksEngine, RocksOptions};
use crate::util::BoxError;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a replica runs and where.
pub struct ReplicaOptions {
    /// Where RocksDB keeps the replica's data.
    pub store_dir: PathBuf,
    /// The raft transport: this node's id, its peers, the tick, peer TLS.
    pub server: ServerConfig,
    /// The raft node: founding voters, log compaction, change retention.
    pub node: NodeConfig,
    /// kube-apiserver's EncryptionConfiguration: Secrets are stored
    /// encrypted with its keys (re-read every 5 s). `None`: in clear.
    pub encryption_config: Option<PathBuf>,
    /// The placement, cluster and sync controllers, if they run here (the
    /// lifecycle controller always does).
    pub controllers: Option<crate::controllers::Options>,
    /// The Kubernetes API, if it is served here.
    pub api: Option<ApiOptions>,
    /// Address of the internal KV interface (and `/metrics` of the
    /// controllers), if it is served here.
    pub internal_listen: Option<String>,
    /// Address of the Prometheus metrics (`/metrics`, plain HTTP), if they
    /// are served: raft, the store, the API's requests, the controllers.
    pub metrics_listen: Option<String>,
    /// Which shard this replica is of (an empty URL: its own API's
    /// address).
    pub shard: crate::shards::Config,
    /// The shard's identity for calls to other shards (certificate and
    /// key, PEM), if it has one.
    pub shard_identity: Option<crate::shards::IdentityPem>,
}

/// Where and how the Kubernetes API is served.
pub struct ApiOptions {
    /// The address to listen on (port 0: any free port, see
    /// [`Replica::api_addr`]).
    pub listen: String,
    /// Directory with server.crt, server.key, ca.crt and tokens.csv (see
    /// [`crate::api::tls`]).
    pub tls_dir: PathBuf,
    /// In-flight requests, deadlines, connections.
    pub limits: Limits,
}

type Serving = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// A started replica; [`Replica::run`] serves it.
pub struct Replica {
    id: u64,
    raft: RaftShard<RocksEngine>,
    api: Option<(SocketAddr, Serving)>,
    internal: Option<(tokio::net::TcpListener, axum::Router)>,
    metrics: Option<(tokio::net::TcpListener, axum::Router)>,
    peer_tls: Option<Arc<crate::raft::tls::PeerTls>>,
    /// Set once the replica is stopping: `/readyz` says so.
    stopping: Arc<AtomicBool>,
    /// Tells the API and the internal interface to stop.
    stop: tokio::sync::watch::Sender<bool>,
}

impl Replica {
    /// Opens the store, starts the raft node, the API and the controllers,
    /// and binds the internal KV interface (see the module's docs for the
    /// order). Must be called within a tokio runtime.
    pub async fn start(o: ReplicaOptions) -> Result<Replica, BoxError> {
        let engine = RocksEngine::open(&o.store_dir, &RocksOptions::default())?;
        // Backups a crash interrupted left their staging directories: the
        // store is ours now (RocksDB's lock), so nothing else uses them.
        let staging = backups_dir(&o.store_dir);
        if staging.exists() {
            if let Err(e) = std::fs::remove_dir_all(&staging) {
                tracing::warn!(dir = %staging.display(), error = %e, "cannot remove an old backup staging directory");
            }
        }
        let id = o.server.id;
        let peer_tls = o.server.tls.clone();
        let handle = server::start(engine, o.server, o.node).await?;
        let ready = handle.clone();
        let stopping = Arc::new(AtomicBool::new(false));
        let (stop, _) = tokio::sync::watch::channel(false);
        let api_metrics = crate::api::metrics::ApiMetrics::default();
        // What the API and the controllers see: Secrets decrypted.
        let shard = data_shard(handle.clone(), o.encryption_config.as_deref())?;
        let mut shard_cfg = o.shard;
        let mut directory = None;
        let api = match o.api {
            Some(api) => {
                let listener = bind(&api.listen).await?;
                let addr = listener.local_addr()?;
                if shard_cfg.url.is_empty() {
                    shard_cfg.url = own_url(addr);
                }
                let client = match &o.shard_identity {
                    Some((cert, key)) => Some(crate::shards::Directory::identity_client(
                        &tls::TlsFiles::new(&api.tls_dir).ca_cert(),
                        cert,
                        key,
                    )?),
                    None => None,
                };
                let dir = Arc::new(crate::shards::Directory::new(
                    shard_cfg.clone(),
                    client,
                    shard.clone(),
                ));
                directory = Some(dir.clone());
                let halting = stopping.clone();
                let serving = start_api(
                    shard.clone(),
                    listener,
                    &api.tls_dir,
                    Arc::new(move || {
                        if halting.load(Ordering::Acquire) {
                            return Err("the replica is stopping".into());
                        }
                        ready.ready()
                    }),
                    (api.limits, api_metrics.clone()),
                    (
                        dir,
                        shard_status(handle.clone(), &shard_cfg.name),
                        backup_source(handle.clone(), &shard_cfg.name, backups_dir(&o.store_dir)),
                    ),
                    stopped(&stop),
                )
                .await?;
                Some((addr, serving))
            }
            None => None,
        };
        // The controllers, if they run here; the lifecycle controller
        // (deletion of namespaces and workspaces) always does, counted in
        // the same metrics.
        // Other shards (logical clusters there, locations there, the
        // shard's registry entry) need the shard's identity.
        let identified = directory.clone().filter(|_| o.shard_identity.is_some());
        let remote = identified
            .clone()
            .map(|d| d as Arc<dyn crate::controllers::remote::OtherShards>);
        // The root shard registers itself in its own data; others need
        // their identity to reach it.
        let registering = directory.filter(|d| d.is_root() || o.shard_identity.is_some());
        let metrics = match o.controllers {
            Some(c) => crate::controllers::start(shard.clone(), c, remote.clone()),
            None => Arc::new(crate::controllers::runtime::Metrics::new()),
        };
        let mut registrar: Vec<Arc<dyn crate::controllers::runtime::Controller>> = registering
            .map(|d| {
                Arc::new(crate::shards::registrar::Registrar::new(d))
                    as Arc<dyn crate::controllers::runtime::Controller>
            })
            .into_iter()
            .collect();
        // The garbage collector, like the lifecycle controller, always.
        registrar.push(Arc::new(crate::controllers::gc::GarbageCollector::new(
            kinds(),
        )));
        lifecycle::start(
            shard.clone(),
            contents(),
            remote,
            registrar,
            metrics.clone(),
        );
        let exposition = match o.metrics_listen {
            Some(listen) => {
                let mut registry = prometheus_client::registry::Registry::default();
                let raft = RaftMetrics::start(&handle, &mut registry);
                api_metrics.register(&mut registry);
                let registry = Arc::new(registry);
                let (h, controllers) = (handle.clone(), metrics.clone());
                let router = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let (h, raft, registry, controllers) = (
                            h.clone(),
                            raft.clone(),
                            registry.clone(),
                            controllers.clone(),
                        );
                        async move {
                            raft.refresh(&h).await;
                            exposition_text(&registry, &controllers)
                        }
                    }),
                );
                Some((bind(&listen).await?, router))
            }
            None => None,
        };
        let internal = match o.internal_listen {
            Some(listen) => {
                let listener = bind(&listen).await?;
                let router = server::router(handle.clone()).route(
                    "/metrics",
                    axum::routing::get(move || {
                        let m = metrics.clone();
                        async move { m.render() }
                    }),
                );
                Some((listener, router))
            }
            None => None,
        };
        Ok(Replica {
            id,
            raft: handle,
            api,
            internal,
            metrics: exposition,
            peer_tls,
            stopping,
            stop,
        })
    }

    /// The replica's raft node (its status, membership, hand-over).
    pub fn raft(&self) -> RaftShard<RocksEngine> {
        self.raft.clone()
    }

    /// The address the Kubernetes API listens on, if it is served.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(|(a, _)| *a)
    }

    /// Serves the API, the internal KV interface and the metrics until
    /// SIGTERM or Ctrl-C, then stops gracefully: `/readyz` answers 503 at
    /// once (load balancers stop sending), a leader hands leadership to its
    /// most caught-up voter (waiting at most 5 s for it to take over), the
    /// API stops accepting and lets open requests finish (at most
    /// [`crate::api::server::DRAIN`]), and the process's data is on disk
    /// already (every write is fsynced before it is acknowledged). An API
    /// that stops on its own is logged; the replica goes on serving raft.
    pub async fn run(self) -> Result<(), BoxError> {
        let node = self.id;
        let api = self.api.map(|(_, api)| {
            tokio::spawn(async move {
                if let Err(e) = api.await {
                    tracing::error!(error = %e, "the API server stopped");
                }
            })
        });
        if let Some((listener, router)) = self.metrics {
            tracing::info!(node, addr = %listener.local_addr()?, "serving metrics");
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "the metrics server stopped");
                }
            });
        }
        let internal = match self.internal {
            Some((listener, router)) => {
                let addr = listener.local_addr()?;
                if self.peer_tls.is_some() {
                    tracing::info!(node, %addr, "serving the KV interface (mutual TLS)");
                } else {
                    tracing::info!(node, %addr, "serving the KV interface");
                }
                let shutdown = stopped(&self.stop);
                let tls = self.peer_tls.clone();
                Some(tokio::spawn(async move {
                    server::internal::serve(listener, tls, router, shutdown).await
                }))
            }
            None => None,
        };
        let signal = terminated().await;
        tracing::info!(
            node,
            signal,
            "stopping: handing over, then draining the API"
        );
        self.stopping.store(true, Ordering::Release);
        self.raft.hand_over(Duration::from_secs(5)).await;
        let _ = self.stop.send(true);
        if let Some(api) = api {
            let _ = api.await;
        }
        if let Some(internal) = internal {
            internal.await??;
        }
        tracing::info!(node, "stopped");
        Ok(())
    }
}

/// Where a replica whose store is `store_dir` stages backups (beside it:
/// a checkpoint hard-links the store's files, which needs one file
/// system).
fn backups_dir(store_dir: &Path) -> PathBuf {
    let mut name = store_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".backups");
    store_dir.with_file_name(name)
}

/// `/tmc/backup` of shard `name`: after a linearizable read point (all
/// that was committed before is applied here), a checkpoint of the store
/// staged under `scratch`, its manifest, the compressed file; the staged
/// checkpoint is removed, the file handed over already unlinked.
fn backup_source(
    raft: RaftShard<RocksEngine>,
    name: &str,
    scratch: PathBuf,
) -> crate::api::BackupSource {
    let shard = name.to_string();
    Arc::new(move |manifest_only| {
        let (raft, shard, scratch) = (raft.clone(), shard.clone(), scratch.clone());
        Box::pin(async move {
            Shard::barrier(&raft)
                .await
                .map_err(|e| format!("no read point: {e}"))?;
            tokio::task::spawn_blocking(move || -> Result<crate::api::Backup, String> {
                std::fs::create_dir_all(&scratch)
                    .map_err(|e| format!("{}: {e}", scratch.display()))?;
                let stage = tempfile::Builder::new()
                    .prefix("backup-")
                    .tempdir_in(&scratch)
                    .map_err(|e| format!("{}: {e}", scratch.display()))?;
                let cut = stage.path().join("checkpoint");
                let t0 = std::time::Instant::now();
                raft.checkpoint(&cut)
                    .map_err(|e| format!("checkpoint: {e}"))?;
                let t1 = std::time::Instant::now();
                let manifest =
                    crate::backup::manifest_of(&cut, &shard).map_err(|e| e.to_string())?;
                let t2 = std::time::Instant::now();
                if manifest_only {
                    return serde_json::to_value(&manifest)
                        .map(crate::api::Backup::Manifest)
                        .map_err(|e| e.to_string());
                }
                let path = stage.path().join("backup.tar.gz");
                let file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
                crate::backup::write(&cut, &manifest, std::io::BufWriter::new(file))
                    .map_err(|e| format!("writing the backup: {e}"))?;
                let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
                // The open handle keeps the data; the directory goes now.
                drop(stage);
                tracing::info!(
                    shard,
                    revision = manifest.revision,
                    applied = manifest.applied_index,
                    checkpoint_ms = (t1 - t0).as_millis() as u64,
                    manifest_ms = (t2 - t1).as_millis() as u64,
                    write_ms = t2.elapsed().as_millis() as u64,
                    "backup taken"
                );
                Ok(crate::api::Backup::File(file))
            })
            .await
            .map_err(|e| format!("the backup task failed: {e}"))?
        })
    })
}

/// `/tmc/status` of shard `name`: each member's raft status as it reports
/// it, its lag behind the highest commit index any member reports, its
/// disk bytes; a member that does not answer, with why.
fn shard_status(raft: RaftShard<RocksEngine>, name: &str) -> crate::api::ShardStatus {
    let shard = name.to_string();
    crate::api::ShardStatus {
        shard: shard.clone(),
        gather: Arc::new(move || {
            let (raft, shard) = (raft.clone(), shard.clone());
            Box::pin(async move {
                let members = raft.members_status().await;
                let commit = members
                    .iter()
                    .filter_map(|(_, s)| s.as_ref().ok().map(|s| s.commit))
                    .max()
                    .unwrap_or(0);
                let replicas: Vec<serde_json::Value> = members
                    .into_iter()
                    .map(|(id, s)| match s {
                        Ok(s) => serde_json::json!({
                            "id": id,
                            "role": s.role,
                            "voter": s.voters.contains(&id),
                            "leader": s.leader,
                            "term": s.term,
                            "commit": s.commit,
                            "applied": s.applied,
                            "lag": commit.saturating_sub(s.applied),
                            "ready": s.ready,
                            "diskBytes": s.disk_bytes,
                            "clusterId": s.cluster_id,
                        }),
                        Err(e) => serde_json::json!({"id": id, "error": e}),
                    })
                    .collect();
                serde_json::json!({"shard": shard, "replicas": replicas})
            })
        }),
    }
}

/// Resolves on SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C), with
/// the signal's name.
pub(crate) async fn terminated() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// A future that resolves once `stop` says so (or is gone).
fn stopped(stop: &tokio::sync::watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = stop.subscribe();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// The metrics of `registry` and of the controllers, in Prometheus text
/// format.
fn exposition_text(
    registry: &prometheus_client::registry::Registry,
    controllers: &crate::controllers::runtime::Metrics,
) -> String {
    use prometheus_client::encoding::text;
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = text::encode_registry(&mut out, registry);
    let _ = controllers.encode_into(&mut out);
    let _ = text::encode_eof(&mut out);
    out
}

/// What a namespace or workspace holds, for the lifecycle controller:
/// every resource the API serves.
fn contents() -> Vec<lifecycle::Content> {
    crate::api::resources::RESOURCES
        .iter()
        .map(|r| lifecycle::Content {
            resource: r.group_resource(),
            namespaced: r.namespaced,
        })
        .collect()
}

fn kinds() -> Vec<crate::controllers::gc::Kind> {
    crate::api::resources::RESOURCES
        .iter()
        .map(|r| crate::controllers::gc::Kind {
            group: r.group.to_string(),
            kind: r.kind.to_string(),
            resource: r.group_resource(),
            namespaced: r.namespaced,
        })
        .collect()
}

/// `https://ADDR` of an API listening on `addr` (a wildcard address as
/// loopback).
fn own_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        addr.ip()
    };
    format!("https://{}", SocketAddr::new(ip, addr.port()))
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, BoxError> {
    Ok(tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?)
}

/// The shard the API and controllers use: `handle`, with Secrets encrypted
/// at rest when an encryption config is given (re-read every 5 s; a
/// config that stops parsing keeps the old keys and logs why).
fn data_shard(
    handle: server::RaftShard<RocksEngine>,
    encryption: Option<&Path>,
) -> Result<Arc<dyn Shard>, BoxError> {
    let Some(path) = encryption else {
        tracing::warn!("no --encryption-config: Secrets are stored in clear");
        return Ok(Arc::new(handle));
    };
    let shard = Arc::new(EncryptedShard::from_file(Arc::new(handle), path)?);
    tracing::info!(
        config = %path.display(),
        write_key = shard.keys().write_key_name().unwrap_or("(identity: clear text)"),
        "Secrets are encrypted at rest"
    );
    shard.watch();
    Ok(shard)
}

/// Starts the Kubernetes API over `shard` on `listener` with the TLS
/// material in `tls_dir` and `limits`; the returned future serves until
/// Ctrl-C.
/// `/readyz` answers ok when `ready` does and root's `default` namespace
/// exists.
async fn start_api(
    shard: Arc<dyn Shard>,
    listener: tokio::net::TcpListener,
    tls_dir: &Path,
    ready: crate::api::ReadyCheck,
    (limits, metrics): (Limits, crate::api::metrics::ApiMetrics),
    (directory, status, backup): (
        Arc<crate::shards::Directory>,
        crate::api::ShardStatus,
        crate::api::BackupSource,
    ),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Serving, BoxError> {
    let files = tls::TlsFiles::new(tls_dir);
    let auth = crate::api::authn::TokenAuth::load(&files.tokens())?;
    // The serving certificate and the client CA, re-read when they change.
    let tls_cfg = tls::reloading_server_config(&files)?;
    tls_cfg.watch(Duration::from_secs(5));
    let objects = Arc::new(ObjectApi {
        hub: WatchHub::start(shard.clone()),
        shard: shard.clone(),
        bookmark_interval: Duration::from_secs(10),
        directory,
    });
    // `default` in root, once a leader can take the write.
    let boot = objects.clone();
    let booted = Arc::new(AtomicBool::new(false));
    let booting = booted.clone();
    tokio::spawn(async move {
        loop {
            match boot.bootstrap().await {
                Ok(()) => {
                    booting.store(true, Ordering::Release);
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "bootstrap of root's default namespace; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    });
    let server = Arc::new(ApiServer {
        objects,
        auth,
        certs: Some(tls::cert_auth(&files)?),
        proxy: tls::request_header_auth(&files)?,
        ready: Arc::new(move || {
            ready()?;
            if !booted.load(Ordering::Acquire) {
                return Err("root's default namespace is not written yet".into());
            }
            Ok(())
        }),
        inflight: InFlight::new(&limits),
        metrics,
        status: Some(status),
        backup: Some(backup),
    });
    tracing::info!(addr = %listener.local_addr()?, ?limits, "serving the Kubernetes API");
    Ok(Box::pin(crate::api::server::serve_tls(
        listener,
        move || tls_cfg.get(),
        crate::api::server::router(server),
        limits,
        shutdown,
    )))
}
