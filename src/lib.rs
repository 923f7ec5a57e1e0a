//! tmc: Transparent Multi-Cluster for kcp-style multi-tenant control planes.
//!
//! Layers, bottom up:
//! - [`store`]: RocksDB engine, kcp's etcd key layout, revisions, change log.
//! - [`raft`]: replication of the store across the three nodes of a shard.
//! - [`shard`]: the interface the API and the controllers reach data by;
//!   [`encryption`] wraps it to keep Secrets encrypted at rest.
//! - [`api`]: the Kubernetes API over HTTPS, per workspace.
//! - [`authz`](mod@authz): users and RBAC, independent of HTTP and storage.
//! - [`controllers`]: cluster registration, placement and sync.
//! - [`bench`](mod@bench): the `tmc bench` load generators.
//! - [`replica`]: one replica wired (store, raft, API, controllers), as
//!   `tmc dev` and `tmc serve` run it.
//! - [`cli`]: the subcommands of the `tmc` binary.
//! - [`testcluster`]: `tmc serve` replicas as real processes on loopback,
//!   for the integration tests and the benchmarks.

pub mod api;
pub mod authz;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod controllers;
pub mod encryption;
pub mod fuzz;
pub mod object;
pub mod owners;
pub mod proxy;
pub mod raft;
pub mod replica;
pub mod shard;
pub mod shards;
pub mod store;
pub mod testcluster;
pub mod types;
pub mod util;
