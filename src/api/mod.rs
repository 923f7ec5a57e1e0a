//! The Kubernetes API of tmc, over workspaces: `/clusters/{workspace}/...`
//! paths as kcp serves them, the tmc virtual workspace
//! (`/services/tmc/clusters/...`), `/livez` and `/readyz`.
//!
//! [`server`] is the HTTPS edge (TLS, limits, the order of checks) and
//! routes through [`request`]; [`authn`] authenticates, [`authz`] applies
//! RBAC per workspace, [`admission`] and [`validation`] check what is
//! written; [`handlers`] serve the verbs, with [`patch`], [`apply`] and
//! [`watch`] (the hub fanning out the change log); [`discovery`],
//! [`openapi`], [`protobuf`] and [`table`] speak what clients expect. This module
//! knows nothing of RocksDB or raft: it reaches data only through the
//! shard interface ([`crate::shard::Shard`]). See docs/api.md.

pub mod admission;
pub mod apply;
pub mod authn;
pub mod authz;
pub mod discovery;
pub mod fuzz;
pub mod handlers;
pub mod limits;
pub mod metrics;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod request;
pub mod resources;
pub mod schema;
pub mod server;
pub mod status;
pub mod table;
pub mod tls;
pub mod validation;
pub mod watch;

use std::sync::Arc;

/// A readiness probe: `Ok` when the node can serve, else why not.
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What `/tmc/backup` hands out.
pub enum Backup {
    /// The finished file, open and already unlinked (it goes when the
    /// answer has been streamed).
    File(std::fs::File),
    /// Only the manifest (`?manifest=true`): the revision and the digest
    /// of the data at a read point, to compare with a backup's.
    Manifest(serde_json::Value),
}

/// Makes a backup of this shard (`/tmc/backup`; with `true`, only its
/// manifest), or says why not.
pub type BackupSource = Arc<
    dyn Fn(
            bool,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Backup, String>> + Send>>
        + Send
        + Sync,
>;

/// The status of this shard's replicas for `tmc status` (`/tmc/status`):
/// the shard's name and a JSON document (see `Replica`'s wiring).
pub struct ShardStatus {
    /// This shard's name.
    pub shard: String,
    /// Gathers the document.
    pub gather: Arc<
        dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send>>
            + Send
            + Sync,
    >,
}
