//! `tmc dev`: a one-node shard with the Kubernetes API, for trying tmc
//! out. It writes its TLS material, an admin kubeconfig and an encryption
//! key for Secrets under `--data-dir` (keeping what exists) and runs a
//! [`Replica`] whose raft node has no peers and no raft port.

use super::replica::ReplicaArgs;
use super::BoxError;
use crate::raft::{server::ServerConfig, NodeConfig};
use crate::replica::{ApiOptions, Replica, ReplicaOptions};
use std::path::PathBuf;
use std::time::Duration;

/// Run an embedded single-node tmc for trying it out: store under
/// --data-dir, the Kubernetes API (HTTPS) on --listen.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the node keeps its data.
    #[arg(long, default_value = ".tmc")]
    pub data_dir: PathBuf,
    /// Address of the HTTP endpoint (the front proxy's with --shards).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: String,
    /// Shards to run: 1 is one shard serving --listen itself; N > 1 runs
    /// N one-node shards (`root`, `shard2`, ...) on loopback ports behind
    /// the front proxy on --listen, all in this process.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub shards: u16,
    /// Serve Prometheus metrics (`/metrics`, plain HTTP) of the root shard
    /// on this address.
    #[arg(long)]
    pub metrics_listen: Option<String>,
    #[command(flatten)]
    pub replica: ReplicaArgs,
}

impl Args {
    /// Runs the node until Ctrl-C.
    pub fn run(self) -> Result<(), BoxError> {
        let data_dir = self.data_dir;
        std::fs::create_dir_all(&data_dir)?;
        let files = crate::api::tls::ensure_api_material(&data_dir, &[])?;
        // Secrets at rest under a generated key, kept beside the certificates.
        let encryption = data_dir.join("encryption.yaml");
        if !encryption.exists() {
            crate::util::write_new_private(
                &encryption,
                crate::encryption::Keys::generate_config().as_bytes(),
            )?;
        }
        if self.shards > 1 {
            crate::api::tls::ensure_front_proxy_material(&files)?;
        }
        let names: Vec<String> = (1..=self.shards)
            .map(|i| {
                if i == 1 {
                    crate::shards::ROOT.to_string()
                } else {
                    format!("shard{i}")
                }
            })
            .collect();
        let sharded = self.shards > 1;
        let replica = self.replica;
        let listen = self.listen;
        let metrics_listen = self.metrics_listen;
        super::runtime()?.block_on(async move {
            let mut root_url = String::new();
            let mut others = Vec::new();
            let mut running = Vec::new();
            let mut shard_lines = Vec::new();
            for name in &names {
                let is_root = name == crate::shards::ROOT;
                let identity = crate::api::tls::issue_shard_identity(&files, name)?;
                let options = ReplicaOptions {
                    // The root shard keeps the one-shard layout.
                    store_dir: if is_root {
                        data_dir.join("shard")
                    } else {
                        data_dir.join("shards").join(name)
                    },
                    // A one-node shard through the same code paths as a
                    // three-node one, without a raft port (it has no peer
                    // to talk to).
                    server: ServerConfig {
                        id: 1,
                        peers: Default::default(),
                        listen: None,
                        kv_peers: Default::default(),
                        tick: Duration::from_millis(100),
                        tls: None,
                        data_dir: is_root.then(|| data_dir.join("shard")),
                    },
                    node: NodeConfig {
                        // A new data directory's shard gets a cluster id of
                        // its own (a restored one keeps what restore gave it).
                        cluster_id: super::restore::random_cluster_id(),
                        ..NodeConfig::new(1, vec![1])
                    },
                    encryption_config: Some(encryption.clone()),
                    controllers: replica.controllers.options(),
                    api: Some(ApiOptions {
                        listen: if sharded {
                            "127.0.0.1:0".to_string()
                        } else {
                            listen.clone()
                        },
                        tls_dir: data_dir.clone(),
                        limits: replica.api_limits.limits(),
                    }),
                    internal_listen: None,
                    metrics_listen: if is_root { metrics_listen.clone() } else { None },
                    shard: crate::shards::Config {
                        name: name.clone(),
                        labels: Default::default(),
                        url: String::new(),
                        root: if is_root {
                            Vec::new()
                        } else {
                            vec![root_url.clone()]
                        },
                    },
                    shard_identity: Some((
                        identity.cert_pem.into_bytes(),
                        identity.key_pem.into_bytes(),
                    )),
                };
                let replica = Replica::start(options).await?;
                let addr = replica.api_addr().ok_or("the API is not served")?;
                let url = format!("https://{addr}");
                if is_root {
                    root_url = url.clone();
                } else {
                    others.push(crate::proxy::resolve::ShardRef {
                        name: name.clone(),
                        url: url.clone(),
                    });
                }
                shard_lines.push(format!("  shard {name}: {url}"));
                running.push(tokio::spawn(replica.run()));
            }
            // With shards, the proxy listens before anyone is told to use it.
            let (server_url, proxy) = if sharded {
                let args = super::proxy::Args {
                    listen: listen.clone(),
                    tls_dir: data_dir.clone(),
                    root_shard: root_url,
                    shards: others,
                    route_cache_size: std::num::NonZeroUsize::new(100_000)
                        .ok_or("a zero cache size")?,
                    limits: replica.api_limits.clone(),
                };
                let (addr, serving) = args.start().await?;
                (format!("https://{addr}"), Some(serving))
            } else {
                (root_url, None)
            };
            let kubeconfig = crate::api::tls::write_admin_kubeconfig(&files, &server_url)?;
            println!(
                "tmc dev is running on {server_url} (Ctrl-C stops it). Try:\n  kubectl --kubeconfig {} get namespaces",
                kubeconfig.display()
            );
            match proxy {
                Some(serving) => {
                    println!(
                        "{} shards behind the front proxy:\n{}",
                        names.len(),
                        shard_lines.join("\n")
                    );
                    serving.await?;
                }
                None => {
                    for r in running {
                        r.await??;
                    }
                }
            }
            tracing::info!("stopped");
            Ok::<_, BoxError>(())
        })
    }
}
