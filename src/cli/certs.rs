//! `tmc certs`: the TLS material of a shard ([`crate::api::tls`]).

use super::BoxError;
use std::path::PathBuf;

/// Generates the users' CA, a serving certificate, an admin token and
/// an admin kubeconfig, the peer CA and the operator's peer
/// certificate, the front proxy's CA and client certificate into a
/// directory, and a directory per replica to copy to it (D/nodes/ID,
/// without any CA key, with the shard's identity); what exists is kept.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write them.
    #[arg(long)]
    pub dir: PathBuf,
    /// The replicas to write D/nodes/ID for.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub nodes: Vec<u64>,
    /// Extra IP addresses or DNS names for the serving certificate.
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// The API's address, for the kubeconfig.
    #[arg(long, default_value = "https://127.0.0.1:6443")]
    pub server: String,
    /// The shard the replicas are of: each D/nodes/ID gets its identity
    /// for calls to other shards (shard.crt, shard.key: CN
    /// system:tmc:shard:NAME). Several shards share one directory's CAs
    /// and tokens; give each its own --dir copy of them, or run this
    /// once per shard with other --nodes.
    #[arg(long, default_value = crate::shards::ROOT)]
    pub shard: String,
}

impl Args {
    /// Writes what is missing; prints the admin kubeconfig's path, and on
    /// stderr what to copy to each replica.
    pub fn run(self) -> Result<(), BoxError> {
        let files = crate::api::tls::ensure_material(&self.dir, &self.hosts)?;
        let path = crate::api::tls::write_admin_kubeconfig(&files, &self.server)?;
        println!("{}", path.display());
        for id in self.nodes {
            let node = crate::api::tls::ensure_node_dir(&files, id)?;
            crate::api::tls::ensure_shard_identity(&files, &node, &self.shard)?;
            eprintln!(
                "replica {id}: copy {} to it; tmc serve --node-id {id} --tls-dir DIR --peer-tls-dir DIR",
                node.display()
            );
        }
        Ok(())
    }
}
