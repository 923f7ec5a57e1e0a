//! The `tmc` command.

use clap::{Parser, Subcommand};

// jemalloc: RocksDB's recommended allocator, and no arena lock contention
// between the apply loop and the request threads.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use std::path::PathBuf;
use std::sync::Arc;
use tmc::store::{self, RocksOptions, StoreOptions};

#[derive(Parser)]
#[command(
    name = "tmc",
    version,
    about = "Transparent Multi-Cluster for kcp-style control planes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an embedded single-node tmc for trying it out: store under
    /// --data-dir, health endpoints on --listen.
    Dev {
        /// Where the node keeps its data.
        #[arg(long, default_value = ".tmc")]
        data_dir: PathBuf,
        /// Address of the HTTP endpoint.
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: String,
        #[command(flatten)]
        controllers: ControllerArgs,
    },
    /// Run one raft replica of a shard: raft peers over TCP on the address
    /// --peers gives this node, the internal KV interface (HTTP, JSON) on
    /// --listen.
    Serve {
        /// This replica's id (as in --peers).
        #[arg(long)]
        node_id: u64,
        /// Raft address of every voter: `1=127.0.0.1:7001,2=...,3=...`.
        #[arg(long)]
        peers: String,
        /// KV (HTTP) address of every voter, for "not leader" answers:
        /// `1=127.0.0.1:8001,...`.
        #[arg(long, default_value = "")]
        kv_peers: String,
        /// Where the replica keeps its data (RocksDB).
        #[arg(long)]
        data_dir: PathBuf,
        /// Address of the KV interface.
        #[arg(long)]
        listen: String,
        /// Milliseconds per logical raft tick (elections after 10-20 ticks).
        #[arg(long, default_value_t = 100)]
        tick_ms: u64,
        /// Serve the Kubernetes API (HTTPS) on this address.
        #[arg(long)]
        api_listen: Option<String>,
        /// Directory with server.crt, server.key and tokens.csv (see
        /// `tmc certs`); required with --api-listen.
        #[arg(long)]
        tls_dir: Option<PathBuf>,
        /// The founding voters, used only when the data directory is empty:
        /// `1,2,3` (default: every node of --peers). --peers may name more
        /// nodes, to be added later with `tmc member add`.
        #[arg(long, conflicts_with = "join")]
        voters: Option<String>,
        /// Join an existing shard: start with no configuration and wait for
        /// the leader (after `tmc member add --id THIS`) to send a snapshot.
        #[arg(long)]
        join: bool,
        /// Compact the raft log when it holds more applied entries than this;
        /// followers behind the compacted log catch up by snapshot.
        #[arg(long, default_value_t = 10_000)]
        log_compact_threshold: u64,
        /// Revisions of history the change log keeps for watches and
        /// lists at an older resourceVersion; older ones get 410 Gone.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
        changes_retention: u64,
        /// kube-apiserver's EncryptionConfiguration file: Secrets are stored
        /// encrypted with its AES-GCM keys (re-read when it changes).
        /// Without it Secrets are stored in clear.
        #[arg(long)]
        encryption_config: Option<PathBuf>,
        /// Mutual TLS between replicas: `peer-ca.crt`, and this replica's
        /// `peer.crt` and `peer.key` naming --node-id (`tmc certs --nodes`
        /// writes them into D/nodes/ID). A peer without a certificate of
        /// the peer CA is refused. Required, unless --insecure-peers.
        #[arg(long)]
        peer_tls_dir: Option<PathBuf>,
        /// Talk plain TCP between replicas, without authentication or
        /// encryption (anyone who reaches the raft port can read the log
        /// and disrupt the shard). For tests and benchmarks on loopback.
        #[arg(long, conflicts_with = "peer_tls_dir")]
        insecure_peers: bool,
        #[command(flatten)]
        controllers: ControllerArgs,
    },
    /// Generates the users' CA, a serving certificate, an admin token and
    /// an admin kubeconfig, the peer CA and the operator's peer
    /// certificate into a directory, and a directory per replica to copy
    /// to it (D/nodes/ID, without any CA key); what exists is kept.
    Certs {
        /// Where to write them.
        #[arg(long)]
        dir: PathBuf,
        /// The replicas to write D/nodes/ID for.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        nodes: Vec<u64>,
        /// Extra IP addresses or DNS names for the serving certificate.
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// The API's address, for the kubeconfig.
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        server: String,
    },
    /// Prints a kubeconfig for a workspace.
    Kubeconfig {
        /// The workspace, e.g. root:acme.
        #[arg(long, default_value = "root")]
        workspace: String,
        /// The directory `tmc dev` or `tmc certs` wrote.
        #[arg(long, default_value = ".tmc")]
        dir: PathBuf,
        /// The API's address.
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        server: String,
        /// Authenticate as this user with a client certificate issued now
        /// from the directory's CA (default: the admin token).
        #[arg(long)]
        user: Option<String>,
        /// Groups of the certificate's user (with --user).
        #[arg(long, value_delimiter = ',', requires = "user")]
        group: Vec<String>,
    },
    /// Encryption of Secrets at rest.
    Encryption {
        #[command(subcommand)]
        op: EncryptionOp,
    },
    /// Membership of a shard served by `tmc serve`: add or remove a voter
    /// (through the leader; a follower forwards the request).
    Member {
        /// The peer TLS directory, when the replicas use mutual TLS.
        #[arg(long, global = true)]
        peer_tls_dir: Option<PathBuf>,
        #[command(subcommand)]
        op: MemberOp,
    },
    /// A client of the KV interface of `tmc serve`; follows "not leader"
    /// answers to the leader.
    Kv {
        /// KV address of a replica.
        #[arg(long, default_value = "127.0.0.1:8001")]
        endpoint: String,
        /// The peer TLS directory, when the replicas use mutual TLS.
        #[arg(long)]
        peer_tls_dir: Option<PathBuf>,
        #[command(subcommand)]
        op: KvOp,
    },
    /// Physical clusters registered with tmc.
    Cluster {
        #[command(subcommand)]
        op: ClusterOp,
    },
    /// Benchmarks; each prints one JSON object.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
    /// Test helpers; not for production use.
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        which: Debug,
    },
}

/// The controllers of `tmc serve` and `tmc dev`.
#[derive(clap::Args, Clone)]
struct ControllerArgs {
    /// Do not run the controllers.
    #[arg(long)]
    no_controllers: bool,
    /// Time between probes of a registered cluster (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = tmc::controllers::parse_duration)]
    probe_interval: std::time::Duration,
    /// Time without a good probe before a cluster is unhealthy.
    #[arg(long, default_value = "40s", value_parser = tmc::controllers::parse_duration)]
    heartbeat_threshold: std::time::Duration,
    /// Time one probe may take.
    #[arg(long, default_value = "5s", value_parser = tmc::controllers::parse_duration)]
    probe_timeout: std::time::Duration,
    /// Clusters probed at once, at most (each probe may take up to
    /// --probe-timeout).
    #[arg(long, default_value_t = 64)]
    probe_concurrency: usize,
    /// How long the placement controller caches a location's clusters.
    #[arg(long, default_value = "30s", value_parser = tmc::controllers::parse_duration)]
    catalog_ttl: std::time::Duration,
    /// Downstream writes per second to one member cluster.
    #[arg(long, default_value_t = 50.0)]
    sync_qps: f64,
    /// Burst of downstream writes to one member cluster.
    #[arg(long, default_value_t = 100)]
    sync_burst: u32,
    /// Concurrent downstream requests per member cluster.
    #[arg(long, default_value_t = 16)]
    sync_workers: usize,
    /// Let member clusters be registered at loopback, link-local
    /// (169.254.0.0/16, cloud metadata) and this host's own addresses.
    /// Without it such endpoints are refused (a tenant could otherwise
    /// point the shard at its own or the cloud's internal services); for
    /// test environments whose member clusters run on 127.0.0.1.
    #[arg(long)]
    allow_private_member_endpoints: bool,
}

impl ControllerArgs {
    fn options(&self) -> Option<tmc::controllers::Options> {
        if self.no_controllers {
            return None;
        }
        let mut o = tmc::controllers::Options::default();
        o.cluster.probe_interval = self.probe_interval;
        o.cluster.heartbeat_threshold = self.heartbeat_threshold;
        o.cluster.probe_timeout = self.probe_timeout;
        o.cluster.probe_concurrency = self.probe_concurrency.max(1);
        o.placement.catalog_ttl = self.catalog_ttl;
        o.sync.qps = self.sync_qps;
        o.sync.burst = self.sync_burst;
        o.sync.workers_per_cluster = self.sync_workers;
        let endpoints = tmc::controllers::member::EndpointPolicy {
            allow_private: self.allow_private_member_endpoints,
        };
        o.cluster.endpoints = endpoints;
        o.sync.endpoints = endpoints;
        Some(o)
    }
}

#[derive(Subcommand)]
enum ClusterOp {
    /// Registers a cluster: a Secret with its kubeconfig and a
    /// ClusterRegistration, created (or updated) through tmc's API.
    Register {
        /// Name of the ClusterRegistration.
        name: String,
        /// The cluster's kubeconfig (its current context is used).
        #[arg(long)]
        kubeconfig: PathBuf,
        /// The location workspace to register it in.
        #[arg(long, default_value = "root")]
        workspace: String,
        /// tmc's API address (default: the admin kubeconfig's).
        #[arg(long)]
        server: Option<String>,
        /// The kubeconfig for tmc's API.
        #[arg(long, default_value = ".tmc/admin.kubeconfig")]
        admin_kubeconfig: PathBuf,
        /// The cluster's API endpoint (default: the kubeconfig's server).
        #[arg(long)]
        api_endpoint: Option<String>,
        /// Namespace of the credentials Secret (created if missing).
        #[arg(long, default_value = "tmc-system")]
        secret_namespace: String,
        /// Labels of the registration, `key=value` (repeatable).
        #[arg(long = "label", value_delimiter = ',')]
        labels: Vec<String>,
        /// Free-form location.
        #[arg(long, default_value = "")]
        location: String,
    },
}

#[derive(Subcommand)]
enum KvOp {
    /// Store VALUE (JSON text) at WORKSPACE/NAMESPACE/NAME.
    Put { path: String, value: String },
    /// Read WORKSPACE/NAMESPACE/NAME.
    Get {
        path: String,
        /// Read this replica's state without ReadIndex (may be stale).
        #[arg(long)]
        local: bool,
    },
    /// Delete WORKSPACE/NAMESPACE/NAME.
    Delete { path: String },
    /// List the values of WORKSPACE.
    List { workspace: String },
    /// The replica's raft status.
    Status,
}

#[derive(Subcommand)]
enum EncryptionOp {
    /// Writes every Secret of every workspace back unchanged, so each is
    /// stored under the current write key (run after putting a new key
    /// first in every node's encryption config; then the old key can go).
    Rewrite {
        /// An admin (system:masters) kubeconfig for the API.
        #[arg(long, default_value = ".tmc/admin.kubeconfig")]
        kubeconfig: PathBuf,
    },
}

#[derive(Subcommand)]
enum MemberOp {
    /// Add node ID as a voter. Its raft address must be in the --peers of
    /// every replica; start it with `tmc serve --join`.
    Add {
        /// The node to add.
        #[arg(long)]
        id: u64,
        /// KV address of any replica.
        #[arg(long, default_value = "127.0.0.1:8001")]
        server: String,
    },
    /// Remove voter ID (not the leader, not the last voter).
    Remove {
        /// The node to remove.
        #[arg(long)]
        id: u64,
        /// KV address of any replica.
        #[arg(long, default_value = "127.0.0.1:8001")]
        server: String,
    },
    /// List the voters.
    List {
        /// KV address of any replica.
        #[arg(long, default_value = "127.0.0.1:8001")]
        server: String,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Load N workspaces × 3 objects into one node's store and measure.
    Store {
        /// Number of workspaces.
        #[arg(long, default_value_t = 100_000)]
        workspaces: u64,
        /// Workspaces per transaction.
        #[arg(long, default_value_t = 100)]
        batch: u64,
        /// Random one-workspace lists to time.
        #[arg(long, default_value_t = 20_000)]
        list_samples: u64,
        /// Page size of the all-workspaces scan.
        #[arg(long, default_value_t = 500)]
        scan_page: usize,
        /// Revisions of change history to keep.
        #[arg(long, default_value_t = 1_000)]
        changes_retention: u64,
        /// Block cache in MiB.
        #[arg(long, default_value_t = 128)]
        block_cache_mib: usize,
        /// Directory for the data (default: a fresh temporary directory,
        /// removed afterwards).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print only the JSON report (no progress bar).
        #[arg(long)]
        json: bool,
    },
    /// Write throughput and latency of a 3-replica `tmc serve` shard and,
    /// in the same run, of a 3-member etcd cluster (loopback, fsync on).
    Raft {
        /// Concurrent clients, one level after the other.
        #[arg(long, value_delimiter = ',', default_values_t = vec![1, 16, 64, 256])]
        concurrency: Vec<usize>,
        /// Measured seconds per level.
        #[arg(long, default_value_t = 10.0)]
        duration_secs: f64,
        /// Unmeasured seconds before each level.
        #[arg(long, default_value_t = 1.0)]
        warmup_secs: f64,
        /// Bytes per value.
        #[arg(long, default_value_t = 1024)]
        value_bytes: usize,
        /// Which replicas the clients talk to.
        #[arg(long, value_enum, default_value_t = tmc::bench::raft::Endpoints::Leader)]
        endpoints: tmc::bench::raft::Endpoints,
        /// The etcd binary (default: $TESTENV_ETCD, else the one
        /// `scripts/testenv.sh build` left under ~/.cache/tmc/testenv/*/bin,
        /// else `etcd` on PATH).
        #[arg(long)]
        etcd_bin: Option<PathBuf>,
        /// Skip etcd.
        #[arg(long)]
        no_etcd: bool,
        /// `--tick-ms` of the tmc replicas.
        #[arg(long, default_value_t = 100)]
        tick_ms: u64,
        /// Parent directory for the data directories (default: the system's
        /// temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print only the JSON report (no progress).
        #[arg(long)]
        json: bool,
    },
    /// SIGKILL the leader of a 3-replica shard under a continuous writer,
    /// again and again: time from the kill to the next acknowledged write.
    Failover {
        /// Leader kills.
        #[arg(long, default_value_t = 20)]
        kills: usize,
        /// `--tick-ms` of the replicas.
        #[arg(long, default_value_t = 100)]
        tick_ms: u64,
        /// The writer's timeout per write, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        request_timeout_ms: u64,
        /// The writer's pause after a failed write, in milliseconds.
        #[arg(long, default_value_t = 10)]
        retry_ms: u64,
        /// Seconds of writes on the healthy shard between two kills.
        #[arg(long, default_value_t = 1.0)]
        settle_secs: f64,
        /// Parent directory for the data directories.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep the shard's data directory and the replicas' logs.
        #[arg(long)]
        keep_dir: bool,
        /// Print only the JSON report (no progress).
        #[arg(long)]
        json: bool,
    },
    /// A load generator for any Kubernetes API: creates, gets, lists and
    /// watch delivery, through kube-rs.
    Api(tmc::bench::api::ApiArgs),
    /// WorkloadPlacement decisions through the placement controller over
    /// a RocksDB store: decisions/s, latency per decision, peak RSS.
    Placement(tmc::bench::placement::PlacementArgs),
    /// Sync: workloads placed onto real member clusters (started with
    /// scripts/testenv.sh), workspace write → downstream copy and downstream
    /// status → workspace status latencies.
    Sync(tmc::bench::sync::SyncArgs),
}

#[derive(Subcommand)]
enum Debug {
    /// Writes numbered batches of `--batch-size` keys forever, printing
    /// `acked N` after batch N is durably committed. The crash test kills it.
    CrashWriter {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 8)]
        batch_size: u32,
    },
    /// Fuzzes the API's routing and body decoding (see src/api/fuzz.rs).
    FuzzApi {
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Fuzzes raft frames into a replica: decoding, validation and raft
    /// (see src/raft/fuzz.rs).
    FuzzRaft {
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev {
            data_dir,
            listen,
            controllers,
        } => dev(data_dir, listen, controllers.options()),
        Command::Serve {
            node_id,
            peers,
            kv_peers,
            data_dir,
            listen,
            tick_ms,
            api_listen,
            tls_dir,
            voters,
            join,
            log_compact_threshold,
            changes_retention,
            encryption_config,
            peer_tls_dir,
            insecure_peers,
            controllers,
        } => peer_security(peer_tls_dir.is_some(), insecure_peers).and_then(|()| {
            serve(
                node_id,
                &peers,
                &kv_peers,
                data_dir,
                listen,
                tick_ms,
                ServeOptions {
                    api: api_listen.map(|a| (a, tls_dir)),
                    voters,
                    join,
                    log_compact_threshold,
                    changes_retention,
                    encryption_config,
                    peer_tls_dir,
                    controllers: controllers.options(),
                },
            )
        }),
        Command::Certs {
            dir,
            nodes,
            hosts,
            server,
        } => certs(dir, nodes, hosts, server),
        Command::Kubeconfig {
            workspace,
            dir,
            server,
            user,
            group,
        } => kubeconfig(workspace, dir, server, user, group),
        Command::Kv {
            endpoint,
            peer_tls_dir,
            op,
        } => kv(endpoint, peer_tls_dir, op),
        Command::Encryption {
            op: EncryptionOp::Rewrite { kubeconfig },
        } => rewrite_secrets(kubeconfig),
        Command::Member { op, peer_tls_dir } => member(op, peer_tls_dir),
        Command::Cluster { op } => cluster(op),
        Command::Bench { which } => bench(which),
        Command::Debug { which } => debug(which),
    };
    if let Err(e) = result {
        eprintln!("tmc: {e}");
        std::process::exit(1);
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn dev(
    data_dir: PathBuf,
    listen: String,
    controllers: Option<tmc::controllers::Options>,
) -> Result<(), BoxError> {
    use tmc::raft::server;
    std::fs::create_dir_all(&data_dir)?;
    let files = tmc::api::tls::ensure_api_material(&data_dir, &[])?;
    // Secrets at rest under a generated key, kept beside the certificates.
    let encryption = data_dir.join("encryption.yaml");
    if !encryption.exists() {
        write_private(
            &encryption,
            tmc::encryption::Keys::generate_config().as_bytes(),
        )?;
    }
    let engine = store::RocksEngine::open(&data_dir.join("shard"), &RocksOptions::default())?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let server_url = format!("https://{}", listener.local_addr()?);
        let kubeconfig = tmc::api::tls::write_admin_kubeconfig(&files, &server_url)?;
        // A one-node shard through the same code paths as a three-node
        // one, without a raft port (it has no peer to talk to).
        let cfg = server::ServerConfig {
            id: 1,
            peers: Default::default(),
            kv_peers: Default::default(),
            tick: std::time::Duration::from_millis(100),
            tls: None,
        };
        let handle = server::start(engine, cfg, tmc::raft::NodeConfig::new(1, vec![1])).await?;
        let ready = handle.clone();
        let shard = data_shard(handle, Some(&encryption))?;
        if let Some(o) = controllers {
            tmc::controllers::start(shard.clone(), o);
        }
        let api = start_api(shard, listener, &data_dir, Arc::new(move || ready.ready())).await?;
        println!(
            "tmc dev is running on {server_url} (Ctrl-C stops it). Try:\n  kubectl --kubeconfig {} get namespaces",
            kubeconfig.display()
        );
        api.await?;
        tracing::info!("stopped");
        Ok::<_, BoxError>(())
    })
}

/// Writes a file only its owner can read (keys, tokens).
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// The shard the API and controllers use: `handle`, with Secrets encrypted
/// at rest when an encryption config is given (re-read every 5 s; a
/// config that stops parsing keeps the old keys and logs why).
fn data_shard(
    handle: tmc::raft::server::RaftShard<store::RocksEngine>,
    encryption: Option<&std::path::Path>,
) -> Result<Arc<dyn tmc::shard::Shard>, BoxError> {
    use tmc::encryption::EncryptedShard;
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
/// material in `tls_dir`; the returned future serves until Ctrl-C.
/// `/readyz` answers ok when `ready` does (the replica knows a leader and
/// has applied what is committed) and root's `default` namespace exists.
async fn start_api(
    shard: Arc<dyn tmc::shard::Shard>,
    listener: tokio::net::TcpListener,
    tls_dir: &std::path::Path,
    ready: tmc::api::ReadyCheck,
) -> Result<impl std::future::Future<Output = std::io::Result<()>>, BoxError> {
    use tmc::api::{handlers::ObjectApi, server::ApiServer, tls, watch::WatchHub};
    let files = tls::TlsFiles::new(tls_dir);
    let auth = tmc::api::auth::TokenAuth::load(&files.tokens())?;
    // The serving certificate and the client CA, re-read when they change.
    let tls_cfg = tls::reloading_server_config(&files)?;
    tls_cfg.watch(std::time::Duration::from_secs(5));
    let objects = Arc::new(ObjectApi {
        hub: WatchHub::start(shard.clone()),
        shard: shard.clone(),
        bookmark_interval: std::time::Duration::from_secs(10),
    });
    // `default` in root, once a leader can take the write.
    let boot = objects.clone();
    let booted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let booting = booted.clone();
    tokio::spawn(async move {
        loop {
            match boot.bootstrap().await {
                Ok(()) => {
                    booting.store(true, std::sync::atomic::Ordering::Release);
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "bootstrap of root's default namespace; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
            }
        }
    });
    let server = Arc::new(ApiServer {
        objects,
        auth,
        certs: Some(tls::cert_auth(&files)?),
        ready: Arc::new(move || {
            ready()?;
            if !booted.load(std::sync::atomic::Ordering::Acquire) {
                return Err("root's default namespace is not written yet".into());
            }
            Ok(())
        }),
    });
    tracing::info!(addr = %listener.local_addr()?, "serving the Kubernetes API");
    Ok(tmc::api::server::serve_tls(
        listener,
        move || tls_cfg.get(),
        tmc::api::server::router(server),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    ))
}

fn certs(
    dir: PathBuf,
    nodes: Vec<u64>,
    hosts: Vec<String>,
    server: String,
) -> Result<(), BoxError> {
    let files = tmc::api::tls::ensure_material(&dir, &hosts)?;
    let path = tmc::api::tls::write_admin_kubeconfig(&files, &server)?;
    println!("{}", path.display());
    for id in nodes {
        let node = tmc::api::tls::ensure_node_dir(&files, id)?;
        eprintln!(
            "replica {id}: copy {} to it; tmc serve --node-id {id} --tls-dir DIR --peer-tls-dir DIR",
            node.display()
        );
    }
    Ok(())
}

fn kubeconfig(
    workspace: String,
    dir: PathBuf,
    server: String,
    user: Option<String>,
    groups: Vec<String>,
) -> Result<(), BoxError> {
    store::Workspace::parse(&workspace)?;
    let files = tmc::api::tls::TlsFiles::new(&dir);
    if !files.exist() {
        return Err(format!(
            "no TLS material in {} (run tmc dev or tmc certs first)",
            dir.display()
        )
        .into());
    }
    let text = match user {
        None => tmc::api::tls::kubeconfig(&files, &server, &workspace)?,
        Some(user) => {
            let cert = tmc::api::tls::issue_client_cert(&files, &user, &groups, None)?;
            tmc::api::tls::cert_kubeconfig(&files, &server, &workspace, &cert, &user)?
        }
    };
    print!("{text}");
    Ok(())
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

/// How `tmc serve` founds or joins a shard and compacts its log, and
/// where it serves the Kubernetes API (address, TLS directory).
struct ServeOptions {
    api: Option<(String, Option<PathBuf>)>,
    voters: Option<String>,
    join: bool,
    log_compact_threshold: u64,
    changes_retention: u64,
    encryption_config: Option<PathBuf>,
    peer_tls_dir: Option<PathBuf>,
    controllers: Option<tmc::controllers::Options>,
}

fn serve(
    node_id: u64,
    peers: &str,
    kv_peers: &str,
    data_dir: PathBuf,
    listen: String,
    tick_ms: u64,
    membership: ServeOptions,
) -> Result<(), BoxError> {
    use tmc::raft::server;
    let raft_peers = server::parse_peers(peers)?
        .into_iter()
        .map(|(id, a)| {
            let addr: std::net::SocketAddr = a
                .parse()
                .map_err(|e| format!("bad raft address {a:?} of node {id}: {e}"))?;
            Ok((id, addr))
        })
        .collect::<Result<std::collections::BTreeMap<_, _>, BoxError>>()?;
    if !raft_peers.contains_key(&node_id) {
        return Err(format!("--peers does not name node {node_id}").into());
    }
    let mut kv_peers = server::parse_peers(kv_peers)?;
    kv_peers.entry(node_id).or_insert_with(|| listen.clone());
    std::fs::create_dir_all(&data_dir)?;
    let engine = store::RocksEngine::open(&data_dir.join("data"), &RocksOptions::default())?;
    let voters: Vec<u64> = if membership.join {
        Vec::new()
    } else if let Some(list) = &membership.voters {
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
        voters
    } else {
        raft_peers.keys().copied().collect()
    };
    let mut node_cfg = tmc::raft::NodeConfig::new(node_id, voters);
    node_cfg.log_compact_threshold = membership.log_compact_threshold;
    node_cfg.changes_retention = Some(membership.changes_retention);
    node_cfg.snapshot_dir = Some(data_dir.join("snapshots"));
    let cfg = server::ServerConfig {
        id: node_id,
        peers: raft_peers,
        kv_peers,
        tick: std::time::Duration::from_millis(tick_ms.max(1)),
        tls: match &membership.peer_tls_dir {
            Some(dir) => {
                let tls = tmc::raft::tls::PeerTls::load(dir)?;
                let own = tmc::raft::tls::PeerId::Node(node_id);
                if tls.identity() != own {
                    return Err(format!(
                        "{}/peer.crt is the certificate of {}, not of node {node_id}: \
                         use the directory `tmc certs --nodes {node_id}` wrote for it",
                        dir.display(),
                        tls.identity()
                    )
                    .into());
                }
                Some(tls)
            }
            None => None,
        },
    };
    let peer_tls = cfg.tls.clone();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let handle = server::start(engine, cfg, node_cfg).await?;
        let ready = handle.clone();
        // What the API and the controllers see: Secrets decrypted.
        let shard = data_shard(handle.clone(), membership.encryption_config.as_deref())?;
        if let Some((api_listen, tls_dir)) = membership.api {
            let tls_dir = tls_dir.ok_or("--api-listen needs --tls-dir")?;
            let listener = tokio::net::TcpListener::bind(&api_listen)
                .await
                .map_err(|e| format!("cannot listen on {api_listen}: {e}"))?;
            let api = start_api(
                shard.clone(),
                listener,
                &tls_dir,
                Arc::new(move || ready.ready()),
            )
            .await?;
            tokio::spawn(async move {
                if let Err(e) = api.await {
                    tracing::error!(error = %e, "the API server stopped");
                }
            });
        }
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr()?;
        let mut router = server::router(handle);
        if let Some(o) = membership.controllers {
            let metrics = tmc::controllers::start(shard, o);
            router = router.route(
                "/metrics",
                axum::routing::get(move || {
                    let m = metrics.clone();
                    async move { m.render() }
                }),
            );
        }
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        if peer_tls.is_some() {
            tracing::info!(node = node_id, %addr, "serving the KV interface (mutual TLS)");
        } else {
            tracing::info!(node = node_id, %addr, "serving the KV interface");
        }
        server::internal::serve(listener, peer_tls, router, shutdown).await?;
        Ok::<_, BoxError>(())
    })
}

trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

fn load_peer_tls(dir: Option<PathBuf>) -> Result<Option<Arc<tmc::raft::tls::PeerTls>>, BoxError> {
    Ok(match dir {
        Some(d) => Some(tmc::raft::tls::PeerTls::load(&d)?),
        None => None,
    })
}

/// One HTTP/1.1 request with `Connection: close` (over mutual TLS when
/// `tls` is set); returns status and body.
fn http(
    tls: Option<&tmc::raft::tls::PeerTls>,
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, serde_json::Value), BoxError> {
    use std::io::{Read, Write};
    let tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut s: Box<dyn ReadWrite> = match tls {
        Some(t) => {
            let name = rustls::pki_types::ServerName::try_from(tmc::raft::tls::PEER_NAME)?;
            let conn = rustls::ClientConnection::new(t.client_config(), name)?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
        None => Box::new(tcp),
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("malformed HTTP status line")?;
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_string()));
    Ok((status, json))
}

fn kv(endpoint: String, tls_dir: Option<PathBuf>, op: KvOp) -> Result<(), BoxError> {
    let tls = load_peer_tls(tls_dir)?;
    let (method, path, body) = match &op {
        KvOp::Put { path, value } => ("PUT", format!("/kv/{path}"), value.clone().into_bytes()),
        KvOp::Get { path, local } => (
            "GET",
            format!(
                "/kv/{path}?consistency={}",
                if *local { "local" } else { "linearizable" }
            ),
            Vec::new(),
        ),
        KvOp::Delete { path } => ("DELETE", format!("/kv/{path}"), Vec::new()),
        KvOp::List { workspace } => ("GET", format!("/kv/{workspace}"), Vec::new()),
        KvOp::Status => ("GET", "/status".to_string(), Vec::new()),
    };
    let mut addr = endpoint;
    for _ in 0..3 {
        let (status, json) = http(tls.as_deref(), &addr, method, &path, &body)?;
        if status == 503 {
            if let Some(leader) = json.get("leader_addr").and_then(|a| a.as_str()) {
                eprintln!("tmc: {}; retrying there", json["error"]);
                addr = leader.to_string();
                continue;
            }
        }
        println!("{json}");
        if (200..300).contains(&status) {
            return Ok(());
        }
        return Err(format!("HTTP {status}").into());
    }
    Err("too many redirects to the leader".into())
}

/// `tmc encryption rewrite`: lists every Secret through the `*` workspace
/// and replaces each with itself. The server rewrites a Secret whose stored
/// form is under an old key even though nothing changed (kube-apiserver's
/// `kubectl get secrets -A -o json | kubectl replace -f -`, for all
/// workspaces at once). A Secret changed or deleted meanwhile needs no
/// rewrite: whoever changed it wrote it under the current key.
fn rewrite_secrets(kubeconfig: PathBuf) -> Result<(), BoxError> {
    use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig)
            .map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        let url = config.cluster_url.to_string();
        let base = url
            .split_once("/clusters/")
            .map_or(url.trim_end_matches('/'), |(b, _)| b)
            .to_string();
        let client_for = |ws: &str| -> Result<kube::Client, BoxError> {
            let mut c = config.clone();
            c.cluster_url = format!("{base}/clusters/{ws}").parse()?;
            Ok(kube::Client::try_from(c)?)
        };
        let ar = ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&());
        let all: Api<DynamicObject> = Api::all_with(client_for("*")?, &ar);
        let mut clients: std::collections::HashMap<String, kube::Client> = Default::default();
        let (mut rewritten, mut raced) = (0u64, 0u64);
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(500);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = all.list(&lp).await?;
            for obj in page.items {
                let ws = obj
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("kcp.io/cluster"))
                    .cloned()
                    .ok_or("a Secret in the * list has no kcp.io/cluster annotation")?;
                let client = match clients.get(&ws) {
                    Some(c) => c.clone(),
                    None => {
                        let c = client_for(&ws)?;
                        clients.insert(ws.clone(), c.clone());
                        c
                    }
                };
                let ns = obj.metadata.namespace.clone().unwrap_or_default();
                let name = obj.metadata.name.clone().unwrap_or_default();
                let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
                match api.replace(&name, &PostParams::default(), &obj).await {
                    Ok(_) => rewritten += 1,
                    Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => raced += 1,
                    Err(e) => return Err(format!("{ws}/{ns}/{name}: {e}").into()),
                }
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        println!(
            "rewrote {rewritten} Secrets in {} workspaces ({raced} changed or deleted meanwhile, already current)",
            clients.len()
        );
        Ok::<_, BoxError>(())
    })
}

/// `tmc cluster ...`: an API client of tmc (kube-rs).
fn cluster(op: ClusterOp) -> Result<(), BoxError> {
    let ClusterOp::Register {
        name,
        kubeconfig,
        workspace,
        server,
        admin_kubeconfig,
        api_endpoint,
        secret_namespace,
        labels,
        location,
    } = op;
    store::Workspace::parse(&workspace)?;
    let member_text = std::fs::read_to_string(&kubeconfig)
        .map_err(|e| format!("reading {}: {e}", kubeconfig.display()))?;
    let member = kube::config::Kubeconfig::from_yaml(&member_text)
        .map_err(|e| format!("{} is not a kubeconfig: {e}", kubeconfig.display()))?;
    let endpoint = match api_endpoint {
        Some(e) => e,
        None => {
            let ctx_name = member
                .current_context
                .clone()
                .ok_or("the kubeconfig has no current-context; pass --api-endpoint")?;
            let ctx = member
                .contexts
                .iter()
                .find(|c| c.name == ctx_name)
                .and_then(|c| c.context.clone())
                .ok_or(format!("context {ctx_name:?} not found in the kubeconfig"))?;
            member
                .clusters
                .iter()
                .find(|c| c.name == ctx.cluster)
                .and_then(|c| c.cluster.as_ref()?.server.clone())
                .ok_or(format!(
                    "cluster {:?} of the current context has no server",
                    ctx.cluster
                ))?
        }
    };
    let mut labels_map = serde_json::Map::new();
    for l in labels.iter().filter(|l| !l.is_empty()) {
        let (k, v) = l
            .split_once('=')
            .ok_or(format!("--label {l:?} is not key=value"))?;
        labels_map.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    let mut tmc_cfg = kube::config::Kubeconfig::read_from(&admin_kubeconfig)
        .map_err(|e| format!("reading {}: {e}", admin_kubeconfig.display()))?;
    for c in tmc_cfg.clusters.iter_mut() {
        if let Some(cl) = c.cluster.as_mut() {
            let base = match (&server, &cl.server) {
                (Some(s), _) => s.trim_end_matches('/').to_string(),
                (None, Some(s)) => match s.find("/clusters/") {
                    Some(i) => s[..i].to_string(),
                    None => s.trim_end_matches('/').to_string(),
                },
                (None, None) => continue,
            };
            cl.server = Some(format!("{base}/clusters/{workspace}"));
        }
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        use kube::api::{Api, DynamicObject, Patch, PatchParams};
        use kube::discovery::ApiResource;
        let cfg = kube::Config::from_custom_kubeconfig(tmc_cfg, &Default::default()).await?;
        let client = kube::Client::try_from(cfg)?;
        let pp = PatchParams::apply("tmc-cluster-register").force();
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        namespaces
            .patch(
                &secret_namespace,
                &pp,
                &Patch::Apply(serde_json::json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": secret_namespace}
                })),
            )
            .await
            .map_err(|e| format!("namespace {secret_namespace}: {e}"))?;
        let secret_name = format!("{name}-kubeconfig");
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(client.clone(), &secret_namespace);
        secrets
            .patch(
                &secret_name,
                &pp,
                &Patch::Apply(serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": secret_name, "namespace": secret_namespace},
                    "type": "Opaque",
                    "stringData": {"kubeconfig": member_text}
                })),
            )
            .await
            .map_err(|e| format!("Secret {secret_namespace}/{secret_name}: {e}"))?;
        let ar = ApiResource {
            group: tmc::api::types::GROUP.into(),
            version: tmc::api::types::VERSION.into(),
            api_version: tmc::api::types::API_VERSION.into(),
            kind: "ClusterRegistration".into(),
            plural: "clusterregistrations".into(),
        };
        let regs: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let mut spec = serde_json::json!({
            "apiEndpoint": endpoint,
            "credentialsSecretRef": {"namespace": secret_namespace, "name": secret_name},
        });
        if !location.is_empty() {
            spec["location"] = serde_json::Value::String(location.clone());
        }
        regs.patch(
            &name,
            &pp,
            &Patch::Apply(serde_json::json!({
                "apiVersion": tmc::api::types::API_VERSION, "kind": "ClusterRegistration",
                "metadata": {"name": name, "labels": labels_map},
                "spec": spec
            })),
        )
        .await
        .map_err(|e| format!("ClusterRegistration {name}: {e}"))?;
        println!("clusterregistration.tmc.kcp.io/{name} registered in {workspace} ({endpoint})");
        Ok::<_, BoxError>(())
    })
}

fn member(op: MemberOp, tls_dir: Option<PathBuf>) -> Result<(), BoxError> {
    let tls = load_peer_tls(tls_dir)?;
    let (method, path, server) = match op {
        MemberOp::Add { id, server } => ("POST", format!("/members/{id}"), server),
        MemberOp::Remove { id, server } => ("DELETE", format!("/members/{id}"), server),
        MemberOp::List { server } => ("GET", "/members".to_string(), server),
    };
    let (status, json) = http(tls.as_deref(), &server, method, &path, b"")?;
    println!("{json}");
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP {status}").into())
    }
}

fn bench(which: Bench) -> Result<(), BoxError> {
    match which {
        Bench::Store {
            workspaces,
            batch,
            list_samples,
            scan_page,
            changes_retention,
            block_cache_mib,
            data_dir,
            json,
        } => {
            let tmp;
            let dir = match data_dir {
                Some(d) => d,
                None => {
                    tmp = tempfile::Builder::new()
                        .prefix("tmc-bench-store")
                        .tempdir()?;
                    tmp.path().join("db")
                }
            };
            let cfg = tmc::bench::store::StoreBenchConfig {
                workspaces,
                batch,
                list_samples,
                scan_page,
                changes_retention,
                rocks: RocksOptions {
                    block_cache_bytes: block_cache_mib << 20,
                    ..RocksOptions::default()
                },
            };
            let bar = if json {
                indicatif::ProgressBar::hidden()
            } else {
                indicatif::ProgressBar::new(workspaces)
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "loading {bar:40} {pos}/{len} workspaces {per_sec} eta {eta}",
                )
                .expect("template"),
            );
            let report = tmc::bench::store::run(&dir, &cfg, &|n| bar.set_position(n))?;
            bar.finish_and_clear();
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Bench::Raft {
            concurrency,
            duration_secs,
            warmup_secs,
            value_bytes,
            endpoints,
            etcd_bin,
            no_etcd,
            tick_ms,
            dir,
            json,
        } => {
            let cfg = tmc::bench::raft::RaftBenchConfig {
                tmc_bin: std::env::current_exe()?,
                etcd_bin,
                no_etcd,
                concurrency,
                duration: std::time::Duration::from_secs_f64(duration_secs),
                warmup: std::time::Duration::from_secs_f64(warmup_secs),
                value_bytes,
                endpoints,
                tick_ms,
                dir,
            };
            let bar = spinner(json);
            let report = run_bench(tmc::bench::raft::run(&cfg, &|m| bar.set_message(m)))?;
            bar.finish_and_clear();
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Bench::Failover {
            kills,
            tick_ms,
            request_timeout_ms,
            retry_ms,
            settle_secs,
            dir,
            keep_dir,
            json,
        } => {
            let cfg = tmc::bench::failover::FailoverConfig {
                tmc_bin: std::env::current_exe()?,
                kills,
                tick_ms,
                request_timeout: std::time::Duration::from_millis(request_timeout_ms),
                retry: std::time::Duration::from_millis(retry_ms),
                settle: std::time::Duration::from_secs_f64(settle_secs),
                dir,
                keep_dir,
            };
            let bar = if json {
                indicatif::ProgressBar::hidden()
            } else {
                indicatif::ProgressBar::new(kills as u64)
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template("leader kills {bar:40} {pos}/{len}")
                    .expect("template"),
            );
            let report = run_bench(tmc::bench::failover::run(&cfg, &|n| bar.set_position(n)))?;
            bar.finish_and_clear();
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Bench::Sync(args) => {
            let bar = spinner(args.json);
            bar.set_message("syncing workloads to member clusters");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let report = rt.block_on(tmc::bench::sync::run(&args))?;
            bar.finish_and_clear();
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Bench::Placement(args) => {
            let bar = spinner(args.json);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let report = rt.block_on(tmc::bench::placement::run(&args, &|m| {
                bar.set_message(m.to_string())
            }))?;
            bar.finish_and_clear();
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Bench::Api(args) => {
            let bar = spinner(args.json);
            let report =
                run_bench_cleaning_up(tmc::bench::api::run(&args, &|m| bar.set_message(m)))?;
            bar.finish_and_clear();
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

/// Runs a benchmark that handles Ctrl-C itself (to clean up remotely).
fn run_bench_cleaning_up<T>(
    fut: impl std::future::Future<Output = Result<T, tmc::bench::procs::BoxError>>,
) -> Result<T, BoxError> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(fut)
}

/// A spinner with a message on stderr, hidden under `--json`.
fn spinner(json: bool) -> indicatif::ProgressBar {
    if json {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// Runs a benchmark on a fresh runtime; Ctrl-C or SIGTERM drops it, and with
/// it the guards that kill its child processes and clean up.
fn run_bench<T>(
    fut: impl std::future::Future<Output = Result<T, tmc::bench::procs::BoxError>>,
) -> Result<T, BoxError> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = fut => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            _ = term.recv() => Err("terminated".into()),
        }
    })
}

fn debug(which: Debug) -> Result<(), BoxError> {
    match which {
        Debug::FuzzRaft { seconds, seed } => {
            std::panic::set_hook(Box::new(|_| {}));
            let n = tmc::raft::fuzz::run(seed, seconds, u64::MAX)?;
            println!(
                "fuzz-raft: {n} frames in {seconds} s (seed {seed}), no panic, nothing refused changed the node"
            );
            Ok(())
        }
        Debug::FuzzApi { seconds, seed } => {
            // Panics are the findings: keep their messages off the terminal.
            std::panic::set_hook(Box::new(|_| {}));
            let n = tmc::api::fuzz::run(seed, seconds, u64::MAX)?;
            println!(
                "fuzz-api: {n} inputs in {seconds} s (seed {seed}), no panic, no broken invariant"
            );
            Ok(())
        }
        Debug::CrashWriter {
            data_dir,
            batch_size,
        } => {
            use std::io::Write;
            use tmc::store::{Expectation, GroupResource, ObjectKey, Txn, TxnOp, Workspace};
            let st =
                store::open_rocks(&data_dir, &RocksOptions::default(), StoreOptions::default())?;
            let gr = GroupResource::new("", "configmaps")?;
            let ws = Workspace::parse("root:crash")?;
            // Resume after the last committed batch.
            let mut n = st.revision();
            let mut out = std::io::stdout().lock();
            loop {
                n += 1;
                let ops = (0..batch_size)
                    .map(|i| {
                        let key = ObjectKey::namespaced(
                            gr.clone(),
                            ws.clone(),
                            "default",
                            &format!("b{n}-{i}"),
                        )?;
                        Ok(TxnOp::put_json(
                            key,
                            format!("{{\"batch\":{n},\"i\":{i}}}").into_bytes(),
                            Expectation::Absent,
                        ))
                    })
                    .collect::<Result<Vec<_>, BoxError>>()?;
                let c = st.commit(Txn::new(ops))?;
                assert_eq!(c.revision, n, "one revision per batch");
                writeln!(out, "acked {n}")?;
                out.flush()?;
            }
        }
    }
}
