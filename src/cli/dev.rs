//! `tmc dev`: a one-node shard with the Kubernetes API, for trying tmc
//! out. It writes its TLS material, an admin kubeconfig and an encryption
//! key for Secrets under `--data-dir` (keeping what exists) and runs a
//! [`Replica`] whose raft node has no peers and no raft port.

use super::replica::ReplicaArgs;
use super::BoxError;
use crate::raft::{server::ServerConfig, NodeConfig};
use crate::replica::{ApiOptions, Replica, ReplicaOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Run an embedded single-node tmc for trying it out: store under
/// --data-dir, the Kubernetes API (HTTPS) on --listen.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the node keeps its data.
    #[arg(long, default_value = ".tmc")]
    pub data_dir: PathBuf,
    /// Address of the HTTP endpoint.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: String,
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
            write_private(
                &encryption,
                crate::encryption::Keys::generate_config().as_bytes(),
            )?;
        }
        let options = ReplicaOptions {
            store_dir: data_dir.join("shard"),
            // A one-node shard through the same code paths as a
            // three-node one, without a raft port (it has no peer to talk
            // to).
            server: ServerConfig {
                id: 1,
                peers: Default::default(),
                kv_peers: Default::default(),
                tick: Duration::from_millis(100),
                tls: None,
            },
            node: NodeConfig::new(1, vec![1]),
            encryption_config: Some(encryption),
            controllers: self.replica.controllers.options(),
            api: Some(ApiOptions {
                listen: self.listen,
                tls_dir: data_dir.clone(),
                limits: self.replica.api_limits.limits(),
            }),
            internal_listen: None,
        };
        super::runtime()?.block_on(async move {
            let replica = Replica::start(options).await?;
            let addr = replica.api_addr().ok_or("the API is not served")?;
            let server_url = format!("https://{addr}");
            let kubeconfig = crate::api::tls::write_admin_kubeconfig(&files, &server_url)?;
            println!(
                "tmc dev is running on {server_url} (Ctrl-C stops it). Try:\n  kubectl --kubeconfig {} get namespaces",
                kubeconfig.display()
            );
            replica.run().await?;
            tracing::info!("stopped");
            Ok::<_, BoxError>(())
        })
    }
}

/// Writes a file only its owner can read (keys, tokens).
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
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
