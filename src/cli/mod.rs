//! The subcommands of the `tmc` binary, one module each: a clap
//! [`Args`](clap::Args) struct (its doc comment is the subcommand's help)
//! and a `run` that does the work and returns an error to print. The
//! binary (`src/main.rs`) only parses the command line, dispatches and
//! turns an error into `tmc: <error>` on stderr and exit status 1 (clap's
//! own usage errors exit with 2).
//!
//! - [`dev`]: a one-node shard with the API, for trying tmc out.
//! - [`serve`]: one replica of a three-node shard.
//! - [`proxy`]: the front proxy in front of the shards.
//! - [`certs`], [`kubeconfig`]: TLS material and kubeconfigs.
//! - [`kv`], [`member`]: clients of the replicas' internal interface.
//! - [`cluster`], [`encryption`]: clients of the Kubernetes API.
//! - [`backup`], [`restore`], [`workspace`]: backups of shards, restores,
//!   and one workspace exported, imported or moved between shards.
//! - [`bench`](mod@bench): the load generators of [`crate::bench`](mod@crate::bench).
//! - [`debug`]: test helpers (crash writer, fuzzers), hidden from help.
//!
//! `dev` and `serve` share one group of flags ([`replica::ReplicaArgs`]:
//! [`controllers::ControllerArgs`] and [`api_limits::ApiLimitArgs`]) and
//! the wiring of [`crate::replica`]; they differ only in the options they
//! give it.

pub mod api_limits;
pub mod backup;
pub mod bench;
pub mod certs;
pub mod cluster;
pub mod controllers;
pub mod debug;
pub mod dev;
pub mod encryption;
pub mod kubeconfig;
pub mod kv;
pub mod member;
pub mod proxy;
pub mod replica;
pub mod restore;
pub mod serve;
pub mod status;
pub mod workspace;

pub use crate::util::BoxError;

/// A runtime for a subcommand that needs one (one thread per core).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new()
}

/// The client configuration of an admin kubeconfig and the server's base
/// URL (its `/clusters/...` path taken off), for subcommands that reach
/// several workspaces or servers with the same credentials.
pub(crate) async fn admin_config(
    kubeconfig: &std::path::Path,
) -> Result<(kube::Config, String), BoxError> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let url = config.cluster_url.to_string();
    let base = url
        .split_once("/clusters/")
        .map_or(url.trim_end_matches('/'), |(b, _)| b)
        .to_string();
    Ok((config, base))
}

/// A client of the server an admin kubeconfig names, at its base URL
/// ([`admin_config`]).
pub(crate) async fn admin_client(kubeconfig: &std::path::Path) -> Result<kube::Client, BoxError> {
    let (mut config, base) = admin_config(kubeconfig).await?;
    config.cluster_url = base.parse()?;
    Ok(kube::Client::try_from(config)?)
}
