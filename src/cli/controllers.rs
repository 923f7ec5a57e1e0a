//! The controller flags of `tmc dev` and `tmc serve`.

use crate::controllers::{member::EndpointPolicy, parse_duration, Options};
use std::time::Duration;

/// The controllers of `tmc serve` and `tmc dev`.
#[derive(clap::Args, Clone, Debug)]
pub struct ControllerArgs {
    /// Do not run the controllers (placement, cluster registration, sync);
    /// the lifecycle controller, which finishes deletions of namespaces
    /// and workspaces, always runs.
    #[arg(long)]
    pub no_controllers: bool,
    /// Time between probes of a registered cluster (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub probe_interval: Duration,
    /// Time without a good probe before a cluster is unhealthy.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub heartbeat_threshold: Duration,
    /// Time one probe may take.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub probe_timeout: Duration,
    /// Clusters probed at once, at most (each probe may take up to
    /// --probe-timeout).
    #[arg(long, default_value_t = 64)]
    pub probe_concurrency: usize,
    /// How long the placement controller caches a location's clusters.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub catalog_ttl: Duration,
    /// Downstream writes per second to one member cluster.
    #[arg(long, default_value_t = 50.0)]
    pub sync_qps: f64,
    /// Burst of downstream writes to one member cluster.
    #[arg(long, default_value_t = 100)]
    pub sync_burst: u32,
    /// Concurrent downstream requests per member cluster.
    #[arg(long, default_value_t = 16)]
    pub sync_workers: usize,
    /// Let member clusters be registered at loopback, link-local
    /// (169.254.0.0/16, cloud metadata) and this host's own addresses.
    /// Without it such endpoints are refused (a tenant could otherwise
    /// point the shard at its own or the cloud's internal services); for
    /// test environments whose member clusters run on 127.0.0.1.
    #[arg(long)]
    pub allow_private_member_endpoints: bool,
}

impl ControllerArgs {
    /// The controllers' options; `None` with `--no-controllers`.
    pub fn options(&self) -> Option<Options> {
        if self.no_controllers {
            return None;
        }
        let mut o = Options::default();
        o.cluster.probe_interval = self.probe_interval;
        o.cluster.heartbeat_threshold = self.heartbeat_threshold;
        o.cluster.probe_timeout = self.probe_timeout;
        o.cluster.probe_concurrency = self.probe_concurrency.max(1);
        o.placement.catalog_ttl = self.catalog_ttl;
        o.sync.qps = self.sync_qps;
        o.sync.burst = self.sync_burst;
        o.sync.workers_per_cluster = self.sync_workers;
        let endpoints = EndpointPolicy {
            allow_private: self.allow_private_member_endpoints,
        };
        o.cluster.endpoints = endpoints;
        o.sync.endpoints = endpoints;
        Some(o)
    }
}
